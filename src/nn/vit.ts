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
import { layerNorm } from "../shaders/layernorm.ts";
import { matmul } from "../shaders/matmul.ts";
import { patchify } from "../shaders/patchify.ts";
import { configNumber } from "./config.ts";
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
}

/** Read and check a ViT config object. */
export function vitConfig(c: Record<string, unknown>, where: string): VitConfig {
  const num = (k: string, d?: number): number => configNumber(c, k, where, d);
  const cfg: VitConfig = {
    hidden_size: num("hidden_size"),
    num_attention_heads: num("num_attention_heads"),
    num_hidden_layers: num("num_hidden_layers"),
    intermediate_size: num("intermediate_size"),
    image_size: num("image_size"),
    patch_size: num("patch_size"),
    num_channels: num("num_channels", 3),
    layer_norm_eps: num("layer_norm_eps", 1e-12),
    hidden_act: String(c.hidden_act ?? "gelu"),
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

interface Linear {
  w: Tensor; // [out, in]
  b: Tensor;
}

/** A Linear whose bias may be absent. */
interface MaybeBiased {
  w: Tensor; // [out, in]
  b?: Tensor;
}

interface VitLayer {
  ln1: [Tensor, Tensor];
  qkv: Linear;
  attnOut: Linear;
  ln2: [Tensor, Tensor];
  fc1: Linear;
  fc2: Linear;
}

/** ViT weights on the GPU. */
export interface VitWeights {
  config: VitConfig;
  act: Activation;
  patch: MaybeBiased; // [hidden, C·p·p]
  cls: Tensor; // [hidden]
  pos: Tensor; // [1 + P, hidden]
  preNorm?: [Tensor, Tensor];
  layers: VitLayer[];
  finalNorm?: [Tensor, Tensor];
}

async function linear(p: ParamLoader, name: string, out: number, inp: number): Promise<Linear> {
  return { w: await p.matrix(`${name}.weight`, [out, inp]), b: await p.f32(`${name}.bias`, [out]) };
}

async function norm(p: ParamLoader, name: string, d: number): Promise<[Tensor, Tensor]> {
  return [await p.f32(`${name}.weight`, [d]), await p.f32(`${name}.bias`, [d])];
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

/** Load ViT weights named by `names`. */
export async function loadVit(
  p: ParamLoader,
  cfg: VitConfig,
  names: VitNames,
  where: string,
): Promise<VitWeights> {
  const h = cfg.hidden_size,
    inter = cfg.intermediate_size,
    ps = cfg.patch_size,
    C = cfg.num_channels;
  const P = (cfg.image_size / ps) ** 2;
  const e = names.embeddings;
  const patch = {
    w: await p.matrix(e.patch, [h, C, ps, ps]),
    b: e.patchBias === undefined ? undefined : await p.f32(e.patchBias, [h]),
  };
  const layers: VitLayer[] = [];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const l = names.layer(i);
    const qkv: Linear = typeof names.qkv === "string" ? await linear(p, l + names.qkv, 3 * h, h) : {
      w: await p.stacked(names.qkv.map((n) => `${l}${n}.weight`), [h, h], true),
      b: await p.stacked(names.qkv.map((n) => `${l}${n}.bias`), [h], false),
    };
    layers.push({
      ln1: await norm(p, l + names.ln1, h),
      qkv,
      attnOut: await linear(p, l + names.attnOut, h, h),
      ln2: await norm(p, l + names.ln2, h),
      fc1: await linear(p, l + names.fc1, inter, h),
      fc2: await linear(p, l + names.fc2, h, inter),
    });
  }
  return {
    config: cfg,
    act: activationFromConfig(cfg.hidden_act, where),
    patch: { w: patch.w.view([h, C * ps * ps]), b: patch.b },
    cls: await unitPadded(p, e.cls, [h]),
    pos: await unitPadded(p, e.pos, [1 + P, h]),
    preNorm: names.preNorm === undefined ? undefined : await norm(p, names.preNorm, h),
    layers,
    finalNorm: names.finalNorm === undefined ? undefined : await norm(p, names.finalNorm, h),
  };
}

/** One pre-LN transformer block over `x [N·S, h]`; returns the new residual stream. */
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
  const eps = c.layer_norm_eps;
  const n1 = layerNorm(rec, x, l.ln1[0], l.ln1[1], eps);
  const qkv = matmul(rec, n1, l.qkv.w, { transposeW: true, bias: l.qkv.b }); // [N·S, 3h]
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
  const x1 = matmul(rec, a, l.attnOut.w, { transposeW: true, bias: l.attnOut.b, residual: x });
  const n2 = layerNorm(rec, x1, l.ln2[0], l.ln2[1], eps);
  const f = matmul(rec, n2, l.fc1.w, { transposeW: true, bias: l.fc1.b, act: w.act });
  const x2 = matmul(rec, f, l.fc2.w, { transposeW: true, bias: l.fc2.b, residual: x1 });
  rec.releaseAfterSubmit(n1, qkv, a, x1, n2, f);
  return x2;
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
  const patches = patchify(rec, pixels, c.patch_size);
  const emb = matmul(rec, patches, w.patch.w, { transposeW: true, bias: w.patch.b }).view([
    N,
    P,
    h,
  ]);
  const withCls = prependRow(rec, emb, w.cls);
  let x = binary(rec, withCls, w.pos, "add").view([N * S, h]);
  rec.releaseAfterSubmit(patches, emb, withCls);
  if (w.preNorm) {
    const normed = layerNorm(rec, x, w.preNorm[0], w.preNorm[1], c.layer_norm_eps);
    rec.releaseAfterSubmit(x);
    x = normed;
  }
  for (const l of w.layers) {
    const next = vitLayer(rec, w, l, x, N, S);
    rec.releaseAfterSubmit(x);
    x = next;
  }
  if (!w.finalNorm) return x.view([N, S, h]);
  const out = layerNorm(rec, x, w.finalNorm[0], w.finalNorm[1], c.layer_norm_eps);
  rec.releaseAfterSubmit(x);
  return out.view([N, S, h]);
}
