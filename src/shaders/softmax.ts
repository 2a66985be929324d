/**
 * Numerically stable softmax (or log-softmax) over the last dimension, one workgroup per row.
 * @module
 */
import { Params, type Recorder } from "../gpu/recorder.ts";
import { emptyTensor, type Tensor } from "../gpu/tensor.ts";
import { grid } from "./matmul.ts";
import { workgroupReduceWgsl } from "./reduce_wgsl.ts";

const WGSL = `
struct P { rows: u32, D: u32, log: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
${workgroupReduceWgsl(256)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.y * 65535u + wg.x;
  if (row >= p.rows) { return; }
  let t = lid.x;
  let base = row * p.D;
  var m = -3.4e38;
  for (var i = t; i < p.D; i += 256u) { m = max(m, X[base + i]); }
  m = reduce(t, m, true);
  var s = 0.0;
  for (var i = t; i < p.D; i += 256u) { s += exp(X[base + i] - m); }
  s = reduce(t, s, false);
  let ls = log(s);
  for (var i = t; i < p.D; i += 256u) {
    let z = X[base + i] - m;
    Y[base + i] = select(exp(z) / s, z - ls, p.log == 1u);
  }
}`;

/** Softmax (or log-softmax with `log`) of `x` over its last dimension. */
export function softmax(
  rec: Recorder,
  x: Tensor,
  opts: { log?: boolean; out?: Tensor } = {},
): Tensor {
  const D = x.shape[x.shape.length - 1];
  const rows = x.size / D;
  const y = opts.out ?? emptyTensor(rec.gpu, x.shape);
  rec.dispatch(rec.gpu.pipelines.get(WGSL), new Params().u32(rows).u32(D).u32(opts.log ? 1 : 0), [
    x,
    y,
  ], grid(rows));
  return y;
}
