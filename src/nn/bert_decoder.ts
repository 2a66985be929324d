/**
 * BERT-style text decoder with cross-attention (HF `BlipTextLMHeadModel`, the layout of
 * `BertLMHeadModel` with `is_decoder`): word + position embeddings followed by a LayerNorm,
 * post-LN layers (causal self-attention with a key/value cache, cross-attention over encoder
 * states, GELU feed-forward), and the LM head `cls.predictions` (dense + act + LayerNorm, then
 * the decoder matrix, tied to the word embeddings when the checkpoint leaves it out, + bias).
 * Linear weights are out×in. The caches are the {@link kv.KvCache} GPT-2 uses too.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type Activation, activationFromConfig } from "../shaders/activations.ts";
import { embedding } from "../shaders/embedding.ts";
import { matmul } from "../shaders/matmul.ts";
import type { Weight } from "../shaders/quant/qmatrix.ts";
import { configCount, configNumber, configRate } from "./config.ts";
import * as kv from "./kv_cache.ts";
import type { LayerNorm, Linear, Module } from "./modules.ts";
import { linear, loadLayerNorm, loadLinear, loadStackedLinear, norm } from "./modules.ts";
import type { ParamLoader } from "./params.ts";

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
  /** Dropout (training only) of the embeddings and each block's three projections (BLIP default 0). */
  hidden_dropout_prob: number;
  /** Dropout (training only) of the attention probabilities (BLIP default 0). */
  attention_probs_dropout_prob: number;
}

