/**
 * Cross-attention maps of transformer decoders: probabilities `[rows, H, S, L]` per layer
 * averaged over heads into one tensor `[layers, rows, S, L]`.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import type { DecodeState } from "./caption_model.ts";
import type { KvCache } from "../nn/kv_cache.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { meanAxis1 } from "../shaders/reduce.ts";

/** Mean over heads of each layer's `[rows, H, S, L]` probabilities → `[layers, rows, S, L]`. */
export function meanOverHeads(rec: Recorder, probs: Tensor[]): Tensor {
  const [rows, H, S, L] = probs[0].shape;
  const out = rec.output([probs.length, rows, S, L]);
  probs.forEach((p, i) => meanAxis1(rec, p, rows, H, S * L, out, i * rows * S * L));
  return out;
}

/**
 * Run a decoder forward over `cache`; when `attention` is asked, give it one probability tensor
 * `[rows, heads, S, encSeq]` per layer and keep their mean over heads in `st.attention`.
 */
export function forwardWithAttention(
  rec: Recorder,
  st: DecodeState,
  cache: KvCache,
  shape: { layers: number; heads: number; perRow: number },
  attention: boolean | undefined,
  forward: (probs?: Tensor[]) => Tensor,
): Tensor {
  if (!attention) return forward();
  const probs = Array.from(
    { length: shape.layers },
    () => rec.temp([cache.rows, shape.heads, shape.perRow, cache.encSeq]),
  );
  const logits = forward(probs);
  setAttention(rec, st, meanOverHeads(rec, probs));
  return logits;
}

/** Keep `maps` as `st.attention`; the maps they replace end once work recorded before ran. */
export function setAttention(rec: Recorder, st: DecodeState, maps: Tensor): void {
  if (st.attention) rec.releaseAfterSubmit(st.attention);
  st.attention = rec.keep(maps);
}
