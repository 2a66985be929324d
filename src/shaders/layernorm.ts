/**
 * LayerNorm over the last dimension: `y = (x - mean) / sqrt(var + eps) · gamma + beta`,
 * one workgroup per row, two passes over the row (mean, then centred variance) as PyTorch does.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { AdapterClass } from "../gpu/device.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowKernel } from "./reduce_wgsl.ts";

/**
 * WGSL `row_stats(t, base, n, eps)`: the mean and 1/sqrt(var + eps) of `X[base .. base + n)`,
 * summed over the workgroup (`reduce`; invocation `t`), in two passes (mean, then centred
 * variance) as PyTorch does. Every invocation of the workgroup calls it (it has barriers).
 */
export const ROW_STATS_WGSL = `
fn row_stats(t: u32, base: u32, n: u32, eps: f32) -> vec2f {
  var s = 0.0;
  for (var i = t; i < n; i += WG_X) { s += f32(X[base + i]); }
  let mean = reduce(t, s, false) / f32(n);
  var q = 0.0;
  for (var i = t; i < n; i += WG_X) { let d = f32(X[base + i]) - mean; q += d * d; }
  return vec2f(mean, inverseSqrt(reduce(t, q, false) / f32(n) + eps));
}`;

const LAYERNORM = rowKernel({
  name: "layernorm",
  uniforms: { D: "u32", eps: "f32" },
  storage: {
    X: read(),
    gamma: read(),
    beta: read(),
    Y: readWrite(),
    Mean: optional(readWrite()), // [rows], kept for the backward
    Rstd: optional(readWrite()),
  },
  workgroupSize: [256],
  body: (_, has) =>
    `${ROW_STATS_WGSL}
fn kernel(wg: vec3u, lid: vec3u) {
  let t = lid.x;
  let base = wg.x * p.D;
  let st = row_stats(t, base, p.D, p.eps);
  let mean = st.x;
  let inv = st.y;
  ${has.Mean ? "if (t == 0u) { Mean[wg.x] = Mean_t(mean); Rstd[wg.x] = Rstd_t(inv); }" : ""}
  for (var i = t; i < p.D; i += WG_X) {
    Y[base + i] = Y_t((f32(X[base + i]) - mean) * inv * f32(gamma[i]) + f32(beta[i]));
  }
}`,
});

/**
 * LayerNorm for CPU adapters (llvmpipe runs a workgroup's invocations as SIMD lanes, where the
 * workgroup reduce's barriers cost more than the sums): one row per invocation, the same two
 * passes and the output read and written as vec4 (`D` % 4 = 0); gamma and beta are the same
 * address in every lane.
 */
const LAYERNORM_CPU = new Kernel({
  name: "layernorm_cpu",
  uniforms: { D: "u32", eps: "f32", rows: "u32" },
  storage: {
    X: read("float4"),
    gamma: read("float4"),
    beta: read("float4"),
    Y: readWrite("float4"),
    Mean: optional(readWrite()),
    Rstd: optional(readWrite()),
  },
  workgroupSize: [64],
  body: (_, has) => `
fn kernel(wg: vec3u, lid: vec3u) {
  let r = wg.x * WG_X + lid.x;
  if (r >= p.rows) { return; }
  let d4 = p.D / 4u;
  let base = r * d4;
  var s = vec4f();
  for (var i = 0u; i < d4; i++) { s += vec4f(X[base + i]); }
  let mean = (s.x + s.y + s.z + s.w) / f32(p.D);
  var q = vec4f();
  for (var i = 0u; i < d4; i++) { let d = vec4f(X[base + i]) - mean; q = fma(d, d, q); }
  let inv = inverseSqrt((q.x + q.y + q.z + q.w) / f32(p.D) + p.eps);
  ${has.Mean ? "Mean[r] = Mean_t(mean); Rstd[r] = Rstd_t(inv);" : ""}
  for (var i = 0u; i < d4; i++) {
    let y = (vec4f(X[base + i]) - mean) * inv * vec4f(gamma[i]) + vec4f(beta[i]);
    Y[base + i] = vec4<Y_t>(y);
  }
}`,
});

/**
 * Which layernorm kernel a row length takes on an adapter class. Measured on llvmpipe (ms per
 * dispatch, one-row-per-invocation kernel against the workgroup one): D = 256 or 768, 0.7 / 0.7
 * for one row and 1.1–1.6 / 5.4 for 197 rows; but D = 32–128, 6–15 / 0.7–5.4 at any row count
 * (a caption of the fixture models went 60 ms → 900 ms with it), hence D ≥ 256 only.
 */
export function layerNormPlan(cls: AdapterClass, D: number): "cpu" | "workgroup" {
  return cls === "cpu" && D % 4 === 0 && D >= 256 ? "cpu" : "workgroup";
}

/** Record the layernorm of `rows` rows of `D` (the mean and 1/std too when bound). */
function recordLayerNorm(
  rec: Recorder,
  bind: {
    X: Tensor;
    gamma: Tensor;
    beta: Tensor;
    Y: Tensor;
    Mean?: Tensor;
    Rstd?: Tensor;
  },
  D: number,
  eps: number,
  rows: number,
): void {
  if (layerNormPlan(rec.gpu.adapterClass, D) === "cpu") {
    LAYERNORM_CPU.record(rec, {
      uniforms: { D, eps, rows },
      bind,
      groups: Math.ceil(rows / 64),
    });
  } else {
    LAYERNORM.record(rec, { uniforms: { D, eps }, bind, groups: rows });
  }
}

