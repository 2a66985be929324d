/**
 * LayerNorm over the last dimension: `y = (x - mean) / sqrt(var + eps) · gamma + beta`,
 * one workgroup per row, two passes over the row (mean, then centred variance) as PyTorch does.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowKernel } from "./reduce_wgsl.ts";

const LAYERNORM = rowKernel({
  name: "layernorm",
  uniforms: { D: "u32", eps: "f32" },
  storage: { X: read(), gamma: read(), beta: read(), Y: readWrite() },
  workgroupSize: [256],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let t = lid.x;
  let base = wg.x * p.D;
  var s = 0.0;
  for (var i = t; i < p.D; i += WG_X) { s += f32(X[base + i]); }
  let mean = reduce(t, s, false) / f32(p.D);
  var q = 0.0;
  for (var i = t; i < p.D; i += WG_X) { let d = f32(X[base + i]) - mean; q += d * d; }
  let inv = inverseSqrt(reduce(t, q, false) / f32(p.D) + p.eps);
  for (var i = t; i < p.D; i += WG_X) {
    Y[base + i] = Y_t((f32(X[base + i]) - mean) * inv * f32(gamma[i]) + f32(beta[i]));
  }
}`,
});

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
  const y = out ?? rec.output(x.shape);
  LAYERNORM.record(rec, {
    uniforms: { D, eps },
    bind: { X: x, gamma, beta, Y: y },
    groups: rows,
  });
  return y;
}
