/**
 * GPT-2 decoder (HF `GPT2LMHeadModel` layout) with a key/value cache, optional
 * cross-attention over encoder states (keys/values computed once per image, shared by that
 * image's rows through an index), and the LM head tied to `wte` (or a stored `lm_head` when
 * the config unties them). Conv1D weights are in×out.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { ownedTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { type Activation, activationFromConfig } from "../shaders/activations.ts";
import { attention } from "../shaders/attention.ts";
import { copy2d } from "../shaders/copy.ts";
import { embedding } from "../shaders/embedding.ts";
import { layerNorm } from "../shaders/layernorm.ts";
import { matmul } from "../shaders/matmul.ts";
import { configNumber } from "./config.ts";
import type { ParamLoader } from "./params.ts";

/** The fields of an HF GPT-2 config that the decoder uses. */
export interface Gpt2Config {
  n_embd: number;
  n_head: number;
  n_layer: number;
  n_positions: number;
  n_inner: number;
  vocab_size: number;
  layer_norm_epsilon: number;
  activation_function: string;
  add_cross_attention: boolean;
  scale_attn_weights: boolean;
  scale_attn_by_inverse_layer_idx: boolean;
  /** The LM head is `wte` (HF default true); false reads a stored `lm_head.weight`. */
  tie_word_embeddings: boolean;
}

