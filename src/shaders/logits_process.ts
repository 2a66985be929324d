/**
 * Per-row processing of decoder logits in place, in the order of the decoding contract
 * (src/decode/step.ts): optional log-softmax, repetition penalty on listed tokens, banned
 * tokens to -inf, optional log-softmax. Token lists come packed in one u32 buffer:
 * `[seenOffsets(rows+1) | bannedOffsets(rows+1) | seen ids | banned ids]`, offsets relative to
 * the start of their id section. Seen lists must hold each token at most once.
 * @module
 */
import { read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowKernel } from "./reduce_wgsl.ts";

/** In-place log-softmax of row `X[base, base + V)` by the workgroup, and the -inf of bans. */
const LOG_SOFTMAX = `
// -inf's bits, read at run time: WGSL forbids a constant expression that evaluates to -inf.
var<private> NEG_INF_BITS: u32 = 0xff800000u;
fn log_softmax(t: u32, base: u32) {
  var m = -3.4e38;
  for (var i = t; i < p.V; i += WG_X) { m = max(m, f32(X[base + i])); }
  m = reduce(t, m, true);
  var s = 0.0;
  for (var i = t; i < p.V; i += WG_X) { s += exp(f32(X[base + i]) - m); }
  let lse = m + log(reduce(t, s, false));
  for (var i = t; i < p.V; i += WG_X) { X[base + i] = X_t(f32(X[base + i]) - lse); }
  storageBarrier();
}
`;

const PROCESS_LOGITS = rowKernel({
  name: "process_logits",
  uniforms: {
    rows: "u32",
    V: "u32",
    before: "u32",
    after: "u32",
    penalty: "f32",
    seenIds: "u32",
    bannedIds: "u32",
  },
  storage: { X: readWrite(), L: read("u32") },
  workgroupSize: [256],
  body: () => `
${LOG_SOFTMAX}fn kernel(wg: vec3u, lid: vec3u) {
  let row = wg.x;
  let t = lid.x;
  let base = row * p.V;
  if (p.before == 1u) { log_softmax(t, base); }
  if (p.penalty != 1.0) {
    for (var i = L[row] + t; i < L[row + 1u]; i += WG_X) {
      let o = base + L[p.seenIds + i];
      let x = f32(X[o]);
      X[o] = X_t(select(x / p.penalty, x * p.penalty, x < 0.0));
    }
  }
  storageBarrier();
  let b0 = p.rows + 1u;
  for (var i = L[b0 + row] + t; i < L[b0 + row + 1u]; i += WG_X) {
    X[base + L[p.bannedIds + i]] = X_t(bitcast<f32>(NEG_INF_BITS));
  }
  storageBarrier();
  if (p.after == 1u) { log_softmax(t, base); }
}`,
});

/** Apply the per-row processing to `logits [rows, V]` in place; `lists` packed as described above. */
export function processLogits(
  rec: Recorder,
  logits: Tensor,
  lists: Tensor,
  o: { rows: number; before: boolean; after: boolean; penalty: number; seenTotal: number },
): void {
  const V = logits.shape[logits.shape.length - 1];
  const seenIds = 2 * (o.rows + 1);
  PROCESS_LOGITS.record(rec, {
    uniforms: {
      rows: o.rows,
      V,
      before: o.before ? 1 : 0,
      after: o.after ? 1 : 0,
      penalty: o.penalty,
      seenIds,
      bannedIds: seenIds + o.seenTotal,
    },
    bind: { X: logits, L: lists },
    groups: o.rows,
  });
}

/**
 * transformers' processors computed from each row's token history on the GPU, so a decoding
 * loop needs no host between steps: repetition penalty (each distinct token once), then bans
 * (no-repeat n-grams of the history, n-grams of the prompt, bad words, eos before the minimum
 * length), then an optional log-softmax. `H [rows, maxLen]` i32 holds each row's `len` tokens so
 * far (prompt first; ids outside the vocabulary have no logit). `W` u32 packs
 * `[wordOffsets(words+1) | word ids | eos ids]`, offsets absolute in `W`.
 */
