/**
 * Multinomial sampling (transformers `_sample` with do_sample=True): processors on the raw
 * logits, then the warpers, softmax and one draw per row. numReturnSequences rows per image are
 * sampled independently; the prompt is fed once per image and the first draws fan out from it.
 *
 * Draws depend on the seed only, never on the host or the adapter: the uniform of sequence h's
 * t-th token is `sampleUniform(seed, h, t)` (Philox 4x32-10, src/decode/rng.ts), the same on the
 * GPU. A decoder with `runLoop` (the GPU decoder) warps and draws where the logits live
 * (src/decode/loop.ts); otherwise each step reads back full processed rows, and finished rows are
 * dropped from the decoder at once.
 * @module
 */

import { everyTokenForbidden, loopSearch } from "./loop.ts";
import { logSoftmaxInPlace } from "./processors.ts";
import { sampleIndexAt, sampleUniform } from "./rng.ts";
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

/**
 * Warp a processed row and draw a token with the uniform `u` in [0, 1); returns it with its
 * log-probability.
 */
export function drawToken(
  processed: Float32Array,
  warp: WarpSettings,
  u: number,
): { token: number; logprob: number } {
  const row = processed.slice();
  warpRow(row, warp);
  logSoftmaxInPlace(row);
  const token = sampleIndexAt(row.map(Math.exp), u);
  if (token < 0) throw everyTokenForbidden();
  return { token, logprob: row[token] };
}

/** Run sampling; numReturnSequences sequences per image. */
export async function sampleSearch(
  dec: DecoderStep,
  setup: SearchSetup,
): Promise<GeneratedSequence[][]> {
  const { prompts, opts, vocabSize } = setup;
  const n = opts.numReturnSequences;
  const warp: WarpSettings = { ...opts, minTokensToKeep: 1 };
  if (dec.runLoop) {
    return loopSearch(dec as Required<DecoderStep>, setup, n, { warp, seed: opts.seed });
  }
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
        const u = sampleUniform(opts.seed, h, hyps[h].tokens.length);
        const { token, logprob } = drawToken(processed, warp, u);
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
