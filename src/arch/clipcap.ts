/**
 * ClipCap (Mokady et al. 2021, "ClipCap: CLIP Prefix for Image Captioning"), MLP mapping:
 * `prefix = clip_project(image_embeds)` (Linear, Tanh, Linear, … as `clip_project.model.{0,2,…}`)
 * reshaped to `[prefix_length, n_embd]` is fed to a GPT-2 LM (`gpt.*`, LM head tied to `wte`)
 * as input embeddings, followed by the generated tokens; positions run from 0 over both.
 *
 * Folder layout (`loadCaptionModel` of ./load.ts recognises it by `clipcap-config.json`):
 * - `clipcap-config.json`: `prefix_length`, `prefix_size` (= CLIP `projection_dim`), `gpt2`
 *   (an HF GPT-2 config), optional `eos_token_id` / `pad_token_id` (default: the GPT-2 config's),
 *   optional `mapping_type` (only `"mlp"` is supported);
 * - `clipcap.safetensors`, else `clipcap.pt` (a bare `torch.save` state dict, as ClipCap's
 *   `coco_weights.pt`), else whatever {@link openWeights} finds in the folder;
 * - `clip-vision/`: an HF `CLIPVisionModelWithProjection` (or `CLIPModel`) folder.
 *
 * Fitting the prefix into {@link CaptionModel}: `beginDecode` runs prefix vectors `0..L-2` of
 * each image through GPT-2 (once per image, then copied to that image's rows) and keeps the
 * last one; `decoderStartTokenId` is the reserved id `vocab_size`, meaning "this row's image's
 * last prefix vector". The first step after `beginDecode` takes that vector at each row's first
 * position (the decoding module always feeds the start id there); later steps take token ids.
 * `DecodeState.length` and `maxPositions` count from that start position, so the caches hold
 * `L - 1` positions more than `maxLength`.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { fileLocation, type ModelFiles, subFolder } from "../io/model_files.ts";
import { openWeightFile, openWeights, type WeightStore } from "../io/weights.ts";
import {
  clipVisionConfig,
  clipVisionEncode,
  type ClipVisionWeights,
  loadClipVision,
} from "../nn/clip_vision.ts";
import {
  gpt2BeginDecode,
  type Gpt2Config,
  gpt2Config,
  gpt2Forward,
  type Gpt2Weights,
  loadGpt2,
} from "../nn/gpt2.ts";
import { type KvCache, reorderKvCache } from "../nn/kv_cache.ts";
import { type Linear, linear, loadLinear } from "../nn/modules.ts";
import { ParamLoader } from "../nn/params.ts";
import { copy2d } from "../shaders/copy.ts";
import { embedding } from "../shaders/embedding.ts";
import type { Architecture, LoadContext } from "./architecture.ts";
import { type CacheDecodeState, cacheDecodeState, type EncoderState } from "./caption_model.ts";
import { EncoderDecoderModel, type StepDecoder } from "./encoder_decoder.ts";
import { readModelJson } from "./model_json.ts";

type Json = Record<string, unknown>;

/** The file that marks a ClipCap folder. */
export const CLIPCAP_CONFIG = "clipcap-config.json";
/** The subfolder holding the CLIP vision model. */
export const CLIPCAP_VISION_DIR = "clip-vision";

/** What `clipcap-config.json` says. */
export interface ClipCapConfig {
  /** Prefix vectors per image (`prefix_length`). */
  prefixLength: number;
  /** Width of `image_embeds` (CLIP `projection_dim`). */
  prefixSize: number;
  /** The GPT-2 LM's config. */
  gpt2: Gpt2Config;
  /** End of caption (kept in the output). */
  eosTokenId: number;
  /** Filler after eos (default: eos). */
  padTokenId: number;
}

