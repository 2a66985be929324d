/**
 * Numerically stable softmax (or log-softmax) over the last dimension, one workgroup per row.
 * @module
 */
import { WebcapError } from "../errors.ts";
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

// ---- training ----

/** Labels equal to this contribute nothing (PyTorch's `ignore_index`). */
export const IGNORE_INDEX = -100;

/**
 * Per row r of logits `[R, V]` with label `y` and weight `w`: `lp = log_softmax(x)`, writes
 * `Out[2r] = lp[y]`, `Out[2r + 1] = −w·((1 − ε)·lp[y] + ε·mean(lp))` and the gradient
 * `dX = w·(softmax(x) − (1 − ε)·onehot(y) − ε/V)`; a row labelled −100 gets zeros.
 */
const CROSS_ENTROPY = rowKernel({
  name: "cross_entropy",
  uniforms: { V: "u32", eps: "f32" },
  storage: { X: read(), labels: read("i32"), W: read(), dX: readWrite(), Out: readWrite() },
  workgroupSize: [256],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let t = lid.x; let r = wg.x;
  let base = r * p.V;
  let y = labels[r];
  var m = -3.4e38;
  for (var i = t; i < p.V; i += WG_X) { m = max(m, f32(X[base + i])); }
  m = reduce(t, m, true);
  var s = 0.0; var sx = 0.0;
  for (var i = t; i < p.V; i += WG_X) { let x = f32(X[base + i]); s += exp(x - m); sx += x; }
  let lse = m + log(reduce(t, s, false));
  let mean_lp = reduce(t, sx, false) / f32(p.V) - lse;
  let keep = y >= 0;
  let w = select(0.0, f32(W[r]), keep);
  for (var i = t; i < p.V; i += WG_X) {
    let hit = select(0.0, 1.0 - p.eps, keep && u32(y) == i);
    dX[base + i] = dX_t(w * (exp(f32(X[base + i]) - lse) - hit - p.eps / f32(p.V)));
  }
  if (t == 0u) {
    let lp = select(0.0, f32(X[base + u32(max(y, 0))]) - lse, keep);
    Out[2u * r] = Out_t(lp);
    Out[2u * r + 1u] = Out_t(-w * ((1.0 - p.eps) * lp + p.eps * mean_lp));
  }
}`,
});

/** What {@link crossEntropy} records: per-row `[logp(label), weighted loss]` and the gradient. */
export interface CrossEntropyOut {
  /** `[R, 2]`. */
  rows: Tensor;
  /** `[R, V]`: d(Σ_r loss_r)/d logits. */
  dLogits: Tensor;
}

/**
 * Fused log-softmax cross-entropy forward and backward over `logits [R, V]`: `labels [R]` (i32,
 * −100 ignored), `weights [R]` (f32: 1/kept for a mean, or SCST's advantage·mask/Σmask) and
 * label smoothing `eps` as transformers computes it.
 */
export function crossEntropy(
  rec: Recorder,
  logits: Tensor,
  labels: Tensor,
  weights: Tensor,
  eps = 0,
): CrossEntropyOut {
  const V = logits.shape[logits.shape.length - 1], R = logits.size / V;
  if (labels.dtype !== "i32" || labels.size !== R || weights.size !== R) {
    throw new WebcapError(
      "BAD_SHAPE",
      `crossEntropy: labels [${labels.shape}] (${labels.dtype}) and weights [${weights.shape}] ` +
        `must be i32 [${R}] and f32 [${R}] for logits [${logits.shape}]`,
    );
  }
  const out = { rows: rec.output([R, 2]), dLogits: rec.output([R, V]) };
  CROSS_ENTROPY.record(rec, {
    uniforms: { V, eps },
    bind: { X: logits, labels, W: weights, dX: out.dLogits, Out: out.rows },
    groups: R,
  });
  return out;
}
