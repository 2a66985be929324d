/**
 * Training ViT-GPT2 (`VisionEncoderDecoderModel`): the towers loaded for training (f32), and one
 * loss-and-gradient pass over a {@link TokenBatch}: ViT forward, per-row encoder states, GPT-2
 * teacher-forced forward, fused cross-entropy, GPT-2 backward, encoder-state gradients gathered
 * back per image, ViT backward (unless the encoder is frozen) — recorded on one submit.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { decoderIds } from "../arch/vision_encoder_decoder.ts";
import { readModelJson } from "../arch/load.ts";
import type { Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { asModelFiles, fileLocation } from "../io/model_files.ts";
import { openWeights } from "../io/weights.ts";
import { gpt2Config, type Gpt2Weights, loadGpt2 } from "../nn/gpt2.ts";
import { gpt2TrainBackward, gpt2TrainForward } from "../nn/gpt2_train.ts";
import { Gradients } from "../nn/grads.ts";
import { type Param, ParamLoader } from "../nn/params.ts";
import { hfVitNames, loadVit, vitConfig, type VitWeights } from "../nn/vit.ts";
import { vitTrainBackward, vitTrainForward } from "../nn/vit_train.ts";
import { embedding, embeddingBackward } from "../shaders/embedding.ts";
import { crossEntropy } from "../shaders/softmax.ts";
import type { TokenBatch } from "./batch.ts";

type Json = Record<string, unknown>;

/** ViT-GPT2 held for training. */
export interface VitGpt2 {
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
  const store = await openWeights(files);
  const p = new ParamLoader(gpu, store, "f32");
  try {
    const vit = await loadVit(p, vc, hfVitNames("encoder.", store), where);
    const gpt2 = await loadGpt2(p, gc, "decoder.transformer.", where, "decoder.lm_head.weight");
    const ids = decoderIds(config, generation, dec);
    return {
      vit,
      gpt2,
      params: p.params,
      startId: ids.decoderStartTokenId,
      eosId: ids.eosTokenId,
      padId: ids.padTokenId,
      vocab: gc.vocab_size,
      dispose: () => p.dispose(),
    };
  } catch (e) {
    p.dispose();
    throw e;
  } finally {
    store.close();
  }
}

/** What one loss-and-gradient pass gives back. */
export interface LossAndGrads {
  /** Σ over positions of weight·loss (the batch loss). */
  loss: number;
  /** `[R·T]` log p(target) of each position (0 where the target is −100). */
  logprobs: Float32Array;
  /** `[R·T, vocab]`. */
  logits: Float32Array;
  /** Every parameter's gradient, by name. */
  grads: Map<string, Float32Array>;
}

/** The loss tensors {@link recordLossAndGrads} leaves for reading after the submit. */
export interface RecordedLoss {
  /** `[R·T, 2]`: log p(target) and weight·loss of each position. */
  rows: Tensor;
  /** `[R·T, vocab]`. */
  logits: Tensor;
}

/**
 * The encoder's input: `pixels [N, C, H, W]` (the ViT runs keeping its activations and is
 * back-propagated), or its output `states [N·S, h]` (a frozen encoder: no ViT on this step).
 */
export type EncoderInput = { pixels: Tensor } | { states: Tensor; N: number };

/**
 * Record the forward of `batch`, the fused cross-entropy (label smoothing `eps`) and the backward
 * into `g` (frozen parameters skipped). Every tensor it makes is released after the submit.
 */
export function recordLossAndGrads(
  rec: Recorder,
  m: VitGpt2,
  input: EncoderInput,
  batch: TokenBatch,
  g: Gradients,
  eps = 0,
): RecordedLoss {
  const N = "pixels" in input ? input.pixels.shape[0] : input.N, { R, T } = batch;
  if (batch.rowImage.some((i) => i < 0 || i >= N)) {
    throw new WebcapError("BAD_SHAPE", `batch rows name images outside the ${N} given`);
  }
  const up = <T extends Int32Array | Float32Array>(a: T, dtype: "i32" | "f32") => {
    const t = uploadTensor(rec.gpu, a, [a.length], dtype, "batch");
    rec.releaseAfterSubmit(t);
    return t;
  };
  const rowImage = up(batch.rowImage, "i32");
  const vit = "pixels" in input ? vitTrainForward(rec, m.vit, input.pixels) : undefined;
  const h = m.vit.config.hidden_size;
  const hidden = vit?.hidden ?? (input as { states: Tensor }).states;
  const S = hidden.size / (N * h);
  const encRows = embedding(rec, hidden.view([N, S * h]), rowImage).view([R * S, h]);
  const dec = gpt2TrainForward(rec, m.gpt2, up(batch.ids, "i32"), R, T, { states: encRows, E: S });
  const ce = crossEntropy(
    rec,
    dec.logits,
    up(batch.targets, "i32"),
    up(batch.weights, "f32"),
    eps,
  );
  const dEncRows = gpt2TrainBackward(rec, m.gpt2, dec.saved, ce.dLogits, g, !!vit);
  if (vit) {
    const dHidden = uploadTensor(rec.gpu, new Float32Array(N * S * h), [N * S, h], "f32", "d-hid");
    embeddingBackward(rec, dEncRows!.view([R, S * h]), rowImage, dHidden.view([N, S * h]));
    vitTrainBackward(rec, m.vit, vit.saved, dHidden, g);
    rec.releaseAfterSubmit(dEncRows!, dHidden);
  }
  rec.releaseAfterSubmit(encRows, dec.logits, ce.rows, ce.dLogits);
  return { rows: ce.rows, logits: dec.logits };
}

/**
 * Loss and the gradient of every parameter for `batch` over `pixels [N, C, H, W]`, label
 * smoothing `eps`. Gradients are fresh each call (zero, then accumulated over every use).
 */
export async function lossAndGrads(
  gpu: Gpu,
  m: VitGpt2,
  pixels: Tensor,
  batch: TokenBatch,
  eps = 0,
): Promise<LossAndGrads> {
  const { R, T } = batch;
  const g = new Gradients(gpu, m.params);
  try {
    const rec = new Recorder(gpu);
    const out = recordLossAndGrads(rec, m, { pixels }, batch, g, eps);
    const rows = rec.readTensor(out.rows), logits = rec.readTensor(out.logits);
    const grads = g.read(rec);
    await rec.submit();
    const r = (await rows) as Float32Array;
    let loss = 0;
    const logprobs = new Float32Array(R * T);
    for (let i = 0; i < R * T; i++) {
      logprobs[i] = r[2 * i];
      loss += r[2 * i + 1];
    }
    return { loss, logprobs, logits: (await logits) as Float32Array, grads: await grads };
  } finally {
    g.dispose();
  }
}
