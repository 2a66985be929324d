/**
 * Diverse (group) beam search with the semantics transformers 4.x shipped (`_group_beam_search`,
 * `HammingDiversityLogitsProcessor`, `BeamSearchScorer` with groups; transformers 5 moved it out
 * of the library). The K beams form numBeamGroups groups of G = K / numBeamGroups. Within one
 * step the groups choose in order; group g's scores are log-softmax, minus diversityPenalty times
 * the number of times earlier groups chose the token this step, then the repetition penalty and
 * the bans. Each group is a beam search of width G with its own G-best finished list (4.x
 * `BeamHypotheses` rules); a finished group contributes pad tokens to later groups' counts. The
 * result is the numReturnSequences best hypotheses over all groups. With diversityPenalty 0 every
 * group is an independent beam search of width G.
 *
 * Exactness of the read-back: the model applies log-softmax and bans only, and returns per row
 * the top k = beamsToKeep + (K − G) [+ s] values, where beamsToKeep = max(2, 1 + #eos)·G. At most
 * K − G distinct tokens are penalized (those chosen by earlier groups), and with a repetition
 * penalty p ≠ 1 the s distinct tokens of the row's history are also read back (gather). Among the
 * row's top k, at least beamsToKeep tokens are neither penalized nor seen; their final scores are
 * their read-back values, which bound every token outside the read-back, whose final score can
 * only be lower (the diversity penalty only subtracts). So the group's best candidates all lie in
 * what was read back, and their final scores are recomputed here exactly as the reference orders
 * the operations (penalty, then repetition penalty, in float32).
 * @module
 */

import { BeamHypotheses, bestOf, processCandidates } from "./beam_hypotheses.ts";
import { type Beam, byScore, type Candidate, extend } from "./beam.ts";
import { penalizeRepetition, type RowState } from "./processors.ts";
import { type GeneratedSequence, rowOf, type SearchSetup, stepProcessing } from "./search.ts";
import type { DecoderStep, StepOut } from "./step.ts";

interface Group {
  running: Beam[];
  /** Decoder row of each running beam this step. */
  rows: number[];
  hyps: BeamHypotheses;
  done: boolean;
}

/** Per row, token → processed value of everything read back. */
function readBack(out: StepOut, k: number, row: number, gather?: Int32Array): Map<number, number> {
  const m = new Map<number, number>();
  for (let j = 0; j < k; j++) m.set(out.ids[row * k + j], out.values[row * k + j]);
  gather?.forEach((t, j) => m.set(t, out.gathered![row][j]));
  return m;
}

/** Candidates of one group after the diversity and repetition penalties. */
function groupCandidates(
  group: Group,
  values: Map<number, number>[],
  seen: Set<number>[],
  counts: Map<number, number>,
  setup: SearchSetup,
): Candidate[] {
  const { diversityPenalty: d, repetitionPenalty: p } = setup.opts;
  const all: Candidate[] = [];
  group.running.forEach((b, i) => {
    const r = group.rows[i];
    for (const [token, x] of values[r]) {
      let f = x;
      const c = counts.get(token) ?? 0;
      if (c > 0) f = Math.fround(f - Math.fround(Math.fround(d) * c)); // float32 d · count
      if (p !== 1 && seen[r].has(token)) f = penalizeRepetition(f, p);
      all.push({ score: Math.fround(b.score + f), token, value: f, beam: i });
    }
  });
  return all.sort(byScore);
}

/** 4.x `BeamSearchScorer.process` for one group; returns the tokens it chose this step. */
function processGroup(group: Group, cands: Candidate[], setup: SearchSetup): number[] {
  const generated = group.running[0].tokens.length + 1;
  const next = processCandidates(group.hyps, group.running, cands, setup);
  group.done = group.hyps.isDone(cands[0]?.score ?? -Infinity, generated) || next.length === 0;
  const parents = next.map((c) => group.rows[c.beam]);
  group.running = next.map((c) => extend(group.running[c.beam], c));
  group.rows = parents;
  return next.map((c) => c.token);
}

