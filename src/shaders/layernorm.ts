/**
 * LayerNorm over the last dimension: `y = (x - mean) / sqrt(var + eps) · gamma + beta`,
 * one workgroup per row, two passes over the row (mean, then centred variance) as PyTorch does.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Params, type Recorder } from "../gpu/recorder.ts";
import { emptyTensor, type Tensor } from "../gpu/tensor.ts";
import { grid } from "./matmul.ts";
import { workgroupReduceWgsl } from "./reduce_wgsl.ts";

const WGSL = `
struct P { rows: u32, D: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
${workgroupReduceWgsl(256)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.y * 65535u + wg.x;
  if (row >= p.rows) { return; }
  let t = lid.x;
  let base = row * p.D;
  var s = 0.0;
  for (var i = t; i < p.D; i += 256u) { s += X[base + i]; }
  let mean = reduce(t, s, false) / f32(p.D);
  var q = 0.0;
  for (var i = t; i < p.D; i += 256u) { let d = X[base + i] - mean; q += d * d; }
  let inv = inverseSqrt(reduce(t, q, false) / f32(p.D) + p.eps);
  for (var i = t; i < p.D; i += 256u) { Y[base + i] = (X[base + i] - mean) * inv * gamma[i] + beta[i]; }
}`;

/** LayerNorm of `x [rows, D]` (any leading shape) with `gamma`, `beta` `[D]`. */
export function layerNorm(
  rec: Recorder,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
  out?: Tensor,
): Tensor {
  const D = x.shape[x.shape.length - 1];
  if (gamma.size !== D || beta.size !== D) {
    throw new WebcapError(
      "BAD_SHAPE",
      `layerNorm: gamma/beta [${gamma.shape}] do not match last dim of [${x.shape}]`,
    );
  }
  const rows = x.size / D;
  const y = out ?? emptyTensor(rec.gpu, x.shape);
  rec.dispatch(rec.gpu.pipelines.get(WGSL), new Params().u32(rows).u32(D).f32(eps), [
    x,
    gamma,
    beta,
    y,
  ], grid(rows));
  return y;
}
