/**
 * One step of beam search's bookkeeping on the GPU, with transformers 5 `_beam_search`
 * semantics (the host reference is src/decode/beam.ts): one workgroup per image.
 *
 * Inputs: each row's top-k processed log-probabilities (`vals`, `ids` `[R, k]`, R = images·K,
 * from `topk`), the running sequences `seqIn [R, W]`. Per row, `W` i32 columns hold the tokens
 * (prompt then generated, `L` = promptLen + maxNew), the generated tokens' log-probability bits
 * (`maxNew`) and the running score's bits (last column).
 *
 * Per image: the best `keep` candidates (score + value over the live beams × k, ties to the lower
 * beam·V + token) are ranked; those among the first K that end (eos, or the last step) enter the
 * image's K-best finished list with score / generated^lp; the first K that do not end continue:
 * their sequences are gathered from their parents into `seqOut`, their tokens written to `next`
 * and their rows (absolute) to `parents`. Then the early-stopping rules set the image's done flag;
 * a done image is left untouched.
 *
 * `hyps [images, HS]` i32, per image: `[done, count, heuristicUnsatisfied, order[K], K entries]`;
 * `order` lists the entries' slots best first; an entry is `[len, score bits, tokens[maxNew],
 * log-probability bits[maxNew]]` (the first `len` of each hold). `consts` u32: `[denominator bits[maxNew] | eos
 * ids]`, denominator[g − 1] = fround(g^lp) from the host (so the scores are the reference's).
 * @module
 */
import { WebcapError } from "../../errors.ts";
import { Kernel, read, readWrite } from "../../gpu/kernel.ts";
import type { Recorder } from "../../gpu/recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";

const BEAM_STEP = new Kernel({
  name: "beam_step",
  uniforms: {
    K: "u32",
    k: "u32",
    V: "u32",
    keep: "u32",
    width: "u32",
    step: "u32",
    P: "u32",
    L: "u32",
    W: "u32",
    maxNew: "u32",
    HS: "u32",
    eosCount: "u32",
    earlyTrue: "u32",
    fixedLen: "u32",
  },
  storage: {
    vals: read(),
    ids: read("i32"),
    seqIn: read("i32"),
    seqOut: readWrite("i32"),
    hyps: readWrite("i32"),
    next: readWrite("i32"),
    parents: readWrite("i32"),
    consts: read("u32"),
  },
  workgroupSize: [64],
  body: () => `
const NONE = 0xffffffffu;
var<workgroup> nRun: u32; // continuing beams of this step (0 for a done image)

fn denom(g: u32) -> f32 { return bitcast<f32>(consts[g - 1u]); }
fn is_eos(tok: u32) -> bool {
  for (var e = 0u; e < p.eosCount; e++) { if (consts[p.maxNew + e] == tok) { return true; } }
  return false;
}
fn beam_score(row: u32) -> f32 { return bitcast<f32>(seqIn[row * p.W + p.W - 1u]); }
fn entry(h0: u32, slot: u32) -> u32 { return h0 + 3u + p.K + slot * (2u + 2u * p.maxNew); }
fn entry_score(h0: u32, slot: u32) -> f32 { return bitcast<f32>(hyps[entry(h0, slot) + 1u]); }
// (s, key) ranks before (s2, key2): higher score, then lower beam·V + token
fn before(s: f32, key: u32, s2: f32, key2: u32) -> bool {
  return s > s2 || (!(s < s2) && key < key2);
}

// Offer row parent's hypothesis + (tok, value), raw score s, to the list at h0 (stable, K best).
fn finish(h0: u32, s: f32, parent: u32, tok: u32, value: f32, g: u32) {
  let score = s / denom(g);
  var count = u32(hyps[h0 + 1u]);
  var pos = 0u;
  while (pos < count && entry_score(h0, u32(hyps[h0 + 3u + pos])) >= score) { pos++; }
  if (pos >= p.K) { return; }
  var slot = count;
  if (count < p.K) { count++; } else { slot = u32(hyps[h0 + 3u + p.K - 1u]); }
  for (var i = count - 1u; i > pos; i--) { hyps[h0 + 3u + i] = hyps[h0 + 3u + i - 1u]; }
  hyps[h0 + 3u + pos] = i32(slot);
  hyps[h0 + 1u] = i32(count);
  let e = entry(h0, slot);
  hyps[e] = i32(g);
  hyps[e + 1u] = bitcast<i32>(score);
  for (var i = 0u; i + 1u < g; i++) {
    hyps[e + 2u + i] = seqIn[parent * p.W + p.P + i];
    hyps[e + 2u + p.maxNew + i] = seqIn[parent * p.W + p.L + i];
  }
  hyps[e + 1u + g] = i32(tok);
  hyps[e + 1u + p.maxNew + g] = bitcast<i32>(value);
}

// Rank image b's candidates, fill its finished list, start its continuing beams, set done.
fn bookkeep(b: u32) {
  let h0 = b * p.HS;
  let g = p.step + 1u;
  let last = g >= p.maxNew;
  var n = 0u;
  var best = 0.0;
  var ps = 0.0;
  var pkey = NONE;
  for (var rank = 0u; rank < p.keep && n < p.K; rank++) {
    var bs = 0.0;
    var bkey = NONE;
    var bval = 0.0;
    for (var beam = 0u; beam < p.width; beam++) {
      let row = b * p.K + beam;
      let base = beam_score(row);
      for (var j = 0u; j < p.k; j++) {
        let v = f32(vals[row * p.k + j]);
        let s = base + v;
        let key = beam * p.V + u32(ids[row * p.k + j]);
        let after = pkey == NONE || before(ps, pkey, s, key);
        if (after && (bkey == NONE || before(s, key, bs, bkey))) { bs = s; bkey = key; bval = v; }
      }
    }
    if (bkey == NONE) { break; }
    ps = bs;
    pkey = bkey;
    let parent = b * p.K + bkey / p.V;
    let tok = bkey % p.V;
    if (last || is_eos(tok)) {
      if (rank < p.K) { finish(h0, bs, parent, tok, bval, g); }
      continue;
    }
    let row = b * p.K + n;
    next[row] = i32(tok);
    parents[row] = i32(parent);
    seqOut[row * p.W + p.P + p.step] = i32(tok);
    seqOut[row * p.W + p.L + p.step] = bitcast<i32>(bval);
    seqOut[row * p.W + p.W - 1u] = bitcast<i32>(bs);
    if (n == 0u) { best = bs; }
    n++;
  }
  let count = u32(hyps[h0 + 1u]);
  var heur = hyps[h0 + 2u] != 0 && n > 0u;
  if (heur) {
    var worst = -1e9;
    if (count == p.K) { worst = entry_score(h0, u32(hyps[h0 + 3u + p.K - 1u])); }
    heur = best / denom(select(g, p.maxNew, p.fixedLen == 1u)) > worst;
  }
  hyps[h0 + 2u] = i32(heur);
  hyps[h0] = i32(last || n == 0u || (count == p.K && p.earlyTrue == 1u) || !heur);
  nRun = n;
}

fn kernel(wg: vec3u, lid: vec3u) {
  let b = wg.x;
  let t = lid.x;
  if (t == 0u) {
    nRun = 0u;
    if (hyps[b * p.HS] == 0) { bookkeep(b); }
  }
  storageBarrier();
  workgroupBarrier();
  let n = nRun;
  // the continuing rows' other columns, from their parents
  for (var e = t; e < n * p.W; e += WG_X) {
    let row = b * p.K + e / p.W;
    let c = e % p.W;
    if (c == p.P + p.step || c == p.L + p.step || c == p.W - 1u) { continue; }
    seqOut[row * p.W + c] = seqIn[u32(parents[row]) * p.W + c];
  }
}`,
});

