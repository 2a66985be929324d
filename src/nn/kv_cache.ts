/**
 * The key/value cache of a transformer decoder (GPT-2, BERT): per layer the keys and values of
 * every decoded position of every row, and the cross-attention keys/values of each encoded
 * image (computed once, shared by that image's rows through `rowImage`). Rows are reordered
 * (beam search) by gathering every layer's cache into fresh buffers, or, for parents chosen on
 * the GPU, into a spare buffer per layer that then swaps with the cache (ping-pong).
 *
 * A layer's attention from its input rows ({@link selfAttention}, {@link crossAttention}):
 * a decode step (one position per row) is one kernel per attention where
 * `decodeAttentionPlan` takes it (LayerNorm, projection, cache append and attention fused);
 * otherwise, and for steps of several positions, the projection by `linear` (its LayerNorm in the
 * matmul's prologue or a dispatch of its own, as `matmulPlan` says), the cache append and attention.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { ownedTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { attention } from "../shaders/attention.ts";
import { decodeAttention, decodeAttentionPlan } from "../shaders/attention/decode.ts";
import { copy2d } from "../shaders/copy.ts";
import { embedding } from "../shaders/embedding.ts";
import { type LayerNorm, type Linear, linear } from "./modules.ts";

/** Caches of one decoding. */
export interface KvCache {
  rows: number;
  maxLength: number;
  /** Positions already cached. */
  length: number;
  /** Per layer `[rows, maxLength, 2h]`: keys then values of each position. */
  kv: Tensor[];
  /** Per layer, the other buffer of a GPU reorder's ping-pong (made by the first one). */
  spare: Tensor[];
  /** Per layer cross keys/values `[images·encSeq, 2h]`, computed once (empty without cross-attention). */
  cross: Tensor[];
  encSeq: number;
  rowImage: Int32Array;
  rowImageGpu: Tensor; // i32 [rows]
}

/** BAD_OPTION unless every row's image indexes one of `images`. */
export function checkRowImage(rowImage: Int32Array, images: number): void {
  if (rowImage.some((i) => !(i >= 0 && i < images))) {
    throw new WebcapError("BAD_OPTION", `rowImage must index the ${images} encoded images`);
  }
}

/**
 * Empty self-attention caches `[rows, maxLength, 2·hidden]` for `layers` layers, with the cross
 * keys/values `cross` (one per layer, `[images·encSeq, 2·hidden]`; kept by the cache from now on).
 */
export function beginKvCache(
  rec: Recorder,
  shape: { layers: number; hidden: number; maxLength: number },
  rowImage: Int32Array,
  cross: { kv: Tensor[]; encSeq: number } = { kv: [], encSeq: 0 },
): KvCache {
  const rows = rowImage.length, { layers, hidden, maxLength } = shape;
  return {
    rows,
    maxLength,
    length: 0,
    kv: Array.from(
      { length: layers },
      (_, i) => ownedTensor(rec.gpu, [rows, maxLength, 2 * hidden], "f32", `kv-cache-${i}`),
    ),
    spare: [],
    cross: cross.kv.map((t) => rec.keep(t)),
    encSeq: cross.encSeq,
    rowImage: rowImage.slice(),
    rowImageGpu: uploadTensor(rec.gpu, rowImage, [rows], "i32", "row-image"),
  };
}

/** BAD_OPTION when `S` more positions do not fit the cache. */
export function checkRoom(st: KvCache, S: number): void {
  if (st.length + S > st.maxLength) {
    throw new WebcapError(
      "BAD_OPTION",
      `decoder cache holds ${st.maxLength} positions; ${st.length + S} requested`,
    );
  }
}

/**
 * Causal self-attention of `qkv [R·S, 3h]` (q, k, v per position) over layer `i`'s cache, after
 * appending this step's keys and values at position `st.length`. Returns `[R·S, h]`.
 */
export function cachedSelfAttention(
  rec: Recorder,
  st: KvCache,
  i: number,
  qkv: Tensor,
  S: number,
  heads: number,
  scale: number,
): Tensor {
  const h = qkv.shape[1] / 3, R = st.rows;
  const cache = st.kv[i]; // [rows, maxLength, 2h]
  copy2d(rec, qkv, cache, {
    n: R * S,
    width: 2 * h,
    srcOff: h,
    srcStride: 3 * h,
    group: S,
    dstOff: st.length * 2 * h,
    dstOuter: st.maxLength * 2 * h,
    dstInner: 2 * h,
  });
  const kvOp = (offset: number) => ({
    t: cache,
    offset,
    posStride: 2 * h,
    rowStride: st.maxLength * 2 * h,
  });
  return attention(rec, {
    q: { t: qkv, offset: 0, posStride: 3 * h, rowStride: S * 3 * h },
    k: kvOp(0),
    v: kvOp(h),
    batch: R,
    queries: S,
    heads,
    headDim: h / heads,
    keys: st.length + S,
    causal: { past: st.length },
    scale,
  }).view([R * S, h]);
}

/**
 * Attention of `q [R·S, h]` over each row's image states: layer `i`'s cross keys/values, computed
 * once per image and shared by its rows through `rowImage`. Returns `[R·S, h]`.
 */
