/**
 * The BERT text decoder (`BlipTextLMHeadModel`) in teacher forcing for training: every row's
 * whole sequence in one pass (no KV cache), keeping what the backward needs (layernorm
 * statistics, attention probabilities, GELU inputs), and the backward into a {@link Gradients}:
 * post-LN blocks (causal self-attention, cross-attention over per-row encoder states
 * `[R·E, encHidden]`, feed-forward), word + position embeddings and their LayerNorm, the LM
 * head's transform and LayerNorm, and the decoder matrix (tied to the word embeddings: both uses
 * accumulate into one gradient).
 *
 * Run {@link bertTrainForward} and {@link bertTrainBackward} inside one `rec.scope` before one
 * submit: the saved activations are the scope's and are released after it.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { attention, attentionBackward, type AttnOperand } from "../shaders/attention.ts";
import { accumulate, unary, unaryBackward } from "../shaders/elementwise.ts";
import { embedding, embeddingBackward } from "../shaders/embedding.ts";
import type { SavedNorm } from "../shaders/layernorm.ts";
import { matmul, matmulBackward } from "../shaders/matmul.ts";
import type { BertDecoderWeights } from "./bert_decoder.ts";
import { floatWeight } from "../shaders/quant/qmatrix.ts";
import { attnDrop, drop, type DropSite, linearDrop, type TrainDropout } from "./grads.ts";
import { type Gradients, linearBackward, normBackward, normTrain } from "./grads.ts";
import { linear } from "./modules.ts";

interface SavedLayer {
  x: Tensor; // [R·T, h] block input
  qkv: Tensor; // [R·T, 3h]
  probs: Tensor; // [R, H, T, T]
  a: Tensor; // [R·T, h] self-attention output
  n1: SavedNorm; // attention.output.LayerNorm
  q: Tensor; // [R·T, h] cross-attention queries
  ckv: Tensor; // [R·E, 2h] cross keys, values
  cprobs: Tensor; // [R, H, T, E]
  ca: Tensor; // [R·T, h]
  n2: SavedNorm; // crossattention.output.LayerNorm
  pre: Tensor; // [R·T, inter] before the activation
  f: Tensor;
  n3: SavedNorm; // output.LayerNorm
}

/** What {@link bertTrainForward} kept for {@link bertTrainBackward}. */
export interface BertSaved {
  R: number;
  T: number;
  E: number;
  ids: Tensor; // [R·T] i32
  posIds: Tensor; // [R·T] i32
  enc: Tensor; // [R·E, encHidden]
  keyLengths?: Tensor; // [R] i32
  emb: SavedNorm; // embeddings.LayerNorm
  layers: SavedLayer[];
  xL: Tensor; // [R·T, h] last block's output
  tpre: Tensor; // [R·T, h] head transform before the activation
  t: Tensor;
  hn: SavedNorm; // head transform LayerNorm
  dropout?: TrainDropout; // the dropout masks' key (none: dropout off)
}

/** BERT's dropout sites: the embeddings (k 0), then per block its three output projections. */
const SITES = 3 << 20;
type Proj = "attn" | "cross" | "out";
function site(w: BertDecoderWeights, d: TrainDropout | undefined, i: number, k?: Proj): DropSite {
  const j = k === undefined ? 0 : 1 + 3 * i + ["attn", "cross", "out"].indexOf(k);
  return { d, p: w.config.hidden_dropout_prob, site: SITES + j };
}

/** Block i's self- (k 0) and cross-attention (k 1) probabilities, from `SITES + 2^19`. */
function probSite(w: BertDecoderWeights, d: TrainDropout | undefined, i: number, k: 0 | 1) {
  const p = w.config.attention_probs_dropout_prob;
  return attnDrop({ d, p, site: SITES + (1 << 19) + 2 * i + k });
}

/** The shapes and options one attention call of the decoder shares with its backward. */
function selfArgs(w: BertDecoderWeights, qkv: Tensor, R: number, T: number) {
  const h = w.config.hidden_size, H = w.config.num_attention_heads;
  const op = (offset: number): AttnOperand => ({
    t: qkv,
    offset,
    posStride: 3 * h,
    rowStride: T * 3 * h,
  });
  const dims = { batch: R, queries: T, heads: H, headDim: h / H, keys: T, scale: scale(w) };
  return { q: op(0), k: op(h), v: op(2 * h), ...dims };
}

