/**
 * Training ViT-GPT2 (`VisionEncoderDecoderModel`): the towers loaded for training (f32), GPT-2 as
 * the text decoder of the ViT → decoder loss-and-gradient pass (`vision_text.ts`).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { loadWithParams } from "../arch/architecture.ts";
import { decoderIds } from "../arch/vision_encoder_decoder.ts";
import { readModelJson } from "../arch/load.ts";
import type { Gpu } from "../gpu/device.ts";
import { asModelFiles, fileLocation } from "../io/model_files.ts";
import { gpt2Config, type Gpt2Weights, loadGpt2 } from "../nn/gpt2.ts";
import { gpt2TrainBackward, gpt2TrainForward } from "../nn/gpt2_train.ts";
import type { Param } from "../nn/params.ts";
import { hfVitNames, loadVit, vitConfig, type VitWeights } from "../nn/vit.ts";
import type { TrainDecoder, VisionTextModel } from "./vision_text.ts";

type Json = Record<string, unknown>;

/** ViT-GPT2 held for training. */
export interface VitGpt2 extends VisionTextModel {
  /** The encoder. */
  vit: VitWeights;
  /** The decoder. */
  gpt2: Gpt2Weights;
  /** Every parameter, by Hugging Face name. */
  params: Param[];
  /** `decoder_start_token_id`. */
  startId: number;
  /** `eos_token_id`. */
  eosId: number;
  /** `pad_token_id`. */
  padId: number;
  /** The decoder's vocabulary size. */
  vocab: number;
  /** Free the weights. */
  dispose(): void;
}

/** Load a `VisionEncoderDecoderModel` folder (ViT + GPT-2, equal widths) for training, in f32. */
export async function loadVitGpt2(gpu: Gpu, dir: string): Promise<VitGpt2> {
  const files = asModelFiles(dir);
  const where = fileLocation(files, "config.json");
  const config = await readModelJson(files, "config.json");
  const generation = await readModelJson(files, "generation_config.json", true);
  const enc = config.encoder as Json | undefined, dec = config.decoder as Json | undefined;
  if (enc?.model_type !== "vit" || dec?.model_type !== "gpt2") {
    throw new WebcapError(
      "UNSUPPORTED_ARCH",
      `${where}: training needs a VisionEncoderDecoderModel with a vit encoder and a gpt2 decoder`,
    );
  }
  const vc = vitConfig(enc, `${where} encoder`), gc = gpt2Config(dec, `${where} decoder`);
  if (vc.hidden_size !== gc.n_embd || !gc.add_cross_attention) {
    throw new WebcapError(
      "UNSUPPORTED_ARCH",
      `${where}: training needs decoder cross-attention and equal encoder/decoder widths`,
    );
  }
  const ctx = { gpu, files, dtype: "f32" as const, config, where };
  return await loadWithParams(ctx, async (p) => {
    const vit = await loadVit(p, vc, hfVitNames("encoder.", p.store), where);
    const gpt2 = await loadGpt2(p, gc, "decoder.transformer.", where, "decoder.lm_head.weight");
    const ids = decoderIds(config, generation, dec);
    return {
      vit,
      gpt2,
      decoder: gpt2Decoder(gpt2),
      params: p.params,
      startId: ids.decoderStartTokenId,
      eosId: ids.eosTokenId,
      padId: ids.padTokenId,
      vocab: gc.vocab_size,
      dispose: () => p.dispose(),
    };
  });
}

export {
  type EncoderInput,
  type LossAndGrads,
  lossAndGrads,
  recordLossAndGrads,
} from "./vision_text.ts";

/** GPT-2 as the decoder of {@link lossAndGrads} (no attention mask: rows are not padded). */
function gpt2Decoder(gpt2: Gpt2Weights): TrainDecoder {
  return {
    forward(rec, ids, batch, enc, dropout) {
      if (batch.keyLengths) {
        throw new WebcapError("BAD_OPTION", "GPT-2 training takes no attention mask (keyLengths)");
      }
      const { logits, saved } = gpt2TrainForward(rec, gpt2, ids, batch.R, batch.T, enc, dropout);
      return {
        logits,
        backward: (dLogits, g, encoderGrad) =>
          gpt2TrainBackward(rec, gpt2, saved, dLogits, g, encoderGrad),
      };
    },
  };
}
