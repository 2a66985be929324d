/**
 * Training batches on the host: teacher forcing (decoder inputs = labels shifted right behind the
 * start token, −100 ignored, mean over kept positions) and SCST (sampled sequences weighted by
 * reward − baseline over a mask), each as ids, targets and per-position loss weights for the
 * fused cross-entropy kernel. Bad labels, disagreeing batch sizes and empty captions are refused.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { IGNORE_INDEX } from "../shaders/softmax.ts";

/** One batch as the loss kernel takes it: R rows of T positions. */
export interface TokenBatch {
  /** Rows. */
  R: number;
  /** Positions per row. */
  T: number;
  /** `[R·T]` decoder inputs. */
  ids: Int32Array;
  /** `[R·T]` the token each position predicts (−100: none). */
  targets: Int32Array;
  /** `[R·T]` loss weight of each position. */
  weights: Float32Array;
  /** `[R]` the image of each row. */
  rowImage: Int32Array;
  /** `[R]` positions each row's self-attention sees (a right-padded attention mask); absent: all. */
  keyLengths?: Int32Array;
}

function checkToken(v: number, vocab: number, what: string, allowIgnore: boolean): void {
  if (Number.isInteger(v) && ((v >= 0 && v < vocab) || (allowIgnore && v === IGNORE_INDEX))) {
    return;
  }
  throw new WebcapError(
    "BAD_OPTION",
    `${what} is ${v}, outside the vocabulary [0, ${vocab})${allowIgnore ? " and not -100" : ""}`,
  );
}

/**
 * Teacher forcing of `labels [N, T]` (one caption per image, −100 at padding) as
 * `VisionEncoderDecoderModel` computes its loss: inputs shifted right behind `startId` (−100
 * read as `padId`) unless `decoderInputs [N, T]` are given, loss of position t against
 * `labels[t]`, mean over kept positions.
 */
export function teacherForcing(
  labels: Int32Array,
  N: number,
  ids: { startId: number; padId: number; vocab: number },
  decoderInputs?: Int32Array,
): TokenBatch {
  const T = labels.length / N;
  if (!Number.isInteger(T) || T < 1) {
    throw new WebcapError("BAD_SHAPE", `${labels.length} labels do not split into ${N} captions`);
  }
  if (decoderInputs && decoderInputs.length !== labels.length) {
    throw new WebcapError(
      "BAD_SHAPE",
      `batch sizes disagree: ${decoderInputs.length} decoder inputs for ${labels.length} labels`,
    );
  }
  decoderInputs?.forEach((v, i) => checkToken(v, ids.vocab, `decoder input ${i}`, false));
  const input = new Int32Array(N * T), weights = new Float32Array(N * T);
  let kept = 0;
  for (let r = 0; r < N; r++) {
    let rowKept = 0;
    for (let t = 0; t < T; t++) {
      const y = labels[r * T + t];
      checkToken(y, ids.vocab, `label ${t} of caption ${r}`, true);
      if (y !== IGNORE_INDEX) rowKept++;
      const prev = t === 0 ? ids.startId : labels[r * T + t - 1];
      input[r * T + t] = decoderInputs?.[r * T + t] ?? (prev === IGNORE_INDEX ? ids.padId : prev);
    }
    if (rowKept === 0) {
      throw new WebcapError("BAD_OPTION", `caption ${r} is empty: every label is -100`);
    }
    kept += rowKept;
  }
  for (let i = 0; i < N * T; i++) weights[i] = labels[i] === IGNORE_INDEX ? 0 : 1 / kept;
  const rowImage = Int32Array.from({ length: N }, (_, r) => r);
  return { R: N, T, ids: input, targets: labels.slice(), weights, rowImage };
}

/** SCST's inputs: K sampled sequences per image (rows image-major), their mask and rewards. */
export interface ScstSamples {
  /** `[N·K, T + 1]`: the start token, then T sampled tokens. */
  samples: Int32Array;
  /** `[N·K, T]`: 1 for tokens up to and including the end token. */
  mask: Float32Array;
  rewards: Float32Array; // [N·K]
  baselines: Float32Array; // [N·K]
  N: number;
  K: number;
}

/**
 * SCST as per-position weights: loss = −Σ (reward − baseline)·log p(token)·mask / Σ mask, so the
 * weight of position t of row r is `(reward_r − baseline_r)·mask_rt / Σ mask`.
 */
export function scstBatch(s: ScstSamples, vocab: number): TokenBatch {
  const R = s.N * s.K;
  if ([s.rewards.length, s.baselines.length].some((n) => n !== R) || s.samples.length % R) {
    throw new WebcapError(
      "BAD_SHAPE",
      `SCST batch sizes disagree: ${s.N} images × K ${s.K} = ${R} rows, but ${s.samples.length} ` +
        `sample tokens, ${s.rewards.length} rewards, ${s.baselines.length} baselines`,
    );
  }
  const T = s.samples.length / R - 1;
  if (T < 1 || s.mask.length !== R * T) {
    throw new WebcapError("BAD_SHAPE", `SCST mask [${s.mask.length}] is not [${R}, ${T}]`);
  }
  const ids = new Int32Array(R * T), targets = new Int32Array(R * T);
  let total = 0;
  for (let r = 0; r < R; r++) {
    let rowMask = 0;
    for (let t = 0; t <= T; t++) {
      checkToken(s.samples[r * (T + 1) + t], vocab, `token ${t} of sample ${r}`, false);
    }
    for (let t = 0; t < T; t++) {
      ids[r * T + t] = s.samples[r * (T + 1) + t];
      targets[r * T + t] = s.samples[r * (T + 1) + t + 1];
      rowMask += s.mask[r * T + t];
    }
    if (rowMask === 0) {
      throw new WebcapError("BAD_OPTION", `sample ${r} is empty: its mask is all 0`);
    }
    total += rowMask;
  }
  const weights = new Float32Array(R * T);
  for (let i = 0; i < R * T; i++) {
    const r = Math.floor(i / T);
    weights[i] = (s.rewards[r] - s.baselines[r]) * s.mask[i] / total;
  }
  const rowImage = Int32Array.from({ length: R }, (_, r) => Math.floor(r / s.K));
  return { R, T, ids, targets, weights, rowImage };
}

/** The "new SCST" baseline: for each sample, the mean reward of the other K − 1 of its image. */
export function meanOfOthersBaseline(rewards: Float32Array, K: number): Float32Array {
  if (K < 2 || rewards.length % K) {
    throw new WebcapError(
      "BAD_SHAPE",
      `mean-of-others needs K ≥ 2 samples per image, got ${rewards.length} rewards with K ${K}`,
    );
  }
  const out = new Float32Array(rewards.length);
  for (let i = 0; i < rewards.length; i += K) {
    let sum = 0;
    for (let j = 0; j < K; j++) sum += rewards[i + j];
    for (let j = 0; j < K; j++) out[i + j] = (sum - rewards[i + j]) / (K - 1);
  }
  return out;
}

/** The batch loss (Σ of weighted losses) and each position's log p(target) from `rows [R·T, 2]`. */
export function lossOfRows(rows: Float32Array): { loss: number; logprobs: Float32Array } {
  const n = rows.length / 2, logprobs = new Float32Array(n);
  let loss = 0;
  for (let i = 0; i < n; i++) {
    logprobs[i] = rows[2 * i];
    loss += rows[2 * i + 1];
  }
  return { loss, logprobs };
}
