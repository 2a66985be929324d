/**
 * One loss-and-gradient pass of a ViT encoder feeding a text decoder's cross-attention
 * (ViT-GPT2, BLIP) over a {@link TokenBatch}: ViT forward, per-row encoder states, the
 * decoder's teacher-forced forward, fused cross-entropy, the decoder's backward, encoder-state
 * gradients gathered back per image, ViT backward (unless the encoder is frozen) — one submit.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { Gradients, type TrainDropout } from "../nn/grads.ts";
import type { Param } from "../nn/params.ts";
import type { VitWeights } from "../nn/vit.ts";
import { vitTrainBackward, vitTrainForward } from "../nn/vit_train.ts";
import { embedding, embeddingBackward } from "../shaders/embedding.ts";
import { crossEntropy } from "../shaders/softmax.ts";
import type { TokenBatch } from "./batch.ts";

/** A text decoder's teacher-forced forward, and its backward into the encoder states. */
export interface TrainDecoder {
  /**
   * Logits `[R·T, vocab]` of `ids [R·T]` (i32) over per-row encoder states `[R·E, h]`, and the
   * backward from their gradient: accumulates into `g`, returns the states' gradient `[R·E, h]`
   * when `encoderGrad` (a frozen encoder needs none). With `dropout`, the config's dropouts apply.
   */
  forward(
    rec: Recorder,
    ids: Tensor,
    batch: TokenBatch,
    enc: { states: Tensor; E: number },
    dropout?: TrainDropout,
  ): {
    logits: Tensor;
    backward(dLogits: Tensor, g: Gradients, encoderGrad: boolean): Tensor | undefined;
  };
}

/** A ViT encoder and a text decoder held for training. */
export interface VisionTextModel {
  /** The encoder. */
  vit: VitWeights;
  /** The text decoder. */
  decoder: TrainDecoder;
  /** Every parameter, by Hugging Face name. */
  params: Param[];
}

/**
 * The encoder's input: `pixels [N, C, H, W]` (the ViT runs keeping its activations and is
 * back-propagated), or its output `states [N·S, h]` (a frozen encoder: no ViT on this step).
 */
export type EncoderInput = { pixels: Tensor } | { states: Tensor; N: number };

/** The loss tensors {@link recordLossAndGrads} leaves for reading after the submit. */
export interface RecordedLoss {
  /** `[R·T, 2]`: log p(target) and weight·loss of each position. */
  rows: Tensor;
  /** `[R·T, vocab]`. */
  logits: Tensor;
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

/**
 * Record the forward of `batch`, the fused cross-entropy (label smoothing `eps`) and the backward
 * into `g` (frozen parameters skipped); with `dropout`, every dropout of the configs applies.
 * Every tensor it makes, `rows` and `logits` included, is released after the submit.
 */
export function recordLossAndGrads(
  rec: Recorder,
  m: VisionTextModel,
  input: EncoderInput,
  batch: TokenBatch,
  g: Gradients,
  eps = 0,
  dropout?: TrainDropout,
): RecordedLoss {
  const N = "pixels" in input ? input.pixels.shape[0] : input.N, { R, T } = batch;
  if (batch.rowImage.some((i) => i < 0 || i >= N)) {
    throw new WebcapError("BAD_SHAPE", `batch rows name images outside the ${N} given`);
  }
  const out = rec.scope(() => {
    const rowImage = rec.upload(batch.rowImage, [R], "i32");
    const vit = "pixels" in input ? vitTrainForward(rec, m.vit, input.pixels, dropout) : undefined;
    const h = m.vit.config.hidden_size;
    const hidden = vit?.hidden ?? (input as { states: Tensor }).states;
    const S = hidden.size / (N * h);
    const states = embedding(rec, hidden.view([N, S * h]), rowImage).view([R * S, h]);
    const ids = rec.upload(batch.ids, [R * T], "i32");
    const dec = m.decoder.forward(rec, ids, batch, { states, E: S }, dropout);
    const targets = rec.upload(batch.targets, [R * T], "i32");
    const weights = rec.upload(batch.weights, [R * T], "f32");
    const ce = crossEntropy(rec, dec.logits, targets, weights, eps);
    const dStates = dec.backward(ce.dLogits, g, vit !== undefined);
    if (vit) {
      const dHidden = rec.upload(new Float32Array(N * S * h), [N * S, h], "f32");
      embeddingBackward(rec, dStates!.view([R, S * h]), rowImage, dHidden.view([N, S * h]));
      vitTrainBackward(rec, m.vit, vit.saved, dHidden, g);
    }
    return { rows: ce.rows, logits: dec.logits };
  });
  rec.releaseAfterSubmit(out.rows, out.logits);
  return out;
}

/**
 * Loss and the gradient of every parameter for `batch` over `pixels [N, C, H, W]`, label
 * smoothing `eps`, the configs' dropouts with `dropout`. Gradients are fresh each call (zero,
 * then accumulated over every use).
 */
export async function lossAndGrads(
  gpu: Gpu,
  m: VisionTextModel,
  pixels: Tensor,
  batch: TokenBatch,
  eps = 0,
  dropout?: TrainDropout,
): Promise<LossAndGrads> {
  const { R, T } = batch;
  const g = new Gradients(gpu, m.params);
  try {
    const rec = new Recorder(gpu);
    const out = recordLossAndGrads(rec, m, { pixels }, batch, g, eps, dropout);
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
