/**
 * Cross-attention maps of transformer decoders: probabilities `[rows, H, S, L]` per layer
 * averaged over heads into one tensor `[layers, rows, S, L]`.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import { emptyTensor, type Tensor } from "../gpu/tensor.ts";
import { meanAxis1 } from "../shaders/reduce.ts";

/** Mean over heads of each layer's `[rows, H, S, L]` probabilities → `[layers, rows, S, L]`. */
export function meanOverHeads(rec: Recorder, probs: Tensor[]): Tensor {
  const [rows, H, S, L] = probs[0].shape;
  const out = emptyTensor(rec.gpu, [probs.length, rows, S, L]);
  probs.forEach((p, i) => meanAxis1(rec, p, rows, H, S * L, out, i * rows * S * L));
  return out;
}
