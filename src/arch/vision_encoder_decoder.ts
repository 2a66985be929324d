/**
 * HF `VisionEncoderDecoderModel` with a ViT encoder and a GPT-2 decoder with cross-attention
 * (the architecture of `nlpconnect/vit-gpt2-image-captioning`).
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { matmul } from "../shaders/matmul.ts";
import type {
  CaptionModel,
  DecoderConfig,
  DecodeState,
  EncoderState,
  StepOptions,
} from "./caption_model.ts";
import {
  gpt2BeginDecode,
  gpt2Config,
  gpt2Forward,
  gpt2Reorder,
  type Gpt2Weights,
  loadGpt2,
} from "../nn/gpt2.ts";
import { type CacheDecodeState, cacheDecodeState } from "./caption_model.ts";
import type { ParamLoader } from "../nn/params.ts";
import { hfVitNames, loadVit, vitConfig, vitEncode, type VitWeights } from "../nn/vit.ts";
import { forwardWithAttention } from "./attention_maps.ts";

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

/** ViT → GPT-2 captioner. */
export class VisionEncoderDecoder implements CaptionModel {
  readonly architecture = "VisionEncoderDecoderModel";
  private constructor(
    readonly decoder: DecoderConfig,
    readonly vit: VitWeights,
    readonly gpt2: Gpt2Weights,
    readonly encToDec: { w: Tensor; b: Tensor } | undefined,
    readonly params: ParamLoader,
  ) {}

  /** Load from a parsed `config.json` (+ `generation_config.json`) and a weight loader. */
  static async load(
    p: ParamLoader,
    config: Json,
    generation: Json | undefined,
    where: string,
  ): Promise<VisionEncoderDecoder> {
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
      ? {
        w: await p.matrix("enc_to_dec_proj.weight", [gc.n_embd, vc.hidden_size]),
        b: await p.f32("enc_to_dec_proj.bias", [gc.n_embd]),
      }
      : undefined;
    const ids = decoderIds(config, generation, dec);
    return new VisionEncoderDecoder(
      { ...ids, vocabSize: gc.vocab_size, maxPositions: gc.n_positions },
      vit,
      gpt2,
      encToDec,
      p,
    );
  }

  encode(rec: Recorder, pixels: Tensor): EncoderState {
    const hidden = vitEncode(rec, this.vit, pixels);
    const [N, S] = hidden.shape;
    let states = hidden;
    if (this.encToDec) {
      states = matmul(rec, hidden.view([N * S, hidden.shape[2]]), this.encToDec.w, {
        transposeW: true,
        bias: this.encToDec.b,
      })
        .view([N, S, this.gpt2.config.n_embd]);
      rec.releaseAfterSubmit(hidden);
    }
    return { images: N, hidden: states, dispose: () => states.release() };
  }

  beginDecode(
    rec: Recorder,
    enc: EncoderState,
    rowImage: Int32Array,
    maxLength: number,
  ): DecodeState {
    return cacheDecodeState(gpt2BeginDecode(rec, this.gpt2, enc.hidden, rowImage, maxLength));
  }

  step(
    rec: Recorder,
    st: DecodeState,
    tokens: Tensor,
    perRow: number,
    opts: StepOptions = {},
  ): Tensor {
    const s = (st as CacheDecodeState).cache;
    const shape = { layers: this.gpt2.layers.length, heads: this.gpt2.config.n_head, perRow };
    return forwardWithAttention(
      rec,
      st,
      s,
      shape,
      opts.attention,
      (probs) => gpt2Forward(rec, this.gpt2, s, { ids: tokens }, perRow, probs),
    );
  }

  reorder(rec: Recorder, st: DecodeState, parents: Int32Array): void {
    gpt2Reorder(rec, (st as CacheDecodeState).cache, parents);
  }

  dispose(): void {
    this.params.dispose();
  }
}
