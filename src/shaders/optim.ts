/**
 * Optimizer kernels over f32 master weights, each over elements `[off, off + n)` of its bindings
 * (windows of tensors that share one layout: a parameter tensor, its gradient and its state):
 * `fill` (zeroing), `sumSquares` (partial sums of g² for the global gradient norm), `gradCoef`
 * (the norm and the factor every gradient is multiplied by), and the AdamW and SGD updates,
 * which read that factor from the GPU, so clipping needs no host round trip.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import { type Binding, type Recorder, tensorWindow } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowKernel } from "./reduce_wgsl.ts";

const WG = 256;
/** Workgroups at most of one `sumSquares` call (its partial sums). */
export const SUMSQ_GROUPS = 64;

/** Elements `[off, off + n)` of the bound windows. */
export interface Span {
  off: number;
  n: number;
}

/** Elements per binding window: 256-byte aligned starts (64 f32). */
const ALIGN = 64;

/** One window of a span: bind elements from `first`, then work on `[off, off + n)` of it. */
export interface Window extends Span {
  readonly first: number;
}

/** Windows covering elements `[start, start + count)` of f32 tensors, each within `maxBinding`. */
export function windows(start: number, count: number, maxBinding: number): Window[] {
  const step = Math.floor(maxBinding / 4 / ALIGN) * ALIGN - ALIGN;
  const out: Window[] = [];
  for (let s = start; s < start + count; s += step) {
    const first = s - (s % ALIGN);
    out.push({ first, off: s - first, n: Math.min(step, start + count - s) });
  }
  return out;
}

/** The window `w` of tensor `t` as a binding. */
export function bindWindow(t: Tensor, w: Window): Binding {
  return tensorWindow(t, w.first, w.off + w.n);
}

const FILL = new Kernel({
  name: "fill",
  uniforms: { off: "u32", n: "u32", value: "f32" },
  storage: { Y: readWrite() },
  workgroupSize: [WG],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i < p.n) { Y[p.off + i] = Y_t(p.value); }
}`,
});

/** `y[off + i] = value` for i < n. */
export function fill(rec: Recorder, y: Binding, s: Span, value: number): void {
  FILL.record(rec, {
    uniforms: { off: s.off, n: s.n, value },
    bind: { Y: y },
    groups: Math.ceil(s.n / WG),
  });
}

const SUMSQ = rowKernel({
  name: "sum_squares",
  uniforms: { off: "u32", n: "u32", groups: "u32", slot: "u32" },
  storage: { G: read(), partial: readWrite() },
  workgroupSize: [WG],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  var s = 0.0;
  for (var i = wg.x * WG_X + lid.x; i < p.n; i += p.groups * WG_X) {
    let g = f32(G[p.off + i]);
    s += g * g;
  }
  let total = reduce(lid.x, s, false);
  if (lid.x == 0u) { partial[p.slot + wg.x] = partial_t(total); }
}`,
});

/** Workgroups (= partial sums) a `sumSquares` call over `n` elements writes. */
export function sumSquaresGroups(n: number): number {
  return Math.max(1, Math.min(SUMSQ_GROUPS, Math.ceil(n / WG)));
}

/** Σ g² over the span, as `sumSquaresGroups(n)` partial sums written from `partial[slot]` on. */
export function sumSquares(
  rec: Recorder,
  g: Binding,
  s: Span,
  partial: Tensor,
  slot: number,
): void {
  const groups = sumSquaresGroups(s.n);
  if (slot + groups > partial.size) {
    throw new WebcapError(
      "BAD_SHAPE",
      `sumSquares: slots ${slot}+${groups} past [${partial.shape}]`,
    );
  }
  SUMSQ.record(rec, {
    uniforms: { off: s.off, n: s.n, groups, slot },
    bind: { G: g, partial },
    groups,
  });
}

const GRAD_COEF = rowKernel({
  name: "grad_coef",
  uniforms: { slots: "u32", scale: "f32", maxNorm: "f32", guardN: "u32" },
  storage: { partial: read(), guard: optional(read()), coef: readWrite() },
  workgroupSize: [WG],
  body: (_, has) => `
// by the bits: WGSL may assume floats are finite, so isNan-style comparisons are not reliable
fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
fn kernel(wg: vec3u, lid: vec3u) {
  var s = 0.0;
  for (var i = lid.x; i < p.slots; i += WG_X) { s += f32(partial[i]); }
  let norm = sqrt(reduce(lid.x, s, false)) * p.scale;
  if (lid.x == 0u) {
    var c = p.scale;
    if (p.maxNorm > 0.0) { c = p.scale * min(1.0, p.maxNorm / (norm + 1e-6)); }
    var ok = finite(norm);
${has.guard ? "    for (var i = 0u; i < p.guardN; i++) { ok = ok && finite(f32(guard[i])); }" : ""}
    coef[0] = coef_t(norm);
    coef[1] = coef_t(c);
    coef[2] = coef_t(select(1.0, 0.0, ok));
  }
}`,
});

