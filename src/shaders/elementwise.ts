/**
 * Elementwise ops: an activation (`gelu`, `gelu_new`, `quick_gelu`, `relu`, `tanh`,
 * `sigmoid`), and `a ⊕ b` (add, mul) where `b` repeats over `a` (`b.size` divides `a.size`:
 * a bias `[D]` or position table `[S, D]` broadcast over leading dimensions); dropout with
 * counter-based masks (Philox4x32-10), recomputed in the backward from the same key.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { PHILOX_WGSL } from "./sample/philox_wgsl.ts";
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

// ---- dropout ----

/**
 * Where a dropout mask comes from: Philox4x32-10 keyed by `seed`, counter `(element, site, step,
 * 0)`. The same key gives the same mask on every adapter, so the backward recomputes it instead
 * of storing it (a few integer ops per element against a tensor-sized buffer per dropout).
 */
export interface DropoutKey {
  /** The seed, an integer in [0, 2^53). */
  seed: number;
  /** The training step (each micro-batch its own), an integer in [0, 2^32). */
  step: number;
  /** Which dropout of the model (the same in its forward and backward), in [0, 2^32). */
  site: number;
}

const DROPOUT = new Kernel({
  name: "dropout",
  uniforms: {
    n: "u32",
    below: "u32",
    scale: "f32",
    k0: "u32",
    k1: "u32",
    step: "u32",
    site: "u32",
  },
  storage: { X: read(), Res: optional(read()), Y: readWrite() },
  workgroupSize: [256],
  body: (_, has) => `
${PHILOX_WGSL}
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.n) { return; }
  let kept = philox(vec4u(i, p.site, p.step, 0u), vec2u(p.k0, p.k1)).x >= p.below;
  let y = select(0.0, f32(X[i]) * p.scale, kept);
  Y[i] = Y_t(${has.Res ? "f32(Res[i]) + y" : "y"});
}`,
});

/** The Philox key words and the drop threshold of `p` (drop when the draw is below it). */
export function dropoutWords(p: number, key: DropoutKey) {
  const ok = (v: number, top: number) => Number.isInteger(v) && v >= 0 && v < top;
  if (
    !(p >= 0 && p < 1) || !ok(key.seed, 2 ** 53) || !ok(key.step, 2 ** 32) || !ok(key.site, 2 ** 32)
  ) {
    throw new WebcapError(
      "BAD_OPTION",
      `dropout: p ${p} must be in [0, 1), seed ${key.seed} an integer in [0, 2^53), step ` +
        `${key.step} and site ${key.site} integers in [0, 2^32)`,
    );
  }
  return {
    below: Math.min(Math.round(p * 2 ** 32), 2 ** 32 - 1),
    scale: 1 / (1 - p),
    k0: key.seed % 2 ** 32,
    k1: Math.floor(key.seed / 2 ** 32),
  };
}

/**
 * `y = residual + x · mask / (1 − p)` elementwise (no residual: 0), the mask keeping each element
 * with probability 1 − p as drawn for `key`. Linear in x: its backward is the same call on `dY`
 * with the same key (the residual's gradient is `dY` itself).
 */
export function dropout(
  rec: Recorder,
  x: Tensor,
  p: number,
  key: DropoutKey,
  residual?: Tensor,
): Tensor {
  if (residual && residual.size !== x.size) {
    throw new WebcapError("BAD_SHAPE", `dropout: residual [${residual.shape}] is not [${x.shape}]`);
  }
  const words = dropoutWords(p, key);
  const y = rec.output(x.shape);
  DROPOUT.record(rec, {
    uniforms: { n: x.size, ...words, step: key.step, site: key.site },
    bind: residual ? { X: x, Res: residual, Y: y } : { X: x, Y: y },
    groups: Math.ceil(x.size / 256),
  });
  return y;
}
