/**
 * Beam search with transformers 5 `_beam_search` semantics (and beam sampling, its do_sample
 * variant):
 * - scores: log-softmax of the logits, then the processors; a beam's score is the float32 sum of
 *   its tokens' processed log-probabilities;
 * - each step keeps beamsToKeep = max(2, 1 + #eos)·K candidates over all K beams of an image;
 *   the best K that do not end (eos or maxNewTokens) continue, and the candidates among the
 *   first K that end enter the image's K-best finished list with score / generated_len^lp,
 *   where generated_len counts the new tokens including the eos, not the prompt;
 * - an image stops when its finished list is full and earlyStopping is true, or when the
 *   reference's heuristic says no running beam can improve it: best running score divided by
 *   generated_len^lp (max_new_tokens^lp for "never" with lp > 0) not above the worst finished;
 *   its rows then leave the decoder;
 * - results: the numReturnSequences best finished hypotheses (`sequences_scores`).
 *
 * Exactness of the read-back: the best beamsToKeep candidates of an image (score + value over
 * K·vocab) are among the union of each row's top beamsToKeep values, because adding the row's
 * beam score shifts a whole row and keeps its order. So top-k with k = beamsToKeep per row is
 * exact. The K rows of the first step are identical in the reference (beams 1..K-1 start at
 * -1e9, so only beam 0 contributes): the prompt runs on one row per image and fans out after the
 * first selection. Beam sampling draws its candidates from whole rows (full read-back).
 * @module
 */

import { Rng, sampleIndex } from "./rng.ts";
import {
  ends,
  type GeneratedSequence,
  type Hypothesis,
  rowOf,
  type SearchSetup,
  stepProcessing,
} from "./search.ts";
import type { DecoderStep, StepOut } from "./step.ts";
import { warpRow, type WarpSettings } from "./warpers.ts";

/** A running beam: its hypothesis and float32 score. */
export interface Beam extends Hypothesis {
  score: number;
}

/** A continuation of a beam: its accumulated score, token, processed value and parent beam. */
export interface Candidate {
  score: number;
  token: number;
  value: number;
  beam: number;
}

interface ImageState {
  running: Beam[];
  finished: Beam[];
  heuristicUnsatisfied: boolean;
  done: boolean;
}

/** Order candidates best first, ties to the lower flat index (beam·vocab + token). */
export function byScore(a: Candidate, b: Candidate): number {
  return b.score - a.score || a.beam - b.beam || a.token - b.token;
}

/**
 * The best `n` candidates of an image's rows r0…r0+beams−1 from a top-k read-back with `k`
 * values per row.
 */
export function topCandidates(
  out: StepOut,
  k: number,
  r0: number,
  beams: readonly Beam[],
  n: number,
): Candidate[] {
  const all: Candidate[] = [];
  beams.forEach((b, i) => {
    for (let j = 0; j < k; j++) {
      const value = out.values[(r0 + i) * k + j];
      const token = out.ids[(r0 + i) * k + j];
      all.push({ score: Math.fround(b.score + value), token, value, beam: i });
    }
  });
  return all.sort(byScore).slice(0, n);
}

/** Candidates drawn without replacement from softmax of the accumulated warped rows. */
function sampledCandidates(
  out: StepOut,
  vocab: number,
  r0: number,
  beams: readonly Beam[],
  n: number,
  warp: WarpSettings,
  rng: Rng,
): Candidate[] {
  const values = new Float32Array(beams.length * vocab);
  const acc = new Float64Array(beams.length * vocab);
  beams.forEach((b, i) => {
    const row = out.values.slice((r0 + i) * vocab, (r0 + i + 1) * vocab);
    warpRow(row, warp);
    values.set(row, i * vocab);
    for (let t = 0; t < vocab; t++) acc[i * vocab + t] = Math.fround(b.score + row[t]);
  });
  const max = acc.reduce((m, v) => Math.max(m, v), -Infinity);
  const weights = acc.map((v) => Math.exp(v - max));
  const picked: Candidate[] = [];
  for (let d = 0; d < n; d++) {
    const f = sampleIndex(weights, rng);
    if (f < 0) break;
    weights[f] = 0;
    const beam = Math.floor(f / vocab);
    picked.push({ score: acc[f], token: f % vocab, value: values[f], beam });
  }
  return picked;
}

/** The beam `b` continued by candidate `c`. */
export function extend(b: Beam, c: Candidate): Beam {
  return { tokens: [...b.tokens, c.token], logprobs: [...b.logprobs, c.value], score: c.score };
}

/**
 * Update one image with its candidates (listed in the reference's rank order); returns the
 * parent beam of each new running beam.
 */
