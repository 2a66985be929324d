/**
 * Generation options: the transformers `generate` arguments, camelCased, with the reference's
 * defaults, and their validation. Every impossible or conflicting combination is refused here,
 * before any model work, with a `BAD_OPTION` error naming the option.
 * @module
 */

import { WebcapError } from "../errors.ts";

/**
 * A word that every caption must contain (constrained beam search): either one token sequence
 * (`[12, 7]`) or a list of alternatives of which one must appear (`[[12, 7], [31]]`), exactly as
 * transformers' `force_words_ids` entries.
 */
export type ForceWord = number[] | number[][];

/** Options of {@link generate}; unset fields take transformers' defaults. */
export interface GenerateOptions {
  /** Most tokens to generate after the prompt (transformers `max_new_tokens`). Default 20. */
  maxNewTokens?: number;
  /** End-of-sequence tokens are forbidden until this many tokens are generated. Default 0. */
  minNewTokens?: number;
  /** Beam width; 1 means greedy search or sampling. Default 1. */
  numBeams?: number;
  /** Sequences returned per image (≤ numBeams for beam methods; sampled rows for sampling). Default 1. */
  numReturnSequences?: number;
  /** Beam scores are divided by (generated length)^lengthPenalty. Default 1. */
  lengthPenalty?: number;
  /** Beam stopping rule: true, false (heuristic) or "never" (exhaustive). Default false. */
  earlyStopping?: boolean | "never";
  /** Scores of tokens already in the sequence (prompt included): x < 0 ? x·p : x/p. Default 1 (off). */
  repetitionPenalty?: number;
  /** No n-gram of this size occurs twice in a sequence (prompt included). Default 0 (off). */
  noRepeatNgramSize?: number;
  /**
   * No n-gram of this size that occurs in the image's prompt (start token + promptIds) is
   * generated. Captioning encoders read pixels, so the prompt plays the part of transformers'
   * encoder input ids (as it does for BLIP's text decoder). Default 0 (off).
   */
  encoderNoRepeatNgramSize?: number;
  /** Token sequences never generated; a single-token entry equal to an eos token is ignored, as in transformers. */
  badWordsIds?: number[][];
  /** Words every returned caption contains (constrained beam search; needs numBeams > 1). */
  forceWordsIds?: ForceWord[];
  /** Sample instead of searching. Default false. */
  doSample?: boolean;
  /** Sampling temperature (> 0). Default 1. */
  temperature?: number;
  /** Sample among the k most likely tokens; 0 turns it off. Default 50, as transformers. */
  topK?: number;
  /** Nucleus sampling mass in (0, 1]. Default 1 (off). */
  topP?: number;
  /** Typical sampling mass in (0, 1]. Default 1 (off). */
  typicalP?: number;
  /**
   * Seed of the sampling generator (Philox 4x32-10 keyed by the seed, the sequence's row and its
   * step): the same seed gives the same samples on every host and adapter. Default: random.
   */
  seed?: number;
  /** Diverse beam search groups (must divide numBeams). Default 1. */
  numBeamGroups?: number;
  /** Subtracted from a token's score for each earlier group that chose it this step. Default 0. */
  diversityPenalty?: number;
  /** Token ids fed after each image's start tokens before generation (e.g. BLIP's "a picture of"). */
  promptIds?: number[];
  /** End-of-sequence token id(s), normally the model's `eos_token_id`. Default: none. */
  eosTokenId?: number | number[];
  /** Padding id (diverse beam search marks finished groups with it). Default 0. */
  padTokenId?: number;
}

/** Options after defaults, validation and normalization. */
export interface ResolvedOptions {
  maxNewTokens: number;
  minNewTokens: number;
  numBeams: number;
  numReturnSequences: number;
  lengthPenalty: number;
  earlyStopping: boolean | "never";
  repetitionPenalty: number;
  noRepeatNgramSize: number;
  encoderNoRepeatNgramSize: number;
  badWordsIds: number[][];
  /** Each word normalized to its list of alternatives. */
  forceWordsIds: number[][][];
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  typicalP: number;
  seed: number;
  numBeamGroups: number;
  diversityPenalty: number;
  promptIds: number[];
  eosTokenIds: number[];
  padTokenId: number;
}

/** Default of {@link GenerateOptions.maxNewTokens}. */
export const DEFAULT_MAX_NEW_TOKENS = 20;