/** A LayerNorm's parameters over a last dimension D: `(x − mean) / sqrt(var + eps) · w + b`. */
export interface NormParams {
  /** γ `[D]`. */
  w: Tensor;
  /** β `[D]`. */
  b: Tensor;
  /** Added to the (biased) variance. */
  eps: number;
}

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
  recordLayerNorm(rec, { X: x, gamma, beta, Y: y }, D, eps, rows);
  return y;
}

// ---- training ----

/** A LayerNorm forward that kept what its backward needs: input, mean and 1/std per row. */
export interface SavedNorm {
  x: Tensor;
  y: Tensor;
  mean: Tensor; // [rows]
  rstd: Tensor; // [rows]
}

/** LayerNorm of `x [rows, D]` keeping the mean and 1/std of each row for {@link layerNormBackward}. */
export function layerNormTrain(
  rec: Recorder,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
): SavedNorm {
  const D = x.shape[x.shape.length - 1];
  if (gamma.size !== D || beta.size !== D) {
    throw new WebcapError(
      "BAD_SHAPE",
      `layerNormTrain: gamma/beta [${gamma.shape}] do not match last dim of [${x.shape}]`,
    );
  }
  const rows = x.size / D;
  const s: SavedNorm = {
    x,
    y: rec.output(x.shape),
    mean: rec.output([rows]),
    rstd: rec.output([rows]),
  };
  recordLayerNorm(rec, { X: x, gamma, beta, Y: s.y, Mean: s.mean, Rstd: s.rstd }, D, eps, rows);
  return s;
}

/** `dX = rstd·(g − mean(g) − x̂·mean(g·x̂)) (+ R)` with `g = dY·gamma`, one workgroup per row. */
const LAYERNORM_DX = rowKernel({
  name: "layernorm_dx",
  uniforms: { D: "u32" },
  storage: {
    X: read(),
    Mean: read(),
    Rstd: read(),
    gamma: read(),
    dY: read(),
    dX: readWrite(),
    R: optional(read()),
  },
  workgroupSize: [256],
  body: (_, has) => `
fn kernel(wg: vec3u, lid: vec3u) {
  let t = lid.x;
  let base = wg.x * p.D;
  let mean = f32(Mean[wg.x]); let rstd = f32(Rstd[wg.x]);
  var a = 0.0; var b = 0.0;
  for (var i = t; i < p.D; i += WG_X) {
    let g = f32(dY[base + i]) * f32(gamma[i]);
    a += g;
    b += g * (f32(X[base + i]) - mean) * rstd;
  }
  a = reduce(t, a, false) / f32(p.D);
  b = reduce(t, b, false) / f32(p.D);
  for (var i = t; i < p.D; i += WG_X) {
    let xh = (f32(X[base + i]) - mean) * rstd;
    var d = rstd * (f32(dY[base + i]) * f32(gamma[i]) - a - xh * b);
    ${has.R ? "d += f32(R[base + i]);" : ""}
    dX[base + i] = dX_t(d);
  }
}`,
});

/** `dgamma += Σ_rows dY·x̂`, `dbeta += Σ_rows dY`, one invocation per column, rows in order. */
const LAYERNORM_DPARAMS = new Kernel({
  name: "layernorm_dparams",
  uniforms: { D: "u32", rows: "u32" },
  storage: {
    X: read(),
    Mean: read(),
    Rstd: read(),
    dY: read(),
    dGamma: readWrite(),
    dBeta: readWrite(),
  },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.D) { return; }
  var g = 0.0; var b = 0.0;
  for (var r = 0u; r < p.rows; r++) {
    let dy = f32(dY[r * p.D + i]);
    g += dy * (f32(X[r * p.D + i]) - f32(Mean[r])) * f32(Rstd[r]);
    b += dy;
  }
  dGamma[i] = dGamma_t(f32(dGamma[i]) + g);
  dBeta[i] = dBeta_t(f32(dBeta[i]) + b);
}`,
});

/**
 * Backward of {@link layerNormTrain}: accumulates into `dGamma`, `dBeta` `[D]` (those given) and
 * returns `dX` (plus `residual`, the gradient reaching `x` by the skip connection).
 */
export function layerNormBackward(
  rec: Recorder,
  s: SavedNorm,
  gamma: Tensor,
  dy: Tensor,
  grads: { dGamma?: Tensor; dBeta?: Tensor },
  residual?: Tensor,
): Tensor {
  const D = gamma.size, rows = s.x.size / D;
  const bad = [dy, residual].some((t) => t && t.size !== s.x.size) ||
    [grads.dGamma, grads.dBeta].some((g) => g && g.size !== D);
  if (bad) {
    throw new WebcapError(
      "BAD_SHAPE",
      `layerNormBackward: dY [${dy.shape}], residual or dGamma/dBeta do not fit x [${s.x.shape}]`,
    );
  }
  const dx = rec.output(s.x.shape);
  const common = { X: s.x, Mean: s.mean, Rstd: s.rstd, dY: dy };
  LAYERNORM_DX.record(rec, {
    uniforms: { D },
    bind: { ...common, gamma, dX: dx, R: residual },
    groups: rows,
  });
  if (grads.dGamma || grads.dBeta) {
    const scratch = () => rec.temp([D]); // the frozen one of the two
    LAYERNORM_DPARAMS.record(rec, {
      uniforms: { D, rows },
      bind: { ...common, dGamma: grads.dGamma ?? scratch(), dBeta: grads.dBeta ?? scratch() },
      groups: Math.ceil(D / 64),
    });
  }
  return dx;
}