/** Run one image's groups in order over a step's read-back. */
function stepImage(
  groups: Group[],
  values: Map<number, number>[],
  seen: Set<number>[],
  setup: SearchSetup,
): void {
  const { opts } = setup;
  const G = opts.numBeams / opts.numBeamGroups;
  const keep = Math.max(2, 1 + opts.eosTokenIds.length) * G;
  const counts = new Map<number, number>();
  const count = (t: number) => counts.set(t, (counts.get(t) ?? 0) + 1);
  for (const group of groups) {
    if (group.done) {
      for (let i = 0; i < G; i++) count(opts.padTokenId);
      continue;
    }
    const cands = groupCandidates(group, values, seen, counts, setup).slice(0, keep);
    processGroup(group, cands, setup).forEach(count);
  }
}

/** Run diverse beam search; numReturnSequences per image. */
export async function diverseBeamSearch(
  dec: DecoderStep,
  setup: SearchSetup,
): Promise<GeneratedSequence[][]> {
  const { prompts, opts, vocabSize } = setup;
  const G = opts.numBeams / opts.numBeamGroups;
  const keep = Math.max(2, 1 + opts.eosTokenIds.length) * G;
  const images = prompts.map(() =>
    Array.from({ length: opts.numBeamGroups }, (): Group => ({
      running: [{ tokens: [], logprobs: [], score: 0 }],
      rows: [0],
      hyps: new BeamHypotheses(G, opts.lengthPenalty, opts.earlyStopping, opts.maxNewTokens),
      done: false,
    }))
  );
  let tokens = setup.first;
  // first step: one row per image, shared by every group's root beam
  let rows: RowState[] = prompts.map((_, i) => rowOf(setup, i, images[i][0].running[0]));
  images.forEach((gs, i) => gs.forEach((g) => (g.rows = [i])));
  let generated = 0;
  while (rows.length > 0) {
    const proc = stepProcessing(setup, rows, {
      logSoftmaxBefore: true,
      logSoftmaxAfter: false,
      repetition: false,
    });
    const gather = opts.repetitionPenalty !== 1
      ? rows.map((r) => Int32Array.from(new Set(r.history)).filter((t) => t < vocabSize))
      : undefined;
    const extra = gather ? Math.max(...gather.map((g) => g.length)) : 0;
    const k = Math.min(vocabSize, keep + opts.numBeams - G + extra);
    const out = await dec.step(tokens, proc, { kind: "topk", k, gather });
    const stride = out.ids.length / rows.length; // k, or more if the model returns more
    const values = rows.map((_, r) => readBack(out, stride, r, gather?.[r]));
    const seen = rows.map((r) => new Set(r.history));
    const live = images.filter((gs) => gs.some((g) => !g.done));
    for (const gs of live) stepImage(gs, values, seen, setup);
    generated++;
    if (generated >= opts.maxNewTokens) break;
    ({ rows, tokens } = nextRows(dec, images, setup));
  }
  return images.map((gs) => finalize(gs, setup));
}

/** Reorder the decoder to the running beams of unfinished groups; returns their rows and tokens. */
function nextRows(
  dec: DecoderStep,
  images: Group[][],
  setup: SearchSetup,
): { rows: RowState[]; tokens: Int32Array } {
  const parents: number[] = [];
  const rows: RowState[] = [];
  const tokens: number[] = [];
  images.forEach((gs, img) => {
    for (const g of gs) {
      if (g.done) continue;
      g.running.forEach((b, i) => {
        parents.push(g.rows[i]);
        g.rows[i] = rows.length;
        rows.push(rowOf(setup, img, b));
        tokens.push(b.tokens.at(-1)!);
      });
    }
  });
  if (parents.length > 0) dec.reorder(Int32Array.from(parents));
  return { rows, tokens: Int32Array.from(tokens) };
}

/** 4.x `finalize`: unfinished groups add their running beams; best over all groups. */
function finalize(groups: Group[], setup: SearchSetup): GeneratedSequence[] {
  for (const g of groups) {
    if (g.done) continue;
    for (const b of g.running) g.hyps.add(b, b.score);
  }
  return bestOf(groups.map((g) => g.hyps), setup.opts.numReturnSequences).map((h) => ({
    tokens: h.tokens,
    logprobs: h.logprobs,
    score: h.score,
  }));
}
