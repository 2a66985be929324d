/**
 * Greedy search and sampling as one loop the decoder runs by itself ({@link DecoderStep.runLoop}):
 * one row per returned sequence (samples fan out from their image's prompt row before the loop),
 * the processors from the rows' histories, tokens read back in chunks. {@link runLoopByStep} is
 * the same loop over `step`, the reference a `runLoop` must equal.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { rowProcessing } from "./processors.ts";
import { sampleUniform } from "./rng.ts";
import { drawToken } from "./sample.ts";
import { appendToken, type GeneratedSequence, type SearchSetup, sequencesOf } from "./search.ts";
import type { DecoderStep, LoopOut, LoopPlan } from "./step.ts";
import type { WarpSettings } from "./warpers.ts";

/** Run greedy search (`sample` absent) or sampling with `perImage` sequences per image. */
export async function loopSearch(
  dec: DecoderStep & Required<Pick<DecoderStep, "runLoop">>,
  setup: SearchSetup,
  perImage: number,
  sample?: { warp: WarpSettings; seed: number },
): Promise<GeneratedSequence[][]> {
  const { prompts, opts } = setup;
  const rowImages = Array.from(
    { length: prompts.length * perImage },
    (_, r) => Math.floor(r / perImage),
  );
  if (perImage > 1) dec.reorder(Int32Array.from(rowImages)); // fed once per image: fan out
  const out = await dec.runLoop(Int32Array.from(rowImages, (i) => setup.first[i]), {
    histories: rowImages.map((i) => prompts[i]),
    rowImages,
    rules: setup.rules,
    sample,
    maxSteps: opts.maxNewTokens,
  });
  const R = rowImages.length;
  const hyps = rowImages.map((_, r) => {
    const h = { tokens: [] as number[], logprobs: [] as number[] };
    for (let i = 0; i < out.steps; i++) {
      const id = out.ids[i * R + r];
      if (id < 0) throw everyTokenForbidden();
      if (appendToken(setup, h, id, out.values[i * R + r])) break;
    }
    return h;
  });
  return sequencesOf(prompts.map((_, i) => hyps.slice(i * perImage, (i + 1) * perImage)));
}

/** The error of a draw with nothing left to sample. */
export function everyTokenForbidden(): WebcapError {
  return new WebcapError(
    "BAD_OPTION",
    "every token is forbidden at this step (badWordsIds, noRepeatNgramSize or minNewTokens leave nothing to sample); relax them",
  );
}

/** Whether every row of `ids [steps, R]` holds an eos. */
export function allEnded(ids: Int32Array, R: number, eos: readonly number[]): boolean {
  const ended = new Uint8Array(R);
  ids.forEach((id, k) => {
    if (eos.includes(id)) ended[k % R] = 1;
  });
  return ended.every((e) => e === 1);
}

/** {@link DecoderStep.runLoop} over `dec.step`, one step per call: the reference. */
export async function runLoopByStep(
  dec: DecoderStep,
  tokens: Int32Array,
  plan: LoopPlan,
): Promise<LoopOut> {
  const R = tokens.length, promptLen = plan.histories[0].length;
  const histories = plan.histories.map((h) => [...h]);
  const ids: number[] = [], values: number[] = [];
  let feed = tokens, steps = 0;
  while (steps < plan.maxSteps && !allEnded(Int32Array.from(ids), R, plan.rules.eos)) {
    const rows = histories.map((history, r) => ({ image: plan.rowImages[r], history }));
    const mode = { logSoftmaxBefore: false, logSoftmaxAfter: !plan.sample };
    const proc = rowProcessing(plan.rules, rows, promptLen, mode);
    const out = await dec.step(feed, proc, plan.sample ? { kind: "full" } : { kind: "topk", k: 1 });
    const chosen = Array.from({ length: R }, (_, r) => {
      if (!plan.sample) return { token: out.ids[r], logprob: out.values[r] };
      const row = out.values.subarray(r * dec.vocabSize, (r + 1) * dec.vocabSize);
      return drawToken(row, plan.sample.warp, sampleUniform(plan.sample.seed, r, steps));
    });
    chosen.forEach((c, r) => histories[r].push(c.token));
    ids.push(...chosen.map((c) => c.token));
    values.push(...chosen.map((c) => c.logprob));
    feed = Int32Array.from(chosen, (c) => c.token);
    steps++;
  }
  return { ids: Int32Array.from(ids), values: Float32Array.from(values), steps };
}
