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
import { type Activation, activationGradWgsl, activationWgsl } from "./activations.ts";

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

// ---- backward ----

const UNARY_BACKWARD = new Kernel({
  name: "unary_backward",
  uniforms: { n: "u32" },
  storage: { X: read(), dY: read(), dX: readWrite() },
  workgroupSize: [256],
  body: (v: { act: Activation }) => `
${activationWgsl(v.act)}
${activationGradWgsl(v.act)}
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i < p.n) { dX[i] = dX_t(f32(dY[i]) * act_grad(f32(X[i]))); }
}`,
});

/** Backward of {@link unary}: `dX = dY · act'(x)` for the saved input `x`. */
export function unaryBackward(rec: Recorder, x: Tensor, dy: Tensor, act: Activation): Tensor {
  if (dy.size !== x.size) {
    throw new WebcapError("BAD_SHAPE", `unaryBackward: dY [${dy.shape}] is not [${x.shape}]`);
  }
  const dx = rec.output(x.shape);
  UNARY_BACKWARD.record(rec, {
    variant: { act },
    uniforms: { n: x.size },
    bind: { X: x, dY: dy, dX: dx },
    groups: Math.ceil(x.size / 256),
  });
  return dx;
}

const ACCUMULATE = new Kernel({
  name: "accumulate",
  uniforms: { n: "u32" },
  storage: { X: read(), Y: readWrite() },
  workgroupSize: [256],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i < p.n) { Y[i] = Y_t(f32(Y[i]) + f32(X[i])); }
}`,
});

/** `y += x` elementwise (gradients meeting at a residual add or a shared input). */
export function accumulate(rec: Recorder, y: Tensor, x: Tensor): void {
  if (x.size !== y.size) {
    throw new WebcapError("BAD_SHAPE", `accumulate: [${x.shape}] into [${y.shape}]`);
  }
  ACCUMULATE.record(rec, {
    uniforms: { n: x.size },
    bind: { X: x, Y: y },
    groups: Math.ceil(x.size / 256),
  });
}
