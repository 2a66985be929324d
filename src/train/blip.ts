/**
 * Training BLIP (`BlipForConditionalGeneration`): the towers loaded for training (f32), the BERT
 * text decoder as the decoder of the ViT → decoder loss-and-gradient pass (`vision_text.ts`), and
 * BLIP's own loss convention: labels = input ids (−100 at padding), shifted inside the text
 * decoder (logits[t] against labels[t + 1]), label smoothing `text_config.label_smoothing`
 * (transformers 5; default 0), mean over kept positions, padding masked by the attention mask.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { loadWithParams } from "../arch/architecture.ts";
import { loadBlipTowers } from "../arch/blip.ts";
import { readModelJson } from "../arch/load.ts";
import type { Gpu } from "../gpu/device.ts";
import { asModelFiles, fileLocation } from "../io/model_files.ts";
import type { BertDecoderWeights } from "../nn/bert_decoder.ts";
import { bertTrainBackward, bertTrainForward } from "../nn/bert_train.ts";
import { configNumber } from "../nn/config.ts";
import { IGNORE_INDEX } from "../shaders/softmax.ts";
import { teacherForcing, type TokenBatch } from "./batch.ts";
import type { TrainDecoder, VisionTextModel } from "./vision_text.ts";

/** BLIP held for training. */
export interface BlipTrain extends VisionTextModel {
  text: BertDecoderWeights;
  /** `text_config.bos_token_id`: the first token of every caption and sample. */
  startId: number;
  /** `text_config.sep_token_id`: the end of every caption. */
  eosId: number;
  padId: number;
  vocab: number;
  /** `text_config.label_smoothing` of the caption loss. */
  labelSmoothing: number;
  dispose(): void;
}

/** The BERT decoder as the decoder of `lossAndGrads`; `batch.keyLengths` mask padded keys. */
function bertDecoder(text: BertDecoderWeights): TrainDecoder {
  return {
    forward(rec, ids, batch, enc, dropout) {
      const { R, T } = batch, lengths = batch.keyLengths;
      const keyLengths = lengths && rec.upload(lengths, [R], "i32");
      const shape = { R, T, enc: enc.states, E: enc.E, keyLengths, dropout };
      const { logits, saved } = bertTrainForward(rec, text, ids, shape);
      return {
        logits,
        backward: (dLogits, g, encoderGrad) =>
          bertTrainBackward(rec, text, saved, dLogits, g, encoderGrad),
      };
    },
  };
}

/** Load a `BlipForConditionalGeneration` folder for training, in f32. */
export async function loadBlipTrain(gpu: Gpu, dir: string): Promise<BlipTrain> {
  const files = asModelFiles(dir);
  const where = fileLocation(files, "config.json");
  const config = await readModelJson(files, "config.json");
  return await loadWithParams({ gpu, files, dtype: "f32", config, where }, async (p) => {
    const { vit, text, ids, textConfig } = await loadBlipTowers(p, config, where);
    const eps = configNumber(textConfig, "label_smoothing", `${where} text_config`, 0);
    if (!(eps >= 0 && eps <= 1)) {
      throw new WebcapError(
        "BAD_CONFIG",
        `${where}: text_config.label_smoothing ${eps} is outside [0, 1]`,
      );
    }
    return {
      vit,
      text,
      decoder: bertDecoder(text),
      params: p.params,
      startId: ids.decoderStartTokenId,
      eosId: ids.eosTokenId,
      padId: ids.padTokenId,
      vocab: text.config.vocab_size,
      labelSmoothing: eps,
      dispose: () => p.dispose(),
    };
  });
}

/**
 * BLIP's caption batch: `inputIds [N, T]`, `labels [N, T]` (the input ids, −100 at padding) and
 * `attentionMask [N, T]` (1s then 0s). Position t predicts `labels[t + 1]` (the last predicts
 * nothing); each row's self-attention sees its unmasked positions only.
 */
export function blipCaptionBatch(
  inputIds: Int32Array,
  labels: Int32Array,
  attentionMask: ArrayLike<number>,
  N: number,
  m: { startId: number; padId: number; vocab: number },
): TokenBatch {
  if (labels.length !== inputIds.length || attentionMask.length !== inputIds.length) {
    throw new WebcapError(
      "BAD_SHAPE",
      `batch sizes disagree: ${inputIds.length} input ids, ${labels.length} labels, ` +
        `${attentionMask.length} attention mask entries`,
    );
  }
  const T = inputIds.length / N;
  const shifted = labels.map((_, i) => (i + 1) % T === 0 ? IGNORE_INDEX : labels[i + 1]);
  const batch = teacherForcing(shifted, N, m, inputIds);
  return { ...batch, keyLengths: keyLengths(attentionMask, N, T) };
}

/** Each row's count of leading 1s of a right-padded `mask [N, T]`; refuses any other mask. */
function keyLengths(mask: ArrayLike<number>, N: number, T: number): Int32Array {
  return Int32Array.from({ length: N }, (_, r) => {
    const row = Array.from({ length: T }, (_, t) => mask[r * T + t]);
    const n = row.indexOf(0) < 0 ? T : row.indexOf(0);
    if (n === 0 || row.some((v, t) => v !== (t < n ? 1 : 0))) {
      throw new WebcapError(
        "BAD_OPTION",
        `attention mask row ${r} is [${row}]: it must be 1s then 0s (right padding), starting with 1`,
      );
    }
    return n;
  });
}
