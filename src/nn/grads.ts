/**
 * Gradients of a model's parameters and the backward of the layers in `modules.ts`. One zeroed
 * f32 gradient tensor per parameter tensor (stacked q/k/v share one, sliced by each `Param`'s
 * offset; a tied table gets one that both uses accumulate into). Every backward op accumulates,
 * so a gradient holds the sum over all uses after one backward.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { layerNormBackward, layerNormTrain, type SavedNorm } from "../shaders/layernorm.ts";
import { matmulBackward } from "../shaders/matmul.ts";
import { floatWeight } from "../shaders/quant/qmatrix.ts";
import type { LayerNorm, Linear } from "./modules.ts";
import type { Param } from "./params.ts";

/** Zeroed f32 gradients for the tensors holding `params`, looked up by the parameter tensor. */
export class Grads {
  readonly #byBuffer = new Map<GPUBuffer, Tensor>();

  constructor(gpu: Gpu, readonly params: readonly Param[]) {
    for (const p of params) {
      if (p.tensor.dtype !== "f32") {
        throw new WebcapError(
          "BAD_DTYPE",
          `parameter "${p.name}" is held in ${p.tensor.dtype}; training needs f32 weights ` +
            "(load the model with dtype f32)",
        );
      }
      if (this.#byBuffer.has(p.tensor.buffer)) continue;
      const zeros = new Float32Array(p.tensor.size);
      this.#byBuffer.set(p.tensor.buffer, uploadTensor(gpu, zeros, p.tensor.shape, "f32", "grad"));
    }
  }

  /** The gradient of parameter tensor `t` (or a view of it), seen with `t`'s shape. */
  of(t: Tensor): Tensor {
    const g = this.#byBuffer.get(t.buffer);
    if (!g) throw new WebcapError("BAD_OPTION", `tensor [${t.shape}] is not a parameter here`);
    return g.view(t.shape);
  }

  /** Read every parameter's gradient back, by name (schedules reads on `rec`). */
  read(rec: Recorder): Promise<Map<string, Float32Array>> {
    const reads = new Map<GPUBuffer, Promise<ArrayBuffer>>();
    for (const [buffer, g] of this.#byBuffer) reads.set(buffer, rec.read(g.buffer, g.byteSize));
    return (async () => {
      const out = new Map<string, Float32Array>();
      for (const p of this.params) {
        const all = new Float32Array(await reads.get(p.tensor.buffer)!);
        const n = p.shape.reduce((a, b) => a * b, 1);
        out.set(p.name, all.slice(p.offset, p.offset + n));
      }
      return out;
    })();
  }

  /** Free the gradient tensors. */
  dispose(): void {
    for (const g of this.#byBuffer.values()) g.release();
    this.#byBuffer.clear();
  }
}

/**
 * Backward of {@link linear} for input `x [rows, in]` and output gradient `dy [rows, out]`:
 * accumulates the weight and bias gradients, returns `dX (+ residual)` unless `noDx`.
 */
export function linearBackward(
  rec: Recorder,
  x: Tensor,
  l: Linear,
  dy: Tensor,
  g: Grads,
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

/** Backward of {@link normTrain}: accumulates into the norm's gradients; returns `dX (+ residual)`. */
export function normBackward(
  rec: Recorder,
  s: SavedNorm,
  ln: LayerNorm,
  dy: Tensor,
  g: Grads,
  residual?: Tensor,
): Tensor {
  return layerNormBackward(rec, s, ln.w, dy, { dGamma: g.of(ln.w), dBeta: g.of(ln.b) }, residual);
}
