/**
 * One loss-and-gradient pass of a ViT encoder feeding a text decoder's cross-attention
 * (ViT-GPT2, BLIP) over a {@link TokenBatch}: ViT forward, per-row encoder states, the
 * decoder's teacher-forced forward, fused cross-entropy, the decoder's backward, encoder-state
 * gradients gathered back per image, ViT backward — one submit.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { Grads } from "../nn/grads.ts";
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
   * backward from their gradient: accumulates into `g`, returns the states' gradient `[R·E, h]`.
   */
  forward(
    rec: Recorder,
    ids: Tensor,
    batch: TokenBatch,
    enc: { states: Tensor; E: number },
  ): { logits: Tensor; backward(dLogits: Tensor, g: Grads): Tensor };
}

/** A ViT encoder and a text decoder held for training. */
export interface VisionTextModel {
  vit: VitWeights;
  decoder: TrainDecoder;
  params: Param[];
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
 * Loss and the gradient of every parameter for `batch` over `pixels [N, C, H, W]`, label
 * smoothing `eps`. Gradients are fresh each call (zero, then accumulated over every use).
 */
export async function lossAndGrads(
  gpu: Gpu,
  m: VisionTextModel,
  pixels: Tensor,
  batch: TokenBatch,
  eps = 0,
): Promise<LossAndGrads> {
  const N = pixels.shape[0], { R, T } = batch;
  if (batch.rowImage.some((i) => i < 0 || i >= N)) {
    throw new WebcapError("BAD_SHAPE", `batch rows name images outside the ${N} given`);
  }
  const g = new Grads(gpu, m.params);
  try {
    const rec = new Recorder(gpu);
    const reads = rec.scope(() => {
      const rowImage = rec.upload(batch.rowImage, [R], "i32");
      const vit = vitTrainForward(rec, m.vit, pixels);
      const [S, h] = [vit.saved.S, m.vit.config.hidden_size];
      const states = embedding(rec, vit.hidden.view([N, S * h]), rowImage).view([R * S, h]);
      const ids = rec.upload(batch.ids, [R * T], "i32");
      const dec = m.decoder.forward(rec, ids, batch, { states, E: S });
      const targets = rec.upload(batch.targets, [R * T], "i32");
      const weights = rec.upload(batch.weights, [R * T], "f32");
      const ce = crossEntropy(rec, dec.logits, targets, weights, eps);
      const dStates = dec.backward(ce.dLogits, g);
      rec.releaseAfterSubmit(dStates);
      const dHidden = rec.upload(new Float32Array(N * S * h), [N * S, h], "f32");
      embeddingBackward(rec, dStates.view([R, S * h]), rowImage, dHidden.view([N, S * h]));
      vitTrainBackward(rec, m.vit, vit.saved, dHidden, g);
      return { rows: rec.readTensor(ce.rows), logits: rec.readTensor(dec.logits) };
    });
    const grads = g.read(rec);
    await rec.submit();
    const out = (await reads.rows) as Float32Array;
    let loss = 0;
    const logprobs = new Float32Array(R * T);
    for (let i = 0; i < R * T; i++) {
      logprobs[i] = out[2 * i];
      loss += out[2 * i + 1];
    }
    return { loss, logprobs, logits: (await reads.logits) as Float32Array, grads: await grads };
  } finally {
    g.dispose();
  }
}