/** Read and check a GPT-2 config object. */
export function gpt2Config(c: Record<string, unknown>, where: string): Gpt2Config {
  const num = (k: string, d?: number): number => configNumber(c, k, where, d);
  const cfg: Gpt2Config = {
    n_embd: num("n_embd"),
    n_head: num("n_head"),
    n_layer: num("n_layer"),
    n_positions: num("n_positions"),
    n_inner: num("n_inner", 4 * num("n_embd")),
    vocab_size: num("vocab_size"),
    layer_norm_epsilon: num("layer_norm_epsilon", 1e-5),
    activation_function: String(c.activation_function ?? "gelu_new"),
    add_cross_attention: c.add_cross_attention === true,
    scale_attn_weights: c.scale_attn_weights !== false,
    scale_attn_by_inverse_layer_idx: c.scale_attn_by_inverse_layer_idx === true,
    tie_word_embeddings: c.tie_word_embeddings !== false,
  };
  if (!cfg.n_head || cfg.n_embd % cfg.n_head) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: n_embd ${cfg.n_embd} is not divisible by n_head ${cfg.n_head}`,
    );
  }
  return cfg;
}

interface Conv1D {
  w: Tensor; // [in, out]
  b: Tensor; // [out]
}

interface Gpt2Layer {
  ln1: [Tensor, Tensor];
  attn: Conv1D; // [h, 3h]
  attnProj: Conv1D;
  cross?: { ln: [Tensor, Tensor]; q: Conv1D; kv: Conv1D; proj: Conv1D };
  ln2: [Tensor, Tensor];
  fc: Conv1D;
  proj: Conv1D;
}

/** GPT-2 weights on the GPU. */
export interface Gpt2Weights {
  config: Gpt2Config;
  act: Activation;
  wte: Tensor; // [vocab, h]
  lmHead: Tensor; // [vocab, h] (out×in): wte itself when tied
  wpe: Tensor; // [positions, h]
  layers: Gpt2Layer[];
  lnF: [Tensor, Tensor];
}

async function conv1d(p: ParamLoader, name: string, inp: number, out: number): Promise<Conv1D> {
  return { w: await p.matrix(`${name}.weight`, [inp, out]), b: await p.f32(`${name}.bias`, [out]) };
}

async function norm(p: ParamLoader, name: string, d: number): Promise<[Tensor, Tensor]> {
  return [await p.f32(`${name}.weight`, [d]), await p.f32(`${name}.bias`, [d])];
}

/**
 * Load GPT-2 weights under `prefix` (e.g. `decoder.transformer.`); `headName` is the stored LM
 * head read when the config unties it from `wte` (e.g. `decoder.lm_head.weight`).
 */
export async function loadGpt2(
  p: ParamLoader,
  cfg: Gpt2Config,
  prefix: string,
  where: string,
  headName?: string,
): Promise<Gpt2Weights> {
  const h = cfg.n_embd;
  const layers: Gpt2Layer[] = [];
  for (let i = 0; i < cfg.n_layer; i++) {
    const l = `${prefix}h.${i}.`;
    layers.push({
      ln1: await norm(p, `${l}ln_1`, h),
      attn: await conv1d(p, `${l}attn.c_attn`, h, 3 * h),
      attnProj: await conv1d(p, `${l}attn.c_proj`, h, h),
      cross: cfg.add_cross_attention
        ? {
          ln: await norm(p, `${l}ln_cross_attn`, h),
          q: await conv1d(p, `${l}crossattention.q_attn`, h, h),
          kv: await conv1d(p, `${l}crossattention.c_attn`, h, 2 * h),
          proj: await conv1d(p, `${l}crossattention.c_proj`, h, h),
        }
        : undefined,
      ln2: await norm(p, `${l}ln_2`, h),
      fc: await conv1d(p, `${l}mlp.c_fc`, h, cfg.n_inner),
      proj: await conv1d(p, `${l}mlp.c_proj`, cfg.n_inner, h),
    });
  }
  const wte = await p.matrix(`${prefix}wte.weight`, [cfg.vocab_size, h]);
  return {
    config: cfg,
    act: activationFromConfig(cfg.activation_function, where),
    wte,
    lmHead: cfg.tie_word_embeddings || !headName
      ? wte
      : await p.matrix(headName, [cfg.vocab_size, h]),
    wpe: await p.f32(`${prefix}wpe.weight`, [cfg.n_positions, h]),
    layers,
    lnF: await norm(p, `${prefix}ln_f`, h),
  };
}

/** Caches of one decoding. */
export interface Gpt2State {
  rows: number;
  maxLength: number;
  length: number;
  /** Per layer `[rows, maxLength, 2h]`: keys then values of each position. */
  kv: Tensor[];
  /** Per layer cross keys/values `[images·encSeq, 2h]`, computed once. */
  cross: Tensor[];
  encSeq: number;
  rowImage: Int32Array;
  rowImageGpu: Tensor; // i32 [rows]
}

/** Encoder states `[images·seq, h]` for the cross-attention, checked against `rowImage`. */
function crossInput(
  c: Gpt2Config,
  enc: Tensor | undefined,
  rowImage: Int32Array,
): { flat?: Tensor; encSeq: number } {
  if (!c.add_cross_attention) return { encSeq: 0 };
  if (!enc) {
    throw new WebcapError("BAD_OPTION", "this GPT-2 has cross-attention and needs encoder states");
  }
  const [images, seq, eh] = enc.shape;
  if (eh !== c.n_embd) {
    throw new WebcapError(
      "BAD_SHAPE",
      `encoder hidden ${eh} differs from decoder n_embd ${c.n_embd}`,
    );
  }
  if (rowImage.some((i) => !(i >= 0 && i < images))) {
    throw new WebcapError("BAD_OPTION", `rowImage must index the ${images} encoded images`);
  }
  return { flat: enc.view([images * seq, eh]), encSeq: seq };
}

/** Allocate caches for `rowImage.length` rows and compute cross keys/values of `enc [images, seq, h]`. */
export function gpt2BeginDecode(
  rec: Recorder,
  w: Gpt2Weights,
  enc: Tensor | undefined,
  rowImage: Int32Array,
  maxLength: number,
): Gpt2State {
  const c = w.config, h = c.n_embd;
  if (maxLength > c.n_positions) {
    throw new WebcapError(
      "BAD_OPTION",
      `max length ${maxLength} exceeds the decoder's n_positions ${c.n_positions}`,
    );
  }
  const { flat, encSeq } = crossInput(c, enc, rowImage); // checked before anything is allocated
  const rows = rowImage.length;
  const kv = w.layers.map((_, i) =>
    ownedTensor(rec.gpu, [rows, maxLength, 2 * h], "f32", `kv-cache-${i}`)
  );
  const cross = flat
    ? w.layers.map((l) => matmul(rec, flat, l.cross!.kv.w, { bias: l.cross!.kv.b }))
    : [];
  return {
    rows,
    maxLength,
    length: 0,
    kv,
    cross,
    encSeq,
    rowImage: rowImage.slice(),
    rowImageGpu: uploadTensor(rec.gpu, rowImage, [rows], "i32", "row-image"),
  };
}

/** Inputs of one forward: token ids `[rows·S]` (i32) or input embeddings `[rows·S, h]`. */
export type Gpt2Input = { ids: Tensor } | { embeds: Tensor };

/**
 * Causal self-attention of `qkv [R·S, 3h]` (q, k, v per position) over layer `i`'s cache, after
 * appending this step's keys and values at position `st.length`. Returns `[R·S, h]`.
 */