/** The fixed sizes of a beam search: beams per image, candidates, prompt and new tokens. */
export interface BeamShape {
  /** Beams per image (K). */
  beams: number;
  /** Candidates ranked per image and step: max(2, 1 + #eos)·K. */
  keep: number;
  /** Prompt tokens per row. */
  promptLen: number;
  /** Most new tokens. */
  maxNew: number;
  /** earlyStopping === true. */
  earlyTrue: boolean;
  /** earlyStopping === "never" with lengthPenalty > 0: the heuristic divides by maxNew^lp. */
  fixedLen: boolean;
}

/** Words per row of the running sequences: tokens, log-probability bits, score bits. */
export function seqWidth(s: BeamShape): number {
  return s.promptLen + 2 * s.maxNew + 1;
}

/** Words per image of the finished lists: header, order, K entries. */
export function hypsWidth(s: BeamShape): number {
  return 3 + s.beams + s.beams * (2 + 2 * s.maxNew);
}

/**
 * Record step `step` of beam search: `top` is each row's top-k (`[R, k]`, R = images·K) of the
 * processed log-probabilities; `width` beams per image are live (1 at the first step, K after).
 * Reads `seqIn`, writes `seqOut`, `hyps`, `next [R]` and `parents [R]`.
 */
export function beamStep(
  rec: Recorder,
  top: { values: Tensor; ids: Tensor },
  t: { seqIn: Tensor; seqOut: Tensor; hyps: Tensor; next: Tensor; parents: Tensor; consts: Tensor },
  s: BeamShape & { vocab: number; eosCount: number; step: number; width: number },
): void {
  const [R, k] = top.values.shape;
  const images = R / s.beams, W = seqWidth(s), HS = hypsWidth(s);
  if (!Number.isInteger(images) || k < s.keep) {
    throw new WebcapError(
      "BAD_SHAPE",
      `beamStep: rows [${R}] of top-${k} cannot rank ${s.keep} candidates of ${s.beams} beams`,
    );
  }
  if (t.seqIn.size !== R * W || t.seqOut.size !== R * W || t.hyps.size !== images * HS) {
    throw new WebcapError("BAD_SHAPE", `beamStep: sequences [${R}, ${W}], hyps [${images}, ${HS}]`);
  }
  BEAM_STEP.record(rec, {
    uniforms: {
      K: s.beams,
      k,
      V: s.vocab,
      keep: s.keep,
      width: s.width,
      step: s.step,
      P: s.promptLen,
      L: s.promptLen + s.maxNew,
      W,
      maxNew: s.maxNew,
      HS,
      eosCount: s.eosCount,
      earlyTrue: s.earlyTrue ? 1 : 0,
      fixedLen: s.fixedLen ? 1 : 0,
    },
    bind: { vals: top.values, ids: top.ids, ...t },
    groups: images,
  });
}