function crossArgs(w: BertDecoderWeights, q: Tensor, ckv: Tensor, sv: Shape) {
  const h = w.config.hidden_size, H = w.config.num_attention_heads, { R, T, E } = sv;
  const op = (offset: number): AttnOperand => ({
    t: ckv,
    offset,
    posStride: 2 * h,
    rowStride: E * 2 * h,
  });
  const dims = { batch: R, queries: T, heads: H, headDim: h / H, keys: E, scale: scale(w) };
  return { q: { t: q, offset: 0, posStride: h, rowStride: T * h }, k: op(0), v: op(h), ...dims };
}

function scale(w: BertDecoderWeights): number {
  return 1 / Math.sqrt(w.config.hidden_size / w.config.num_attention_heads);
}

interface Shape {
  R: number;
  T: number;
  E: number;
}

/** One post-LN block over `x [R·T, h]`, saving its activations. */
function layerForward(
  rec: Recorder,
  w: BertDecoderWeights,
  i: number,
  x: Tensor,
  sv: Shape & { enc: Tensor; keyLengths?: Tensor; dropout?: TrainDropout },
): SavedLayer {
  const l = w.layers[i], at = (k: Proj) => site(w, sv.dropout, i, k);
  const { R, T, E } = sv, H = w.config.num_attention_heads;
  const qkv = linear(rec, x, l.qkv);
  const probs = rec.temp([R, H, T, T]);
  const self = selfArgs(w, qkv, R, T);
  const a = attention(rec, {
    ...self,
    causal: { past: 0 },
    keyLengths: sv.keyLengths,
    probs,
    dropout: probSite(w, sv.dropout, i, 0),
  }).view([R * T, self.heads * self.headDim]);
  const n1 = normTrain(rec, linearDrop(rec, a, l.attnOut, at("attn"), x), l.attnLn);
  const q = linear(rec, n1.y, l.crossQ);
  const ckv = linear(rec, sv.enc, l.crossKv);
  const cprobs = rec.temp([R, H, T, E]);
  const ca = attention(rec, {
    ...crossArgs(w, q, ckv, sv),
    probs: cprobs,
    dropout: probSite(w, sv.dropout, i, 1),
  }).view(a.shape);
  const n2 = normTrain(rec, linearDrop(rec, ca, l.crossOut, at("cross"), n1.y), l.crossLn);
  const pre = linear(rec, n2.y, l.inter);
  const f = unary(rec, pre, w.act);
  const n3 = normTrain(rec, linearDrop(rec, f, l.out, at("out"), n2.y), l.outLn);
  return { x, qkv, probs, a, n1, q, ckv, cprobs, ca, n2, pre, f, n3 };
}

/**
 * Teacher-forced forward of `ids [R·T]` (i32; row r holds positions 0..T−1) with
 * cross-attention over `enc [R·E, encHidden]`; `keyLengths [R]` (i32, optional) masks each
 * row's self-attention keys past its length (a right-padded attention mask). Returns logits
 * `[R·T, vocab]` and what the backward needs. With `shape.dropout`, `hidden_dropout_prob`
 * applies to the embeddings and every block's projections and `attention_probs_dropout_prob` to
 * its attention probabilities.
 */
export function bertTrainForward(
  rec: Recorder,
  w: BertDecoderWeights,
  ids: Tensor,
  shape: {
    R: number;
    T: number;
    enc: Tensor;
    E: number;
    keyLengths?: Tensor;
    dropout?: TrainDropout;
  },
): { logits: Tensor; saved: BertSaved } {
  const c = w.config, { R, T, E, enc } = shape;
  if (T > c.max_position_embeddings) {
    throw new WebcapError(
      "BAD_SHAPE",
      `${T} positions exceed the decoder's max_position_embeddings ${c.max_position_embeddings}`,
    );
  }
  if (ids.size !== R * T || enc.size !== R * E * c.encoder_hidden_size) {
    throw new WebcapError(
      "BAD_SHAPE",
      `bertTrainForward: ids [${ids.shape}] and encoder states [${enc.shape}] do not fit ` +
        `${R} rows × ${T} tokens over ${E} positions of ${c.encoder_hidden_size}`,
    );
  }
  const posIds = rec.upload(Int32Array.from({ length: R * T }, (_, i) => i % T), [R * T], "i32");
  const e = embedding(rec, w.wordEmb, ids, { pos: { table: w.posEmb, start: 0, period: T } });
  const emb = normTrain(rec, e, w.embLn);
  let x = drop(rec, site(w, shape.dropout, 0), emb.y);
  const layers = w.layers.map((_, i) => {
    const s = layerForward(rec, w, i, x, shape);
    x = s.n3.y;
    return s;
  });
  const tpre = linear(rec, x, w.head.transform);
  const t = unary(rec, tpre, w.act);
  const hn = normTrain(rec, t, w.head.ln);
  const logits = matmul(rec, hn.y, w.head.decoder, { transposeW: true, bias: w.head.bias });
  const saved = { R, T, E, ids, posIds, enc, keyLengths: shape.keyLengths, emb, layers, xL: x };
  return { logits, saved: { ...saved, tpre, t, hn, dropout: shape.dropout } };
}