const PROCESS_HISTORY = rowKernel({
  name: "process_history",
  uniforms: {
    V: "u32",
    maxLen: "u32",
    len: "u32",
    promptLen: "u32",
    penalty: "f32",
    ngram: "u32",
    encNgram: "u32",
    words: "u32",
    eosAt: "u32",
    eosCount: "u32",
    minNew: "u32",
    after: "u32",
  },
  storage: { X: readWrite(), H: read("i32"), W: read("u32") },
  workgroupSize: [256],
  body: () =>
    `${LOG_SOFTMAX}
fn ban(base: u32, tok: i32) {
  if (tok >= 0 && u32(tok) < p.V) { X[base + u32(tok)] = X_t(bitcast<f32>(NEG_INF_BITS)); }
}
// whether H[a, a + m) equals H[b, b + m)
fn same(a: u32, b: u32, m: u32) -> bool {
  for (var i = 0u; i < m; i++) { if (H[a + i] != H[b + i]) { return false; } }
  return true;
}
fn penalize(t: u32, base: u32, h: u32) {
  for (var j = t; j < p.len; j += WG_X) {
    let tok = H[h + j];
    if (tok < 0 || u32(tok) >= p.V) { continue; }
    var first = true;
    for (var i = 0u; i < j && first; i++) { first = H[h + i] != tok; }
    if (first) {
      let x = f32(X[base + u32(tok)]);
      X[base + u32(tok)] = X_t(select(x / p.penalty, x * p.penalty, x < 0.0));
    }
  }
}
// ban the token after every n-gram start s (s + n <= end) whose first n-1 tokens end the history
fn ngram_bans(t: u32, base: u32, h: u32, n: u32, end: u32) {
  let tail = h + p.len - (n - 1u);
  for (var s = t; s + n <= end; s += WG_X) {
    if (same(h + s, tail, n - 1u)) { ban(base, H[h + s + n - 1u]); }
  }
}
fn word_bans(t: u32, base: u32, h: u32) {
  for (var w = t; w < p.words; w += WG_X) {
    let start = W[w];
    let L = W[w + 1u] - start;
    if (L > p.len) { continue; }
    var ok = true;
    for (var i = 0u; i + 1u < L && ok; i++) {
      ok = H[h + p.len - (L - 1u) + i] == i32(W[start + i]);
    }
    if (ok) { ban(base, i32(W[start + L - 1u])); }
  }
}
fn kernel(wg: vec3u, lid: vec3u) {
  let row = wg.x;
  let t = lid.x;
  let base = row * p.V;
  let h = row * p.maxLen;
  if (p.penalty != 1.0) { penalize(t, base, h); }
  storageBarrier();
  workgroupBarrier();
  if (p.ngram > 0u && p.len >= p.ngram) { ngram_bans(t, base, h, p.ngram, p.len); }
  if (p.encNgram > 0u && p.len + 1u >= p.encNgram) {
    ngram_bans(t, base, h, p.encNgram, p.promptLen);
  }
  word_bans(t, base, h);
  if (p.len - p.promptLen < p.minNew) {
    for (var e = t; e < p.eosCount; e += WG_X) { ban(base, i32(W[p.eosAt + e])); }
  }
  storageBarrier();
  workgroupBarrier();
  if (p.after == 1u) { log_softmax(t, base); }
}`,
});

/** The processor settings {@link processHistory} applies (transformers' names, camelCased). */
export interface HistoryRules {
  /** 1 = off. */
  repetitionPenalty: number;
  /** 0 = off. */
  noRepeatNgramSize: number;
  /** n-grams of the prompt (the first `promptLen` history tokens) are not repeated; 0 = off. */
  encoderNoRepeatNgramSize: number;
  /** Eos is banned while fewer than this many tokens follow the prompt. */
  minNewTokens: number;
  /** Tokens of `promptLen` at the start of each history. */
  promptLen: number;
}

/** The packed word and eos lists `W` of {@link processHistory}. */
export function packWords(badWords: readonly number[][], eos: readonly number[]): Uint32Array {
  const ids = badWords.flat();
  const out = new Uint32Array(badWords.length + 1 + ids.length + eos.length);
  let o = badWords.length + 1;
  badWords.forEach((w, i) => {
    out[i] = o;
    o += w.length;
  });
  out[badWords.length] = o;
  out.set(ids, badWords.length + 1);
  out.set(eos, o);
  return out;
}

/**
 * Process `logits [rows, V]` in place from the histories `H [rows, maxLen]` (i32, `len` tokens
 * each) and the packed lists `W` ({@link packWords} of `words` bad words and `eos`);
 * `logSoftmax`: end with log-softmax.
 */
export function processHistory(
  rec: Recorder,
  logits: Tensor,
  hist: Tensor,
  lists: Tensor,
  o: HistoryRules & { len: number; words: number; eosCount: number; logSoftmax: boolean },
): void {
  const [rows, V] = [logits.size / logits.shape[logits.shape.length - 1], logits.shape.at(-1)!];
  PROCESS_HISTORY.record(rec, {
    uniforms: {
      V,
      maxLen: hist.shape[1],
      len: o.len,
      promptLen: o.promptLen,
      penalty: o.repetitionPenalty,
      ngram: o.noRepeatNgramSize,
      encNgram: o.encoderNoRepeatNgramSize,
      words: o.words,
      eosAt: lists.size - o.eosCount,
      eosCount: o.eosCount,
      minNew: o.minNewTokens,
      after: o.logSoftmax ? 1 : 0,
    },
    bind: { X: logits, H: hist, W: lists },
    groups: rows,
  });
}
