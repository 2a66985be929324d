/**
 * HF `VisionEncoderDecoderModel` with a ViT encoder and a GPT-2 decoder with cross-attention
 * (the architecture of `nlpconnect/vit-gpt2-image-captioning`).
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { gpt2BeginDecode, gpt2Config, gpt2Forward, loadGpt2 } from "../nn/gpt2.ts";
import { type Linear, linear, loadLinear } from "../nn/modules.ts";
import type { ParamLoader } from "../nn/params.ts";
import { hfVitNames, loadVit, vitConfig, vitEncode, type VitWeights } from "../nn/vit.ts";
import { type Architecture, loadWithParams, transformerParity } from "./architecture.ts";
import type { CaptionModel, DecoderConfig, EncoderState } from "./caption_model.ts";
import { EncoderDecoderModel, hiddenState, kvStepDecoder } from "./encoder_decoder.ts";

type Json = Record<string, unknown>;

/** Token ids from `generation_config.json` (falling back to `config.json`). */
export function decoderIds(
  config: Json,
  generation: Json | undefined,
  decoder: Json,
): Omit<DecoderConfig, "vocabSize" | "maxPositions"> {
  const pick = (k: string): unknown => generation?.[k] ?? config[k] ?? decoder[k];
  const eos = pick("eos_token_id");
  const eosId = Array.isArray(eos) ? eos[0] : eos;
  const start = pick("decoder_start_token_id") ?? pick("bos_token_id");
  if (typeof start !== "number" || typeof eosId !== "number") {
    throw new WebcapError(
      "BAD_CONFIG",
      "config: decoder_start_token_id (or bos_token_id) and eos_token_id must be set",
    );
  }
  const pad = pick("pad_token_id");
  return {
    decoderStartTokenId: start,
    eosTokenId: eosId,
    padTokenId: typeof pad === "number" ? pad : eosId,
  };
}

/** Load a ViT → GPT-2 captioner from a parsed `config.json` (+ `generation_config.json`). */
async function loadVisionEncoderDecoder(
  p: ParamLoader,
  config: Json,
  generation: Json | undefined,
  where: string,
): Promise<CaptionModel> {
  const enc = config.encoder as Json | undefined, dec = config.decoder as Json | undefined;
  if (!enc || !dec) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: VisionEncoderDecoderModel config needs "encoder" and "decoder"`,
    );
  }
  if (enc.model_type !== "vit" || dec.model_type !== "gpt2") {
    throw new WebcapError(
      "UNSUPPORTED_ARCH",
      `${where}: encoder "${enc.model_type}" + decoder "${dec.model_type}" is not supported (vit + gpt2 is)`,
    );
  }
  const vc = vitConfig(enc, `${where} encoder`);
  const gc = gpt2Config(dec, `${where} decoder`);
  if (!gc.add_cross_attention) {
    throw new WebcapError("BAD_CONFIG", `${where}: decoder.add_cross_attention must be true`);
  }
  const vit = await loadVit(p, vc, hfVitNames("encoder.", p.store), where);
  const gpt2 = await loadGpt2(p, gc, "decoder.transformer.", where, "decoder.lm_head.weight");
  const encToDec = vc.hidden_size !== gc.n_embd
    ? await loadLinear(p, "enc_to_dec_proj", gc.n_embd, vc.hidden_size)
    : undefined;
  const ids = decoderIds(config, generation, dec);
  return new EncoderDecoderModel(
    VISION_ENCODER_DECODER.name,
    { ...ids, vocabSize: gc.vocab_size, maxPositions: gc.n_positions },
    {
      encode: (rec, pixels) => encode(rec, vit, encToDec, pixels),
      text: kvStepDecoder(gpt2, { layers: gc.n_layer, heads: gc.n_head }, {
        begin: gpt2BeginDecode,
        forward: (rec, w, cache, ids, S, probs) => gpt2Forward(rec, w, cache, { ids }, S, probs),
      }),
      params: p.params,
      dispose: () => p.dispose(),
    },
  );
}

/** ViT states `[N, 1 + P, hidden]`, projected to the decoder's width when it differs. */
function encode(
  rec: Recorder,
  vit: VitWeights,
  encToDec: Linear | undefined,
  pixels: Tensor,
): EncoderState {
  const hidden = vitEncode(rec, vit, pixels);
  if (!encToDec) return hiddenState(rec.keep(hidden));
  const [N, S, h] = hidden.shape;
  const states = linear(rec, hidden.view([N * S, h]), encToDec).view([N, S, encToDec.w.shape[0]]);
  return hiddenState(rec.keep(states));
}

/** HF `VisionEncoderDecoderModel` (ViT encoder, GPT-2 decoder with cross-attention). */
export const VISION_ENCODER_DECODER: Architecture = {
  name: "VisionEncoderDecoderModel",
  load: (ctx) =>
    loadWithParams(ctx, (p) => loadVisionEncoderDecoder(p, ctx.config, ctx.generation, ctx.where)),
  parity: transformerParity,
  attentionMaps: { leadingPositions: 1 }, // ViT's CLS token
};