/**
 * Backward of one block from `dOut`; adds the encoder states' gradient to `dEnc` (absent: a
 * frozen encoder, none computed), returns `dX`.
 */
function layerBackward(
  rec: Recorder,
  w: BertDecoderWeights,
  i: number,
  s: SavedLayer,
  sv: BertSaved,
  dOut: Tensor,
  g: Gradients,
  dEnc: Tensor | undefined,
): Tensor {
  const { R, T, E } = sv, h = w.config.hidden_size;
  const l = w.layers[i], at = (k: Proj) => site(w, sv.dropout, i, k);
  const dr3 = normBackward(rec, s.n3, l.outLn, dOut, g);
  const df = linearBackward(rec, s.f, l.out, drop(rec, at("out"), dr3), g)!;
  const dpre = unaryBackward(rec, s.pre, df, w.act);
  const dx2 = linearBackward(rec, s.n2.y, l.inter, dpre, g, { residual: dr3 })!;
  const dr2 = normBackward(rec, s.n2, l.crossLn, dx2, g);
  const dca = linearBackward(rec, s.ca, l.crossOut, drop(rec, at("cross"), dr2), g)!;
  const dq = rec.temp([R * T, h]), dckv = rec.temp([R * E, 2 * h]);
  attentionBackward(rec, {
    ...crossArgs(w, s.q, s.ckv, sv),
    probs: s.cprobs,
    dropout: probSite(w, sv.dropout, i, 1),
    dO: dca,
    dQ: dq,
    dKV: dckv,
  });
  const dEncL = linearBackward(rec, sv.enc, l.crossKv, dckv, g, { noDx: !dEnc });
  if (dEnc) accumulate(rec, dEnc, dEncL!);
  const dx1 = linearBackward(rec, s.n1.y, l.crossQ, dq, g, { residual: dr2 })!;
  const dr1 = normBackward(rec, s.n1, l.attnLn, dx1, g);
  const da = linearBackward(rec, s.a, l.attnOut, drop(rec, at("attn"), dr1), g)!;
  const dqkv = rec.temp([R * T, 3 * h]);
  attentionBackward(rec, {
    ...selfArgs(w, s.qkv, R, T),
    probs: s.probs,
    dropout: probSite(w, sv.dropout, i, 0),
    dO: da,
    dQ: dqkv,
    dKV: dqkv,
  });
  return linearBackward(rec, s.x, l.qkv, dqkv, g, { residual: dr1 })!;
}

/**
 * Backward of {@link bertTrainForward} from `dLogits [R·T, vocab]`: accumulates every
 * parameter's gradient into `g` (the word embeddings get the head's use and the embedding's) and
 * returns the gradient of the encoder states `[R·E, encHidden]` when `encoderGrad`.
 */
export function bertTrainBackward(
  rec: Recorder,
  w: BertDecoderWeights,
  sv: BertSaved,
  dLogits: Tensor,
  g: Gradients,
  encoderGrad = true,
): Tensor | undefined {
  const hd = w.head;
  const decoder = floatWeight(hd.decoder, "bert backward");
  const dhn = matmulBackward(rec, sv.hn.y, decoder, dLogits, {
    dW: g.of(decoder),
    db: g.of(hd.bias),
  }, { transposeW: true })!;
  const dt = normBackward(rec, sv.hn, hd.ln, dhn, g);
  const dtpre = unaryBackward(rec, sv.tpre, dt, w.act);
  let dx = linearBackward(rec, sv.xL, hd.transform, dtpre, g)!;
  const dEnc = encoderGrad
    ? rec.upload(new Float32Array(sv.enc.size), sv.enc.shape, "f32")
    : undefined;
  for (let i = w.layers.length - 1; i >= 0; i--) {
    dx = layerBackward(rec, w, i, sv.layers[i], sv, dx, g, dEnc);
  }
  const de = normBackward(rec, sv.emb, w.embLn, drop(rec, site(w, sv.dropout, 0), dx), g);
  const [dWord, dPos] = [g.of(floatWeight(w.wordEmb, "bert backward")), g.of(w.posEmb)];
  if (dWord) embeddingBackward(rec, de, sv.ids, dWord);
  if (dPos) embeddingBackward(rec, de, sv.posIds, dPos);
  return dEnc;
}