export function cachedSelfAttention(
  rec: Recorder,
  st: Gpt2State,
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
  st: Gpt2State,
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

/**
 * Run S positions per row through the decoder, appending them to the caches.
 * Returns logits `[rows·S, vocab]`. `crossProbs[layer]` (optional, `[rows, H, S, encSeq]`)
 * receives cross-attention probabilities.
 */
export function gpt2Forward(
  rec: Recorder,
  w: Gpt2Weights,
  st: Gpt2State,
  input: Gpt2Input,
  S: number,
  crossProbs?: Tensor[],
): Tensor {
  const c = w.config, h = c.n_embd, H = c.n_head, D = h / H, R = st.rows;
  if (st.length + S > st.maxLength) {
    throw new WebcapError(
      "BAD_OPTION",
      `decoder cache holds ${st.maxLength} positions; ${st.length + S} requested`,
    );
  }
  const pos = { table: w.wpe, start: st.length, period: S };
  let x: Tensor;
  if ("ids" in input) {
    x = embedding(rec, w.wte, input.ids, { pos });
  } else {
    const ids = uploadTensor(
      rec.gpu,
      Int32Array.from({ length: R * S }, (_, i) => i),
      [R * S],
      "i32",
      "row-ids",
    );
    x = embedding(rec, input.embeds.view([R * S, h]), ids, { pos });
    rec.releaseAfterSubmit(ids);
  }
  w.layers.forEach((l, i) => {
    // transformers' GPT2Attention: both the self- and the cross-attention of block i divide by
    // i + 1 under scale_attn_by_inverse_layer_idx
    let scale = c.scale_attn_weights ? 1 / Math.sqrt(D) : 1;
    if (c.scale_attn_by_inverse_layer_idx) scale /= i + 1;
    const n1 = layerNorm(rec, x, l.ln1[0], l.ln1[1], c.layer_norm_epsilon);
    const qkv = matmul(rec, n1, l.attn.w, { bias: l.attn.b }); // [R·S, 3h]
    const a = cachedSelfAttention(rec, st, i, qkv, S, H, scale);
    let x1 = matmul(rec, a, l.attnProj.w, { bias: l.attnProj.b, residual: x });
    rec.releaseAfterSubmit(n1, qkv, a, x);
    if (l.cross) {
      const nc = layerNorm(rec, x1, l.cross.ln[0], l.cross.ln[1], c.layer_norm_epsilon);
      const q = matmul(rec, nc, l.cross.q.w, { bias: l.cross.q.b });
      const ca = imageCrossAttention(rec, st, i, q, S, H, scale, crossProbs?.[i]);
      const x2 = matmul(rec, ca, l.cross.proj.w, { bias: l.cross.proj.b, residual: x1 });
      rec.releaseAfterSubmit(nc, q, ca, x1);
      x1 = x2;
    }
    const n2 = layerNorm(rec, x1, l.ln2[0], l.ln2[1], c.layer_norm_epsilon);
    const f = matmul(rec, n2, l.fc.w, { bias: l.fc.b, act: w.act });
    x = matmul(rec, f, l.proj.w, { bias: l.proj.b, residual: x1 });
    rec.releaseAfterSubmit(n2, f, x1);
  });
  const nf = layerNorm(rec, x, w.lnF[0], w.lnF[1], c.layer_norm_epsilon);
  const logits = matmul(rec, nf, w.lmHead, { transposeW: true });
  rec.releaseAfterSubmit(x, nf);
  st.length += S;
  return logits;
}

/** Row i continues row `parents[i]`: caches gathered into fresh buffers, row→image remapped. */
export function gpt2Reorder(rec: Recorder, st: Gpt2State, parents: Int32Array): void {
  if (parents.some((p) => p < 0 || p >= st.rows)) {
    throw new WebcapError("BAD_OPTION", `reorder: parents must index the ${st.rows} current rows`);
  }
  const ids = uploadTensor(rec.gpu, parents, [parents.length], "i32", "parents");
  const R = parents.length;
  st.kv = st.kv.map((cache, i) => {
    const width = cache.size / st.rows;
    const next = ownedTensor(rec.gpu, [R, st.maxLength, cache.shape[2]], "f32", `kv-cache-${i}`);
    embedding(rec, cache.view([st.rows, width]), ids, { out: next.view([R, width]) });
    rec.releaseAfterSubmit(cache);
    return next;
  });
  rec.releaseAfterSubmit(ids, st.rowImageGpu);
  st.rowImage = Int32Array.from(parents, (p) => st.rowImage[p]);
  st.rowImageGpu = uploadTensor(rec.gpu, st.rowImage, [R], "i32", "row-image");
  st.rows = R;
}

/** Free a decoding's caches. */
export function gpt2DisposeState(st: Gpt2State): void {
  for (const t of [...st.kv, ...st.cross, st.rowImageGpu]) if (t.alive) t.release();
  st.kv = [];
  st.cross = [];
}
