/**
 * BERT-style text decoder with cross-attention (HF `BlipTextLMHeadModel`, the layout of
 * `BertLMHeadModel` with `is_decoder`): word + position embeddings followed by a LayerNorm,
 * post-LN layers (causal self-attention with a key/value cache, cross-attention over encoder
 * states, GELU feed-forward), and the LM head `cls.predictions` (dense + act + LayerNorm, then
 * the decoder matrix, tied to the word embeddings when the checkpoint leaves it out, + bias).
 * Linear weights are out×in. The caches have the GPT-2 decoder's layout, so beginning a
 * decoding, reordering and freeing share {@link Gpt2State} and its functions.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { ownedTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { type Activation, activationFromConfig } from "../shaders/activations.ts";
import { embedding } from "../shaders/embedding.ts";
import { layerNorm } from "../shaders/layernorm.ts";
import { matmul } from "../shaders/matmul.ts";
import { cachedSelfAttention, type Gpt2State, imageCrossAttention } from "./gpt2.ts";
import type { ParamLoader } from "./params.ts";
import { configNumber } from "./config.ts";

/** The fields of an HF BERT / BLIP text config that the decoder uses. */
export interface BertDecoderConfig {
  hidden_size: number;
  num_attention_heads: number;
  num_hidden_layers: number;
  intermediate_size: number;
  vocab_size: number;
  max_position_embeddings: number;
  /** Width of the encoder states the cross-attention reads. */
  encoder_hidden_size: number;
  layer_norm_eps: number;
  hidden_act: string;
}

