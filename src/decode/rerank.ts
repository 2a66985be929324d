/**
 * Controllable captions by n-best reranking: generate several candidates (beam search with
 * numReturnSequences > 1, diverse beam search or sampling), decode them to text, then reorder
 * them by model score + weight · an attribute score. A {@link Reranker} scores one caption; the
 * lexicon-based {@link LexiconSentiment} is a small replaceable example. {@link lengthControl}
 * turns a length wish into min/max new-token options.
 * @module
 */

import { WebcapError } from "../errors.ts";
import type { GenerateOptions } from "./options.ts";

/** A caption candidate: its decoded text and the search's score. */
export interface RerankCandidate {
  /** The decoded caption. */
  text: string;
  /** The search's score (higher is better), e.g. GeneratedSequence.score. */
  score: number;
}

/** Scores how well a caption has the wanted attribute; higher is better. */
export interface Reranker {
  /** The attribute score of a caption. */
  score(text: string): number;
}

function badRerank(message: string): WebcapError {
  return new WebcapError("BAD_OPTION", `option rerank: ${message}`);
}

/**
 * Refuse a malformed `{ reranker, weight }` before any caption is made.
 * @throws WebcapError BAD_OPTION saying what is wrong.
 */
export function checkRerank(r: unknown): void {
  if (typeof r !== "object" || r === null) {
    throw badRerank(`must be { reranker, weight? }, got ${r === null ? "null" : typeof r}`);
  }
  const { reranker, weight } = r as { reranker?: unknown; weight?: unknown };
  if (typeof (reranker as Reranker | null)?.score !== "function") {
    throw badRerank("reranker must be an object with a score(text) method");
  }
  if (weight !== undefined && (typeof weight !== "number" || !Number.isFinite(weight))) {
    throw badRerank(`weight must be a finite number, got ${String(weight)}`);
  }
}

/**
 * Candidates best first by score + weight · reranker score, with both parts kept.
 * @throws WebcapError BAD_OPTION when the reranker scores a caption with anything but a finite number.
 */
export function rerank<T extends RerankCandidate>(
  candidates: readonly T[],
  reranker: Reranker,
  weight = 1,
): (T & { attributeScore: number; combinedScore: number })[] {
  checkRerank({ reranker, weight });
  return candidates
    .map((c) => {
      const attributeScore = reranker.score(c.text);
      if (typeof attributeScore !== "number" || !Number.isFinite(attributeScore)) {
        throw badRerank(
          `the reranker scored "${c.text}" ${
            String(attributeScore)
          }; scores must be finite numbers`,
        );
      }
      return { ...c, attributeScore, combinedScore: c.score + weight * attributeScore };
    })
    .sort((a, b) => b.combinedScore - a.combinedScore);
}

/** A few common English sentiment words with polarity in [-1, 1]; replace it with your own. */
export const SENTIMENT_LEXICON: Readonly<Record<string, number>> = {
  beautiful: 1,
  happy: 1,
  lovely: 1,
  smiling: 0.8,
  bright: 0.6,
  sunny: 0.6,
  colorful: 0.5,
  cute: 0.8,
  delicious: 0.8,
  nice: 0.6,
  good: 0.5,
  sad: -1,
  dark: -0.5,
  broken: -0.8,
  dirty: -0.8,
  old: -0.3,
  empty: -0.4,
  lonely: -0.8,
  angry: -1,
  crying: -0.9,
};

/**
 * Sentiment from a word lexicon: the mean polarity of the caption's lexicon words (0 when it has
 * none), signed by `target` so that higher is closer to the wanted sentiment.
 */
export class LexiconSentiment implements Reranker {
  /**
   * A scorer favouring `target` sentiment.
   * @param target the sentiment that scores high.
   * @param lexicon word → polarity in [-1, 1].
   */
  constructor(
    readonly target: "positive" | "negative" = "positive",
    readonly lexicon: Readonly<Record<string, number>> = SENTIMENT_LEXICON,
  ) {}

  /** Signed mean polarity of the lexicon words in `text`. */
  score(text: string): number {
    const words = text.toLowerCase().match(/[a-z']+/g) ?? [];
    const hits = words.filter((w) => Object.hasOwn(this.lexicon, w)).map((w) => this.lexicon[w]);
    if (hits.length === 0) return 0;
    const mean = hits.reduce((a, b) => a + b, 0) / hits.length;
    return this.target === "positive" ? mean : -mean;
  }
}

/** Length wishes and the token ranges they map to. */
export const LENGTH_RANGES = {
  short: { minNewTokens: 3, maxNewTokens: 12 },
  normal: { minNewTokens: 5, maxNewTokens: 20 },
  detailed: { minNewTokens: 15, maxNewTokens: 40 },
} as const satisfies Record<string, Pick<GenerateOptions, "minNewTokens" | "maxNewTokens">>;

/** Options that steer caption length: merge them into the generate options. */
export function lengthControl(
  wish: keyof typeof LENGTH_RANGES,
): Pick<GenerateOptions, "minNewTokens" | "maxNewTokens"> {
  return { ...LENGTH_RANGES[wish] };
}
