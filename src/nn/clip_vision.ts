/**
 * CLIP vision tower with its projection (HF `CLIPVisionModelWithProjection`, the layout of
 * `openai/clip-vit-base-patch32`; a full `CLIPModel` checkpoint has the same vision names).
 * The transformer is the ViT of ./vit.ts under CLIP's names: a bias-free patch convolution,
 * `pre_layrnorm` on the embeddings, no final layernorm over all positions; `post_layernorm`
 * normalises only the CLS position, and `visual_projection` (no bias) maps it to `image_embeds`.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { copy2d } from "../shaders/copy.ts";
import { configCount } from "./config.ts";
import type { LayerNorm, Linear, Module } from "./modules.ts";
import { linear, loadLayerNorm, loadLinear } from "./modules.ts";
import type { ParamLoader } from "./params.ts";
import {
  loadVit,
  type VitConfig,
  vitConfig,
  vitEncode,
  type VitNames,
  type VitWeights,
} from "./vit.ts";

/** The fields of an HF CLIP vision config that the tower uses. */
export interface ClipVisionConfig extends VitConfig {
  /** Width of `image_embeds`. */
  projection_dim: number;
}

/** transformers' `CLIPVisionConfig` defaults, for fields a saved config leaves out. */
const CLIP_VISION_DEFAULTS = {
  hidden_size: 768,
  intermediate_size: 3072,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
};

/** Read and check a CLIP vision config (`clip_vision_model`, or a `CLIPConfig`'s `vision_config`). */
export function clipVisionConfig(c: Record<string, unknown>, where: string): ClipVisionConfig {
  const nested = c.vision_config as Record<string, unknown> | undefined;
  const vision = { ...CLIP_VISION_DEFAULTS, ...(nested ?? c) };
  const proj = nested
    ? c.projection_dim ?? CLIP_VISION_DEFAULTS.projection_dim
    : vision.projection_dim;
  if (typeof proj !== "number" || !Number.isFinite(proj)) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: "projection_dim" must be a number, got ${JSON.stringify(proj)}`,
    );
  }
  const projection_dim = configCount({ projection_dim: proj }, "projection_dim", where);
  return { ...vitConfig(vision, where), projection_dim };
}

/** CLIP's tensor names under `prefix` (`vision_model.`). */
export function clipVisionNames(prefix: string): VitNames {
  return {
    embeddings: {
      patch: `${prefix}embeddings.patch_embedding.weight`,
      cls: `${prefix}embeddings.class_embedding`,
      pos: `${prefix}embeddings.position_embedding.weight`,
    },
    preNorm: `${prefix}pre_layrnorm`,
    layer: (i) => `${prefix}encoder.layers.${i}.`,
    ln1: "layer_norm1",
    qkv: ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    attnOut: "self_attn.out_proj",
    ln2: "layer_norm2",
    fc1: "mlp.fc1",
    fc2: "mlp.fc2",
  };
}

/** CLIP vision weights on the GPU. */
export interface ClipVisionWeights extends Module {
  /** The config the weights were loaded for. */
  config: ClipVisionConfig;
  /** The transformer (pre-LN blocks, no final norm). */
  vit: VitWeights;
  /** `post_layernorm` `[hidden]`, applied to the CLS position. */
  postNorm: LayerNorm;
  /** `visual_projection` `[projection_dim, hidden]`, no bias. */
  projection: Linear;
}

/** Load `vision_model.*` and `visual_projection.weight`. */
export function loadClipVision(
  p: ParamLoader,
  cfg: ClipVisionConfig,
  where: string,
): Promise<ClipVisionWeights> {
  const h = cfg.hidden_size;
  return p.owning(async () => ({
    config: cfg,
    vit: await loadVit(p, cfg, clipVisionNames("vision_model."), where),
    postNorm: await loadLayerNorm(p, "vision_model.post_layernorm", h, cfg.layer_norm_eps),
    projection: await loadLinear(p, "visual_projection", cfg.projection_dim, h, { bias: false }),
  }));
}

/** Outputs of {@link clipVisionEncode}. */
export interface ClipVisionOutput {
  /** HF `last_hidden_state`: the encoder output, before `post_layernorm` `[N, 1 + P, hidden]`. */
  hidden: Tensor;
  /** HF `image_embeds`: `visual_projection(post_layernorm(hidden[:, 0]))` `[N, projection_dim]`. */
  imageEmbeds: Tensor;
}

/** `pixels [N, C, H, W]` → last hidden state and image embeddings. */
export function clipVisionEncode(
  rec: Recorder,
  w: ClipVisionWeights,
  pixels: Tensor,
): ClipVisionOutput {
  return rec.scope(() => {
    const hidden = vitEncode(rec, w.vit, pixels); // [N, S, h]
    const [N, S, h] = hidden.shape;
    const cls = rec.temp([N, h]);
    copy2d(rec, hidden, cls, {
      n: N,
      width: h,
      srcOff: 0,
      srcStride: S * h,
      group: 1,
      dstOff: 0,
      dstOuter: h,
      dstInner: 0,
    });
    const imageEmbeds = linear(rec, cls, w.projection, { norm: w.postNorm }); // [N, projection_dim]
    return { hidden, imageEmbeds };
  });
}
