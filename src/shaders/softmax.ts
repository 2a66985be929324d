/**
 * Numerically stable softmax (or log-softmax) over the last dimension, one workgroup per row.
 * @module
 */
import { read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowKernel } from "./reduce_wgsl.ts";

const SOFTMAX = rowKernel({
  name: "softmax",
  uniforms: { D: "u32", log: "u32" },
  storage: { X: read(), Y: readWrite() },
  workgroupSize: [256],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let t = lid.x;
  let base = wg.x * p.D;
  var m = -3.4e38;
  for (var i = t; i < p.D; i += WG_X) { m = max(m, f32(X[base + i])); }
  m = reduce(t, m, true);
  var s = 0.0;
  for (var i = t; i < p.D; i += WG_X) { s += exp(f32(X[base + i]) - m); }
  s = reduce(t, s, false);
  let ls = log(s);
  for (var i = t; i < p.D; i += WG_X) {
    let z = f32(X[base + i]) - m;
    Y[base + i] = Y_t(select(exp(z) / s, z - ls, p.log == 1u));
  }
}`,
});

/** Softmax (or log-softmax with `log`) of `x` over its last dimension. */
export function softmax(
  rec: Recorder,
  x: Tensor,
  opts: { log?: boolean; out?: Tensor } = {},
): Tensor {
  const D = x.shape[x.shape.length - 1];
  const rows = x.size / D;
  const y = opts.out ?? rec.output(x.shape);
  SOFTMAX.record(rec, {
    uniforms: { D, log: opts.log ? 1 : 0 },
    bind: { X: x, Y: y },
    groups: rows,
  });
  return y;
}