const OPTION_NAMES = new Set<string>([
  "maxNewTokens",
  "minNewTokens",
  "numBeams",
  "numReturnSequences",
  "lengthPenalty",
  "earlyStopping",
  "repetitionPenalty",
  "noRepeatNgramSize",
  "encoderNoRepeatNgramSize",
  "badWordsIds",
  "forceWordsIds",
  "doSample",
  "temperature",
  "topK",
  "topP",
  "typicalP",
  "seed",
  "numBeamGroups",
  "diversityPenalty",
  "promptIds",
  "eosTokenId",
  "padTokenId",
]);

function bad(option: string, message: string): WebcapError {
  return new WebcapError("BAD_OPTION", `option ${option}: ${message}`);
}

function int(o: GenerateOptions, key: keyof GenerateOptions, dflt: number, min: number): number {
  const v = o[key] ?? dflt;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
    throw bad(key, `must be an integer from ${min} to 2^53 − 1, got ${JSON.stringify(v)}`);
  }
  return v;
}

function num(
  o: GenerateOptions,
  key: keyof GenerateOptions,
  dflt: number,
  ok: (v: number) => boolean,
  range: string,
): number {
  const v = o[key] ?? dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) {
    throw bad(key, `must be a number ${range}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function tokenList(v: unknown, option: string, what: string): number[] {
  if (!Array.isArray(v) || v.length === 0) {
    throw bad(option, `${what} must be a non-empty list of token ids, got ${JSON.stringify(v)}`);
  }
  for (const t of v) {
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0) {
      throw bad(
        option,
        `${what} holds ${JSON.stringify(t)}, which is not a token id (integer ≥ 0)`,
      );
    }
  }
  return v as number[];
}

function badWords(o: GenerateOptions): number[][] {
  if (o.badWordsIds === undefined) return [];
  if (!Array.isArray(o.badWordsIds) || o.badWordsIds.length === 0) {
    throw bad("badWordsIds", "must be a non-empty list of token-id lists, e.g. [[5], [7, 8]]");
  }
  return o.badWordsIds.map((w, i) => tokenList(w, "badWordsIds", `entry ${i}`));
}

/** Normalize one force word to its alternatives and refuse alternatives that prefix others. */
function forceWord(w: unknown, i: number): number[][] {
  if (!Array.isArray(w) || w.length === 0) {
    throw bad("forceWordsIds", `word ${i} must be a non-empty list, got ${JSON.stringify(w)}`);
  }
  if (!Array.isArray(w[0])) return [tokenList(w, "forceWordsIds", `word ${i}`)];
  const alts = w.map((a, j) => tokenList(a, "forceWordsIds", `word ${i} alternative ${j}`));
  for (const a of alts) {
    for (const b of alts) {
      if (a !== b && a.length <= b.length && a.every((t, k) => t === b[k])) {
        throw bad(
          "forceWordsIds",
          `word ${i}: alternative [${a}] is a prefix of [${b}]; drop one of them`,
        );
      }
    }
  }
  return alts;
}

function forceWords(o: GenerateOptions): number[][][] {
  if (o.forceWordsIds === undefined) return [];
  if (!Array.isArray(o.forceWordsIds) || o.forceWordsIds.length === 0) {
    throw bad("forceWordsIds", "must be a non-empty list of words, e.g. [[9], [[4, 5], [6]]]");
  }
  return o.forceWordsIds.map(forceWord);
}

function eosIds(o: GenerateOptions): number[] {
  if (o.eosTokenId === undefined) return [];
  const list = Array.isArray(o.eosTokenId) ? o.eosTokenId : [o.eosTokenId];
  return tokenList(list, "eosTokenId", "eosTokenId");
}

function defaultSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** Refuse combinations that no strategy can run. */
function checkCombinations(r: ResolvedOptions): void {
  if (r.minNewTokens > r.maxNewTokens) {
    throw bad("minNewTokens", `${r.minNewTokens} exceeds maxNewTokens ${r.maxNewTokens}`);
  }
  if (r.numBeams === 1 && !r.doSample && r.numReturnSequences > 1) {
    throw bad(
      "numReturnSequences",
      `greedy search returns one sequence; got ${r.numReturnSequences} (set numBeams ≥ ${r.numReturnSequences} or doSample)`,
    );
  }
  if (r.numBeams > 1 && r.numReturnSequences > r.numBeams) {
    throw bad("numReturnSequences", `${r.numReturnSequences} exceeds numBeams ${r.numBeams}`);
  }
  checkGroups(r);
  if (r.forceWordsIds.length > 0) checkForceWords(r);
}

function checkGroups(r: ResolvedOptions): void {
  if (r.numBeamGroups > r.numBeams || r.numBeams % r.numBeamGroups !== 0) {
    throw bad("numBeamGroups", `${r.numBeamGroups} must divide numBeams ${r.numBeams}`);
  }
  if (r.numBeamGroups > 1 && r.doSample) {
    throw bad("numBeamGroups", "diverse beam search cannot sample; set doSample false");
  }
  if (r.diversityPenalty > 0 && r.numBeamGroups === 1) {
    throw bad("diversityPenalty", "only acts between beam groups; set numBeamGroups > 1");
  }
}

function checkForceWords(r: ResolvedOptions): void {
  if (r.numBeams < 2) throw bad("forceWordsIds", "constrained beam search needs numBeams > 1");
  if (r.doSample) throw bad("forceWordsIds", "constrained beam search cannot sample");
  if (r.numBeamGroups > 1) throw bad("forceWordsIds", "cannot be combined with numBeamGroups > 1");
  const needed = r.forceWordsIds.reduce((s, w) => s + Math.min(...w.map((a) => a.length)), 0);
  if (needed > r.maxNewTokens) {
    throw bad(
      "forceWordsIds",
      `the forced words need at least ${needed} new tokens but maxNewTokens is ${r.maxNewTokens}`,
    );
  }
}

/**
 * Apply defaults and refuse every invalid value or conflicting combination.
 * @throws WebcapError BAD_OPTION naming the option.
 */
export function resolveOptions(options: GenerateOptions = {}): ResolvedOptions {
  const r = resolveValues(options);
  checkCombinations(r);
  return r;
}

/**
 * Apply defaults and refuse every invalid value, each on its own (combinations are not checked).
 * @throws WebcapError BAD_OPTION naming the option.
 */
export function resolveValues(options: GenerateOptions): ResolvedOptions {
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.has(key)) throw bad(key, "is not a generate option (check the spelling)");
  }
  const o = options;
  const flag = (key: "doSample", dflt: boolean): boolean => {
    const v = o[key] ?? dflt;
    if (typeof v !== "boolean") throw bad(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const early = o.earlyStopping ?? false;
  if (early !== true && early !== false && early !== "never") {
    throw bad("earlyStopping", `must be true, false or "never", got ${JSON.stringify(early)}`);
  }
  return {
    maxNewTokens: int(o, "maxNewTokens", DEFAULT_MAX_NEW_TOKENS, 1),
    minNewTokens: int(o, "minNewTokens", 0, 0),
    numBeams: int(o, "numBeams", 1, 1),
    numReturnSequences: int(o, "numReturnSequences", 1, 1),
    lengthPenalty: num(o, "lengthPenalty", 1, () => true, "(finite)"),
    earlyStopping: early,
    repetitionPenalty: num(o, "repetitionPenalty", 1, (v) => v > 0, "> 0"),
    noRepeatNgramSize: int(o, "noRepeatNgramSize", 0, 0),
    encoderNoRepeatNgramSize: int(o, "encoderNoRepeatNgramSize", 0, 0),
    badWordsIds: badWords(o),
    forceWordsIds: forceWords(o),
    doSample: flag("doSample", false),
    temperature: num(o, "temperature", 1, (v) => v > 0, "> 0"),
    topK: int(o, "topK", 50, 0),
    topP: num(o, "topP", 1, (v) => v > 0 && v <= 1, "in (0, 1]"),
    typicalP: num(o, "typicalP", 1, (v) => v > 0 && v <= 1, "in (0, 1]"),
    seed: o.seed === undefined ? defaultSeed() : int(o, "seed", 0, 0),
    numBeamGroups: int(o, "numBeamGroups", 1, 1),
    diversityPenalty: num(o, "diversityPenalty", 0, (v) => v >= 0, "≥ 0"),
    promptIds: o.promptIds === undefined || o.promptIds.length === 0
      ? []
      : tokenList(o.promptIds, "promptIds", "promptIds"),
    eosTokenIds: eosIds(o),
    padTokenId: int(o, "padTokenId", 0, 0),
  };
}

/** Refuse token ids outside the vocabulary (known once the decoder factory is). */
export function checkVocabulary(r: ResolvedOptions, vocabSize: number): void {
  const check = (option: string, ids: number[]) => {
    for (const t of ids) {
      if (t >= vocabSize) {
        throw bad(option, `token ${t} is outside the model's vocabulary of ${vocabSize}`);
      }
    }
  };
  r.badWordsIds.forEach((w) => check("badWordsIds", w));
  r.forceWordsIds.forEach((w) => w.forEach((a) => check("forceWordsIds", a)));
  check("promptIds", r.promptIds);
  check("eosTokenId", r.eosTokenIds);
}
