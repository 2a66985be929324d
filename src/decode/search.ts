/**
 * What every search strategy shares: its inputs, its result type, prompt feeding and the
 * bookkeeping of live rows.
 * @module
 */

import type { ResolvedOptions } from "./options.ts";
import {
  type ProcessingMode,
  type ProcessorRules,
  rowProcessing,
  type RowState,
} from "./processors.ts";
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
  /** Per image, its prompt's last token, which the first step feeds ({@link feedPrompt}). */
  first: Int32Array;
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

/** Whether a hypothesis whose `generated`-th new token is `token` is finished (eos or length). */
export function ends(setup: SearchSetup, token: number, generated: number): boolean {
  return isEos(setup, token) || generated >= setup.opts.maxNewTokens;
}

/** Append a token to a hypothesis; returns whether the hypothesis is finished. */
export function appendToken(
  setup: SearchSetup,
  h: Hypothesis,
  token: number,
  logprob: number,
): boolean {
  h.tokens.push(token);
  h.logprobs.push(logprob);
  return ends(setup, token, h.tokens.length);
}

/** The processing of one step over `rows`, with the setup's rules and prompt length. */
export function stepProcessing(
  setup: SearchSetup,
  rows: readonly RowState[],
  mode: ProcessingMode,
): RowProcessing {
  return rowProcessing(setup.rules, rows, setup.prompts[0].length, mode);
}

/** Per image, its hypotheses as sequences scored by their float32 log-probability sums. */
export function sequencesOf(perImage: readonly Hypothesis[][]): GeneratedSequence[][] {
  return perImage.map((hs) => hs.map((h) => ({ ...h, score: sumF32(h.logprobs) })));
}

/** Sum of a sequence's log-probabilities, accumulated in float32 as the reference does. */
export function sumF32(values: readonly number[]): number {
  let s = 0;
  for (const v of values) s = Math.fround(s + v);
  return s;
}