/**
 * `coef [3]` ← (the norm of `scale`·g, the factor gradients are used with, skipped): with
 * `maxNorm` > 0, `scale · min(1, maxNorm / (norm + 1e-6))` as `torch.nn.utils.clip_grad_norm_`;
 * else `scale`. `partial` holds `slots` partial sums of g² (unscaled). Skipped is 1 (the updates
 * leave everything as it is) when the norm or a value of `guard` is not finite, else 0.
 */
export function gradCoef(
  rec: Recorder,
  partial: Tensor,
  slots: number,
  scale: number,
  maxNorm: number,
  coef: Tensor,
  guard?: Tensor,
): void {
  GRAD_COEF.record(rec, {
    uniforms: { slots, scale, maxNorm, guardN: guard?.size ?? 0 },
    bind: { partial, guard, coef },
    groups: 1,
  });
}

/** Per-step constants of an AdamW update (host float64, passed as f32). */
export interface AdamWStep {
  /** `1 - lr·weight_decay` (decoupled decay, applied first). */
  decay: number;
  beta1: number;
  beta2: number;
  /** `lr / (1 - beta1^t)`. */
  stepSize: number;
  /** `sqrt(1 - beta2^t)`. */
  sqrtBc2: number;
  eps: number;
}

const ADAMW = new Kernel({
  name: "adamw",
  uniforms: {
    off: "u32",
    n: "u32",
    decay: "f32",
    beta1: "f32",
    beta2: "f32",
    stepSize: "f32",
    sqrtBc2: "f32",
    eps: "f32",
  },
  storage: { P: readWrite(), G: read(), M: readWrite(), V: readWrite(), coef: read() },
  workgroupSize: [WG],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let j = wg.x * WG_X + lid.x;
  if (j >= p.n || f32(coef[2]) != 0.0) { return; }
  let i = p.off + j;
  let g = f32(G[i]) * f32(coef[1]);
  let w = f32(P[i]) * p.decay;
  let m = p.beta1 * f32(M[i]) + (1.0 - p.beta1) * g;
  let v = p.beta2 * f32(V[i]) + (1.0 - p.beta2) * g * g;
  M[i] = M_t(m);
  V[i] = V_t(v);
  P[i] = P_t(w - p.stepSize * (m / (sqrt(v) / p.sqrtBc2 + p.eps)));
}`,
});

/** Windows of one parameter span: weights, gradient, first and second moments, `coef [3]`. */
export interface AdamWBindings {
  P: Binding;
  G: Binding;
  M: Binding;
  V: Binding;
  coef: Tensor;
}

/** One AdamW update (PyTorch's `torch.optim.AdamW`, single-tensor form) over the span. */
export function adamwUpdate(rec: Recorder, b: AdamWBindings, s: Span, k: AdamWStep): void {
  ADAMW.record(rec, {
    uniforms: { off: s.off, n: s.n, ...k },
    bind: b,
    groups: Math.ceil(s.n / WG),
  });
}

/** Per-step constants of an SGD update. */
export interface SgdStep {
  lr: number;
  weightDecay: number;
  momentum: number;
  dampening: number;
  /** 1 on the first step (the buffer starts as the gradient), else 0. */
  first: number;
}

const SGD = new Kernel({
  name: "sgd",
  uniforms: {
    off: "u32",
    n: "u32",
    lr: "f32",
    weightDecay: "f32",
    momentum: "f32",
    dampening: "f32",
    first: "u32",
  },
  storage: { P: readWrite(), G: read(), M: optional(readWrite()), coef: read() },
  workgroupSize: [WG],
  body: (v: { nesterov: boolean }, has) => `
fn kernel(wg: vec3u, lid: vec3u) {
  let j = wg.x * WG_X + lid.x;
  if (j >= p.n || f32(coef[2]) != 0.0) { return; }
  let i = p.off + j;
  let w = f32(P[i]);
  var d = f32(G[i]) * f32(coef[1]) + p.weightDecay * w;
${
    has.M
      ? `  var buf = d;
  if (p.first == 0u) { buf = p.momentum * f32(M[i]) + (1.0 - p.dampening) * d; }
  M[i] = M_t(buf);
  ${v.nesterov ? "d = d + p.momentum * buf;" : "d = buf;"}`
      : ""
  }
  P[i] = P_t(w - p.lr * d);
}`,
});

/** Windows of one parameter span: weights, gradient, momentum buffer (when momentum), `coef [3]`. */
export interface SgdBindings {
  P: Binding;
  G: Binding;
  M?: Binding;
  coef: Tensor;
}

/** One SGD update (PyTorch's `torch.optim.SGD`: coupled weight decay, dampening, nesterov). */
export function sgdUpdate(
  rec: Recorder,
  b: SgdBindings,
  s: Span,
  k: SgdStep,
  nesterov: boolean,
): void {
  SGD.record(rec, {
    variant: { nesterov },
    uniforms: { off: s.off, n: s.n, ...k },
    bind: b,
    groups: Math.ceil(s.n / WG),
  });
}
