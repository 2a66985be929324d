/**
 * Caption-metric throughput on a synthetic COCO-sized set: 5,000 images × 5 references and
 * one candidate each, sampled (seeded) from the captions of the public eval fixture.
 *
 *   deno run -A bench/eval.ts      (also part of `deno task bench --eval`)
 * @module
 */

import { Bleu } from "../src/eval/bleu.ts";
import { CiderD, documentFrequency } from "../src/eval/cider.ts";
import { ptbTokenize } from "../src/eval/ptb/tokenizer.ts";
import { RougeL } from "../src/eval/rouge.ts";

const FIXTURE = new URL("../../shared/fixtures/eval/coco-public.json", import.meta.url);
const IMAGES = 5000;
const REFS = 5;

/** One benchmark row. */
export interface EvalBenchRow {
  /** What was timed. */
  name: string;
  /** Problem size. */
  shape: string;
  /** Best wall time of the repetitions, in milliseconds. */
  ms: number;
  /** Captions processed per second (candidates, or references for set-up rows). */
  captionsPerSec: number;
}

interface FixtureImage {
  refs: string[];
  refs_tok: string[];
  candidate: string;
  candidate_tok: string;
}

interface SyntheticSet {
  rawRefs: string[][];
  refs: string[][];
  cands: string[];
}

/** Deterministic sampling of fixture captions (references and candidates kept paired raw/tok). */
function syntheticSet(images: FixtureImage[]): SyntheticSet {
  const pool = images.flatMap((im) => [
    ...im.refs.map((r, j) => [r, im.refs_tok[j]]),
    [im.candidate, im.candidate_tok],
  ]);
  let seed = 20240611;
  const pick = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return pool[seed % pool.length];
  };
  const set: SyntheticSet = { rawRefs: [], refs: [], cands: [] };
  for (let i = 0; i < IMAGES; i++) {
    const refs = Array.from({ length: REFS }, pick), cand = pick();
    set.rawRefs.push(refs.map((r) => r[0]));
    set.refs.push(refs.map((r) => r[1]));
    set.cands.push(cand[1]);
  }
  return set;
}

function best(fn: () => unknown, reps: number): number {
  let bestMs = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    fn();
    bestMs = Math.min(bestMs, performance.now() - t0);
  }
  return bestMs;
}

function row(name: string, shape: string, count: number, ms: number): EvalBenchRow {
  return { name, shape, ms, captionsPerSec: count / (ms / 1000) };
}

/** Time the tokenizer and the scorers; returns one row per measurement. */
export async function benchEval(): Promise<EvalBenchRow[]> {
  const images: FixtureImage[] = JSON.parse(await Deno.readTextFile(FIXTURE)).images;
  const set = syntheticSet(images);
  const shape = `${IMAGES}x${REFS} refs`;
  const reps = 3;
  const rows: EvalBenchRow[] = [];
  ptbTokenize(["warm up the lexer."]);
  const numRefs = IMAGES * REFS;
  rows.push(
    row(
      "ptb_tokenize refs",
      `${numRefs} captions`,
      numRefs,
      best(() => ptbTokenize(set.rawRefs.flat()), reps),
    ),
  );
  const cider = new CiderD(set.refs);
  rows.push(
    row("cider-d setup (df+ref vectors)", shape, numRefs, best(() => new CiderD(set.refs), reps)),
  );
  rows.push(row("cider-d score", shape, IMAGES, best(() => cider.score(set.cands), reps)));
  const scst = new CiderD(set.refs, { df: documentFrequency(set.refs) });
  rows.push(row(
    "cider-d scoreOne (SCST reward)",
    shape,
    IMAGES,
    best(() => {
      for (let i = 0; i < IMAGES; i++) scst.scoreOne(i, set.cands[i]);
    }, reps),
  ));
  const bleu = new Bleu(set.refs);
  rows.push(row("bleu-4 score", shape, IMAGES, best(() => bleu.score(set.cands), reps)));
  const rouge = new RougeL(set.refs);
  rows.push(row("rouge-l score", shape, IMAGES, best(() => rouge.score(set.cands), reps)));
  return rows;
}

if (import.meta.main) {
  const rows = await benchEval();
  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(`${"name".padEnd(w)}  ${"shape".padEnd(18)}  ${"ms".padStart(8)}  captions/s`);
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(w)}  ${r.shape.padEnd(18)}  ${r.ms.toFixed(1).padStart(8)}  ` +
        Math.round(r.captionsPerSec).toLocaleString("en-US"),
    );
  }
}