function advanceImage(st: ImageState, cands: Candidate[], setup: SearchSetup): number[] {
  const { numBeams: K, maxNewTokens, lengthPenalty: lp, earlyStopping } = setup.opts;
  const generated = st.running[0].tokens.length + 1;
  const endsWith = (c: Candidate) => ends(setup, c.token, generated);
  // a live image is not frozen (full with earlyStopping true, or past the heuristic)
  const denom = Math.fround(generated ** lp);
  for (const c of cands.slice(0, K)) {
    if (!endsWith(c)) continue;
    const beam = extend(st.running[c.beam], c);
    st.finished.push({ ...beam, score: Math.fround(c.score / denom) });
  }
  st.finished = st.finished.sort((a, b) => b.score - a.score).slice(0, K);
  const next = cands.filter((c) => !endsWith(c)).sort(byScore).slice(0, K);
  st.running = next.map((c) => extend(st.running[c.beam], c));
  st.heuristicUnsatisfied &&= improvementPossible(st, generated, setup);
  st.done = generated >= maxNewTokens || st.running.length === 0 ||
    (st.finished.length === K && earlyStopping === true) || !st.heuristicUnsatisfied;
  return next.map((c) => c.beam);
}

/** The reference's `_check_early_stop_heuristic` after a step that reached `generated` tokens. */
function improvementPossible(st: ImageState, generated: number, setup: SearchSetup): boolean {
  const { numBeams: K, maxNewTokens, lengthPenalty: lp, earlyStopping } = setup.opts;
  if (st.running.length === 0) return false;
  const len = earlyStopping === "never" && lp > 0 ? maxNewTokens : generated;
  const best = Math.fround(st.running[0].score / Math.fround(len ** lp));
  const worst = st.finished.length === K ? st.finished[K - 1].score : -1e9;
  return best > worst;
}

/** Run beam search (or beam sampling when doSample); numReturnSequences per image. */
export async function beamSearch(
  dec: DecoderStep,
  setup: SearchSetup,
): Promise<GeneratedSequence[][]> {
  const { prompts, opts, vocabSize } = setup;
  const K = opts.numBeams;
  const keep = Math.max(2, 1 + opts.eosTokenIds.length) * K;
  const k = Math.min(keep, vocabSize);
  if (dec.runBeams && !opts.doSample && k === keep) {
    return beamSearchOnDecoder(dec as Required<DecoderStep>, setup, keep);
  }
  const rng = new Rng(opts.seed);
  // transformers keeps eos count + 1 tokens in beam sampling, and 2 when there is no eos
  const warp: WarpSettings = { ...opts, minTokensToKeep: Math.max(2, opts.eosTokenIds.length + 1) };
  const states: ImageState[] = prompts.map(() => ({
    running: [{ tokens: [], logprobs: [], score: 0 }],
    finished: [],
    heuristicUnsatisfied: true,
    done: false,
  }));
  let live = prompts.map((_, i) => i);
  let tokens = setup.first;
  while (live.length > 0) {
    const rows = live.flatMap((img) => states[img].running.map((b) => rowOf(setup, img, b)));
    const proc = stepProcessing(setup, rows, {
      logSoftmaxBefore: true,
      logSoftmaxAfter: false,
    });
    const out = await dec.step(
      tokens,
      proc,
      opts.doSample ? { kind: "full" } : { kind: "topk", k },
    );
    const parents: number[] = [];
    let r0 = 0;
    for (const img of live) {
      const st = states[img];
      const cands = opts.doSample
        ? sampledCandidates(out, vocabSize, r0, st.running, keep, warp, rng)
        : topCandidates(out, out.ids.length / rows.length, r0, st.running, keep);
      const width = st.running.length;
      const beamParents = advanceImage(st, cands, setup);
      if (!st.done) parents.push(...beamParents.map((b) => r0 + b));
      r0 += width;
    }
    live = live.filter((img) => !states[img].done);
    if (live.length > 0) dec.reorder(Int32Array.from(parents));
    tokens = Int32Array.from(
      live.flatMap((img) => states[img].running.map((b) => b.tokens.at(-1)!)),
    );
  }
  return states.map((st) =>
    st.finished.slice(0, opts.numReturnSequences).map((b) => ({
      tokens: b.tokens,
      logprobs: b.logprobs,
      score: b.score,
    }))
  );
}

/** Beam search run by the decoder ({@link DecoderStep.runBeams}): rows fan out from the prompt. */
async function beamSearchOnDecoder(
  dec: DecoderStep & Required<Pick<DecoderStep, "runBeams">>,
  setup: SearchSetup,
  keep: number,
): Promise<GeneratedSequence[][]> {
  const { prompts, opts } = setup, K = opts.numBeams;
  const rowImage = Int32Array.from({ length: prompts.length * K }, (_, r) => Math.floor(r / K));
  dec.reorder(rowImage); // fed once per image: fan out
  const finished = await dec.runBeams(rowImage.map((i) => setup.first[i]), {
    prompts,
    rules: setup.rules,
    numBeams: K,
    keep,
    lengthPenalty: opts.lengthPenalty,
    earlyStopping: opts.earlyStopping,
    maxSteps: opts.maxNewTokens,
  });
  return finished.map((l) => l.slice(0, opts.numReturnSequences));
}
