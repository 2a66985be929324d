/**
 * ROUGE-L as pycocoevalcap computes it (`rouge/rouge.py`): tokens from `split(" ")` (so an
 * empty candidate is one empty token), LCS against each reference, the maximum precision and
 * the maximum recall taken separately over the references, F-measure with β = 1.2; the
 * corpus score is the numpy mean of the per-image scores.
 * @module
 */

import { numpyMean } from "./numpy_mean.ts";
import { checkCandidate, checkCandidates, checkReferences } from "./scorer_input.ts";

const BETA = 1.2;

/** Length of the longest common subsequence of two token lists. */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  const [long, short] = a.length >= b.length ? [a, b] : [b, a];
  let prev = new Int32Array(short.length + 1), cur = new Int32Array(short.length + 1);
  for (let i = 1; i <= long.length; i++) {
    for (let j = 1; j <= short.length; j++) {
      cur[j] = long[i - 1] === short[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[short.length];
}

/** Corpus and per-image ROUGE-L scores. */
export interface RougeResult {
  /** Mean of the per-image scores. */
  corpus: number;
  /** Score of image i. */
  perImage: number[];
}

/** ROUGE-L (β = 1.2) over a fixed set of tokenized references. */
export class RougeL {
  readonly #refs: string[][][];

  /**
   * Prepare the references (split on single spaces, as the reference does).
   * @param refs Tokenized references per image.
   */
  constructor(refs: readonly (readonly string[])[]) {
    checkReferences("ROUGE_L", refs);
    this.#refs = refs.map((r) => r.map((s) => s.split(" ")));
  }

  /** Number of images. */
  get size(): number {
    return this.#refs.length;
  }

  /** ROUGE-L of `candidate` (tokenized) against the references of image `index`. */
  scoreOne(index: number, candidate: string): number {
    checkCandidate("ROUGE_L", this.size, index, candidate);
    const cand = candidate.split(" ");
    let precMax = 0, recMax = 0;
    for (const ref of this.#refs[index]) {
      const lcs = lcsLength(ref, cand);
      precMax = Math.max(precMax, lcs / cand.length);
      recMax = Math.max(recMax, lcs / ref.length);
    }
    if (precMax === 0 || recMax === 0) return 0;
    const b2 = BETA ** 2;
    return ((1 + b2) * precMax * recMax) / (recMax + b2 * precMax);
  }

  /** Corpus and per-image scores of one candidate per image (in image order). */
  score(candidates: readonly string[]): RougeResult {
    checkCandidates("ROUGE_L", this.size, candidates);
    const perImage = candidates.map((c, i) => this.scoreOne(i, c));
    return { corpus: numpyMean(perImage), perImage };
  }
}
