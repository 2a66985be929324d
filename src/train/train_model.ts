/**
 * Each architecture as the `Trainer` sees it, chosen in ONE table by registry name
 * ({@link TRAIN_MODELS}): how captions become a batch, what its frozen encoder computes per image
 * (the trainer caches it), how the loss and gradients are recorded, and the checkpoint layout.
 * ViT-GPT2 and BLIP train their ViT unless it is frozen; Show-Attend-Tell's ResNet is frozen unless
 * the `frozen` prefixes are given and leave `encoder.` trainable, then its stages 2–4 train (as
 * sgrvinod's `fine_tune_encoder`); ClipCap's CLIP is always frozen (frozen outputs are cached).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { folderArchitecture } from "../arch/load.ts";
import { BLIP } from "../arch/blip.ts";
import {
  CLIPCAP,
  CLIPCAP_CONFIG,
  CLIPCAP_VISION_DIR,
  openClipCapWeights,
} from "../arch/clipcap.ts";
import { SHOW_ATTEND_TELL } from "../arch/show_attend_tell.ts";
import { VISION_ENCODER_DECODER } from "../arch/vision_encoder_decoder.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { asModelFiles } from "../io/model_files.ts";
import { clipVisionEncode } from "../nn/clip_vision.ts";
import type { Gradients, TrainDropout } from "../nn/grads.ts";
import type { Param } from "../nn/params.ts";
import { resnetEncode } from "../nn/resnet.ts";
import { vitEncode } from "../nn/vit.ts";
import { gpt2BeginDecode, gpt2Forward } from "../nn/gpt2.ts";
import { EncoderDecoderModel, hiddenState, kvStepDecoder } from "../arch/encoder_decoder.ts";
import type { CaptionModel } from "../arch/caption_model.ts";
import { copy2d } from "../shaders/copy.ts";
import { columnSum } from "../shaders/matmul.ts";
import { teacherForcing, type TokenBatch } from "./batch.ts";
import { loadBlipTrain } from "./blip.ts";
import { type CheckpointLayout, HF_LAYOUT } from "./checkpoint.ts";
import { clipCapBatch, loadClipCapTrain, recordClipCapLoss } from "./clipcap.ts";
import { loadSatTrain, recordSatLoss, satBatch } from "./show_attend_tell.ts";
import { type EncoderInput, recordLossAndGrads, type VisionTextModel } from "./vision_text.ts";
import { loadVitGpt2, type VitGpt2 } from "./vit_gpt2.ts";

/** One architecture held for training, as the `Trainer` drives it. */
export interface TrainModel {
  /** Parameters the optimizer may train (frozen prefixes apply on top), by Hugging Face name. */
  params: Param[];
  /**
   * Name prefix of an encoder that can train: frozen whole, its outputs are cached. Absent: the
   * encoder is always frozen.
   */
  encoder?: string;
  /** The token ending every caption. */
  eosId: number;
  /** The architecture's label smoothing (BLIP: `text_config.label_smoothing`), else 0. */
  labelSmoothing: number;
  /** How its checkpoints are laid out. */
  layout: CheckpointLayout;
  /** The teacher-forced batch of `labels [N, T]` (caption tokens, end token, −100 after). */
  batch(labels: Int32Array, N: number): TokenBatch;
  /** The frozen encoder's outputs `[n, …]` of `pixels [n, 3, H, W]`. */
  encode(rec: Recorder, pixels: Tensor): Tensor;
  /**
   * Record the loss of `batch` and its backward into `g`, the configs' dropouts applied with
   * `dropout`; returns `[2]`: Σ log p(target) and the loss (released after the submit).
   */
  record(
    rec: Recorder,
    input: EncoderInput,
    batch: TokenBatch,
    g: Gradients,
    eps: number,
    dropout?: TrainDropout,
  ): Tensor;
  /**
   * A caption model over the live weights (e.g. to sample captions between steps); it owns
   * nothing. Absent: not built for this architecture.
   */
  captionModel?(): CaptionModel;
  /** Free the weights. */
  dispose(): void;
}

/** `[2]` sums of `rows [R·T, 2]`, the attention `terms` (any shape) added to the loss. */
function lossSums(rec: Recorder, rows: Tensor, terms?: Tensor): Tensor {
  const sums = rec.temp([2]);
  if (!terms) {
    columnSum(rec, rows, sums, false);
    return sums;
  }
  const n = rows.size / 2, k = terms.size; // [n + k, 2]: rows, then (0, term) per term
  const all = rec.upload(new Float32Array(2 * (n + k)), [n + k, 2], "f32");
  const one = { srcOff: 0, group: 1, dstInner: 0 };
  copy2d(rec, rows, all, { ...one, n: 1, width: 2 * n, srcStride: 0, dstOff: 0, dstOuter: 0 });
  copy2d(rec, terms, all, { ...one, n: k, width: 1, srcStride: 1, dstOff: 2 * n + 1, dstOuter: 2 });
  columnSum(rec, all, sums, false);
  return sums;
}

/** The cached outputs of an encoder that never trains. */
function frozenStates(input: EncoderInput, what: string): Tensor {
  if ("pixels" in input) {
    throw new WebcapError("BAD_OPTION", `${what} is frozen: give its outputs, not pixels`);
  }
  return input.states;
}

