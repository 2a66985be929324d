/**
 * The interface every captioning architecture implements (ViT-GPT2, BLIP, ClipCap,
 * Show-Attend-Tell), so every decoding strategy works on every model.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { disposeKvCache, type KvCache } from "../nn/kv_cache.ts";
import type { Param } from "../nn/params.ts";

/** Token ids and limits a decoder needs. */
export interface DecoderConfig {
  /** Number of logits per row (`vocab` in `[rows, vocab]`). */
  vocabSize: number;
  /** First token fed to the decoder (HF `decoder_start_token_id` / BLIP's [DEC]). */
  decoderStartTokenId: number;
  /** End-of-sequence token id (HF `eos_token_id`). */
  eosTokenId: number;
  /** Padding token id (HF `pad_token_id`). */
  padTokenId: number;
  /** Longest sequence the decoder can hold (positions, including the start token). */
  maxPositions: number;
}

/** Encoder output kept on the GPU; one entry per image. */
export interface EncoderState {
  /** Number of encoded images (`images` in `hidden`). */
  readonly images: number;
  /** Last hidden state `[images, seq, hidden]` (or the model's equivalent). */
  readonly hidden: Tensor;
  /** Release GPU memory. */
  dispose(): void;
}

/** Caches of one decoding: rows = images × rows per image, each row tied to one image. */
export interface DecodeState {
  /** Rows being decoded (length of `rowImage`). */
  rows: number;
  /** Positions already in the caches. */
  length: number;
  /** Image of each row. */
  rowImage: Int32Array;
  /** Cross-attention of the last step averaged over heads, `[layers, rows, S, encSeq]`, when requested. */
  attention?: Tensor;
  /** Release the caches' GPU memory. */
  dispose(): void;
}

/** A captioning model: plain data (weights + config) with functions walking it. */
export interface CaptionModel {
  /** The architecture name (e.g. `VisionEncoderDecoderModel`, `ClipCap`). */
  readonly architecture: string;
  /** Token ids and limits of the language decoder. */
  readonly decoder: DecoderConfig;
  /** Every checkpoint tensor the model holds, by Hugging Face name (tied tensors once). */
  readonly params: readonly Param[];
  /** `pixels [N, 3, H, W]` → encoder states (one pass). */
  encode(rec: Recorder, pixels: Tensor): EncoderState;
  /** Caches sized once for `maxLength` positions; row r decodes image `rowImage[r]`. */
  beginDecode(
    rec: Recorder,
    enc: EncoderState,
    rowImage: Int32Array,
    maxLength: number,
  ): DecodeState;
  /** `tokens [rows·S]` (S tokens per row) → logits `[rows·S, vocab]`; advances caches by S. */
  step(rec: Recorder, st: DecodeState, tokens: Tensor, perRow: number, opts?: StepOptions): Tensor;
  /**
   * Row i continues the caches of row `parents[i]` (fewer rows drop the rest). Parents on the
   * GPU (i32 `[rows]`, each a row of the same image, e.g. chosen by beam search's kernel): the
   * caches are gathered into spare buffers, allocated once.
   */
  reorder(rec: Recorder, st: DecodeState, parents: Int32Array | Tensor): void;
  /** Free the weights. */
  dispose(): void;
}

/** Extra outputs of a step. */
export interface StepOptions {
  /** Write cross-attention probabilities (mean over heads) of each layer, for attention maps. */
  attention?: boolean;
}

/** A {@link DecodeState} over a {@link KvCache} (GPT-2, BLIP's text decoder, ClipCap). */
export interface CacheDecodeState extends DecodeState {
  readonly cache: KvCache;
}

/**
 * `cache` seen as a DecodeState. `positionsBefore` cached positions (a prefix) are not counted in
 * `length`; `also` are tensors freed with the caches.
 */
export function cacheDecodeState(
  cache: KvCache,
  positionsBefore = 0,
  also: Tensor[] = [],
): CacheDecodeState {
  const st: CacheDecodeState = {
    cache,
    get rows() {
      return cache.rows;
    },
    get length() {
      return cache.length - positionsBefore;
    },
    get rowImage() {
      return cache.rowImage;
    },
    dispose: () => {
      disposeKvCache(cache);
      for (const t of [...also, st.attention]) if (t?.alive) t.release();
    },
  };
  return st;
}
