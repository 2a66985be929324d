/**
 * CIDEr-D as pycocoevalcap computes it (`cider/cider.py`, `cider/cider_scorer.py`; the same
 * formula as the `CiderD` of self-critical training code): TF-IDF vectors of 1..4-grams with
 * document frequencies counted over the images' references (or supplied from a corpus),
 * clipped dot product min(w_cand, w_ref)·w_ref, cosine normalisation, Gaussian length penalty
 * e^(−δ²/2σ²) with σ = 6, mean over n, mean over references, ×10. Float operations follow the
 * reference's order (insertion-ordered n-grams, numpy's pairwise mean, `np.e ** x`).
 * @module
 */

import { WebcapError } from "../errors.ts";
import { countNgrams, pySplit } from "./ngrams.ts";
import { numpyMean } from "./numpy_mean.ts";
import { checkCandidate, checkCandidates, checkReferences } from "./scorer_input.ts";

/**
 * Document frequencies: for each n-gram (its words joined by one space), the number of
 * documents (images) whose references contain it; `numDocs` is the number of documents.
 */
export interface DocumentFrequency {
  /** n-gram → number of images whose references contain it. */
  counts: ReadonlyMap<string, number>;
  /** Number of images counted (the IDF uses ln(numDocs)). */
  numDocs: number;
}

/** Options of {@link CiderD}. */
export interface CiderOptions {
  /**
   * Document frequencies to use instead of those of the given references, e.g. computed once
   * over a whole training set for SCST rewards (`documentFrequency(allTrainRefs)`).
   */
  df?: DocumentFrequency;
  /** Largest n-gram order (default 4). */
  n?: number;
  /** Standard deviation of the length penalty (default 6). */
  sigma?: number;
}

/** Corpus and per-image CIDEr-D scores. */
export interface CiderResult {
  /** Mean of the per-image scores. */
  corpus: number;
  /** Score of image i. */
  perImage: number[];
}

/** Most n-grams whose IDF is cached (bounds memory when scoring endless SCST samples). */
const IDF_CACHE_LIMIT = 1 << 21;

/** Document frequencies of the n-grams (1..n) of tokenized references, one document per image. */
export function documentFrequency(
  refs: readonly (readonly string[])[],
  n = 4,
): DocumentFrequency {
  checkReferences("CIDEr", refs);
  return dfOfCounts(refs.map((r) => r.map((s) => countNgrams(pySplit(s), n))));
}

/** Document frequencies from n-gram counts per image, per reference, per order. */
function dfOfCounts(counts: Map<string, number>[][][]): DocumentFrequency {
  const df = new Map<string, number>();
  for (const imageRefs of counts) {
    const seen = new Set<string>();
    for (const ref of imageRefs) for (const m of ref) for (const g of m.keys()) seen.add(g);
    for (const g of seen) df.set(g, (df.get(g) ?? 0) + 1);
  }
  return { counts: df, numDocs: counts.length };
}

/** TF-IDF vector of one sentence: weights, norms and bigram count, per n-gram order. */
interface SentenceVector {
  /** `grams[n-1]`: the distinct n-grams in first-occurrence order (the reference's order). */
  grams: string[][];
  /** `weights[n-1][j]`: TF-IDF weight of `grams[n-1][j]`. */
  weights: number[][];
  /** Euclidean norm per order. */
  norm: number[];
  /** Number of bigram occurrences (the reference's "length"). */
  length: number;
}

/** A reference's vector with an n-gram → weight index per order. */
interface RefVector extends SentenceVector {
  lookup: Map<string, number>[];
}

/** CIDEr-D over a fixed set of tokenized references; scores many candidates fast. */
export class CiderD {
  readonly #n: number;
  readonly #sigma: number;
  readonly #df: ReadonlyMap<string, number>;
  readonly #logNumDocs: number;
  /** Cache of ln(numDocs) − ln(max(1, df(g))) per n-gram seen so far. */
  readonly #idf = new Map<string, number>();
  readonly #refs: RefVector[][];