/** Read and check a BERT decoder config; `defaults` fill absent keys (the HF class defaults). */
export function bertDecoderConfig(
  c: Record<string, unknown>,
  where: string,
  defaults: Record<string, number | string> = {},
): BertDecoderConfig {
  const fallback = (k: string, d?: number) => (defaults[k] as number | undefined) ?? d;
  const count = (k: string, d?: number): number => configCount(c, k, where, fallback(k, d));
  const h = count("hidden_size");
  const cfg: BertDecoderConfig = {
    hidden_size: h,
    num_attention_heads: count("num_attention_heads"),
    num_hidden_layers: count("num_hidden_layers"),
    intermediate_size: count("intermediate_size"),
    vocab_size: count("vocab_size"),
    max_position_embeddings: count("max_position_embeddings"),
    encoder_hidden_size: count("encoder_hidden_size", h),
    layer_norm_eps: configNumber(c, "layer_norm_eps", where, fallback("layer_norm_eps")),
    hidden_act: String(c.hidden_act ?? defaults.hidden_act ?? "gelu"),
    hidden_dropout_prob: configRate(
      c,
      "hidden_dropout_prob",
      where,
      fallback("hidden_dropout_prob", 0)!,
    ),
    attention_probs_dropout_prob: configRate(
      c,
      "attention_probs_dropout_prob",
      where,
      fallback("attention_probs_dropout_prob", 0)!,
    ),
  };
  if (!cfg.num_attention_heads || cfg.hidden_size % cfg.num_attention_heads) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: hidden_size ${cfg.hidden_size} is not divisible by num_attention_heads ${cfg.num_attention_heads}`,
    );
  }
  return cfg;
}

interface BertLayer {
  qkv: Linear; // [3h, h]: query, key, value stacked
  attnOut: Linear;
  attnLn: LayerNorm;
  crossQ: Linear;
  crossKv: Linear; // [2h, encHidden]: key, value stacked
  crossOut: Linear;
  crossLn: LayerNorm;
  inter: Linear; // [intermediate, h]
  out: Linear; // [h, intermediate]
  outLn: LayerNorm;
}

/** BERT decoder weights on the GPU. */
export interface BertDecoderWeights extends Module {
  config: BertDecoderConfig;
  act: Activation;
  wordEmb: Weight; // [vocab, h]
  posEmb: Tensor; // [positions, h]
  embLn: LayerNorm;
  layers: BertLayer[];
  head: { transform: Linear; ln: LayerNorm; decoder: Weight; bias: Tensor }; // decoder [vocab, h]
}

async function loadLayer(p: ParamLoader, cfg: BertDecoderConfig, l: string): Promise<BertLayer> {
  const h = cfg.hidden_size, e = cfg.encoder_hidden_size, inter = cfg.intermediate_size;
  const eps = cfg.layer_norm_eps;
  const self = `${l}attention.self.`, cross = `${l}crossattention.self.`;
  return {
    qkv: await loadStackedLinear(p, ["query", "key", "value"].map((n) => self + n), h, h),
    attnOut: await loadLinear(p, `${l}attention.output.dense`, h, h),
    attnLn: await loadLayerNorm(p, `${l}attention.output.LayerNorm`, h, eps),
    crossQ: await loadLinear(p, `${cross}query`, h, h),
    crossKv: await loadStackedLinear(p, [`${cross}key`, `${cross}value`], h, e),
    crossOut: await loadLinear(p, `${l}crossattention.output.dense`, h, h),
    crossLn: await loadLayerNorm(p, `${l}crossattention.output.LayerNorm`, h, eps),
    inter: await loadLinear(p, `${l}intermediate.dense`, inter, h),
    out: await loadLinear(p, `${l}output.dense`, h, inter),
    outLn: await loadLayerNorm(p, `${l}output.LayerNorm`, h, eps),
  };
}

/**
 * Load a BERT decoder under `prefix` (e.g. `text_decoder.`: `bert.embeddings.*`,
 * `bert.encoder.layer.N.*`, `cls.predictions.*`). The LM head matrix
 * `cls.predictions.decoder.weight` is used when stored, else the word embeddings (tied, listed
 * once); its bias is `cls.predictions.bias` (or `cls.predictions.decoder.bias`).
 */
export function loadBertDecoder(
  p: ParamLoader,
  cfg: BertDecoderConfig,
  prefix: string,
  where: string,
): Promise<BertDecoderWeights> {
  const h = cfg.hidden_size, V = cfg.vocab_size, eps = cfg.layer_norm_eps;
  const bert = `${prefix}bert.`, pred = `${prefix}cls.predictions.`;
  const has = (n: string) => p.store.has(n);
  const decoderName = `${pred}decoder.weight`;
  const biasName = has(`${pred}bias`) || !has(`${pred}decoder.bias`)
    ? `${pred}bias`
    : `${pred}decoder.bias`;
  return p.owning(async () => {
    const wordEmb = await p.weight(`${bert}embeddings.word_embeddings.weight`, [V, h]);
    const posEmb = await p.f32(`${bert}embeddings.position_embeddings.weight`, [
      cfg.max_position_embeddings,
      h,
    ]);
    const embLn = await loadLayerNorm(p, `${bert}embeddings.LayerNorm`, h, eps);
    const layers: BertLayer[] = [];
    for (let i = 0; i < cfg.num_hidden_layers; i++) {
      layers.push(await loadLayer(p, cfg, `${bert}encoder.layer.${i}.`));
    }
    return {
      config: cfg,
      act: activationFromConfig(cfg.hidden_act, where),
      wordEmb,
      posEmb,
      embLn,
      layers,
      head: {
        transform: await loadLinear(p, `${pred}transform.dense`, h, h),
        ln: await loadLayerNorm(p, `${pred}transform.LayerNorm`, h, eps),
        decoder: has(decoderName) ? await p.weight(decoderName, [V, h]) : wordEmb,
        bias: await p.f32(biasName, [V]),
      },
    };
  });
}

/** Allocate caches for `rowImage.length` rows and compute cross keys/values of `enc [images, seq, encHidden]`. */
export function bertBeginDecode(
  rec: Recorder,
  w: BertDecoderWeights,
  enc: Tensor,
  rowImage: Int32Array,
  maxLength: number,
): kv.KvCache {
  const c = w.config;
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
  kv.checkRowImage(rowImage, images);
  const flat = enc.view([images * seq, eh]);
  // [images·seq, 2h]: keys then values of each encoder position
  const crossKv = w.layers.map((l) => linear(rec, flat, l.crossKv));
  const shape = { layers: w.layers.length, hidden: c.hidden_size, maxLength };
  return kv.beginKvCache(rec, shape, rowImage, { kv: crossKv, encSeq: seq });
}

/** One post-LN layer over `x [R·S, h]` (in bertForward's scope); returns the new hidden states. */
function bertLayer(
  rec: Recorder,
  w: BertDecoderWeights,
  st: kv.KvCache,
  i: number,
  x: Tensor,
  S: number,
  probs?: Tensor,
): Tensor {
  const l = w.layers[i];
  const H = w.config.num_attention_heads, scale = 1 / Math.sqrt(w.config.hidden_size / H);
  const a = kv.selfAttention(rec, st, i, x, { proj: l.qkv }, S, H, scale);
  const r1 = linear(rec, a, l.attnOut, { residual: x });
  const x1 = norm(rec, r1, l.attnLn);
  const ca = kv.crossAttention(rec, st, i, x1, { proj: l.crossQ }, S, H, scale, probs);
  const r2 = linear(rec, ca, l.crossOut, { residual: x1 });
  const x2 = norm(rec, r2, l.crossLn);
  const f = linear(rec, x2, l.inter, { act: w.act });
  const r3 = linear(rec, f, l.out, { residual: x2 });
  return norm(rec, r3, l.outLn);
}

/**
 * Run S tokens per row (`ids [rows·S]`, i32) through the decoder at positions
 * `length .. length+S-1`, appending them to the caches. Returns logits `[rows·S, vocab]`.
 * `crossProbs[layer]` (optional, `[rows, H, S, encSeq]`) receives cross-attention probabilities.
 */
export function bertForward(
  rec: Recorder,
  w: BertDecoderWeights,
  st: kv.KvCache,
  ids: Tensor,
  S: number,
  crossProbs?: Tensor[],
): Tensor {
  kv.checkRoom(st, S);
  if (ids.size !== st.rows * S) {
    throw new WebcapError(
      "BAD_SHAPE",
      `step: ${ids.size} token ids for ${st.rows} rows × ${S} tokens`,
    );
  }
  const logits = rec.scope(() => {
    const e = embedding(rec, w.wordEmb, ids, {
      pos: { table: w.posEmb, start: st.length, period: S },
    });
    let x = norm(rec, e, w.embLn); // [R·S, h]
    for (let i = 0; i < w.layers.length; i++) x = bertLayer(rec, w, st, i, x, S, crossProbs?.[i]);
    const hd = w.head;
    const t = linear(rec, x, hd.transform, { act: w.act });
    const n = norm(rec, t, hd.ln);
    return matmul(rec, n, hd.decoder, { transposeW: true, bias: hd.bias });
  });
  st.length += S;
  return logits;
}