/** Read and check a parsed `clipcap-config.json`. */
export function clipCapConfig(c: Json, where: string): ClipCapConfig {
  const mapping = c.mapping_type ?? "mlp";
  if (mapping !== "mlp") {
    throw new WebcapError(
      "UNSUPPORTED_ARCH",
      `${where}: mapping_type ${
        JSON.stringify(mapping)
      } is not supported (only the MLP mapping, "mlp")`,
    );
  }
  const L = c.prefix_length, size = c.prefix_size;
  if (
    !Number.isInteger(L) || (L as number) < 1 || !Number.isInteger(size) || (size as number) < 1
  ) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: "prefix_length" and "prefix_size" must be positive integers`,
    );
  }
  if (typeof c.gpt2 !== "object" || c.gpt2 === null) {
    throw new WebcapError("BAD_CONFIG", `${where}: "gpt2" must hold the GPT-2 config`);
  }
  const g = c.gpt2 as Json;
  const gpt2 = gpt2Config(g, `${where} gpt2`);
  if (gpt2.add_cross_attention) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: gpt2.add_cross_attention must be false for ClipCap`,
    );
  }
  const eos = c.eos_token_id ?? g.eos_token_id;
  if (typeof eos !== "number") {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: eos_token_id (top level or in "gpt2") must be set`,
    );
  }
  const pad = c.pad_token_id ?? g.pad_token_id;
  return {
    prefixLength: L as number,
    prefixSize: size as number,
    gpt2,
    eosTokenId: eos,
    padTokenId: typeof pad === "number" ? pad : eos,
  };
}

/** `clip_project.model.{0,2,…}`: Linear layers with Tanh between them, `prefixSize → L·n_embd`. */
export async function loadProjection(p: ParamLoader, cfg: ClipCapConfig): Promise<Linear[]> {
  const out = cfg.prefixLength * cfg.gpt2.n_embd;
  const layers: Linear[] = [];
  let inp = cfg.prefixSize;
  for (let k = 0; k === 0 || p.store.has(`clip_project.model.${k}.weight`); k += 2) {
    const name = `clip_project.model.${k}`;
    const last = !p.store.has(`clip_project.model.${k + 2}.weight`);
    const o = last ? out : p.store.info(`${name}.weight`).shape[0];
    layers.push(await loadLinear(p, name, o, inp));
    inp = o;
  }
  return layers;
}

/** `clipcap.safetensors`, else `clipcap.pt`, else what {@link openWeights} finds in the folder. */
export async function openClipCapWeights(files: ModelFiles): Promise<WeightStore> {
  for (const name of ["clipcap.safetensors", "clipcap.pt"]) {
    const store = await openWeightFile(files, name);
    if (store) return store;
  }
  try {
    return await openWeights(files);
  } catch (e) {
    if (!(e instanceof WebcapError) || e.code !== "MISSING_FILE") throw e;
    throw new WebcapError(
      "MISSING_FILE",
      `no ClipCap weights: looked for clipcap.safetensors, clipcap.pt; ${e.message}`,
    );
  }
}

/** Encoder output of ClipCap: `hidden` is the prefix `[images, prefix_length, n_embd]`. */
export interface ClipCapEncoderState extends EncoderState {
  /** CLIP `image_embeds` `[images, prefix_size]`. */
  readonly imageEmbeds: Tensor;
}

interface ClipCapState extends CacheDecodeState {
  /** Last prefix vector of each image `[images, n_embd]`, indexed by the rows' images. */
  lastPrefix: Tensor;
}

/**
 * Load a ClipCap folder from its parsed `clipcap-config.json` (`ctx.config`); reads
 * `clip-vision/config.json` first.
 */
async function loadClipCap(ctx: LoadContext): Promise<ClipCap> {
  const files = ctx.files;
  const visionFiles = subFolder(files, CLIPCAP_VISION_DIR);
  const visionConfig = await readModelJson(visionFiles, "config.json");
  const where = ctx.where;
  const visionConfigPath = fileLocation(visionFiles, "config.json");
  const cfg = clipCapConfig(ctx.config, where);
  const vc = clipVisionConfig(visionConfig, visionConfigPath);
  if (vc.projection_dim !== cfg.prefixSize) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: prefix_size ${cfg.prefixSize} differs from the CLIP projection_dim ${vc.projection_dim} in ${visionConfigPath}`,
    );
  }
  const loaders: ParamLoader[] = [];
  const stores: WeightStore[] = [];
  try {
    stores.push(await openWeights(visionFiles));
    loaders.push(new ParamLoader(ctx.gpu, stores[0], ctx.dtype, ctx.groupSize));
    const vision = await loadClipVision(loaders[0], vc, visionFiles.source);
    stores.push(await openClipCapWeights(files));
    loaders.push(new ParamLoader(ctx.gpu, stores[1], ctx.dtype, ctx.groupSize));
    const project = await loadProjection(loaders[1], cfg);
    const gpt2 = await loadGpt2(
      loaders[1],
      cfg.gpt2,
      "gpt.transformer.",
      where,
      "gpt.lm_head.weight",
    );
    return new ClipCap(cfg, vision, project, gpt2, loaders);
  } catch (e) {
    for (const p of loaders) p.dispose();
    throw e;
  } finally {
    for (const s of stores) s.close();
  }
}

