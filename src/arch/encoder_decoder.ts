/**
 * The one caption model: an image encoder and a step decoder, configured by each architecture
 * (ViT → GPT-2, BLIP's ViT → BERT, CLIP → prefix → GPT-2, ResNet → soft-attention LSTM).
 * Transformer decoders share {@link kvStepDecoder}: caches in a {@link KvCache}, attention maps
 * from their cross-attention, rows reordered by gathering the caches.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type KvCache, reorderKvCache } from "../nn/kv_cache.ts";
import type { Param } from "../nn/params.ts";
import { forwardWithAttention } from "./attention_maps.ts";
import {
  type CacheDecodeState,
  cacheDecodeState,
  type CaptionModel,
  type DecoderConfig,
  type DecodeState,
  type EncoderState,
  type StepOptions,
} from "./caption_model.ts";

/** The decoder half of a caption model: caches of one decoding, a step over them, a reorder. */
export interface StepDecoder<S extends DecodeState> {
  /** Whether a step can record cross-attention maps. */
  readonly crossAttention: boolean;
  /** Caches for `maxLength` positions; row r decodes image `rowImage[r]` of `enc`. */
  begin(rec: Recorder, enc: EncoderState, rowImage: Int32Array, maxLength: number): S;
  /** `tokens [rows·S]` → logits `[rows·S, vocab]`; with `attention`, sets `st.attention`. */
  forward(rec: Recorder, st: S, tokens: Tensor, perRow: number, attention: boolean): Tensor;
  /** Row i continues row `parents[i]` ({@link CaptionModel.reorder}). */
  reorder(rec: Recorder, st: S, parents: Int32Array | Tensor): void;
}

/** What an architecture configures the model with. */
export interface EncoderDecoderParts<E extends EncoderState, S extends DecodeState> {
  /** `pixels [N, 3, H, W]` → encoder states. */
  encode(rec: Recorder, pixels: Tensor): E;
  /** The text decoder. */
  text: StepDecoder<S>;
  /** Every parameter held, by HF name. */
  params: readonly Param[];
  /** Free the weights. */
  dispose(): void;
}

/**
 * An encoder and a step decoder as a {@link CaptionModel}. Each call runs in its own
 * `rec.scope`: the parts' intermediates are released after the submit, what a call returns
 * (logits, states) goes to the caller, and what the states hold across submits (encoder
 * states, caches, attention maps) the parts `rec.keep`.
 */
export class EncoderDecoderModel<E extends EncoderState, S extends DecodeState>
  implements CaptionModel {
  /** Every parameter held, by HF name. */
  readonly params: readonly Param[];
  constructor(
    readonly architecture: string,
    readonly decoder: DecoderConfig,
    private readonly parts: EncoderDecoderParts<E, S>,
  ) {
    this.params = parts.params;
  }

  encode(rec: Recorder, pixels: Tensor): E {
    return rec.scope(() => this.parts.encode(rec, pixels));
  }

  beginDecode(rec: Recorder, enc: EncoderState, rowImage: Int32Array, maxLength: number): S {
    return rec.scope(() => this.parts.text.begin(rec, enc, rowImage, maxLength));
  }

  step(rec: Recorder, st: DecodeState, tokens: Tensor, perRow: number, opts?: StepOptions): Tensor {
    if (opts?.attention && !this.parts.text.crossAttention) {
      throw new WebcapError(
        "BAD_OPTION",
        `${this.architecture} has no cross-attention: attention maps are not available`,
      );
    }
    const attention = opts?.attention ?? false;
    return rec.scope(() => this.parts.text.forward(rec, st as S, tokens, perRow, attention));
  }

  reorder(rec: Recorder, st: DecodeState, parents: Int32Array | Tensor): void {
    rec.scope(() => this.parts.text.reorder(rec, st as S, parents));
  }

  dispose(): void {
    this.parts.dispose();
  }
}

/** Encoder states that are one kept tensor `hidden [images, seq, hidden]`, freed with the state. */
export function hiddenState(hidden: Tensor): EncoderState {
  return { images: hidden.shape[0], hidden, dispose: () => hidden.release() };
}

/** A transformer decoder `W` with cross-attention over a {@link KvCache} (GPT-2, BERT). */
export interface CachedTransformer<W> {
  /** Caches for the rows, with cross keys/values of `enc [images, seq, hidden]`. */
  begin(rec: Recorder, w: W, enc: Tensor, rowImage: Int32Array, maxLength: number): KvCache;
  /** `ids [rows·S]` → logits; `probs[layer]` `[rows, heads, S, encSeq]` receive cross-attention. */
  forward(rec: Recorder, w: W, cache: KvCache, ids: Tensor, S: number, probs?: Tensor[]): Tensor;
}

/**
 * {@link StepDecoder} of transformer `w` attending over the encoder states; `shape` is its
 * cross-attention's (layers, heads per layer), the shape of attention maps.
 */
export function kvStepDecoder<W>(
  w: W,
  shape: { layers: number; heads: number },
  t: CachedTransformer<W>,
): StepDecoder<CacheDecodeState> {
  return {
    crossAttention: true,
    begin: (rec, enc, rowImage, maxLength) =>
      cacheDecodeState(t.begin(rec, w, enc.hidden, rowImage, maxLength)),
    forward: (rec, st, tokens, perRow, attention) =>
      forwardWithAttention(
        rec,
        st,
        st.cache,
        { ...shape, perRow },
        attention,
        (probs) => t.forward(rec, w, st.cache, tokens, perRow, probs),
      ),
    reorder: (rec, st, parents) => reorderKvCache(rec, st.cache, parents),
  };
}
