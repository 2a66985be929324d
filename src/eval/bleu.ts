/**
 * BLEU-1..4 as pycocoevalcap computes it (`bleu/bleu.py`, `bleu/bleu_scorer.py`): clipped
 * n-gram matches against the per-n-gram maximum count over the references, the "closest"
 * reference length (ties to the shorter), smoothing constants 1e-15 / 1e-9, a brevity penalty
 * exp(1 - r/c) when c < r, corpus score from summed statistics (not a mean of per-image scores).
 * @module
 */

import { countNgrams, pySplit } from "./ngrams.ts";
import { checkCandidate, checkCandidates, checkReferences } from "./scorer_input.ts";

const TINY = 1e-15;
const SMALL = 1e-9;

/** Sufficient statistics of one candidate against its references. */
export interface BleuStats {
  /** Candidate length in tokens. */
  testLen: number;
  /** The reference length closest to `testLen` (ties: the shorter). */
  refLen: number;
  /** Candidate n-gram counts, index n-1. */
  guess: number[];
  /** Clipped matching n-gram counts, index n-1. */
  correct: number[];
}

/** Corpus and per-image BLEU scores. */
export interface BleuResult {
  /** `corpus[k]` = Bleu_(k+1) over the whole set. */
  corpus: number[];
  /** `perImage[i][k]` = Bleu_(k+1) of image i. */
  perImage: number[][];
}

interface CookedRefs {
  lens: number[];
  maxCounts: Map<string, number>;
}

/** BLEU with n-gram orders 1..n (default 4) over a fixed set of tokenized references. */
export class Bleu {
  readonly #n: number;
  readonly #refs: CookedRefs[];

  /**
   * Prepare the references (n-gram maximum counts and lengths per image).
   * @param refs Tokenized references per image (`refs[i]`: the captions of image i).
   * @param opts `n`: the largest n-gram order (default 4).
   */
  constructor(refs: readonly (readonly string[])[], opts: { n?: number } = {}) {
    checkReferences("BLEU", refs);
    this.#n = opts.n ?? 4;
    this.#refs = refs.map((r) => this.#cookRefs(r));
  }

  /** Number of images. */
  get size(): number {
    return this.#refs.length;
  }

  #cookRefs(refs: readonly string[]): CookedRefs {
    const lens: number[] = [];
    const maxCounts = new Map<string, number>();
    for (const ref of refs) {
      const words = pySplit(ref);
      lens.push(words.length);
      for (const counts of countNgrams(words, this.#n)) {
        for (const [g, c] of counts) maxCounts.set(g, Math.max(maxCounts.get(g) ?? 0, c));
      }
    }
    return { lens, maxCounts };
  }

  /** Statistics of `candidate` (tokenized) against the references of image `index`. */
  stats(index: number, candidate: string): BleuStats {
    checkCandidate("BLEU", this.size, index, candidate);
    const { lens, maxCounts } = this.#refs[index];
    const words = pySplit(candidate);
    const testLen = words.length;
    let refLen = lens[0];
    for (const l of lens) {
      const d = Math.abs(l - testLen), best = Math.abs(refLen - testLen);
      if (d < best || (d === best && l < refLen)) refLen = l;
    }
    const guess: number[] = [], correct: number[] = [];
    countNgrams(words, this.#n).forEach((counts, k) => {
      guess.push(Math.max(0, testLen - k));
      let c = 0;
      for (const [g, count] of counts) c += Math.min(maxCounts.get(g) ?? 0, count);
      correct.push(c);
    });
    return { testLen, refLen, guess, correct };
  }

  /** Bleu_1..n of one image (sentence level, as in pycocoevalcap's per-image list). */
  scoreOne(index: number, candidate: string): number[] {
    return bleuFromStats(this.stats(index, candidate), this.#n);
  }

  /** Corpus and per-image scores of one candidate per image (in image order). */
  score(candidates: readonly string[]): BleuResult {
    checkCandidates("BLEU", this.size, candidates);
    const total: BleuStats = {
      testLen: 0,
      refLen: 0,
      guess: new Array(this.#n).fill(0),
      correct: new Array(this.#n).fill(0),
    };
    const perImage = candidates.map((c, i) => {
      const s = this.stats(i, c);
      total.testLen += s.testLen;
      total.refLen += s.refLen;
      for (let k = 0; k < this.#n; k++) {
        total.guess[k] += s.guess[k];
        total.correct[k] += s.correct[k];
      }
      return bleuFromStats(s, this.#n);
    });
    return { corpus: bleuFromStats(total, this.#n), perImage };
  }
}

/** Bleu_1..n from (summed) statistics, with pycocoevalcap's smoothing and brevity penalty. */
export function bleuFromStats(s: BleuStats, n: number): number[] {
  const out: number[] = [];
  let prod = 1;
  for (let k = 0; k < n; k++) {
    prod *= (s.correct[k] + TINY) / (s.guess[k] + SMALL);
    out.push(prod ** (1 / (k + 1)));
  }
  const ratio = (s.testLen + TINY) / (s.refLen + SMALL);
  if (ratio < 1) {
    const bp = Math.exp(1 - 1 / ratio);
    for (let k = 0; k < n; k++) out[k] *= bp;
  }
  return out;
}