/** CLIP image embedding → MLP prefix → GPT-2 captioner. */
export class ClipCap extends EncoderDecoderModel<ClipCapEncoderState, ClipCapState> {
  /** Use the registry's loader (`loadCaptionModel`). */
  constructor(
    readonly config: ClipCapConfig,
    readonly vision: ClipVisionWeights,
    project: Linear[],
    gpt2: Gpt2Weights,
    loaders: ParamLoader[],
  ) {
    const g = config.gpt2;
    super(CLIPCAP.name, {
      vocabSize: g.vocab_size,
      decoderStartTokenId: g.vocab_size,
      eosTokenId: config.eosTokenId,
      padTokenId: config.padTokenId,
      maxPositions: maxPositions(config),
    }, {
      encode: (rec, pixels) => encode(rec, config, vision, project, pixels),
      text: prefixDecoder(config, gpt2),
      params: loaders.flatMap((p) => p.params),
      dispose: () => loaders.forEach((p) => p.dispose()),
    });
  }
}

/** `pixels [N, 3, H, W]` → CLIP `image_embeds` and the GPT-2 prefix. */
function encode(
  rec: Recorder,
  config: ClipCapConfig,
  vision: ClipVisionWeights,
  project: Linear[],
  pixels: Tensor,
): ClipCapEncoderState {
  const imageEmbeds = rec.keep(clipVisionEncode(rec, vision, pixels).imageEmbeds);
  let x = imageEmbeds; // [N, prefix_size]
  project.forEach((l, i) => {
    x = linear(rec, x, l, { act: i < project.length - 1 ? "tanh" : "none" });
  });
  const N = pixels.shape[0];
  const prefix = rec.keep(x.view([N, config.prefixLength, config.gpt2.n_embd]));
  return {
    images: N,
    hidden: prefix,
    imageEmbeds,
    dispose: () => {
      prefix.release();
      imageEmbeds.release();
    },
  };
}

/** Positions left for tokens: GPT-2's `n_positions` less the prefix vectors before the start. */
function maxPositions(config: ClipCapConfig): number {
  return config.gpt2.n_positions - (config.prefixLength - 1);
}

/** GPT-2 over the prefix then the tokens; no cross-attention, so no attention maps. */
function prefixDecoder(config: ClipCapConfig, gpt2: Gpt2Weights): StepDecoder<ClipCapState> {
  return {
    crossAttention: false,
    begin: (rec, enc, rowImage, maxLength) =>
      beginDecode(rec, config, gpt2, enc, rowImage, maxLength),
    forward: (rec, st, tokens, perRow) => step(rec, gpt2, st, tokens, perRow),
    reorder: (rec, st, parents) => reorderKvCache(rec, st.cache, parents),
  };
}

