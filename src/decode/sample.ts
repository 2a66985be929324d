/**
 * Multinomial sampling (transformers `_sample` with do_sample=True): processors on the raw
 * logits, then the warpers, softmax and one draw per row from a seeded {@link Rng}.
 * numReturnSequences rows per image are sampled independently; the prompt is fed once per image
 * and the first draws fan out from it. Warpers need whole rows, so each step reads back full
 * processed rows; finished rows are dropped from the decoder at once.
 * @module
 */

import { WebcapError } from "../errors.ts";
import { logSoftmaxInPlace } from "./processors.ts";
import { Rng, sampleIndex } from "./rng.ts";
import {
  appendToken,
  type GeneratedSequence,
  rowOf,
  type SearchSetup,
  sequencesOf,
  stepProcessing,
} from "./search.ts";
import type { DecoderStep } from "./step.ts";
import { warpRow, type WarpSettings } from "./warpers.ts";

/** Warp a processed row and draw a token; returns it with its log-probability. */
export function drawToken(
  processed: Float32Array,
  warp: WarpSettings,
  rng: Rng,
): { token: number; logprob: number } {
  const row = processed.slice();
  warpRow(row, warp);
  logSoftmaxInPlace(row);
  const token = sampleIndex(row.map(Math.exp), rng);
  if (token < 0) {
    throw new WebcapError(
      "BAD_OPTION",
      "every token is forbidden at this step (badWordsIds, noRepeatNgramSize or minNewTokens leave nothing to sample); relax them",
    );
  }
  return { token, logprob: row[token] };
}

/** Run sampling; numReturnSequences sequences per image. */
export async function sampleSearch(
  dec: DecoderStep,
  setup: SearchSetup,
): Promise<GeneratedSequence[][]> {
  const { prompts, opts, vocabSize } = setup;
  const n = opts.numReturnSequences;
  const rng = new Rng(opts.seed);
  const warp: WarpSettings = { ...opts, minTokensToKeep: 1 };
  const hyps = Array.from({ length: prompts.length * n }, () => ({
    tokens: [] as number[],
    logprobs: [] as number[],
  }));
  // per decoder row, the hypotheses that continue from its distribution (n at the first step)
  let rowHyps = prompts.map((_, i) => Array.from({ length: n }, (_, j) => i * n + j));
  let tokens = setup.first;
  while (rowHyps.length > 0) {
    const rows = rowHyps.map((hs) => rowOf(setup, Math.floor(hs[0] / n), hyps[hs[0]]));
    const proc = stepProcessing(setup, rows, {
      logSoftmaxBefore: false,
      logSoftmaxAfter: false,
    });
    const out = await dec.step(tokens, proc, { kind: "full" });
    const parents: number[] = [];
    const next: number[][] = [];
    const nextTokens: number[] = [];
    rowHyps.forEach((hs, r) => {
      const processed = out.values.subarray(r * vocabSize, (r + 1) * vocabSize);
      for (const h of hs) {
        const { token, logprob } = drawToken(processed, warp, rng);
        if (appendToken(setup, hyps[h], token, logprob)) continue;
        parents.push(r);
        next.push([h]);
        nextTokens.push(token);
      }
    });
    const same = parents.length === rowHyps.length && parents.every((p, i) => p === i);
    if (parents.length > 0 && !same) dec.reorder(Int32Array.from(parents));
    rowHyps = next;
    tokens = Int32Array.from(nextTokens);
  }
  return sequencesOf(prompts.map((_, i) => hyps.slice(i * n, (i + 1) * n)));
}
