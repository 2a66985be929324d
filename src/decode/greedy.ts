/**
 * Greedy search (transformers `_sample` with do_sample=False): processors on the raw logits,
 * then argmax. One row per image; a row stops at an eos token or after maxNewTokens, and its
 * image's row is dropped from the decoder at once.
 *
 * Exactness: the step asks for top-1 of log-softmax(processed logits). Log-softmax subtracts one
 * constant per row, so the argmax is the reference's argmax (rounding can only merge values
 * closer than one float32 ulp of the row's log-sum-exp, which then tie to the lower id), and the
 * value read back is the chosen token's log-probability.
 *
 * When the decoder offers `runLoop` (the GPU decoder), the whole search runs there with every
 * processor applied from the rows' histories, read back in a few chunks (src/decode/loop.ts);
 * rows that finished inside a chunk are cut at their eos afterwards, so the result is the same
 * as step by step.
 * @module
 */

import { loopSearch } from "./loop.ts";
import {
  appendToken,
  type GeneratedSequence,
  type Hypothesis,
  rowOf,
  type SearchSetup,
  sequencesOf,
  stepProcessing,
} from "./search.ts";
import type { DecoderStep } from "./step.ts";

/** Run greedy search; one sequence per image. */
export async function greedySearch(
  dec: DecoderStep,
  setup: SearchSetup,
): Promise<GeneratedSequence[][]> {
  if (dec.runLoop) return loopSearch(dec as Required<DecoderStep>, setup, 1);
  const { prompts } = setup;
  const hyps: Hypothesis[] = prompts.map(() => ({ tokens: [], logprobs: [] }));
  let live = prompts.map((_, i) => i); // image of each decoder row
  let tokens = setup.first;
  while (live.length > 0) {
    const rows = live.map((img) => rowOf(setup, img, hyps[img]));
    const mode = { logSoftmaxBefore: false, logSoftmaxAfter: true };
    const out = await dec.step(tokens, stepProcessing(setup, rows, mode), { kind: "topk", k: 1 });
    const stride = out.ids.length / live.length; // 1, or more if the model returns more
    const keep: number[] = [];
    const last: number[] = [];
    live.forEach((img, r) => {
      const h = hyps[img];
      if (appendToken(setup, h, out.ids[r * stride], out.values[r * stride])) return;
      keep.push(r);
      last.push(out.ids[r * stride]);
    });
    if (keep.length > 0 && keep.length < live.length) dec.reorder(Int32Array.from(keep));
    tokens = Int32Array.from(last);
    live = keep.map((r) => live[r]);
  }
  return sequencesOf(hyps.map((h) => [h]));
}