/** ViT-GPT2 as a caption model over its live training weights (dispose does nothing). */
function liveVitGpt2(m: VitGpt2): CaptionModel {
  const gc = m.gpt2.config;
  return new EncoderDecoderModel(
    VISION_ENCODER_DECODER.name,
    {
      decoderStartTokenId: m.startId,
      eosTokenId: m.eosId,
      padTokenId: m.padId,
      vocabSize: m.vocab,
      maxPositions: gc.n_positions,
    },
    {
      encode: (rec, pixels) => hiddenState(rec.keep(vitEncode(rec, m.vit, pixels))),
      text: kvStepDecoder(m.gpt2, { layers: gc.n_layer, heads: gc.n_head }, {
        begin: gpt2BeginDecode,
        forward: (rec, w, cache, ids, S, probs) => gpt2Forward(rec, w, cache, { ids }, S, probs),
      }),
      params: m.params,
      dispose: () => {},
    },
  );
}

/** ViT-GPT2 and BLIP: a ViT (named `encoder`) feeding a text decoder. */
function visionText(
  m: VisionTextModel & { eosId: number; dispose(): void },
  o: { encoder: string; labelSmoothing: number; startId: number; padId: number; vocab: number },
): TrainModel {
  return {
    params: m.params,
    encoder: o.encoder,
    eosId: m.eosId,
    labelSmoothing: o.labelSmoothing,
    layout: HF_LAYOUT,
    batch: (labels, N) => teacherForcing(labels, N, o),
    encode: (rec, pixels) => vitEncode(rec, m.vit, pixels),
    record: (rec, input, batch, g, eps, dropout) =>
      lossSums(rec, recordLossAndGrads(rec, m, input, batch, g, eps, dropout).rows),
    dispose: () => m.dispose(),
  };
}

/** ClipCap's own folder: `clipcap-config.json`, `clipcap.safetensors`, `clip-vision/` as stored. */
const CLIPCAP_LAYOUT: CheckpointLayout = {
  config: CLIPCAP_CONFIG,
  weights: "clipcap.safetensors",
  open: openClipCapWeights,
  folders: [CLIPCAP_VISION_DIR],
};

/** What a {@link TrainModel} is loaded for. */
export interface TrainModelOptions {
  /**
   * The name prefixes the trainer freezes. Show-Attend-Tell loads its ResNet's stages 2–4 to
   * train (BatchNorms unfolded) only when these are given and none of them is a prefix of
   * `encoder.resnet.`; else folded and frozen.
   */
  frozen?: readonly string[];
}

/** Whether Show-Attend-Tell's ResNet trains under the trainer's `frozen` prefixes. */
function satTrainsEncoder(frozen: readonly string[] | undefined): boolean {
  return frozen !== undefined && !frozen.some((f) => "encoder.resnet.".startsWith(f));
}

/** Loaders of {@link TrainModel}s by registry name. */
export const TRAIN_MODELS: Record<
  string,
  (gpu: Gpu, dir: string, opts: TrainModelOptions) => Promise<TrainModel>
> = {
  [VISION_ENCODER_DECODER.name]: async (gpu, dir) => {
    const m = await loadVitGpt2(gpu, dir);
    const model = visionText(m, { ...m, encoder: "encoder.", labelSmoothing: 0 });
    return { ...model, captionModel: () => liveVitGpt2(m) };
  },
  // BLIP's internal shift: input [bos, tokens, sep], position t predicts token t + 1; with causal
  // self-attention the padding after a caption changes no kept position, so no mask is needed.
  [BLIP.name]: async (gpu, dir) => {
    const m = await loadBlipTrain(gpu, dir);
    return visionText(m, { ...m, encoder: "vision_model." });
  },
  [CLIPCAP.name]: async (gpu, dir) => {
    const m = await loadClipCapTrain(gpu, dir);
    return {
      params: m.params,
      eosId: m.config.eosTokenId,
      labelSmoothing: 0,
      layout: CLIPCAP_LAYOUT,
      batch: (labels, N) => clipCapBatch(labels, N, m),
      encode(rec, pixels) {
        const out = clipVisionEncode(rec, m.vision, pixels);
        rec.releaseAfterSubmit(out.hidden);
        return out.imageEmbeds;
      },
      record(rec, input, batch, g, _eps, dropout) {
        const embeds = frozenStates(input, "CLIP");
        return lossSums(rec, recordClipCapLoss(rec, m, embeds, batch, g, dropout).rows);
      },
      dispose: () => m.dispose(),
    };
  },
  [SHOW_ATTEND_TELL.name]: async (gpu, dir, opts) => {
    const m = await loadSatTrain(gpu, dir, { trainEncoder: satTrainsEncoder(opts.frozen) });
    return {
      params: [...m.params, ...m.frozen],
      encoder: "encoder.",
      eosId: m.config.endTokenId,
      labelSmoothing: 0,
      layout: HF_LAYOUT,
      batch: (labels, N) => satBatch(labels, N, m),
      encode: (rec, pixels) => resnetEncode(rec, m.resnet, pixels),
      record(rec, input, batch, g, _eps, dropout) {
        const out = recordSatLoss(rec, m, input, batch, g, dropout);
        return lossSums(rec, out.rows, out.terms);
      },
      dispose: () => m.dispose(),
    };
  },
};

/** The {@link TrainModel} of the folder `dir`, by the architecture its config names. */
export async function loadTrainModel(
  gpu: Gpu,
  dir: string,
  opts: TrainModelOptions = {},
): Promise<TrainModel> {
  const { arch, where } = await folderArchitecture(asModelFiles(dir));
  const load = TRAIN_MODELS[arch.name];
  if (!load) {
    throw new WebcapError(
      "UNSUPPORTED_ARCH",
      `${where}: no training for ${arch.name} (training: ${Object.keys(TRAIN_MODELS).join(", ")})`,
    );
  }
  return await load(gpu, dir, opts);
}