function beginDecode(
  rec: Recorder,
  config: ClipCapConfig,
  gpt2: Gpt2Weights,
  enc: EncoderState,
  rowImage: Int32Array,
  maxLength: number,
): ClipCapState {
  const N = enc.images, L = config.prefixLength, h = gpt2.config.n_embd;
  const most = maxPositions(config);
  if (rowImage.some((i) => !(i >= 0 && i < N))) {
    throw new WebcapError(
      "BAD_OPTION",
      `beginDecode: rowImage must index the ${N} encoded images`,
    );
  }
  if (maxLength > most) {
    throw new WebcapError(
      "BAD_OPTION",
      `max length ${maxLength} exceeds ${most} (GPT-2 n_positions ${gpt2.config.n_positions} less ${
        L - 1
      } prefix positions)`,
    );
  }
  const prefix = enc.hidden; // [N, L, h]
  const lastPrefix = rec.keep(rec.temp([N, h]));
  copy2d(rec, prefix, lastPrefix, {
    n: N,
    width: h,
    srcOff: (L - 1) * h,
    srcStride: L * h,
    group: 1,
    dstOff: 0,
    dstOuter: h,
    dstInner: 0,
  });
  const cache = L > 1
    ? runPrefix(rec, gpt2, prefix, rowImage, maxLength)
    : gpt2BeginDecode(rec, gpt2, undefined, rowImage, maxLength);
  return Object.assign(cacheDecodeState(cache, L - 1, [lastPrefix]), { lastPrefix });
}

/** Caches after prefix vectors `0..L-2`: computed once per image, then gathered to the rows. */
function runPrefix(
  rec: Recorder,
  gpt2: Gpt2Weights,
  prefix: Tensor,
  rowImage: Int32Array,
  maxLength: number,
): KvCache {
  const [N, L, h] = prefix.shape;
  const images = Int32Array.from({ length: N }, (_, i) => i);
  const st = gpt2BeginDecode(rec, gpt2, undefined, images, maxLength + L - 1);
  const embeds = rec.temp([N * (L - 1), h]);
  copy2d(rec, prefix, embeds, {
    n: N,
    width: (L - 1) * h,
    srcOff: 0,
    srcStride: L * h,
    group: 1,
    dstOff: 0,
    dstOuter: (L - 1) * h,
    dstInner: 0,
  });
  gpt2Forward(rec, gpt2, st, { embeds }, L - 1); // only the caches are wanted
  const identity = rowImage.length === N && rowImage.every((img, r) => img === r);
  if (!identity) reorderKvCache(rec, st, rowImage);
  return st;
}

/** Token ids → logits; the first step's start id stands for each row's image's last prefix vector. */
function step(
  rec: Recorder,
  gpt2: Gpt2Weights,
  s: ClipCapState,
  tokens: Tensor,
  perRow: number,
): Tensor {
  const g = s.cache, R = g.rows, h = gpt2.config.n_embd;
  if (tokens.size !== R * perRow) {
    throw new WebcapError("BAD_SHAPE", `step: ${tokens.size} tokens for ${R} rows × ${perRow}`);
  }
  if (s.length > 0) return gpt2Forward(rec, gpt2, g, { ids: tokens }, perRow);
  // First step: each row's first position is its image's last prefix vector (the start id).
  const last = embedding(rec, s.lastPrefix, g.rowImageGpu); // [R, h]
  let embeds = last;
  if (perRow > 1) {
    embeds = embedding(rec, gpt2.wte, tokens); // [R·S, h]; the start id's rows are left unwritten
    copy2d(rec, last, embeds, {
      n: R,
      width: h,
      srcOff: 0,
      srcStride: h,
      group: 1,
      dstOff: 0,
      dstOuter: perRow * h,
      dstInner: 0,
    });
  }
  return gpt2Forward(rec, gpt2, g, { embeds }, perRow);
}

/** ClipCap: recognised by `clipcap-config.json` (it has no `config.json`). */
export const CLIPCAP: Architecture = {
  name: "ClipCap",
  marker: CLIPCAP_CONFIG,
  startIdPastVocab: true,
  load: loadClipCap,
  parity: async (ctx) => {
    const enc = await ctx.encode("pixel_values") as ClipCapEncoderState;
    try {
      const [img, prefix] = await ctx.read([enc.imageEmbeds, enc.hidden]);
      ctx.check("image_embeds", img, await ctx.ref.readF32("image_embeds"));
      ctx.check("prefix_embeds", prefix, await ctx.ref.readF32("prefix_embeds"));
      return [await ctx.greedyCase(enc)];
    } finally {
      enc.dispose();
    }
  },
};
