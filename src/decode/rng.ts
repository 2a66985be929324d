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

/**
 * Draw an index with probability proportional to `weights[i]` (non-negative; zero weights are
 * never drawn). Returns -1 when every weight is zero.
 */
export function sampleIndex(weights: ArrayLike<number>, rng: Rng): number {
  let total = 0;
  for (let i = 0; i < weights.length; i++) total += weights[i];
  if (!(total > 0)) return -1;
  const u = rng.nextFloat() * total;
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
