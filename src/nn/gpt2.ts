/**
 * GPT-2 decoder (HF `GPT2LMHeadModel` layout) over a {@link kv.KvCache}, optional
 * cross-attention over encoder states (keys/values computed once per image, shared by that
 * image's rows through an index), and the LM head tied to `wte` (or a stored `lm_head` when
 * the config unties them). Conv1D weights are in×out.
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
import { linear, loadLayerNorm, loadLinear } from "./modules.ts";
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
  /** Dropout (training only) after each block's attention and MLP projections (HF default 0.1). */
  resid_pdrop: number;
  /** Dropout (training only) of the input embeddings (HF default 0.1). */
  embd_pdrop: number;
  /** Dropout (training only) of the attention probabilities (HF default 0.1). */
  attn_pdrop: number;
}

/** Read and check a GPT-2 config object. */
export function gpt2Config(c: Record<string, unknown>, where: string): Gpt2Config {
  const count = (k: string, d?: number): number => configCount(c, k, where, d);
  const cfg: Gpt2Config = {
    n_embd: count("n_embd"),
    n_head: count("n_head"),
    n_layer: count("n_layer"),
    n_positions: count("n_positions"),
    n_inner: count("n_inner", 4 * count("n_embd")),
    vocab_size: count("vocab_size"),
    layer_norm_epsilon: configNumber(c, "layer_norm_epsilon", where, 1e-5),
    activation_function: String(c.activation_function ?? "gelu_new"),
    add_cross_attention: c.add_cross_attention === true,
    scale_attn_weights: c.scale_attn_weights !== false,
    scale_attn_by_inverse_layer_idx: c.scale_attn_by_inverse_layer_idx === true,
    tie_word_embeddings: c.tie_word_embeddings !== false,
    resid_pdrop: configRate(c, "resid_pdrop", where, 0.1),
    embd_pdrop: configRate(c, "embd_pdrop", where, 0.1),
    attn_pdrop: configRate(c, "attn_pdrop", where, 0.1),
  };
  if (!cfg.n_head || cfg.n_embd % cfg.n_head) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: n_embd ${cfg.n_embd} is not divisible by n_head ${cfg.n_head}`,
    );
  }
  return cfg;
}

interface Gpt2Layer {
  ln1: LayerNorm;
  attn: Linear; // Conv1D [h, 3h]
  attnProj: Linear;
  cross?: { ln: LayerNorm; q: Linear; kv: Linear; proj: Linear };
  ln2: LayerNorm;
  fc: Linear;
  proj: Linear;
}

/** GPT-2 weights on the GPU. */
export interface Gpt2Weights extends Module {
  config: Gpt2Config;
  act: Activation;
  wte: Weight; // [vocab, h]
  lmHead: Weight; // [vocab, h] (out×in): wte itself when tied
  wpe: Tensor; // [positions, h]
  layers: Gpt2Layer[];
  lnF: LayerNorm;
}

async function loadLayer(p: ParamLoader, cfg: Gpt2Config, l: string): Promise<Gpt2Layer> {
  const h = cfg.n_embd, eps = cfg.layer_norm_epsilon;
  const conv1d = (name: string, inp: number, out: number) =>
    loadLinear(p, l + name, out, inp, { inOut: true });
  return {
    ln1: await loadLayerNorm(p, `${l}ln_1`, h, eps),
    attn: await conv1d("attn.c_attn", h, 3 * h),
    attnProj: await conv1d("attn.c_proj", h, h),
    cross: cfg.add_cross_attention
      ? {
        ln: await loadLayerNorm(p, `${l}ln_cross_attn`, h, eps),
        q: await conv1d("crossattention.q_attn", h, h),
        kv: await conv1d("crossattention.c_attn", h, 2 * h),
        proj: await conv1d("crossattention.c_proj", h, h),
      }
      : undefined,
    ln2: await loadLayerNorm(p, `${l}ln_2`, h, eps),
    fc: await conv1d("mlp.c_fc", h, cfg.n_inner),
    proj: await conv1d("mlp.c_proj", cfg.n_inner, h),
  };
}

/**
 * Load GPT-2 weights under `prefix` (e.g. `decoder.transformer.`); `headName` is the stored LM
 * head read when the config unties it from `wte` (e.g. `decoder.lm_head.weight`). Tied, the
 * head is `wte` and its parameter is listed once, as `wte`.
 */
export function loadGpt2(
  p: ParamLoader,
  cfg: Gpt2Config,
  prefix: string,
  where: string,
  headName?: string,
): Promise<Gpt2Weights> {
  const h = cfg.n_embd;
  return p.owning(async () => {
    const layers: Gpt2Layer[] = [];
    for (let i = 0; i < cfg.n_layer; i++) layers.push(await loadLayer(p, cfg, `${prefix}h.${i}.`));
    const wte = await p.weight(`${prefix}wte.weight`, [cfg.vocab_size, h]);
    return {
      config: cfg,
      act: activationFromConfig(cfg.activation_function, where),
      wte,
      lmHead: cfg.tie_word_embeddings || !headName
        ? wte
        : await p.weight(headName, [cfg.vocab_size, h]),
      wpe: await p.f32(`${prefix}wpe.weight`, [cfg.n_positions, h]),
      layers,
      lnF: await loadLayerNorm(p, `${prefix}ln_f`, h, cfg.layer_norm_epsilon),
    };
  });
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
  kv.checkRowImage(rowImage, images);
  return { flat: enc.view([images * seq, eh]), encSeq: seq };
}

/** Allocate caches for `rowImage.length` rows and compute cross keys/values of `enc [images, seq, h]`. */
export function gpt2BeginDecode(
  rec: Recorder,
  w: Gpt2Weights,
  enc: Tensor | undefined,
  rowImage: Int32Array,
  maxLength: number,
): kv.KvCache {
  const c = w.config;
  if (maxLength > c.n_positions) {
    throw new WebcapError(
      "BAD_OPTION",
      `max length ${maxLength} exceeds the decoder's n_positions ${c.n_positions}`,
    );
  }
  const { flat, encSeq } = crossInput(c, enc, rowImage); // checked before anything is allocated
  const shape = { layers: w.layers.length, hidden: c.n_embd, maxLength };
  const crossKv = flat ? w.layers.map((l) => linear(rec, flat, l.cross!.kv)) : [];
  return kv.beginKvCache(rec, shape, rowImage, { kv: crossKv, encSeq });
}

