/**
 * Elementwise ops: an activation (`gelu`, `gelu_new`, `quick_gelu`, `relu`, `tanh`,
 * `sigmoid`), and `a ⊕ b` (add, mul) where `b` repeats over `a` (`b.size` divides `a.size`:
 * a bias `[D]` or position table `[S, D]` broadcast over leading dimensions).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type Activation, activationWgsl } from "./activations.ts";

const UNARY = new Kernel({
  name: "unary",
  uniforms: { n: "u32" },
  storage: { X: read(), Y: readWrite() },
  workgroupSize: [256],
  body: (v: { act: Activation }) => `
${activationWgsl(v.act)}
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i < p.n) { Y[i] = Y_t(act(f32(X[i]))); }
}`,
});

/** Binary operations. */
export type BinaryOp = "add" | "mul";

const BINARY = new Kernel({
  name: "binary",
  uniforms: { n: "u32", nb: "u32" },
  storage: { A: read(), B: read(), Y: readWrite() },
  workgroupSize: [256],
  body: (v: { op: BinaryOp }) => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i < p.n) { Y[i] = Y_t(f32(A[i]) ${v.op === "add" ? "+" : "*"} f32(B[i % p.nb])); }
}`,
});

/** `act(x)` elementwise. */
export function unary(rec: Recorder, x: Tensor, act: Activation, out?: Tensor): Tensor {
  const y = out ?? rec.output(x.shape);
  UNARY.record(rec, {
    variant: { act },
    uniforms: { n: x.size },
    bind: { X: x, Y: y },
    groups: Math.ceil(x.size / 256),
  });
  return y;
}

/** `a op b` with `b` repeated over `a`. */
export function binary(rec: Recorder, a: Tensor, b: Tensor, op: BinaryOp, out?: Tensor): Tensor {
  if (b.size === 0 || a.size % b.size !== 0) {
    throw new WebcapError("BAD_SHAPE", `${op}: [${b.shape}] does not repeat over [${a.shape}]`);
  }
  const y = out ?? rec.output(a.shape);
  BINARY.record(rec, {
    variant: { op },
    uniforms: { n: a.size, nb: b.size },
    bind: { A: a, B: b, Y: y },
    groups: Math.ceil(a.size / 256),
  });
  return y;
}
