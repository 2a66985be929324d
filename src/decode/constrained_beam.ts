/**
 * Constrained beam search (forceWordsIds) with the semantics of transformers 4.x
 * `_constrained_beam_search` and `ConstrainedBeamSearchScorer` (transformers 5 moved it out of
 * the library): a beam search of width K whose next beams are chosen by Post & Vilar's grid-beam
 * bank allocation. Each step the K best non-eos candidates are joined by, for every beam, each
 * token that advances its forced words (its "advance tokens"); candidates are ranked by
 * bank·100 + score (bank = progress through the words), then taken round-robin across runs of
 * equal bank, K in all. An eos candidate among the best K finishes a hypothesis only if the beam
 * has completed every word; at the end the running beams that completed them join the finished
 * list. Word progress counts the whole sequence, prompt included, as the reference does.
 *
 * Unlike the reference, which falls back to hypotheses that miss a word when too few complete
 * them, every returned sequence contains every forced word: an image may get fewer than
 * numReturnSequences sequences (none if no beam completed the words within maxNewTokens).
 *
 * Exactness of the read-back: the K best non-eos candidates are among each row's top
 * beamsToKeep = max(2, 1 + #eos)·K values (as in beam search), and the advance tokens of each row
 * are known before the step, so their processed values are gathered; nothing else is read.
 * @module
 */

import { BeamHypotheses, bestOf, processCandidates } from "./beam_hypotheses.ts";
import { type Beam, type Candidate, extend, topCandidates } from "./beam.ts";
import {
  advanceTokens,
  bank,
  compileConstraints,
  type ConstraintSet,
  stateOf,
} from "./constraints.ts";
import { type GeneratedSequence, rowOf, type SearchSetup, stepProcessing } from "./search.ts";
import type { DecoderStep, StepOut } from "./step.ts";

interface ImageState {
  running: Beam[];
  hyps: BeamHypotheses;
  done: boolean;
}

/** 4.x process(): finished hypotheses from eos candidates, and the K best non-eos candidates. */
function sentCandidates(
  st: ImageState,
  cands: Candidate[],
  completes: (b: Beam) => boolean,
  setup: SearchSetup,
): Candidate[] {
  return processCandidates(st.hyps, st.running, cands, setup, completes);
}

/** Round-robin over runs of equal bank after sorting by bank·100 + score (4.x step_sentence_constraint). */
function allocateBanks(all: Candidate[], banks: number[], K: number): Candidate[] {
  const zipped = all.map((c, i) => Math.fround(banks[i] * 100 + c.score));
  const order = all.map((_, i) => i).sort((a, b) => zipped[b] - zipped[a] || a - b);
  const increments: number[] = [];
  let counter = -1;
  let current = banks[order[0]];
  for (const i of order) {
    if (banks[i] === current) counter++;
    else {
      counter = 0;
      current = banks[i];
    }
    increments.push(counter);
  }
  const rearranged = increments.map((inc, j) => [inc, j]).sort((a, b) =>
    a[0] - b[0] || a[1] - b[1]
  );
  return rearranged.slice(0, K).map(([, j]) => all[order[j]]);
}

/** Add each beam's advance tokens as candidates and allocate the K next beams by bank. */
function nextBeams(
  st: ImageState,
  sent: Candidate[],
  out: StepOut,
  r0: number,
  advance: number[][],
  cs: ConstraintSet,
  prompt: readonly number[],
  K: number,
): Candidate[] {
  const seq = (c: { beam: number; token: number }) => [...st.running[c.beam].tokens, c.token];
  const seqs = new Set(sent.map((c) => seq(c).join(",")));
  const added: Candidate[] = [];
  st.running.forEach((b, i) => {
    advance[r0 + i].forEach((token, j) => {
      const key = seq({ beam: i, token }).join(",");
      if (seqs.has(key)) return;
      seqs.add(key);
      const value = out.gathered![r0 + i][j];
      added.push({ score: Math.fround(b.score + value), token, value, beam: i });
    });
  });
  if (added.length === 0) return sent;
  const all = [...sent, ...added];
  const banks = all.map((c) => bank(cs, stateOf(cs, [...prompt, ...seq(c)])));
  return allocateBanks(all, banks, K);
}

/** Run constrained beam search; up to numReturnSequences per image, all containing every word. */
export async function constrainedBeamSearch(
  dec: DecoderStep,
  setup: SearchSetup,
): Promise<GeneratedSequence[][]> {
  const { prompts, opts, vocabSize } = setup;
  const K = opts.numBeams;
  const cs = compileConstraints(opts.forceWordsIds);
  const keep = Math.max(2, 1 + opts.eosTokenIds.length) * K;
  const k = Math.min(keep, vocabSize);
  const states: ImageState[] = prompts.map(() => ({
    running: [{ tokens: [], logprobs: [], score: 0 }],
    hyps: new BeamHypotheses(K, opts.lengthPenalty, opts.earlyStopping, opts.maxNewTokens),
    done: false,
  }));
  let live = prompts.map((_, i) => i);
  let generated = 0;
  let tokens = setup.first;
  while (live.length > 0) {
    const rows = live.flatMap((img) => states[img].running.map((b) => rowOf(setup, img, b)));
    const advance = rows.map((r) => [...new Set(advanceTokens(cs, stateOf(cs, r.history)))]);
    const proc = stepProcessing(setup, rows, {
      logSoftmaxBefore: true,
      logSoftmaxAfter: false,
    });
    const gather = advance.map((a) => Int32Array.from(a));
    const out = await dec.step(tokens, proc, { kind: "topk", k, gather });
    generated++;
    const parents: number[] = [];
    let r0 = 0;
    for (const img of live) {
      const st = states[img];
      const width = st.running.length;
      const completes = (b: Beam) => stateOf(cs, [...prompts[img], ...b.tokens]).completed;
      const cands = topCandidates(out, out.ids.length / rows.length, r0, st.running, keep);
      const sent = sentCandidates(st, cands, completes, setup);
      const chosen = nextBeams(st, sent, out, r0, advance, cs, prompts[img], K);
      st.done = st.hyps.isDone(cands[0]?.score ?? -Infinity, generated) || chosen.length === 0;
      if (!st.done) parents.push(...chosen.map((c) => r0 + c.beam));
      st.running = chosen.map((c) => extend(st.running[c.beam], c));
      r0 += width;
    }
    if (generated >= opts.maxNewTokens) break;
    live = live.filter((img) => !states[img].done);
    if (live.length > 0) dec.reorder(Int32Array.from(parents));
    tokens = Int32Array.from(
      live.flatMap((img) => states[img].running.map((b) => b.tokens.at(-1)!)),
    );
  }
  return states.map((st, img) => finalize(st, cs, prompts[img], setup));
}

/** Add the running beams that complete every word; the best numReturnSequences. */
function finalize(
  st: ImageState,
  cs: ConstraintSet,
  prompt: number[],
  setup: SearchSetup,
): GeneratedSequence[] {
  if (!st.done) {
    for (const b of st.running) {
      if (stateOf(cs, [...prompt, ...b.tokens]).completed) st.hyps.add(b, b.score);
    }
  }
  return bestOf([st.hyps], setup.opts.numReturnSequences).map((h) => ({
    tokens: h.tokens,
    logprobs: h.logprobs,
    score: h.score,
  }));
}