/** Ids `0 .. n-1` (i32 `[n]`): row r of an embedding table gathered to row r. */
function rowIds(rec: Recorder, n: number): Tensor {
  return rec.upload(Int32Array.from({ length: n }, (_, i) => i), [n], "i32");
}

/** Inputs of one forward: token ids `[rows·S]` (i32) or input embeddings `[rows·S, h]`. */
export type Gpt2Input = { ids: Tensor } | { embeds: Tensor };

/**
 * Run S positions per row through the decoder, appending them to the caches.
 * Returns logits `[rows·S, vocab]`. `crossProbs[layer]` (optional, `[rows, H, S, encSeq]`)
 * receives cross-attention probabilities.
 */
export function gpt2Forward(
  rec: Recorder,
  w: Gpt2Weights,
  st: kv.KvCache,
  input: Gpt2Input,
  S: number,
  crossProbs?: Tensor[],
): Tensor {
  const c = w.config, h = c.n_embd, H = c.n_head, D = h / H, R = st.rows;
  kv.checkRoom(st, S);
  const pos = { table: w.wpe, start: st.length, period: S };
  const logits = rec.scope(() => {
    let x = "ids" in input
      ? embedding(rec, w.wte, input.ids, { pos })
      : embedding(rec, input.embeds.view([R * S, h]), rowIds(rec, R * S), { pos });
    w.layers.forEach((l, i) => {
      // transformers' GPT2Attention: both the self- and the cross-attention of block i divide by
      // i + 1 under scale_attn_by_inverse_layer_idx
      let scale = c.scale_attn_weights ? 1 / Math.sqrt(D) : 1;
      if (c.scale_attn_by_inverse_layer_idx) scale /= i + 1;
      const a = kv.selfAttention(rec, st, i, x, { norm: l.ln1, proj: l.attn }, S, H, scale);
      x = linear(rec, a, l.attnProj, { residual: x });
      if (l.cross) {
        const cq = { norm: l.cross.ln, proj: l.cross.q };
        const ca = kv.crossAttention(rec, st, i, x, cq, S, H, scale, crossProbs?.[i]);
        x = linear(rec, ca, l.cross.proj, { residual: x });
      }
      const f = linear(rec, x, l.fc, { act: w.act, norm: l.ln2 });
      x = linear(rec, f, l.proj, { residual: x });
    });
    return matmul(rec, x, w.lmHead, { transposeW: true, norm: w.lnF });
  });
  st.length += S;
  return logits;
}
