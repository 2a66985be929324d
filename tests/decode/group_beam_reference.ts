/**
 * A literal port of transformers 4.x `_group_beam_search` for tests: all B·K rows run every step
 * (the first beam of each group starts at 0, the others at -1e9), finished groups keep running
 * on pad tokens with score 0, and the diversity penalty counts the tokens that earlier groups
 * put into this step's `current_tokens`. It checks src/decode/diverse_beam.ts, which runs one row
 * per image for the prompt, drops finished groups and reads back only top-k values.
 */
import { BeamHypotheses, bestOf } from "../../src/decode/beam_hypotheses.ts";
import type { CpuLanguageModel } from "../../src/decode/cpu_decoder.ts";
import type { ResolvedOptions } from "../../src/decode/options.ts";
import {
  bannedTokens,
  compileRules,
  penalizeRepetition,
  processRows,
} from "../../src/decode/processors.ts";
import type { GeneratedSequence } from "../../src/decode/search.ts";

const f = Math.fround;

interface Row {
  seq: number[];
  logprobs: number[];
  score: number;
}

/** Run the reference group beam search on a CPU language model. */
export async function referenceGroupBeamSearch(
  lm: CpuLanguageModel,
  vocab: number,
  prompts: number[][],
  o: ResolvedOptions,
): Promise<GeneratedSequence[][]> {
  const B = prompts.length, K = o.numBeams, G = K / o.numBeamGroups, P = prompts[0].length;
  const keep = Math.max(2, 1 + o.eosTokenIds.length) * G;
  const rules = compileRules(o, prompts);
  let rows: Row[] = Array.from({ length: B * K }, (_, i) => ({
    seq: [],
    logprobs: [],
    score: i % G === 0 ? 0 : -1e9,
  }));
  const hyps = prompts.map(() =>
    Array.from(
      { length: o.numBeamGroups },
      () => new BeamHypotheses(G, o.lengthPenalty, o.earlyStopping, o.maxNewTokens),
    )
  );
  const done = prompts.map(() => Array.from({ length: o.numBeamGroups }, () => false));
  for (let cur = 0;; cur++) {
    const hist = rows.map((r, i) => ({
      image: Math.floor(i / K),
      history: [...prompts[Math.floor(i / K)], ...r.seq],
    }));
    const logits = await lm(hist.map((h) => h.history), Int32Array.from(hist, (h) => h.image));
    const logp = processRows(logits, vocab, {
      logSoftmaxBefore: true,
      repetitionPenalty: 1,
      logSoftmaxAfter: false,
    }, {
      kind: "full",
    }).values;
    const current = new Array<number>(B * K).fill(0);
    const next: Row[] = rows.slice();
    for (let g = 0; g < o.numBeamGroups; g++) {
      for (let b = 0; b < B; b++) {
        const idx = Array.from({ length: G }, (_, j) => b * K + g * G + j);
        if (done[b][g]) {
          idx.forEach((i) => {
            next[i] = { ...rows[i], seq: [...rows[i].seq, o.padTokenId], score: 0 };
            current[i] = o.padTokenId;
          });
          continue;
        }
        const counts = new Map<number, number>();
        for (let i = b * K; i < b * K + g * G; i++) {
          counts.set(current[i], (counts.get(current[i]) ?? 0) + 1);
        }
        const cands: { score: number; value: number; row: number; token: number; flat: number }[] =
          [];
        idx.forEach((i, j) => {
          const banned = new Set(bannedTokens(rules, hist[i], P));
          const seen = new Set(hist[i].history);
          for (let t = 0; t < vocab; t++) {
            let x = logp[i * vocab + t];
            if (counts.has(t)) x = f(x - f(f(o.diversityPenalty) * counts.get(t)!));
            if (o.repetitionPenalty !== 1 && seen.has(t)) {
              x = penalizeRepetition(x, o.repetitionPenalty);
            }
            if (banned.has(t)) x = -Infinity;
            cands.push({
              score: f(rows[i].score + x),
              value: x,
              row: i,
              token: t,
              flat: j * vocab + t,
            });
          }
        });
        const top = cands.sort((a, c) => c.score - a.score || a.flat - c.flat).slice(0, keep);
        const chosen: typeof top = [];
        for (const [rank, c] of top.entries()) {
          const parent = rows[c.row];
          if (o.eosTokenIds.includes(c.token)) {
            if (rank < G) {
              hyps[b][g].add({
                tokens: [...parent.seq, c.token],
                logprobs: [...parent.logprobs, c.value],
              }, c.score);
            }
          } else {
            chosen.push(c);
            if (chosen.length === G) break;
          }
        }
        chosen.forEach((c, j) => {
          const parent = rows[c.row];
          next[idx[j]] = {
            seq: [...parent.seq, c.token],
            logprobs: [...parent.logprobs, c.value],
            score: c.score,
          };
          current[idx[j]] = c.token;
        });
        done[b][g] ||= hyps[b][g].isDone(top[0].score, cur + 1);
      }
    }
    rows = next;
    if (done.every((d) => d.every(Boolean)) || cur + 1 >= o.maxNewTokens) break;
  }
  return prompts.map((_, b) => {
    for (let g = 0; g < o.numBeamGroups; g++) {
      if (done[b][g]) continue;
      for (let j = 0; j < G; j++) {
        const r = rows[b * K + g * G + j];
        hyps[b][g].add({ tokens: r.seq, logprobs: r.logprobs }, r.score);
      }
    }
    return bestOf(hyps[b], o.numReturnSequences).map((h) => ({
      tokens: h.tokens,
      logprobs: h.logprobs,
      score: h.score,
    }));
  });
}
