/**
 * What every search strategy shares: its inputs, its result type, prompt feeding and the
 * bookkeeping of live rows.
 * @module
 */

import type { ResolvedOptions } from "./options.ts";
import type { ProcessorRules, RowState } from "./processors.ts";
import type { DecoderStep, RowProcessing } from "./step.ts";

/** One returned sequence. */
export interface GeneratedSequence {
  /** Generated ids, without the prompt; ends with the eos token when one ended it. */
  tokens: number[];
  /**
   * The sequence's score: the sum of `logprobs`, divided by tokens.length^lengthPenalty for
   * beam methods (transformers' `sequences_scores`).
   */
  score: number;
  /**
   * Per token, the processed log-probability the search used: log-softmax of the processed
   * logits (greedy), of the warped distribution it was drawn from (sampling), or the beam
   * transition score (beam methods: log-softmax, then processors, penalties included).
   */
  logprobs: number[];
}

/** Everything a strategy needs besides the decoder. */
export interface SearchSetup {
  /** Per image, the full prompt fed before generation (start tokens + promptIds); equal lengths. */
  prompts: number[][];
  opts: ResolvedOptions;
  rules: ProcessorRules;
  vocabSize: number;
}

/** A partial hypothesis: its generated tokens and their log-probabilities. */
export interface Hypothesis {
  tokens: number[];
  logprobs: number[];
}

/** Processing that changes nothing (prompt steps, whose outputs are ignored). */
export const NO_PROCESSING: RowProcessing = {
  logSoftmaxBefore: false,
  repetitionPenalty: 1,
  logSoftmaxAfter: false,
};

/**
 * Bring the decoder to the last prompt token: keep one row per image (`rowsPerImage` copies
 * would compute the same thing) and feed every prompt token but the last. The strategy's first
 * step feeds the last one and reads the first distribution.
 */
export async function feedPrompt(
  dec: DecoderStep,
  prompts: readonly number[][],
  rowsPerImage: number,
): Promise<Int32Array> {
  const images = prompts.length;
  if (rowsPerImage > 1) {
    dec.reorder(Int32Array.from({ length: images }, (_, i) => i * rowsPerImage));
  }
  const len = prompts[0].length;
  for (let p = 0; p < len - 1; p++) {
    const tokens = Int32Array.from(prompts, (pr) => pr[p]);
    await dec.step(tokens, NO_PROCESSING, { kind: "none" });
  }
  return Int32Array.from(prompts, (pr) => pr[len - 1]);
}

/** The row state of a hypothesis of `image`. */
export function rowOf(setup: SearchSetup, image: number, hyp: Hypothesis): RowState {
  return { image, history: [...setup.prompts[image], ...hyp.tokens] };
}

/** Whether `token` ends a sequence. */
export function isEos(setup: SearchSetup, token: number): boolean {
  return setup.opts.eosTokenIds.includes(token);
}

/** Sum of a sequence's log-probabilities, accumulated in float32 as the reference does. */
export function sumF32(values: readonly number[]): number {
  let s = 0;
  for (const v of values) s = Math.fround(s + v);
  return s;
}
