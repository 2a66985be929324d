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
 * When the decoder offers `greedySteps` and no processor depends on the chosen tokens
 * (no repetition penalty, no n-gram bans, only single-token bad words), steps run in chunks of
 * {@link GREEDY_CHUNK} without a read-back in between; rows that finished inside a chunk are
 * cut at their eos afterwards, so the result is the same as step by step.
 * @module
 */

import type { ProcessorRules } from "./processors.ts";
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

/** Steps per read-back on the chunked path (at most this many wasted steps after an eos). */
export const GREEDY_CHUNK = 8;

/** Whether every step's processing is known before the tokens are chosen. */
function tokenIndependent(rules: ProcessorRules): boolean {
  return rules.repetitionPenalty === 1 && rules.noRepeatNgramSize === 0 &&
    rules.encoderNoRepeatNgramSize === 0 && rules.badWords.every((w) => w.length === 1);
}

/** Run greedy search; one sequence per image. */
export async function greedySearch(
  dec: DecoderStep,
  setup: SearchSetup,
): Promise<GeneratedSequence[][]> {
  const { prompts, opts, rules } = setup;
  const hyps: Hypothesis[] = prompts.map(() => ({ tokens: [], logprobs: [] }));
  let live = prompts.map((_, i) => i); // image of each decoder row
  const chunked = dec.greedySteps !== undefined && tokenIndependent(rules);
  let tokens = setup.first;
  while (live.length > 0) {
    const rows = live.map((img) => rowOf(setup, img, hyps[img]));
    const mode = { logSoftmaxBefore: false, logSoftmaxAfter: true };
    let ids: Int32Array, values: Float32Array, steps: number, stride: number;
    if (chunked) {
      steps = Math.min(GREEDY_CHUNK, opts.maxNewTokens - hyps[live[0]].tokens.length);
      // bans depend only on the length here; the placeholder tokens stand for the chunk's choices
      const procAt = (i: number) =>
        stepProcessing(
          setup,
          rows.map((r) => ({ ...r, history: [...r.history, ...new Array(i).fill(-1)] })),
          mode,
        );
      ({ ids, values } = await dec.greedySteps!(tokens, steps, procAt));
      stride = 1;
    } else {
      const out = await dec.step(tokens, stepProcessing(setup, rows, mode), {
        kind: "topk",
        k: 1,
      });
      [ids, values, steps] = [out.ids, out.values, 1];
      stride = out.ids.length / live.length; // 1, or more if the model returns more
    }
    const keep: number[] = [];
    const last: number[] = [];
    live.forEach((img, r) => {
      const h = hyps[img];
      for (let i = 0; i < steps; i++) {
        const k = (i * live.length + r) * stride;
        if (appendToken(setup, h, ids[k], values[k])) return;
      }
      keep.push(r);
      last.push(ids[((steps - 1) * live.length + r) * stride]);
    });
    if (keep.length > 0 && keep.length < live.length) dec.reorder(Int32Array.from(keep));
    tokens = Int32Array.from(last);
    live = keep.map((r) => live[r]);
  }
  return sequencesOf(hyps.map((h) => [h]));
}
