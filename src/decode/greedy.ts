/**
 * Greedy search (transformers `_sample` with do_sample=False): processors on the raw logits,
 * then argmax. One row per image; a row stops at an eos token or after maxNewTokens, and its
 * image's row is dropped from the decoder at once.
 *
 * Exactness: the step asks for top-1 of log-softmax(processed logits). Log-softmax subtracts one
 * constant per row, so the argmax is the reference's argmax (rounding can only merge values
 * closer than one float32 ulp of the row's log-sum-exp, which then tie to the lower id), and the
 * value read back is the chosen token's log-probability.
 * @module
 */

import { rowProcessing } from "./processors.ts";
import {
  feedPrompt,
  type GeneratedSequence,
  type Hypothesis,
  isEos,
  rowOf,
  type SearchSetup,
  sumF32,
} from "./search.ts";
import type { DecoderStep } from "./step.ts";

/** Run greedy search; one sequence per image. */
export async function greedySearch(
  dec: DecoderStep,
  setup: SearchSetup,
): Promise<GeneratedSequence[][]> {
  const { prompts, opts, rules } = setup;
  const hyps: Hypothesis[] = prompts.map(() => ({ tokens: [], logprobs: [] }));
  let live = prompts.map((_, i) => i); // image of each decoder row
  let tokens = await feedPrompt(dec, prompts, 1);
  const promptLen = prompts[0].length;
  while (live.length > 0) {
    const rows = live.map((img) => rowOf(setup, img, hyps[img]));
    const proc = rowProcessing(rules, rows, promptLen, {
      logSoftmaxBefore: false,
      logSoftmaxAfter: true,
    });
    const out = await dec.step(tokens, proc, { kind: "topk", k: 1 });
    const stride = out.ids.length / live.length; // 1, or more if the model returns more
    const keep: number[] = [];
    live.forEach((img, r) => {
      const h = hyps[img];
      h.tokens.push(out.ids[r * stride]);
      h.logprobs.push(out.values[r * stride]);
      if (!isEos(setup, h.tokens.at(-1)!) && h.tokens.length < opts.maxNewTokens) keep.push(r);
    });
    if (keep.length > 0 && keep.length < live.length) dec.reorder(Int32Array.from(keep));
    tokens = Int32Array.from(keep, (r) => out.ids[r * stride]);
    live = keep.map((r) => live[r]);
  }
  return hyps.map((h) => [{ ...h, score: sumF32(h.logprobs) }]);
}