export function imageCrossAttention(
  rec: Recorder,
  st: KvCache,
  i: number,
  q: Tensor,
  S: number,
  heads: number,
  scale: number,
  probs?: Tensor,
): Tensor {
  const h = q.shape[1];
  const op = (offset: number) => ({
    t: st.cross[i],
    offset,
    posStride: 2 * h,
    rowStride: st.encSeq * 2 * h,
  });
  return attention(rec, {
    q: { t: q, offset: 0, posStride: h, rowStride: S * h },
    k: op(0),
    v: op(h),
    batch: st.rows,
    queries: S,
    heads,
    headDim: h / heads,
    keys: st.encSeq,
    kvIndex: st.rowImageGpu,
    scale,
    probs,
  }).view([st.rows * S, h]);
}

/** How a layer's attention projects its input rows: an optional LayerNorm, then a Linear. */
export interface AttnInput {
  norm?: LayerNorm;
  /** Self-attention: out 3h (q, k, v stacked); cross-attention: out h (q). */
  proj: Linear;
}

/** The rows `x` normed (when `input` has a LayerNorm) and projected. */
function project(rec: Recorder, x: Tensor, input: AttnInput): Tensor {
  return linear(rec, x, input.proj, { norm: input.norm });
}

/** Whether a step of S positions per row over `x` takes the fused decode kernel. */
function fused(rec: Recorder, st: KvCache, x: Tensor, input: AttnInput, S: number): boolean {
  return S === 1 && x.shape[0] === st.rows &&
    decodeAttentionPlan(rec.gpu, st.rows, input.proj.w) === "fused";
}

/**
 * Causal self-attention of layer `i` for `x [R·S, h]`: normed and projected by `input` to q, k,
 * v, keys and values appended to the cache at position `st.length`. Returns `[R·S, h]`.
 */
export function selfAttention(
  rec: Recorder,
  st: KvCache,
  i: number,
  x: Tensor,
  input: AttnInput,
  S: number,
  heads: number,
  scale: number,
): Tensor {
  if (!fused(rec, st, x, input, S)) {
    return cachedSelfAttention(rec, st, i, project(rec, x, input), S, heads, scale);
  }
  const { norm, proj } = input;
  return decodeAttention(rec, { x, norm, proj, kv: st.kv[i], past: st.length, heads, scale });
}

/**
 * Cross-attention of layer `i` for `x [R·S, h]` over each row's image: normed and projected by
 * `input` to q. Returns `[R·S, h]`; `probs` (`[R, H, S, encSeq]`) receives the probabilities.
 */
export function crossAttention(
  rec: Recorder,
  st: KvCache,
  i: number,
  x: Tensor,
  input: AttnInput,
  S: number,
  heads: number,
  scale: number,
  probs?: Tensor,
): Tensor {
  if (!fused(rec, st, x, input, S)) {
    return imageCrossAttention(rec, st, i, project(rec, x, input), S, heads, scale, probs);
  }
  const kv = st.cross[i].view([st.cross[i].shape[0] / st.encSeq, st.encSeq, x.shape[1] * 2]);
  const { norm, proj } = input;
  return decodeAttention(rec, {
    x,
    norm,
    proj,
    kv,
    kvIndex: st.rowImageGpu,
    heads,
    scale,
    probs,
  });
}

/**
 * Row i continues row `parents[i]`. Host parents (fewer rows drop the rest): caches gathered into
 * fresh buffers, row→image remapped. GPU parents (i32 `[rows]`, each a row of the same image):
 * caches gathered into the spare buffers, which become the caches; nothing is allocated after
 * the first.
 */
export function reorderKvCache(rec: Recorder, st: KvCache, parents: Int32Array | Tensor): void {
  if (!(parents instanceof Int32Array)) return gatherKvCache(rec, st, parents);
  if (parents.some((p) => p < 0 || p >= st.rows)) {
    throw new WebcapError("BAD_OPTION", `reorder: parents must index the ${st.rows} current rows`);
  }
  const ids = rec.upload(parents, [parents.length], "i32");
  const R = parents.length;
  // the replaced caches end their life once the gathers reading them are submitted
  rec.releaseAfterSubmit(...st.kv, ...st.spare, st.rowImageGpu);
  st.spare = [];
  st.kv = st.kv.map((cache, i) => {
    const width = cache.size / st.rows;
    const next = ownedTensor(rec.gpu, [R, st.maxLength, cache.shape[2]], "f32", `kv-cache-${i}`);
    embedding(rec, cache.view([st.rows, width]), ids, { out: next.view([R, width]) });
    return next;
  });
  st.rowImage = Int32Array.from(parents, (p) => st.rowImage[p]);
  st.rowImageGpu = uploadTensor(rec.gpu, st.rowImage, [R], "i32", "row-image");
  st.rows = R;
}

/** The ping-pong reorder by GPU parents `[rows]` (rows keep their images). */
function gatherKvCache(rec: Recorder, st: KvCache, parents: Tensor): void {
  if (parents.size !== st.rows || parents.dtype !== "i32") {
    throw new WebcapError("BAD_SHAPE", `reorder: GPU parents must be i32 [${st.rows}]`);
  }
  if (st.spare.length === 0) {
    st.spare = st.kv.map((c, i) => ownedTensor(rec.gpu, c.shape, c.dtype, `kv-cache-${i}`));
  }
  const spare = st.spare;
  st.spare = st.kv;
  st.kv = st.kv.map((cache, i) => {
    const width = cache.size / st.rows;
    embedding(rec, cache.view([st.rows, width]), parents, { out: spare[i].view([st.rows, width]) });
    return spare[i];
  });
}

/** Free a decoding's caches. */
export function disposeKvCache(st: KvCache): void {
  for (const t of [...st.kv, ...st.spare, ...st.cross, st.rowImageGpu]) if (t.alive) t.release();
  st.kv = [];
  st.spare = [];
  st.cross = [];
}
