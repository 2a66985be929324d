/**
 * The n-best list of finished hypotheses of transformers 4.x (`BeamHypotheses`), used by the
 * strategies that follow 4.x semantics (diverse and constrained beam search): scores are
 * sum_logprobs / generated_len^length_penalty in float64, the list keeps the `capacity` best,
 * and `isDone` is the 4.x stopping rule for early_stopping true / false / "never".
 * @module
 */

import { type Beam, type Candidate, extend } from "./beam.ts";
import { type Hypothesis, isEos, type SearchSetup } from "./search.ts";

/** A finished hypothesis with its length-penalized score. */
export interface ScoredHypothesis extends Hypothesis {
  score: number;
}

/** n-best list of one image (or one beam group of an image). */
export class BeamHypotheses {
  readonly beams: ScoredHypothesis[] = [];
  #worst = 1e9;

  constructor(
    readonly capacity: number,
    readonly lengthPenalty: number,
    readonly earlyStopping: boolean | "never",
    /** maxNewTokens: the longest generated length. */
    readonly maxGenerated: number,
  ) {}

  /** Offer a hypothesis whose log-probabilities sum to `sumLogprobs` (float32 sum). */
  add(hyp: Hypothesis, sumLogprobs: number): void {
    const score = sumLogprobs / hyp.tokens.length ** this.lengthPenalty;
    if (this.beams.length < this.capacity || score > this.#worst) {
      this.beams.push({ tokens: hyp.tokens, logprobs: hyp.logprobs, score });
      if (this.beams.length > this.capacity) {
        const order = this.beams.map((b, i) => [b.score, i]).sort((a, b) =>
          a[0] - b[0] || a[1] - b[1]
        );
        this.beams.splice(order[0][1], 1);
        this.#worst = order[1][0];
      } else {
        this.#worst = Math.min(score, this.#worst);
      }
    }
  }

  /**
   * Whether no running hypothesis can enter the list any more.
   * @param bestSum best candidate score (sum of log-probabilities) of this step.
   * @param generated generated length those candidates have.
   */
  isDone(bestSum: number, generated: number): boolean {
    if (this.beams.length < this.capacity) return false;
    if (this.earlyStopping === true) return true;
    const len = this.earlyStopping === "never" && this.lengthPenalty > 0
      ? this.maxGenerated
      : generated;
    return this.#worst >= bestSum / len ** this.lengthPenalty;
  }
}

/** The `count` best hypotheses of several lists, best first (4.x `finalize` order). */
export function bestOf(lists: readonly BeamHypotheses[], count: number): ScoredHypothesis[] {
  const all = lists.flatMap((l) => l.beams);
  const ascending = all.map((b, i) => ({ b, i })).sort((x, y) =>
    x.b.score - y.b.score || x.i - y.i
  );
  return ascending.reverse().slice(0, count).map((x) => x.b);
}

/**
 * 4.x `BeamSearchScorer.process` over one n-best list: eos candidates (best first) ranked among
 * the first `hyps.capacity` enter `hyps` when `admit` lets their beam in; returns the first
 * `hyps.capacity` candidates that do not end in eos.
 */
export function processCandidates(
  hyps: BeamHypotheses,
  running: readonly Beam[],
  cands: readonly Candidate[],
  setup: SearchSetup,
  admit: (b: Beam) => boolean = () => true,
): Candidate[] {
  const next: Candidate[] = [];
  for (const [rank, c] of cands.entries()) {
    if (isEos(setup, c.token)) {
      if (rank < hyps.capacity && admit(running[c.beam])) {
        hyps.add(extend(running[c.beam], c), c.score);
      }
    } else {
      next.push(c);
      if (next.length === hyps.capacity) break;
    }
  }
  return next;
}
