/**
 * The layers every tower is built from, each loaded by one function that checks every tensor
 * by name and records it as a {@link Param}: Linear (out×in as `nn.Linear`, or in×out as GPT-2's
 * `Conv1D`; q, k, v stacked into one), LayerNorm, Conv2d (ResNet's, with its BatchNorm). Each
 * module keeps the parameters it loaded in `params`. Embedding tables are weights
 * (`ParamLoader.weight`: float or quantized), read by the `embedding` kernel. A quantized Linear
 * is out×in whatever the checkpoint stores (a Conv1D weight is transposed at quantization).
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { Activation } from "../shaders/activations.ts";
import { layerNorm, type NormParams } from "../shaders/layernorm.ts";
import { matmul } from "../shaders/matmul.ts";
import type { Weight } from "../shaders/quant/qmatrix.ts";
import type { Param, ParamLoader } from "./params.ts";

/** What every loaded module has: the parameters it holds, by HF name. */
export interface Module {
  readonly params: Param[];
}

/** `y = x·Wᵀ + b`; `w` is `[out, in]`, or `[in, out]` when `inOut` (GPT-2's Conv1D). */
export interface Linear extends Module {
  w: Weight;
  b?: Tensor; // [out]
  inOut: boolean;
}

/** Options of {@link loadLinear}. */
export interface LinearOptions {
  /** Whether `<name>.bias` exists (default true). */
  bias?: boolean;
  /** Stored in×out (GPT-2's Conv1D) instead of out×in. */
  inOut?: boolean;
}

/** `<name>.weight` `[out, in]` (or `[in, out]`) and `<name>.bias` `[out]`. */
export function loadLinear(
  p: ParamLoader,
  name: string,
  out: number,
  inp: number,
  opts: LinearOptions = {},
): Promise<Linear> {
  const inOut = opts.inOut ?? false;
  return p.owning(async () => ({
    w: await p.weight(`${name}.weight`, [out, inp], inOut),
    b: opts.bias === false ? undefined : await p.f32(`${name}.bias`, [out]),
    inOut: inOut && !p.quantized,
  }));
}

/** nn.Linear layers `names` (each `[out, in]` with a bias) stacked into one `[k·out, in]` Linear. */
export function loadStackedLinear(
  p: ParamLoader,
  names: string[],
  out: number,
  inp: number,
): Promise<Linear> {
  return p.owning(async () => ({
    w: await p.stackedWeight(names.map((n) => `${n}.weight`), [out, inp]),
    b: await p.stacked(names.map((n) => `${n}.bias`), [out], "f32"),
    inOut: false,
  }));
}

/**
 * Record `act(x·Wᵀ + b) (+ residual)` for `x [rows, in]` → `[rows, out]`; with `norm`, x is
 * read through that LayerNorm (a pre-LN block's norm and projection in one matmul).
 */
export function linear(
  rec: Recorder,
  x: Tensor,
  l: Linear,
  opts: { act?: Activation; residual?: Tensor; norm?: LayerNorm } = {},
): Tensor {
  return matmul(rec, x, l.w, { transposeW: !l.inOut, bias: l.b, ...opts });
}

/** LayerNorm over the last dimension: `<name>.weight`, `<name>.bias` `[d]`. */
export interface LayerNorm extends Module, NormParams {}

/** Load LayerNorm `name` of width `d`. */
export function loadLayerNorm(
  p: ParamLoader,
  name: string,
  d: number,
  eps: number,
): Promise<LayerNorm> {
  return p.owning(async () => ({
    w: await p.f32(`${name}.weight`, [d]),
    b: await p.f32(`${name}.bias`, [d]),
    eps,
  }));
}

/** Record the LayerNorm of `x [rows, d]`. */
export function norm(rec: Recorder, x: Tensor, ln: LayerNorm): Tensor {
  return layerNorm(rec, x, ln.w, ln.b, ln.eps);
}

/** A 2-D convolution `[Cout, Cin, k, k]` with an optional bias, stride and symmetric padding. */
export interface Conv2d extends Module {
  weight: Tensor;
  bias?: Tensor; // [Cout]
  stride: number;
  padding: number;
}
