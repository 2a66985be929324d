/**
 * HF `BlipForConditionalGeneration` (the `Salesforce/blip-image-captioning-*` architecture):
 * BLIP's ViT (`vision_model.*`, fused qkv, post-LayerNorm) whose last hidden state feeds the
 * cross-attention of a BERT-style text decoder (`text_decoder.*`).
 *
 * Token ids follow BLIP's `generate`: decoding starts from `text_config.bos_token_id` ([DEC])
 * and stops at `text_config.sep_token_id` ([SEP]), padding with `pad_token_id`. With a text
 * prompt, HF replaces the prompt's first id by [DEC] and drops its last id (the processor's
 * trailing [SEP]); callers feeding a prompt through `step` do that themselves.
 * @module
 */
import { WebcapError } from "../errors.ts";
import {
  bertBeginDecode,
  bertDecoderConfig,
  type BertDecoderWeights,
  bertForward,
  loadBertDecoder,
} from "../nn/bert_decoder.ts";
import type { ParamLoader } from "../nn/params.ts";
import { loadVit, vitConfig, vitEncode, type VitNames, type VitWeights } from "../nn/vit.ts";
import { type Architecture, loadWithParams, transformerParity } from "./architecture.ts";
import type { CaptionModel, DecoderConfig } from "./caption_model.ts";
import { EncoderDecoderModel, hiddenState, kvStepDecoder } from "./encoder_decoder.ts";

type Json = Record<string, unknown>;

/** `BlipVisionConfig` defaults (transformers), for keys a checkpoint's config leaves out. */
const VISION_DEFAULTS = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  image_size: 384,
  patch_size: 16,
  hidden_act: "gelu",
  layer_norm_eps: 1e-5,
};

/** `BlipTextConfig` defaults (transformers), for keys a checkpoint's config leaves out. */
const TEXT_DEFAULTS = {
  vocab_size: 30524,
  hidden_size: 768,
  encoder_hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 512,
  hidden_act: "gelu",
  layer_norm_eps: 1e-12,
  bos_token_id: 30522,
  pad_token_id: 0,
  sep_token_id: 102,
};

/** Tensor names of BLIP's vision tower (`BlipVisionModel`) under `prefix`. */
export function blipVitNames(prefix: string): VitNames {
  return {
    embeddings: {
      patch: `${prefix}embeddings.patch_embedding.weight`,
      patchBias: `${prefix}embeddings.patch_embedding.bias`,
      cls: `${prefix}embeddings.class_embedding`,
      pos: `${prefix}embeddings.position_embedding`,
    },
    layer: (i) => `${prefix}encoder.layers.${i}.`,
    ln1: "layer_norm1",
    qkv: "self_attn.qkv",
    attnOut: "self_attn.projection",
    ln2: "layer_norm2",
    fc1: "mlp.fc1",
    fc2: "mlp.fc2",
    finalNorm: `${prefix}post_layernorm`,
  };
}

/** BLIP's decoding ids from `text_config` (as its `generate` passes them). */
function blipIds(text: Json, where: string): Omit<DecoderConfig, "vocabSize" | "maxPositions"> {
  const id = (k: keyof typeof TEXT_DEFAULTS): number => {
    const v = text[k] ?? TEXT_DEFAULTS[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new WebcapError(
        "BAD_CONFIG",
        `${where}: text_config.${k} must be a token id, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  return {
    decoderStartTokenId: id("bos_token_id"),
    eosTokenId: id("sep_token_id"),
    padTokenId: id("pad_token_id"),
  };
}

function section(config: Json, key: string, where: string): Json {
  const v = config[key] ?? {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new WebcapError("BAD_CONFIG", `${where}: "${key}" must be an object`);
  }
  return v as Json;
}

/** BLIP's towers, as {@link loadBlipTowers} loads them. */
export interface BlipTowers {
  vit: VitWeights;
  text: BertDecoderWeights;
  /** Decoding ids (`text_config`'s bos, sep, pad). */
  ids: Omit<DecoderConfig, "vocabSize" | "maxPositions">;
  /** `text_config` as `config.json` gives it. */
  textConfig: Json;
}

/** Load BLIP's vision tower and text decoder from a parsed `config.json` (checked). */
export async function loadBlipTowers(
  p: ParamLoader,
  config: Json,
  where: string,
): Promise<BlipTowers> {
  const vision = section(config, "vision_config", where);
  const text = section(config, "text_config", where);
  const vc = vitConfig({ ...VISION_DEFAULTS, ...vision }, `${where} vision_config`);
  const tc = bertDecoderConfig(text, `${where} text_config`, TEXT_DEFAULTS);
  if (text.is_decoder === false) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: text_config.is_decoder is false, so the text model has no cross-attention; a captioner needs it true`,
    );
  }
  if (tc.encoder_hidden_size !== vc.hidden_size) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: text_config.encoder_hidden_size ${tc.encoder_hidden_size} differs from vision_config.hidden_size ${vc.hidden_size}`,
    );
  }
  const ids = blipIds(text, where);
  const vit = await loadVit(p, vc, blipVitNames("vision_model."), where);
  return { vit, text: await loadBertDecoder(p, tc, "text_decoder.", where), ids, textConfig: text };
}

/** Load BLIP from a parsed `config.json` (with `vision_config` and `text_config`). */
async function loadBlip(p: ParamLoader, config: Json, where: string): Promise<CaptionModel> {
  const { vit, text: dec, ids } = await loadBlipTowers(p, config, where);
  const tc = dec.config;
  return new EncoderDecoderModel(
    BLIP.name,
    { ...ids, vocabSize: tc.vocab_size, maxPositions: tc.max_position_embeddings },
    {
      encode: (rec, pixels) => hiddenState(rec.keep(vitEncode(rec, vit, pixels))), // [N, 1 + P, h]
      text: kvStepDecoder(dec, { layers: tc.num_hidden_layers, heads: tc.num_attention_heads }, {
        begin: bertBeginDecode,
        forward: bertForward,
      }),
      params: p.params,
      dispose: () => p.dispose(),
    },
  );
}

/** HF `BlipForConditionalGeneration`: BLIP's ViT → BERT decoder. */
export const BLIP: Architecture = {
  name: "BlipForConditionalGeneration",
  load: (ctx) => loadWithParams(ctx, (p) => loadBlip(p, ctx.config, ctx.where)),
  parity: transformerParity,
  attentionMaps: { leadingPositions: 1 }, // ViT's CLS token
};
