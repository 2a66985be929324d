/**
 * A literal port of transformers 5 `_beam_search` for tests: every image keeps all K rows from
 * the first step (beams 1…K-1 start at -1e9), nothing leaves the batch, finished lists are
 * merged with -1e9 masks in float32, and the loop runs until the reference's global stopping
 * condition. It shares no code with src/decode/beam.ts, whose shortcuts (one row per image for
 * the prompt, dropping done images, per-image freezing) it checks.
 */
import type { CpuLanguageModel } from "../../src/decode/cpu_decoder.ts";
import { bannedTokens, compileRules, processRows } from "../../src/decode/processors.ts";
import type { ResolvedOptions } from "../../src/decode/options.ts";
import type { GeneratedSequence } from "../../src/decode/search.ts";

const f = Math.fround;
const NEG = -1e9;

interface Slot {
  seq: number[];
  logprobs: number[];
  score: number;
}

/** Indices of the k largest values, largest first, ties to the lower index. */
function topIdx(values: number[], k: number): number[] {
  return values.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k).map((
    x,
  ) => x[1]);
}

/** Run the reference beam search on a CPU language model. */
export async function referenceBeamSearch(
  lm: CpuLanguageModel,
  vocab: number,
  prompts: number[][],
  o: ResolvedOptions,
): Promise<GeneratedSequence[][]> {
  const B = prompts.length, K = o.numBeams, P = prompts[0].length;
  const keep = Math.max(2, 1 + o.eosTokenIds.length) * K;
  const rules = compileRules(o, prompts);
  const running: Slot[][] = prompts.map(() =>
    Array.from({ length: K }, (_, k) => ({ seq: [], logprobs: [], score: k === 0 ? 0 : NEG }))
  );
  const finished: (Slot & { done: boolean })[][] = prompts.map(() =>
    Array.from({ length: K }, () => ({ seq: [], logprobs: [], score: NEG, done: false }))
  );
  const unsatisfied = prompts.map(() => true);
  for (let cur = 0;; cur++) {
    const rows = running.flatMap((slots, b) =>
      slots.map((s) => ({ image: b, history: [...prompts[b], ...s.seq] }))
    );
    const logits = await lm(rows.map((r) => r.history), Int32Array.from(rows, (r) => r.image));
    const proc = {
      logSoftmaxBefore: true,
      repetitionPenalty: rules.repetitionPenalty,
      seen: rows.map((r) => Int32Array.from(r.history)),
      banned: rows.map((r) => bannedTokens(rules, r, P)),
      logSoftmaxAfter: false,
    };
    const values = processRows(logits, vocab, proc, { kind: "full" }).values;
    let allHit = true;
    for (let b = 0; b < B; b++) {
      const acc: number[] = [];
      for (let k = 0; k < K; k++) {
        for (let t = 0; t < vocab; t++) {
          acc.push(f(values[(b * K + k) * vocab + t] + running[b][k].score));
        }
      }
      const cands = topIdx(acc, keep).map((i) => {
        const beam = Math.floor(i / vocab), token = i % vocab;
        const parent = running[b][beam];
        return {
          seq: [...parent.seq, token],
          logprobs: [...parent.logprobs, values[(b * K + beam) * vocab + token]],
          score: acc[i],
          hit: o.eosTokenIds.includes(token) || cur + 1 >= o.maxNewTokens,
        };
      });
      allHit &&= cands.every((c) => c.hit);
      const runScores = cands.map((c) => f(c.score + (c.hit ? NEG : 0)));
      const next = topIdx(runScores, K).map((i) => ({ ...cands[i], score: runScores[i] }));
      const full = finished[b].every((s) => s.done) && o.earlyStopping === true;
      const denom = f((cur + 1) ** o.lengthPenalty);
      const newScores = cands.map((c, i) => {
        let s = f(c.score / denom);
        if (full) s = f(s + NEG);
        if (!unsatisfied[b]) s = f(s + NEG);
        if (!(c.hit && i < K)) s = f(s + NEG);
        return s;
      });
      const merged = [
        ...finished[b],
        ...cands.map((c, i) => ({ ...c, score: newScores[i], done: c.hit && i < K })),
      ];
      finished[b] = topIdx(merged.map((m) => m.score), K).map((i) => merged[i]);
      running[b] = next;
      const len = o.earlyStopping === "never" && o.lengthPenalty > 0 ? o.maxNewTokens : cur + 1;
      const best = f(next[0].score / f(len ** o.lengthPenalty));
      const worstFinished = Math.min(...finished[b].map((s) => s.score));
      unsatisfied[b] &&= finished[b].some((s) => best > (s.done ? worstFinished : NEG));
    }
    const anyOpen = !(finished.every((fs) => fs.every((s) => s.done)) && o.earlyStopping === true);
    if (!(unsatisfied.some((u) => u) && anyOpen && !allHit)) break;
  }
  return finished.map((fs) =>
    fs.slice(0, o.numReturnSequences).map((s) => ({
      tokens: s.seq,
      logprobs: s.logprobs,
      score: s.score,
    }))
  );
}
