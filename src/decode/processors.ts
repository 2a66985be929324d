/**
 * Logits processors. Per-row banned lists are computed on the CPU from each row's token history
 * (prompt included, as transformers does) and handed to the model as {@link RowProcessing};
 * {@link processRows} is the CPU implementation of that contract, the reference the GPU kernels
 * are tested against and what a CPU model uses.
 *
 * Semantics follow transformers' processors of the same names: `NoRepeatNGramLogitsProcessor`,
 * `EncoderNoRepeatNGramLogitsProcessor`, `NoBadWordsLogitsProcessor`,
 * `MinNewTokensLengthLogitsProcessor`, `RepetitionPenaltyLogitsProcessor`. Every ban sets -inf,
 * so the order among bans does not matter; the repetition penalty comes before them, as in
 * transformers' processor list.
 * @module
 */

import { WebcapError } from "../errors.ts";
import type { ResolvedOptions } from "./options.ts";
import type { RowProcessing, StepOut, StepWant } from "./step.ts";
import { topK } from "./topk.ts";

/** The processor settings of one generate call, compiled once. */
export interface ProcessorRules {
  /** Scores of tokens in the history: x < 0 ? x·p : x/p; 1 = off. */
  repetitionPenalty: number;
  /** No n-gram of this size repeats in a history; 0 = off. */
  noRepeatNgramSize: number;
  /** No n-gram of this size of the image's prompt is generated; 0 = off. */
  encoderNoRepeatNgramSize: number;
  /** Per image: (n-1)-gram key → tokens that complete an n-gram of the image's prompt. */
  encoderNgrams: Map<string, number[]>[];
  /** Bad words with eos-only entries removed. */
  badWords: number[][];
  /** Eos is banned until this many tokens follow the prompt. */
  minNewTokens: number;
  /** End-of-sequence ids. */
  eos: number[];
}

/** One live row: its image and its tokens so far (prompt, then generated). */
export interface RowState {
  image: number;
  history: number[];
}

/** n-gram table of a token list: (n-1)-gram key → following tokens (duplicates kept). */
export function ngramTable(tokens: readonly number[], n: number): Map<string, number[]> {
  const table = new Map<string, number[]>();
  for (let end = n; end <= tokens.length; end++) {
    const key = tokens.slice(end - n, end - 1).join(",");
    const list = table.get(key);
    if (list) list.push(tokens[end - 1]);
    else table.set(key, [tokens[end - 1]]);
  }
  return table;
}

/** Compile the options into rules; `prompts[i]` is image i's full prompt. */
export function compileRules(opts: ResolvedOptions, prompts: readonly number[][]): ProcessorRules {
  const eos = opts.eosTokenIds;
  const n = opts.encoderNoRepeatNgramSize;
  return {
    repetitionPenalty: opts.repetitionPenalty,
    noRepeatNgramSize: opts.noRepeatNgramSize,
    encoderNoRepeatNgramSize: n,
    encoderNgrams: n > 0 ? prompts.map((p) => ngramTable(p, n)) : [],
    badWords: opts.badWordsIds.filter((w) => !(w.length === 1 && eos.includes(w[0]))),
    minNewTokens: opts.minNewTokens,
    eos,
  };
}

/** Tokens that would repeat an n-gram of `history` (transformers' `_calc_banned_ngram_tokens`). */
export function noRepeatBans(history: readonly number[], n: number): number[] {
  if (n <= 0 || history.length + 1 < n) return [];
  const key = history.slice(history.length - n + 1).join(",");
  return ngramTable(history, n).get(key) ?? [];
}

/** Tokens that would complete an n-gram of the prompt table. */
export function encoderNoRepeatBans(
  history: readonly number[],
  n: number,
  table: Map<string, number[]>,
): number[] {
  if (n <= 0 || history.length < n - 1) return [];
  return table.get(history.slice(history.length - n + 1).join(",")) ?? [];
}

/** Last tokens of bad words whose prefix ends `history` (single-token words: always). */
export function badWordBans(history: readonly number[], badWords: readonly number[][]): number[] {
  const out: number[] = [];
  for (const w of badWords) {
    if (w.length === 1) {
      out.push(w[0]);
      continue;
    }
    if (w.length > history.length) continue; // as transformers: longer than the context
    const start = history.length - (w.length - 1);
    let match = true;
    for (let i = 0; i < w.length - 1 && match; i++) match = history[start + i] === w[i];
    if (match) out.push(w[w.length - 1]);
  }
  return out;
}

