/**
 * Inference-mode BatchNorm2d, `y = act((x − mean) / √(var + eps) · weight + bias + residual)`
 * over NCHW tensors with the running statistics, and the host-side folding of a BatchNorm into
 * the convolution before it (`w' = w · s`, `b' = (b − mean) · s + beta`, `s = weight / √(var + eps)`),
 * which removes the op altogether.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type Activation, activationWgsl } from "./activations.ts";
import { rowKernel } from "./reduce_wgsl.ts";

/** The parameters of one BatchNorm2d on the GPU, each `[C]`. */
export interface BatchNormWeights {
  weight: Tensor;
  bias: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
  eps: number;
}

/** The parameters of one BatchNorm2d on the host, each `[C]`. */
export interface BatchNormHost {
  weight: Float32Array;
  bias: Float32Array;
  runningMean: Float32Array;
  runningVar: Float32Array;
  eps: number;
}

/** Options of {@link batchNorm2d}. */
export interface BatchNormOptions {
  /** Default "none" ("relu" for the BN–ReLU pairs of a ResNet). */
  act?: Activation;
  /** `[N, C, H, W]` added before the activation. */
  residual?: Tensor;
  /** Write into this `[N, C, H, W]` tensor instead of a new one. */
  out?: Tensor;
}

const BATCHNORM = new Kernel({
  name: "batchnorm2d",
  uniforms: { total: "u32", C: "u32", HW: "u32", eps: "f32" },
  storage: {
    X: read(),
    gamma: read(),
    beta: read(),
    mean: read(),
    variance: read(),
    Y: readWrite(),
    R: optional(read()),
  },
  workgroupSize: [256],
  body: (v: { act: Activation }, has) => `
${activationWgsl(v.act)}
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.total) { return; }
  let c = (i / p.HW) % p.C;
  let s = f32(gamma[c]) / sqrt(f32(variance[c]) + p.eps);
  var v = (f32(X[i]) - f32(mean[c])) * s + f32(beta[c]);
  ${has.R ? "v += f32(R[i]);" : ""}
  Y[i] = Y_t(act(v));
}`,
});

/** Record inference BatchNorm2d on x `[N, C, H, W]` (or `[N, C]`), with optional residual and activation. */
export function batchNorm2d(
  rec: Recorder,
  x: Tensor,
  bn: BatchNormWeights,
  opts: BatchNormOptions = {},
): Tensor {
  if (x.shape.length < 2 || x.dtype !== "f32") {
    throw new WebcapError(
      "BAD_SHAPE",
      `batchNorm2d wants an f32 [N, C, ...] tensor, got ${x.dtype} [${x.shape}]`,
    );
  }
  const C = x.shape[1];
  for (
    const [name, t] of Object.entries({
      weight: bn.weight,
      bias: bn.bias,
      runningMean: bn.runningMean,
      runningVar: bn.runningVar,
    })
  ) {
    if (t.size !== C || t.dtype !== "f32") {
      throw new WebcapError(
        "BAD_SHAPE",
        `batchNorm2d: ${name} is ${t.dtype} [${t.shape}], want f32 [${C}] for x [${x.shape}]`,
      );
    }
  }
  for (const [name, t] of [["residual", opts.residual], ["out", opts.out]] as const) {
    if (t && t.size !== x.size) {
      throw new WebcapError("BAD_SHAPE", `batchNorm2d: ${name} [${t.shape}] is not [${x.shape}]`);
    }
  }
  const out = opts.out ?? rec.output(x.shape);
  BATCHNORM.record(rec, {
    variant: { act: opts.act ?? "none" },
    uniforms: { total: x.size, C, HW: x.size / (x.shape[0] * C), eps: bn.eps },
    bind: {
      X: x,
      gamma: bn.weight,
      beta: bn.bias,
      mean: bn.runningMean,
      variance: bn.runningVar,
      Y: out,
      R: opts.residual,
    },
    groups: Math.ceil(x.size / 256),
  });
  return out;
}

/**
 * Fold a BatchNorm into the convolution (or linear layer) before it, in float64: weight
 * `[Cout, ...]` row-major, optional conv bias `[Cout]`. Returns the new weight and bias.
 */