/** Read and check a BERT decoder config; `defaults` fill absent keys (the HF class defaults). */
export function bertDecoderConfig(
  c: Record<string, unknown>,
  where: string,
  defaults: Record<string, number | string> = {},
): BertDecoderConfig {
  const num = (k: string, fallback?: number): number =>
    configNumber(c, k, where, (defaults[k] as number | undefined) ?? fallback);
  const h = num("hidden_size");
  const cfg: BertDecoderConfig = {
    hidden_size: h,
    num_attention_heads: num("num_attention_heads"),
    num_hidden_layers: num("num_hidden_layers"),
    intermediate_size: num("intermediate_size"),
    vocab_size: num("vocab_size"),
    max_position_embeddings: num("max_position_embeddings"),
    encoder_hidden_size: num("encoder_hidden_size", h),
    layer_norm_eps: num("layer_norm_eps"),
    hidden_act: String(c.hidden_act ?? defaults.hidden_act ?? "gelu"),
  };
  if (!cfg.num_attention_heads || cfg.hidden_size % cfg.num_attention_heads) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: hidden_size ${cfg.hidden_size} is not divisible by num_attention_heads ${cfg.num_attention_heads}`,
    );
  }
  return cfg;
}

interface Linear {
  w: Tensor; // [out, in]
  b: Tensor; // [out]
}

interface BertLayer {
  qkv: Linear; // [3h, h]: query, key, value stacked
  attnOut: Linear;
  attnLn: [Tensor, Tensor];
  crossQ: Linear;
  crossKv: Linear; // [2h, encHidden]: key, value stacked
  crossOut: Linear;
  crossLn: [Tensor, Tensor];
  inter: Linear; // [intermediate, h]
  out: Linear; // [h, intermediate]
  outLn: [Tensor, Tensor];
}

/** BERT decoder weights on the GPU. */
export interface BertDecoderWeights {
  config: BertDecoderConfig;
  act: Activation;
  wordEmb: Tensor; // [vocab, h]
  posEmb: Tensor; // [positions, h]
  embLn: [Tensor, Tensor];
  layers: BertLayer[];
  head: { transform: Linear; ln: [Tensor, Tensor]; decoder: Tensor; bias: Tensor }; // decoder [vocab, h]
}

async function linear(p: ParamLoader, name: string, out: number, inp: number): Promise<Linear> {
  return { w: await p.matrix(`${name}.weight`, [out, inp]), b: await p.f32(`${name}.bias`, [out]) };
}

async function stackedLinear(
  p: ParamLoader,
  names: string[],
  out: number,
  inp: number,
): Promise<Linear> {
  return {
    w: await p.stacked(names.map((n) => `${n}.weight`), [out, inp], true),
    b: await p.stacked(names.map((n) => `${n}.bias`), [out], false),
  };
}

async function norm(p: ParamLoader, name: string, d: number): Promise<[Tensor, Tensor]> {
  return [await p.f32(`${name}.weight`, [d]), await p.f32(`${name}.bias`, [d])];
}

async function loadLayer(p: ParamLoader, cfg: BertDecoderConfig, l: string): Promise<BertLayer> {
  const h = cfg.hidden_size, e = cfg.encoder_hidden_size, inter = cfg.intermediate_size;
  const self = `${l}attention.self.`, cross = `${l}crossattention.self.`;
  return {
    qkv: await stackedLinear(p, ["query", "key", "value"].map((n) => self + n), h, h),
    attnOut: await linear(p, `${l}attention.output.dense`, h, h),
    attnLn: await norm(p, `${l}attention.output.LayerNorm`, h),
    crossQ: await linear(p, `${cross}query`, h, h),
    crossKv: await stackedLinear(p, [`${cross}key`, `${cross}value`], h, e),
    crossOut: await linear(p, `${l}crossattention.output.dense`, h, h),
    crossLn: await norm(p, `${l}crossattention.output.LayerNorm`, h),
    inter: await linear(p, `${l}intermediate.dense`, inter, h),
    out: await linear(p, `${l}output.dense`, h, inter),
    outLn: await norm(p, `${l}output.LayerNorm`, h),
  };
}

/**
 * Load a BERT decoder under `prefix` (e.g. `text_decoder.`: `bert.embeddings.*`,
 * `bert.encoder.layer.N.*`, `cls.predictions.*`). The LM head matrix
 * `cls.predictions.decoder.weight` is used when stored, else the word embeddings (tied);
 * its bias is `cls.predictions.bias` (or `cls.predictions.decoder.bias`).
 */
export async function loadBertDecoder(
  p: ParamLoader,
  cfg: BertDecoderConfig,
  prefix: string,
  where: string,
): Promise<BertDecoderWeights> {
  const h = cfg.hidden_size, V = cfg.vocab_size;
  const bert = `${prefix}bert.`, pred = `${prefix}cls.predictions.`;
  const wordEmb = await p.matrix(`${bert}embeddings.word_embeddings.weight`, [V, h]);
  const posEmb = await p.f32(`${bert}embeddings.position_embeddings.weight`, [
    cfg.max_position_embeddings,
    h,
  ]);
  const embLn = await norm(p, `${bert}embeddings.LayerNorm`, h);
  const layers: BertLayer[] = [];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    layers.push(await loadLayer(p, cfg, `${bert}encoder.layer.${i}.`));
  }
  const has = (n: string) => p.store.has(n);
  const decoderName = `${pred}decoder.weight`;
  const biasName = has(`${pred}bias`) || !has(`${pred}decoder.bias`)
    ? `${pred}bias`
    : `${pred}decoder.bias`;
  return {
    config: cfg,
    act: activationFromConfig(cfg.hidden_act, where),
    wordEmb,
    posEmb,
    embLn,
    layers,
    head: {
      transform: await linear(p, `${pred}transform.dense`, h, h),
      ln: await norm(p, `${pred}transform.LayerNorm`, h),
      decoder: has(decoderName) ? await p.matrix(decoderName, [V, h]) : wordEmb,
      bias: await p.f32(biasName, [V]),
    },
  };
}

/** Allocate caches for `rowImage.length` rows and compute cross keys/values of `enc [images, seq, encHidden]`. */
export function bertBeginDecode(
  rec: Recorder,
  w: BertDecoderWeights,
  enc: Tensor,
  rowImage: Int32Array,
  maxLength: number,
): Gpt2State {
  const c = w.config, h = c.hidden_size;
  if (maxLength > c.max_position_embeddings) {
    throw new WebcapError(
      "BAD_OPTION",
      `max length ${maxLength} exceeds the decoder's max_position_embeddings ${c.max_position_embeddings}`,
    );
  }
  const [images, seq, eh] = enc.shape;
  if (eh !== c.encoder_hidden_size) {
    throw new WebcapError(
      "BAD_SHAPE",
      `encoder hidden ${eh} differs from the decoder's encoder_hidden_size ${c.encoder_hidden_size}`,
    );
  }
  if (rowImage.some((i) => i < 0 || i >= images)) {
    throw new WebcapError("BAD_OPTION", `rowImage must index the ${images} encoded images`);
  }
  const rows = rowImage.length;
  const flat = enc.view([images * seq, eh]);
  return {
    rows,
    maxLength,
    length: 0,
    kv: w.layers.map((_, i) =>
      ownedTensor(rec.gpu, [rows, maxLength, 2 * h], "f32", `kv-cache-${i}`)
    ),
    // [images·seq, 2h]: keys then values of each encoder position
    cross: w.layers.map((l) =>
      matmul(rec, flat, l.crossKv.w, { transposeW: true, bias: l.crossKv.b })
    ),
    encSeq: seq,
    rowImage: rowImage.slice(),
    rowImageGpu: uploadTensor(rec.gpu, rowImage, [rows], "i32", "row-image"),
  };
}

