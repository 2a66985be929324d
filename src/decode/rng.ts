/**
 * A small seedable pseudo-random generator for sampling: xoshiro128** 1.1 (Blackman & Vigna,
 * https://prng.di.unimi.it/xoshiro128starstar.c), its 128-bit state filled by SplitMix32
 * (a Weyl sequence 0x9e3779b9·i passed through the MurmurHash3 32-bit finalizer). The same seed
 * gives the same stream on every platform: only 32-bit integer arithmetic is used.
 * @module
 */

import { WebcapError } from "../errors.ts";

const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 9007199254740992;

/** A deterministic stream of uniform numbers. */
export class Rng {
  #s = new Uint32Array(4);

  /** @param seed any safe non-negative integer; equal seeds give equal streams. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new WebcapError(
        "BAD_OPTION",
        `seed must be a non-negative safe integer, got ${seed}; pass e.g. seed: 42`,
      );
    }
    let weyl = seed >>> 0;
    const hi = Math.floor(seed / TWO_POW_32) >>> 0;
    const next = (): number => {
      weyl = (weyl + 0x9e3779b9) >>> 0;
      let z = weyl;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#s[0] = next();
    this.#s[1] = next() ^ hi;
    this.#s[2] = next();
    this.#s[3] = next();
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
  }

  /** The next 32 random bits as an unsigned integer. */
  nextU32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** A uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const a = this.nextU32() >>> 5; // 27 bits
    const b = this.nextU32() >>> 6; // 26 bits
    return (a * 67108864 + b) / TWO_POW_53;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** The high 32 bits of the 64-bit product of two u32 (16-bit halves: exact in doubles). */
function mulhi32(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const m1 = ah * bl, m2 = al * bh;
  const mid = ((al * bl) >>> 16) + (m1 & 0xffff) + (m2 & 0xffff);
  return (ah * bh + (m1 >>> 16) + (m2 >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/**
 * Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): the
 * counter-based generator the GPU sampler runs too (src/shaders/sample/sample.ts), so draws
 * depend on (key, counter) only, never on the host or the adapter.
 * @param counter four u32; @param key two u32. Returns four u32.
 */
export function philox4x32(counter: readonly number[], key: readonly number[]): number[] {
  let [c0, c1, c2, c3] = counter.map((c) => c >>> 0);
  let [k0, k1] = key.map((k) => k >>> 0);
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi32(0xd2511f53, c0), lo0 = Math.imul(0xd2511f53, c0) >>> 0;
    const hi1 = mulhi32(0xcd9e8d57, c2), lo1 = Math.imul(0xcd9e8d57, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/**
 * The uniform in [0, 1) (24 bits, exact in float32) that sampling draws for `stream` (the row of
 * a sequence) at `step` (tokens it generated before) under `seed`: Philox 4x32-10 with key
 * (seed mod 2^32, seed / 2^32) and counter (stream, step, 0, 0).
 */
export function sampleUniform(seed: number, stream: number, step: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new WebcapError(
      "BAD_OPTION",
      `seed must be a non-negative safe integer, got ${seed}; pass e.g. seed: 42`,
    );
  }
  const [x] = philox4x32([stream, step, 0, 0], [seed >>> 0, Math.floor(seed / TWO_POW_32)]);
  return (x >>> 8) / 16777216;
}

/**
 * Draw an index with probability proportional to `weights[i]` (non-negative; zero weights are
 * never drawn). Returns -1 when every weight is zero.
 */
export function sampleIndex(weights: ArrayLike<number>, rng: Rng): number {
  return sampleIndexAt(weights, rng.nextFloat());
}

/** {@link sampleIndex} with the uniform `u` in [0, 1) given: the first index whose cumulative weight passes u · total. */
export function sampleIndexAt(weights: ArrayLike<number>, uniform: number): number {
  let total = 0;
  for (let i = 0; i < weights.length; i++) total += weights[i];
  if (!(total > 0)) return -1;
  const u = uniform * total;
  let acc = 0;
  let last = -1;
  for (let i = 0; i < weights.length; i++) {
    if (weights[i] <= 0) continue;
    acc += weights[i];
    last = i;
    if (u < acc) return i;
  }
  return last; // rounding left u ≥ acc: the last positive weight
}