export function foldBatchNorm(
  weight: Float32Array,
  convBias: Float32Array | undefined,
  bn: BatchNormHost,
): { weight: Float32Array; bias: Float32Array } {
  const C = bn.weight.length;
  const sizes = [
    bn.bias.length,
    bn.runningMean.length,
    bn.runningVar.length,
    convBias?.length ?? C,
  ];
  if (sizes.some((s) => s !== C) || weight.length % C !== 0) {
    throw new WebcapError(
      "BAD_SHAPE",
      `foldBatchNorm: weight of ${weight.length} values and bias/statistics of lengths ${[
        C,
        ...sizes,
      ]} disagree on Cout`,
    );
  }
  const per = weight.length / C;
  const w = new Float32Array(weight.length);
  const b = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    const s = bn.weight[c] / Math.sqrt(bn.runningVar[c] + bn.eps);
    for (let j = c * per; j < (c + 1) * per; j++) w[j] = weight[j] * s;
    b[c] = ((convBias?.[c] ?? 0) - bn.runningMean[c]) * s + bn.bias[c];
  }
  return { weight: w, bias: b };
}

/**
 * Backward of eval-mode BatchNorm (a per-channel affine `y = x̂·γ + β`, `x̂ = (x − mean)/√(var + eps)`):
 * one workgroup per channel writes `dX = dY·γ/√(var + eps)` and reduces `dγ += Σ dY·x̂`,
 * `dβ += Σ dY` over `(n, pixel)` in a fixed order (deterministic).
 */
const BATCHNORM_BACKWARD = rowKernel({
  name: "batchnorm2d_backward",
  uniforms: { N: "u32", C: "u32", HW: "u32", eps: "f32" },
  storage: {
    X: read(),
    dY: read(),
    gamma: read(),
    mean: read(),
    variance: read(),
    dX: readWrite(),
    dGamma: optional(readWrite()),
    dBeta: optional(readWrite()),
  },
  workgroupSize: [64],
  body: (_v, has) => `
fn kernel(wg: vec3u, lid: vec3u) {
  let c = wg.x;
  let inv = 1.0 / sqrt(f32(variance[c]) + p.eps);
  let s = f32(gamma[c]) * inv;
  var sg = 0.0;
  var sb = 0.0;
  for (var q = lid.x; q < p.N * p.HW; q += WG_X) {
    let i = ((q / p.HW) * p.C + c) * p.HW + q % p.HW;
    let dy = f32(dY[i]);
    dX[i] = dX_t(dy * s);
    sg = fma(dy, (f32(X[i]) - f32(mean[c])) * inv, sg);
    sb += dy;
  }
  let tg = reduce(lid.x, sg, false);
  let tb = reduce(lid.x, sb, false);
  if (lid.x == 0u) {
    ${has.dGamma ? "dGamma[c] = dGamma_t(f32(dGamma[c]) + tg);" : ""}
    ${has.dBeta ? "dBeta[c] = dBeta_t(f32(dBeta[c]) + tb);" : ""}
  }
}`,
});

/** Where {@link batchNorm2dBackward} accumulates; an absent one (frozen) is skipped. */
export interface BatchNormGrads {
  /** `[C]`, f32. */
  dGamma?: Tensor;
  /** `[C]`, f32. */
  dBeta?: Tensor;
}

/**
 * Backward of {@link batchNorm2d} without its activation and residual (take their backward
 * first), the running statistics frozen: input `x [N, C, ...]`, output gradient `dy` of its
 * shape. Accumulates dγ and dβ into `grads`; returns dX.
 */
export function batchNorm2dBackward(
  rec: Recorder,
  x: Tensor,
  bn: BatchNormWeights,
  dy: Tensor,
  grads: BatchNormGrads,
): Tensor {
  const C = x.shape[1];
  for (
    const [name, t, size] of [
      ["x", x, x.size],
      ["dy", dy, x.size],
      ["dGamma", grads.dGamma, C],
      ["dBeta", grads.dBeta, C],
      ["weight", bn.weight, C],
      ["runningMean", bn.runningMean, C],
      ["runningVar", bn.runningVar, C],
    ] as const
  ) {
    if (t && (x.shape.length < 2 || t.size !== size || t.dtype !== "f32")) {
      throw new WebcapError(
        "BAD_SHAPE",
        `batchNorm2dBackward: ${name} is ${t.dtype} [${t.shape}], want f32 of ${size} values for x [${x.shape}]`,
      );
    }
  }
  const dx = rec.output(x.shape);
  BATCHNORM_BACKWARD.record(rec, {
    uniforms: { N: x.shape[0], C, HW: x.size / (x.shape[0] * C), eps: bn.eps },
    bind: {
      X: x,
      dY: dy,
      gamma: bn.weight,
      mean: bn.runningMean,
      variance: bn.runningVar,
      dX: dx,
      dGamma: grads.dGamma,
      dBeta: grads.dBeta,
    },
    groups: C,
  });
  return dx;
}
