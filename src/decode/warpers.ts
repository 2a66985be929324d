/**
 * Sampling warpers over one processed score row, in place, with transformers' exact semantics
 * (`TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper`, `TypicalLogitsWarper`):
 * removed tokens get `filter_value` = -Infinity and at least `minTokensToKeep` tokens survive.
 * transformers applies them in this order: temperature, top-k, top-p, typical.
 * @module
 */

import { logSoftmaxInPlace } from "./processors.ts";

/** Warper settings; a value of 1 (temperature, topP, typicalP) or 0 (topK) is off. */
export interface WarpSettings {
  /** Scores are divided by it. */
  temperature: number;
  /** Keep the k most likely (ties with the k-th survive). */
  topK: number;
  /** Keep the smallest most-likely set of at least this mass (nucleus). */
  topP: number;
  /** Keep the tokens closest to the entropy up to this mass. */
  typicalP: number;
  /** 1 for sampling; transformers keeps max(2, eos count + 1) for beam sampling. */
  minTokensToKeep: number;
}

/** Divide every score by the temperature. */
export function temperatureWarp(row: Float32Array, temperature: number): void {
  for (let i = 0; i < row.length; i++) row[i] = Math.fround(row[i] / temperature);
}

/** Remove every score below the max(k, minKeep)-th largest (ties with it survive). */
export function topKWarp(row: Float32Array, k: number, minKeep: number): void {
  const kk = Math.min(Math.max(k, minKeep), row.length);
  const sorted = Float32Array.from(row).sort((a, b) => b - a);
  const threshold = sorted[kk - 1];
  for (let i = 0; i < row.length; i++) if (row[i] < threshold) row[i] = -Infinity;
}

/** Indices of `keys` in ascending key order, ties by index (a stable sort). */
function ascendingOrder(keys: ArrayLike<number>): Int32Array {
  const order = Int32Array.from({ length: keys.length }, (_, i) => i);
  return order.sort((a, b) => (keys[a] - keys[b]) || (a - b));
}

/** Softmax probabilities of `row` taken in `order`, accumulated. */
function cumulativeProbs(row: Float32Array, order: Int32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const cum = new Float64Array(order.length);
  let acc = 0;
  for (let j = 0; j < order.length; j++) {
    acc += Math.exp(row[order[j]] - max) / sum;
    cum[j] = acc;
  }
  return cum;
}

/**
 * Nucleus filtering: sort ascending, remove tokens whose cumulative probability is ≤ 1 − p;
 * the `minKeep` most likely always survive.
 */
export function topPWarp(row: Float32Array, p: number, minKeep: number): void {
  const order = ascendingOrder(row);
  const cum = cumulativeProbs(row, order);
  const keepFrom = row.length - minKeep;
  for (let j = 0; j < order.length; j++) {
    if (cum[j] <= 1 - p && j < keepFrom) row[order[j]] = -Infinity;
  }
}

/**
 * Typical filtering: rank tokens by |−log p − entropy|, keep the smallest prefix whose mass
 * reaches `mass` (cut at the first rank whose cumulative probability is not below it).
 */
export function typicalWarp(row: Float32Array, mass: number, minKeep: number): void {
  const logp = Float32Array.from(row);
  logSoftmaxInPlace(logp);
  let entropy = 0;
  for (const l of logp) if (l > -Infinity) entropy -= l * Math.exp(l);
  const shifted = Float64Array.from(logp, (l) => Math.abs(-l - entropy));
  const order = ascendingOrder(shifted);
  const cum = cumulativeProbs(row, order);
  let lastInd = 0;
  for (const c of cum) if (c < mass) lastInd++;
  lastInd = Math.min(lastInd, row.length - 1);
  const cut = shifted[order[lastInd]];
  for (let j = minKeep; j < order.length; j++) {
    if (shifted[order[j]] > cut) row[order[j]] = -Infinity;
  }
}

/** Apply the enabled warpers in transformers' order. */
export function warpRow(row: Float32Array, s: WarpSettings): void {
  if (s.temperature !== 1) temperatureWarp(row, s.temperature);
  if (s.topK !== 0) topKWarp(row, s.topK, s.minTokensToKeep);
  if (s.topP < 1) topPWarp(row, s.topP, s.minTokensToKeep);
  if (s.typicalP < 1) typicalWarp(row, s.typicalP, s.minTokensToKeep);
}