/** Every token banned for the next position of a row. */
export function bannedTokens(rules: ProcessorRules, row: RowState, promptLen: number): Int32Array {
  const h = row.history;
  const banned = [
    ...noRepeatBans(h, rules.noRepeatNgramSize),
    ...(rules.encoderNoRepeatNgramSize > 0
      ? encoderNoRepeatBans(h, rules.encoderNoRepeatNgramSize, rules.encoderNgrams[row.image])
      : []),
    ...badWordBans(h, rules.badWords),
    ...(h.length - promptLen < rules.minNewTokens ? rules.eos : []),
  ];
  return Int32Array.from(banned);
}

/**
 * Where a step's processing sits between log-softmaxes; `repetition` false leaves the repetition
 * penalty to the caller (diverse beam search, which must subtract its penalty first).
 */
export interface ProcessingMode {
  logSoftmaxBefore: boolean;
  logSoftmaxAfter: boolean;
  repetition?: boolean;
}

/** The {@link RowProcessing} of a step for `rows`. */
export function rowProcessing(
  rules: ProcessorRules,
  rows: readonly RowState[],
  promptLen: number,
  mode: ProcessingMode,
): RowProcessing {
  const penalize = (mode.repetition ?? true) && rules.repetitionPenalty !== 1;
  return {
    logSoftmaxBefore: mode.logSoftmaxBefore,
    repetitionPenalty: penalize ? rules.repetitionPenalty : 1,
    seen: penalize ? rows.map((r) => Int32Array.from(r.history)) : undefined,
    banned: rows.map((r) => bannedTokens(rules, r, promptLen)),
    logSoftmaxAfter: mode.logSoftmaxAfter,
  };
}

/** The repetition penalty of one value, in float32 as the reference computes it. */
export function penalizeRepetition(x: number, p: number): number {
  return Math.fround(x < 0 ? x * p : x / p);
}

/** In-place log-softmax of `row[o, o + n)`, rounded to float32. */
export function logSoftmaxInPlace(row: Float32Array, o = 0, n = row.length - o): void {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (row[o + i] > max) max = row[o + i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(row[o + i] - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < n; i++) row[o + i] = Math.fround(row[o + i] - lse);
}

/**
 * Apply {@link RowProcessing} in place to rows of `vocabSize` values. Listed ids outside the
 * vocabulary (a reserved start id in a history) have no score and are skipped.
 */
export function applyProcessing(
  x: Float32Array,
  vocabSize: number,
  proc: RowProcessing,
): void {
  const rows = x.length / vocabSize;
  const inVocab = (t: number) => t >= 0 && t < vocabSize;
  for (let r = 0; r < rows; r++) {
    const o = r * vocabSize;
    if (proc.logSoftmaxBefore) logSoftmaxInPlace(x, o, vocabSize);
    const seen = proc.seen?.[r];
    if (proc.repetitionPenalty !== 1 && seen) {
      for (const t of new Set(seen)) {
        if (inVocab(t)) x[o + t] = penalizeRepetition(x[o + t], proc.repetitionPenalty);
      }
    }
    for (const t of proc.banned?.[r] ?? []) if (inVocab(t)) x[o + t] = -Infinity;
    if (proc.logSoftmaxAfter) logSoftmaxInPlace(x, o, vocabSize);
  }
}

/**
 * CPU reference of one step's processing and selection over full logits.
 * @param logits [rows, vocabSize] raw logits (not modified).
 */
export function processRows(
  logits: Float32Array,
  vocabSize: number,
  proc: RowProcessing,
  want: StepWant,
): StepOut {
  const rows = logits.length / vocabSize;
  if (!Number.isInteger(rows)) {
    throw new WebcapError(
      "BAD_SHAPE",
      `logits of ${logits.length} values are not rows of ${vocabSize}`,
    );
  }
  if (want.kind === "none") return { values: new Float32Array(0), ids: new Int32Array(0) };
  const x = logits.slice();
  applyProcessing(x, vocabSize, proc);
  if (want.kind === "full") return { values: x, ids: new Int32Array(0) };
  if (want.k > vocabSize) {
    throw new WebcapError("BAD_SHAPE", `top-k of ${want.k} asked of a vocabulary of ${vocabSize}`);
  }
  const values = new Float32Array(rows * want.k);
  const ids = new Int32Array(rows * want.k);
  for (let r = 0; r < rows; r++) {
    const best = topK(x, want.k, r * vocabSize, vocabSize);
    values.set(best.values, r * want.k);
    ids.set(best.ids, r * want.k);
  }
  const value = (
    r: number,
    t: number,
  ) => (t >= 0 && t < vocabSize ? x[r * vocabSize + t] : -Infinity);
  const gathered = want.gather?.map((g, r) => Float32Array.from(g, (t) => value(r, t)));
  return { values, ids, gathered };
}
