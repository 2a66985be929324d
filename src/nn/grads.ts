/**
 * Gradients of a model's trained parameters — what the backward passes accumulate into and the
 * optimizer steps — and the backward of the layers in `modules.ts`. One zeroed f32 tensor per
 * distinct parameter tensor, in its layout (stacked q/k/v share one, each part at its `Param`'s
 * offset; a tied table gets one that both uses accumulate into); frozen tensors get none, and the
 * backward skips their gradients. Every backward op accumulates, so a gradient holds the sum over
 * all uses until {@link Gradients.zero}. Dropout while training ({@link TrainDropout}): each
 * dropout a site whose mask its backward recomputes from the same key.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { numel, ownedTensor, type Tensor } from "../gpu/tensor.ts";
import type { AttnDropout } from "../shaders/attention.ts";
import { dropout } from "../shaders/elementwise.ts";
import { layerNormBackward, layerNormTrain, type SavedNorm } from "../shaders/layernorm.ts";
import { matmulBackward } from "../shaders/matmul.ts";
import { bindWindow, fill, windows } from "../shaders/optim.ts";
import { floatWeight } from "../shaders/quant/qmatrix.ts";
import { type LayerNorm, type Linear, linear } from "./modules.ts";
import type { Param } from "./params.ts";

/** f16 and quantized parameters cannot be trained: there is no f32 master copy to accumulate small updates. */
export function checkTrainable(p: Param): void {
  if (p.tensor.dtype !== "f32" || p.quant) {
    const stored = p.quant ? `quantized to ${p.quant.scheme}` : `stored in ${p.tensor.dtype}`;
    throw new WebcapError(
      "BAD_DTYPE",
      `cannot train "${p.name}": it is ${stored}; training updates f32 master ` +
        `weights: load the model with dtype f32, or freeze it`,
    );
  }
}

/**
 * Gradients of `params` (the trained ones): one zeroed f32 tensor per distinct parameter tensor,
 * looked up by that tensor (or any view of its buffer).
 */
export class Gradients {
  readonly #byBuffer = new Map<GPUBuffer, Tensor>();

  /** Zeroed gradients for the tensors holding `params` (each f32). */
  constructor(readonly gpu: Gpu, readonly params: readonly Param[]) {
    params.forEach(checkTrainable);
    for (const { tensor } of params) {
      if (this.#byBuffer.has(tensor.buffer)) continue;
      const label = `grad:${tensor.buffer.label}`;
      this.#byBuffer.set(
        tensor.buffer,
        ownedTensor(gpu, tensor.shape, "f32", label, { windowed: true }),
      );
    }
  }

  /** The gradient of parameter tensor `t` seen with `t`'s shape; undefined when `t` is frozen. */
  of(t: Tensor): Tensor | undefined {
    return this.#byBuffer.get(t.buffer)?.view(t.shape);
  }

  /** Bytes held. */
  get bytes(): number {
    let b = 0;
    for (const g of this.#byBuffer.values()) b += g.byteSize;
    return b;
  }

  /** Record zeroing every gradient (windowed past one binding). */
  zero(rec: Recorder): void {
    for (const g of this.#byBuffer.values()) {
      for (const w of windows(0, g.size, this.gpu.maxBinding)) fill(rec, bindWindow(g, w), w, 0);
    }
  }

  /** Read every parameter's gradient back, by name (schedules reads on `rec`). */
  read(rec: Recorder): Promise<Map<string, Float32Array>> {
    const reads = this.params.map((p) => {
      const g = this.#byBuffer.get(p.tensor.buffer)!;
      return [p.name, rec.read(g.buffer, numel(p.shape) * 4, p.offset * 4)] as const;
    });
    return (async () => {
      const out = new Map<string, Float32Array>();
      for (const [name, buf] of reads) out.set(name, new Float32Array(await buf));
      return out;
    })();
  }

  /** Free the gradient tensors. */
  dispose(): void {
    for (const g of this.#byBuffer.values()) if (g.alive) g.release();
    this.#byBuffer.clear();
  }
}

/**
 * Backward of {@link linear} for input `x [rows, in]` and output gradient `dy [rows, out]`:
 * accumulates the weight and bias gradients (unless frozen), returns `dX (+ residual)` unless `noDx`.
 */
export function linearBackward(
  rec: Recorder,
  x: Tensor,
  l: Linear,
  dy: Tensor,
  g: Gradients,
  opts: { residual?: Tensor; noDx?: boolean } = {},
): Tensor | undefined {
  const w = floatWeight(l.w, "linear backward");
  const grads = { dW: g.of(w), db: l.b && g.of(l.b) };
  return matmulBackward(rec, x, w, dy, grads, { transposeW: !l.inOut, ...opts });
}

/** The LayerNorm of `x [rows, d]`, keeping what {@link normBackward} needs. */
export function normTrain(rec: Recorder, x: Tensor, ln: LayerNorm): SavedNorm {
  return layerNormTrain(rec, x, ln.w, ln.b, ln.eps);
}

/** Backward of {@link normTrain}: accumulates into the norm's gradients (unless frozen); returns `dX (+ residual)`. */
export function normBackward(
  rec: Recorder,
  s: SavedNorm,
  ln: LayerNorm,
  dy: Tensor,
  g: Gradients,
  residual?: Tensor,
): Tensor {
  return layerNormBackward(rec, s, ln.w, dy, { dGamma: g.of(ln.w), dBeta: g.of(ln.b) }, residual);
}

/** Dropout while training: the seed and the step (each micro-batch its own) of every mask. */
export interface TrainDropout {
  /** An integer in [0, 2^53). */
  seed: number;
  /** An integer in [0, 2^32). */
  step: number;
}

/** One dropout of a model: rate `p` at `site` (its mask id), off without `d` or at p = 0. */
export interface DropSite {
  d: TrainDropout | undefined;
  p: number;
  site: number;
}

function dropOn(s: DropSite): s is DropSite & { d: TrainDropout } {
  return s.d !== undefined && s.p > 0;
}

/**
 * `dropout(x)` at site `s` (x itself when off). Dropout is linear: this same call on the output's
 * gradient is its backward (and that of the dropout in {@link linearDrop}).
 */
export function drop(rec: Recorder, s: DropSite, x: Tensor): Tensor {
  return dropOn(s) ? dropout(rec, x, s.p, { ...s.d, site: s.site }) : x;
}

/** The attention-probability dropout of site `s` for `attention` and its backward (none when off). */
export function attnDrop(s: DropSite): AttnDropout | undefined {
  return dropOn(s) ? { p: s.p, key: { ...s.d, site: s.site } } : undefined;
}

/** `residual + dropout(linear(x))` at site `s` (the plain fused linear when off). */
export function linearDrop(
  rec: Recorder,
  x: Tensor,
  l: Linear,
  s: DropSite,
  residual?: Tensor,
): Tensor {
  if (!dropOn(s)) return linear(rec, x, l, { residual });
  const y = linear(rec, x, l);
  rec.releaseAfterSubmit(y);
  return dropout(rec, y, s.p, { ...s.d, site: s.site }, residual);
}