/** One post-LN layer over `x [R·S, h]`; returns the new hidden states. */
function bertLayer(
  rec: Recorder,
  w: BertDecoderWeights,
  st: Gpt2State,
  i: number,
  x: Tensor,
  S: number,
  probs?: Tensor,
): Tensor {
  const l = w.layers[i], eps = w.config.layer_norm_eps;
  const qkv = matmul(rec, x, l.qkv.w, { transposeW: true, bias: l.qkv.b }); // [R·S, 3h]
  const H = w.config.num_attention_heads, scale = 1 / Math.sqrt(w.config.hidden_size / H);
  const a = cachedSelfAttention(rec, st, i, qkv, S, H, scale);
  const r1 = matmul(rec, a, l.attnOut.w, { transposeW: true, bias: l.attnOut.b, residual: x });
  const x1 = layerNorm(rec, r1, l.attnLn[0], l.attnLn[1], eps);
  const q = matmul(rec, x1, l.crossQ.w, { transposeW: true, bias: l.crossQ.b });
  const ca = imageCrossAttention(rec, st, i, q, S, H, scale, probs);
  const r2 = matmul(rec, ca, l.crossOut.w, { transposeW: true, bias: l.crossOut.b, residual: x1 });
  const x2 = layerNorm(rec, r2, l.crossLn[0], l.crossLn[1], eps);
  const f = matmul(rec, x2, l.inter.w, { transposeW: true, bias: l.inter.b, act: w.act });
  const r3 = matmul(rec, f, l.out.w, { transposeW: true, bias: l.out.b, residual: x2 });
  const out = layerNorm(rec, r3, l.outLn[0], l.outLn[1], eps);
  rec.releaseAfterSubmit(qkv, a, r1, x1, q, ca, r2, x2, f, r3);
  return out;
}

/**
 * Run S tokens per row (`ids [rows·S]`, i32) through the decoder at positions
 * `length .. length+S-1`, appending them to the caches. Returns logits `[rows·S, vocab]`.
 * `crossProbs[layer]` (optional, `[rows, H, S, encSeq]`) receives cross-attention probabilities.
 */
export function bertForward(
  rec: Recorder,
  w: BertDecoderWeights,
  st: Gpt2State,
  ids: Tensor,
  S: number,
  crossProbs?: Tensor[],
): Tensor {
  const c = w.config, eps = c.layer_norm_eps;
  if (st.length + S > st.maxLength) {
    throw new WebcapError(
      "BAD_OPTION",
      `decoder cache holds ${st.maxLength} positions; ${st.length + S} requested`,
    );
  }
  if (ids.size !== st.rows * S) {
    throw new WebcapError(
      "BAD_SHAPE",
      `step: ${ids.size} token ids for ${st.rows} rows × ${S} tokens`,
    );
  }
  const e = embedding(rec, w.wordEmb, ids, {
    pos: { table: w.posEmb, start: st.length, period: S },
  });
  let x = layerNorm(rec, e, w.embLn[0], w.embLn[1], eps); // [R·S, h]
  rec.releaseAfterSubmit(e);
  for (let i = 0; i < w.layers.length; i++) {
    const next = bertLayer(rec, w, st, i, x, S, crossProbs?.[i]);
    rec.releaseAfterSubmit(x);
    x = next;
  }
  const hd = w.head;
  const t = matmul(rec, x, hd.transform.w, { transposeW: true, bias: hd.transform.b, act: w.act });
  const n = layerNorm(rec, t, hd.ln[0], hd.ln[1], eps);
  const logits = matmul(rec, n, hd.decoder, { transposeW: true, bias: hd.bias });
  rec.releaseAfterSubmit(x, t, n);
  st.length += S;
  return logits;
}