  /**
   * Prepare the reference TF-IDF vectors once; candidates are then scored against them.
   * @param refs Tokenized references per image (`refs[i]`: the captions of image i).
   * @param opts Document frequencies (default: from `refs`), n-gram order, σ.
   */
  constructor(refs: readonly (readonly string[])[], opts: CiderOptions = {}) {
    checkReferences("CIDEr", refs);
    this.#n = opts.n ?? 4;
    this.#sigma = opts.sigma ?? 6;
    const counts = refs.map((r) => r.map((s) => countNgrams(pySplit(s), this.#n)));
    const df = opts.df ?? dfOfCounts(counts);
    if (!(df.numDocs >= 1)) {
      throw new WebcapError(
        "BAD_EVAL_INPUT",
        `CIDEr: document frequencies cover ${df.numDocs} documents; need at least one`,
      );
    }
    this.#df = df.counts;
    this.#logNumDocs = Math.log(df.numDocs);
    this.#refs = counts.map((r) =>
      r.map((c) => {
        const v = this.#vector(c);
        const lookup = v.grams.map((gs, k) => new Map(gs.map((g, j) => [g, v.weights[k][j]])));
        return { ...v, lookup };
      })
    );
  }

  /** Number of images. */
  get size(): number {
    return this.#refs.length;
  }

  #idfOf(g: string): number {
    let idf = this.#idf.get(g);
    if (idf === undefined) {
      idf = this.#logNumDocs - Math.log(Math.max(1, this.#df.get(g) ?? 0));
      if (this.#idf.size < IDF_CACHE_LIMIT) this.#idf.set(g, idf);
    }
    return idf;
  }

  /** Vector of a sentence from its n-gram counts (`countNgrams` of its tokens). */
  #vector(counts: Map<string, number>[]): SentenceVector {
    const v: SentenceVector = { grams: [], weights: [], norm: [], length: 0 };
    for (const m of counts) {
      const grams = [...m.keys()], weights: number[] = [];
      let sq = 0;
      for (const g of grams) {
        const w = m.get(g)! * this.#idfOf(g);
        weights.push(w);
        sq += w * w;
      }
      v.grams.push(grams);
      v.weights.push(weights);
      v.norm.push(Math.sqrt(sq));
    }
    if (this.#n >= 2) { for (const tf of counts[1].values()) v.length += tf; }
    return v;
  }

  /** Per-order similarity of a candidate and one reference, length penalty applied. */
  #sim(hyp: SentenceVector, ref: RefVector, out: number[]): void {
    const delta = hyp.length - ref.length;
    const penalty = Math.pow(Math.E, -(delta * delta) / (2 * this.#sigma ** 2));
    for (let k = 0; k < this.#n; k++) {
      const lookup = ref.lookup[k], grams = hyp.grams[k], weights = hyp.weights[k];
      let val = 0;
      for (let j = 0; j < grams.length; j++) {
        const wr = lookup.get(grams[j]);
        if (wr !== undefined) val += Math.min(weights[j], wr) * wr;
      }
      if (hyp.norm[k] !== 0 && ref.norm[k] !== 0) val /= hyp.norm[k] * ref.norm[k];
      out[k] += val * penalty;
    }
  }

  /** CIDEr-D of `candidate` (tokenized) for image `index` (e.g. an SCST reward). */
  scoreOne(index: number, candidate: string): number {
    checkCandidate("CIDEr", this.size, index, candidate);
    const hyp = this.#vector(countNgrams(pySplit(candidate), this.#n));
    const refs = this.#refs[index];
    const sum = new Array<number>(this.#n).fill(0);
    for (const ref of refs) this.#sim(hyp, ref, sum);
    return (numpyMean(sum) / refs.length) * 10;
  }

  /** Corpus and per-image scores of one candidate per image (in image order). */
  score(candidates: readonly string[]): CiderResult {
    checkCandidates("CIDEr", this.size, candidates);
    const perImage = candidates.map((c, i) => this.scoreOne(i, c));
    return { corpus: numpyMean(perImage), perImage };
  }
}
