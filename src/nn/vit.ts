/**
 * ViT encoder (HF `ViTModel` layout; also the vision towers of BLIP and CLIP): patch embedding
 * as one matmul, CLS token, position embeddings, optional layernorm before the blocks (CLIP's
 * `pre_layrnorm`), pre-LN blocks, optional final layernorm (CLIP normalises only its CLS token,
 * after the encoder).
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type Activation, activationFromConfig } from "../shaders/activations.ts";
import { attention } from "../shaders/attention.ts";
import { prependRow } from "../shaders/copy.ts";
import { binary } from "../shaders/elementwise.ts";
import { patchify } from "../shaders/patchify.ts";
import { configCount, configNumber, configRate } from "./config.ts";
import type { LayerNorm, Linear, Module } from "./modules.ts";
import { linear, loadLayerNorm, loadLinear, loadStackedLinear, norm } from "./modules.ts";
import type { ParamLoader } from "./params.ts";
import type { WeightStore } from "../io/weights.ts";

/** The fields of an HF ViT config that the encoder uses. */
export interface VitConfig {
  hidden_size: number;
  num_attention_heads: number;
  num_hidden_layers: number;
  intermediate_size: number;
  image_size: number;
  patch_size: number;
  num_channels: number;
  layer_norm_eps: number;
  hidden_act: string;
  /** Dropout (training only) of the embeddings and each block's two projections (HF default 0). */
  hidden_dropout_prob: number;
  /** Dropout (training only) of the attention probabilities (HF default 0). */
  attention_probs_dropout_prob: number;
}

/** Read and check a ViT config object. */
export function vitConfig(c: Record<string, unknown>, where: string): VitConfig {
  const count = (k: string, d?: number): number => configCount(c, k, where, d);
  const cfg: VitConfig = {
    hidden_size: count("hidden_size"),
    num_attention_heads: count("num_attention_heads"),
    num_hidden_layers: count("num_hidden_layers"),
    intermediate_size: count("intermediate_size"),
    image_size: count("image_size"),
    patch_size: count("patch_size"),
    num_channels: count("num_channels", 3),
    layer_norm_eps: configNumber(c, "layer_norm_eps", where, 1e-12),
    hidden_act: String(c.hidden_act ?? "gelu"),
    hidden_dropout_prob: configRate(c, "hidden_dropout_prob", where, 0),
    attention_probs_dropout_prob: configRate(c, "attention_probs_dropout_prob", where, 0),
  };
  if (!cfg.num_attention_heads || cfg.hidden_size % cfg.num_attention_heads) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: hidden_size ${cfg.hidden_size} is not divisible by num_attention_heads ${cfg.num_attention_heads}`,
    );
  }
  return cfg;
}

/** Names of one block's tensors relative to the block prefix; differ between ViT, BLIP and CLIP. */
export interface VitNames {
  /** `patchBias` absent: the patch projection has no bias (CLIP). */
  embeddings: { patch: string; patchBias?: string; cls: string; pos: string };
  /** Layernorm applied to the embeddings before the first block (CLIP's `pre_layrnorm`). */
  preNorm?: string;
  layer: (i: number) => string;
  ln1: string;
  qkv: [string, string, string] | string;
  attnOut: string;
  ln2: string;
  fc1: string;
  fc2: string;
  /** Layernorm of every position after the last block; absent: the encoder output is returned as is. */
  finalNorm?: string;
}

/**
 * ViT as HF names it (`ViTModel`): the classic layout (`encoder.layer.N.attention.attention.query`)
 * or the one transformers 5 saves (`layers.N.attention.q_proj`, `mlp.fc1`), whichever the
 * checkpoint has.
 */
export function hfVitNames(prefix: string, store: WeightStore): VitNames {
  const embeddings = {
    patch: `${prefix}embeddings.patch_embeddings.projection.weight`,
    patchBias: `${prefix}embeddings.patch_embeddings.projection.bias`,
    cls: `${prefix}embeddings.cls_token`,
    pos: `${prefix}embeddings.position_embeddings`,
  };
  const common = {
    embeddings,
    ln1: "layernorm_before",
    ln2: "layernorm_after",
    finalNorm: `${prefix}layernorm`,
  };
  if (store.has(`${prefix}layers.0.attention.q_proj.weight`)) {
    return {
      ...common,
      layer: (i) => `${prefix}layers.${i}.`,
      qkv: ["attention.q_proj", "attention.k_proj", "attention.v_proj"],
      attnOut: "attention.o_proj",
      fc1: "mlp.fc1",
      fc2: "mlp.fc2",
    };
  }
  return {
    ...common,
    layer: (i) => `${prefix}encoder.layer.${i}.`,
    qkv: ["attention.attention.query", "attention.attention.key", "attention.attention.value"],
    attnOut: "attention.output.dense",
    fc1: "intermediate.dense",
    fc2: "output.dense",
  };
}

interface VitLayer {
  ln1: LayerNorm;
  qkv: Linear; // [3h, h]: query, key, value stacked
  attnOut: Linear;
  ln2: LayerNorm;
  fc1: Linear;
  fc2: Linear;
}

/** ViT weights on the GPU. */
export interface VitWeights extends Module {
  config: VitConfig;
  act: Activation;
  patch: Linear; // [hidden, C·p·p] (stored [hidden, C, p, p])
  cls: Tensor; // [hidden]
  pos: Tensor; // [1 + P, hidden]
  preNorm?: LayerNorm;
  layers: VitLayer[];
  finalNorm?: LayerNorm;
}

/**
 * An f32 tensor viewed as `shape`, stored either so or with extra leading unit dimensions
 * (ViT's `cls_token [1, 1, h]` and CLIP's `class_embedding [h]` both load as `[h]`).
 */
async function unitPadded(p: ParamLoader, name: string, shape: number[]): Promise<Tensor> {
  const stored = p.store.has(name) ? p.store.info(name).shape : shape;
  const lead = stored.length - shape.length;
  const fits = lead >= 0 && stored.slice(0, lead).every((d) => d === 1);
  return (await p.f32(name, fits ? stored : shape)).view(shape);
}

/**
 * The patch projection: a conv with stride p as one `[hidden, C·p·p]` matmul over patches (its
 * weight quantized as that matrix in q8 / q4).
 */
async function loadPatch(p: ParamLoader, cfg: VitConfig, names: VitNames): Promise<Linear> {
  const h = cfg.hidden_size, ps = cfg.patch_size, C = cfg.num_channels;
  const e = names.embeddings;
  return await p.owning(async () => ({
    w: await p.weight(e.patch, [h, C * ps * ps], false, [h, C, ps, ps]),
    b: e.patchBias === undefined ? undefined : await p.f32(e.patchBias, [h]),
    inOut: false,
  }));
}

async function loadLayer(p: ParamLoader, cfg: VitConfig, names: VitNames, i: number) {
  const h = cfg.hidden_size, inter = cfg.intermediate_size, eps = cfg.layer_norm_eps;
  const l = names.layer(i);
  const qkv = typeof names.qkv === "string"
    ? await loadLinear(p, l + names.qkv, 3 * h, h)
    : await loadStackedLinear(p, names.qkv.map((n) => l + n), h, h);
  return {
    ln1: await loadLayerNorm(p, l + names.ln1, h, eps),
    qkv,
    attnOut: await loadLinear(p, l + names.attnOut, h, h),
    ln2: await loadLayerNorm(p, l + names.ln2, h, eps),
    fc1: await loadLinear(p, l + names.fc1, inter, h),
    fc2: await loadLinear(p, l + names.fc2, h, inter),
  };
}

/** Load ViT weights named by `names`. */
export function loadVit(
  p: ParamLoader,
  cfg: VitConfig,
  names: VitNames,
  where: string,
): Promise<VitWeights> {
  const h = cfg.hidden_size, eps = cfg.layer_norm_eps;
  const P = (cfg.image_size / cfg.patch_size) ** 2;
  const e = names.embeddings;
  return p.owning(async () => {
    const patch = await loadPatch(p, cfg, names);
    const layers: VitLayer[] = [];
    for (let i = 0; i < cfg.num_hidden_layers; i++) layers.push(await loadLayer(p, cfg, names, i));
    const optionalNorm = (name?: string) =>
      name === undefined ? undefined : loadLayerNorm(p, name, h, eps);
    return {
      config: cfg,
      act: activationFromConfig(cfg.hidden_act, where),
      patch,
      cls: await unitPadded(p, e.cls, [h]),
      pos: await unitPadded(p, e.pos, [1 + P, h]),
      preNorm: await optionalNorm(names.preNorm),
      layers,
      finalNorm: await optionalNorm(names.finalNorm),
    };
  });
}

/** One pre-LN transformer block over `x [N·S, h]` (in vitEncode's scope); returns the new residual stream. */
function vitLayer(
  rec: Recorder,
  w: VitWeights,
  l: VitLayer,
  x: Tensor,
  N: number,
  S: number,
): Tensor {
  const c = w.config;
  const h = c.hidden_size, H = c.num_attention_heads, D = h / H;
  const qkv = linear(rec, x, l.qkv, { norm: l.ln1 }); // [N·S, 3h]
  const op = (offset: number) => ({ t: qkv, offset, posStride: 3 * h, rowStride: S * 3 * h });
  const a = attention(rec, {
    q: op(0),
    k: op(h),
    v: op(2 * h),
    batch: N,
    queries: S,
    heads: H,
    headDim: D,
    keys: S,
    scale: 1 / Math.sqrt(D),
  }).view([N * S, h]);
  const x1 = linear(rec, a, l.attnOut, { residual: x });
  const f = linear(rec, x1, l.fc1, { act: w.act, norm: l.ln2 });
  return linear(rec, f, l.fc2, { residual: x1 });
}

/**
 * `pixels [N, C, H, W]` → last hidden state `[N, 1 + P, hidden]` (after the final layernorm
 * when the weights have one).
 */
export function vitEncode(rec: Recorder, w: VitWeights, pixels: Tensor): Tensor {
  const c = w.config;
  const [N, C, Hh, Ww] = pixels.shape;
  if (C !== c.num_channels || Hh !== c.image_size || Ww !== c.image_size) {
    throw new WebcapError(
      "BAD_SHAPE",
      `ViT expects pixels [N, ${c.num_channels}, ${c.image_size}, ${c.image_size}], got [${pixels.shape}]`,
    );
  }
  const h = c.hidden_size;
  const P = (c.image_size / c.patch_size) ** 2, S = P + 1;
  return rec.scope(() => {
    const patches = patchify(rec, pixels, c.patch_size);
    const emb = linear(rec, patches, w.patch).view([N, P, h]);
    const withCls = prependRow(rec, emb, w.cls);
    let x = binary(rec, withCls, w.pos, "add").view([N * S, h]);
    if (w.preNorm) x = norm(rec, x, w.preNorm);
    for (const l of w.layers) x = vitLayer(rec, w, l, x, N, S);
    if (w.finalNorm) x = norm(rec, x, w.finalNorm);
    return x.view([N, S, h]);
  });
}
