/**
 * Sampling on the GPU, one workgroup per row of processed logits `X [rows, V]` (in place):
 * transformers' warpers in its order — temperature, top-k, top-p, typical-p (min tokens to keep
 * 1) — then one draw from the softmax of the warped row with the uniform of Philox 4x32-10 keyed
 * by the seed, counter (row, step). The host reference is `src/decode/warpers.ts` with
 * `sampleUniform` and `sampleIndexAt` (`src/decode/rng.ts`): the same uniforms, sums in float32
 * here (a draw within rounding of a boundary may differ). Thresholds are found by bisection over
 * the float's ordered bits (32 rounds of one reduction each) instead of sorting the vocabulary;
 * top-p removes the low-index ties first, as a stable ascending sort does.
 * @module
 */
import { readWrite } from "../../gpu/kernel.ts";
import type { Recorder } from "../../gpu/recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { rowKernel } from "../reduce_wgsl.ts";
import { PHILOX_WGSL } from "./philox_wgsl.ts";

const SAMPLE = rowKernel({
  name: "sample_rows",
  uniforms: {
    V: "u32",
    temperature: "f32",
    topK: "u32",
    topP: "f32",
    typicalP: "f32",
    seedLo: "u32",
    seedHi: "u32",
    step: "u32",
  },
  storage: { X: readWrite(), vals: readWrite(), ids: readWrite("i32") },
  workgroupSize: [256],
  body: () =>
    `${PHILOX_WGSL}
var<workgroup> part: array<f32, WG_X>;
var<workgroup> pre: array<f32, WG_X>;
var<workgroup> pick: i32;
var<private> NEG_INF_BITS: u32 = 0xff800000u;
fn neg_inf() -> f32 { return bitcast<f32>(NEG_INF_BITS); }
fn x_at(i: u32) -> f32 { return f32(X[i]); }
// the float's bits mapped so that unsigned order is the float order
fn okey(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn from_key(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}
fn row_lse(t: u32, base: u32) -> f32 {
  var m = -3.4e38;
  for (var i = t; i < p.V; i += WG_X) { m = max(m, x_at(base + i)); }
  m = reduce(t, m, true);
  var s = 0.0;
  for (var i = t; i < p.V; i += WG_X) { s += exp(x_at(base + i) - m); }
  return m + log(reduce(t, s, false));
}
fn count_ge(t: u32, base: u32, k: u32) -> f32 {
  var c = 0.0;
  for (var i = t; i < p.V; i += WG_X) { c += select(0.0, 1.0, okey(x_at(base + i)) >= k); }
  return reduce(t, c, false);
}
fn mass_le(t: u32, base: u32, k: u32, lse: f32) -> f32 {
  var s = 0.0;
  for (var i = t; i < p.V; i += WG_X) {
    let x = x_at(base + i);
    if (okey(x) <= k) { s += exp(x - lse); }
  }
  return reduce(t, s, false);
}
// keep the values at or above the max(k, 1)-th largest (ties with it survive)
fn top_k(t: u32, base: u32) {
  let kk = f32(min(max(p.topK, 1u), p.V));
  var lo = 0u;
  var hi = 0xffffffffu;
  for (var it = 0u; it < 32u; it++) { // largest key with at least kk values at or above it
    let mid = hi - (hi - lo) / 2u;
    let c = count_ge(t, base, mid);
    if (lo < hi) { if (c >= kk) { lo = mid; } else { hi = mid - 1u; } }
  }
  for (var i = t; i < p.V; i += WG_X) {
    if (okey(x_at(base + i)) < lo) { X[base + i] = X_t(neg_inf()); }
  }
  storageBarrier();
}
// remove the ascending prefix (value, then id) whose cumulative probability is <= 1 - top_p
fn top_p(t: u32, base: u32) {
  let lse = row_lse(t, base);
  let thr = 1.0 - p.topP;
  var lo = 0u;
  var hi = 0xffffffffu;
  for (var it = 0u; it < 32u; it++) { // smallest key whose mass at or below passes thr
    let mid = lo + (hi - lo) / 2u;
    let m = mass_le(t, base, mid, lse);
    if (lo < hi) { if (m > thr) { hi = mid; } else { lo = mid + 1u; } }
  }
  let below = select(0.0, mass_le(t, base, lo - 1u, lse), lo > 0u);
  let q = exp(from_key(lo) - lse);
  let drop = select(0.0, floor((thr - below) / q), q > 0.0); // ties at the boundary removed
  let C = (p.V + WG_X - 1u) / WG_X;
  let start = min(t * C, p.V);
  let end = min(start + C, p.V);
  var ties = 0.0;
  for (var i = start; i < end; i++) { ties += select(0.0, 1.0, okey(x_at(base + i)) == lo); }
  part[t] = ties;
  workgroupBarrier();
  if (t == 0u) {
    var acc = 0.0;
    for (var j = 0u; j < WG_X; j++) { pre[j] = acc; acc += part[j]; }
  }
  workgroupBarrier();
  var rank = pre[t];
  for (var i = start; i < end; i++) {
    let k = okey(x_at(base + i));
    if (k < lo || (k == lo && rank < drop)) { X[base + i] = X_t(neg_inf()); }
    if (k == lo) { rank += 1.0; }
  }
  storageBarrier();
}
// keep the tokens of least |-log p - entropy| whose mass first reaches typical_p
fn typical(t: u32, base: u32) {
  let lse = row_lse(t, base);
  var e = 0.0;
  for (var i = t; i < p.V; i += WG_X) {
    let l = x_at(base + i) - lse;
    if (l > -3.4e38) { e -= l * exp(l); }
  }
  let ent = reduce(t, e, false);
  var lo = 0u;
  var hi = 0x7f800000u;
  for (var it = 0u; it < 32u; it++) { // smallest shift whose mass at or below reaches typical_p
    let mid = lo + (hi - lo) / 2u;
    var s = 0.0;
    for (var i = t; i < p.V; i += WG_X) {
      let l = x_at(base + i) - lse;
      if (bitcast<u32>(abs(-l - ent)) <= mid) { s += exp(l); }
    }
    let m = reduce(t, s, false);
    if (lo < hi) { if (m >= p.typicalP) { hi = mid; } else { lo = mid + 1u; } }
  }
  for (var i = t; i < p.V; i += WG_X) {
    let l = x_at(base + i) - lse;
    if (bitcast<u32>(abs(-l - ent)) > lo) { X[base + i] = X_t(neg_inf()); }
  }
  storageBarrier();
}
// draw from softmax of the row: the first id whose cumulative probability passes u · total
fn draw(t: u32, base: u32, row: u32) {
  let lse = row_lse(t, base);
  let C = (p.V + WG_X - 1u) / WG_X;
  let start = min(t * C, p.V);
  let end = min(start + C, p.V);
  var s = 0.0;
  var last = -1.0;
  for (var i = start; i < end; i++) {
    let w = exp(x_at(base + i) - lse);
    if (w > 0.0) { s += w; last = f32(i); }
  }
  part[t] = s;
  if (t == 0u) { pick = -1; }
  workgroupBarrier();
  if (t == 0u) {
    var acc = 0.0;
    for (var j = 0u; j < WG_X; j++) { pre[j] = acc; acc += part[j]; }
  }
  workgroupBarrier();
  let total = pre[WG_X - 1u] + part[WG_X - 1u];
  let r = philox(vec4u(row, p.step, 0u, 0u), vec2u(p.seedLo, p.seedHi)).x;
  let goal = f32(r >> 8u) / 16777216.0 * total;
  if (s > 0.0 && pre[t] <= goal && goal < pre[t] + s) {
    var acc = 0.0;
    var found = i32(last);
    for (var i = start; i < end; i++) {
      let w = exp(x_at(base + i) - lse);
      if (w <= 0.0) { continue; }
      acc += w;
      if (goal - pre[t] < acc) { found = i32(i); break; }
    }
    pick = found;
  }
  let fallback = reduce(t, last, true); // rounding left the target past the total: the last id
  if (t == 0u) {
    var id = pick;
    if (id < 0 && total > 0.0) { id = i32(fallback); }
    ids[row] = id;
    vals[row] = select(neg_inf(), x_at(base + u32(max(id, 0))) - lse, id >= 0);
  }
}
fn kernel(wg: vec3u, lid: vec3u) {
  let row = wg.x;
  let t = lid.x;
  let base = row * p.V;
  if (p.temperature != 1.0) {
    for (var i = t; i < p.V; i += WG_X) { X[base + i] = X_t(x_at(base + i) / p.temperature); }
    storageBarrier();
  }
  if (p.topK != 0u) { top_k(t, base); }
  if (p.topP < 1.0) { top_p(t, base); }
  if (p.typicalP < 1.0) { typical(t, base); }
  draw(t, base, row);
}`,
});

/** The warpers of {@link sampleRows}; 1 (temperature, topP, typicalP) or 0 (topK) is off. */
export interface SampleSettings {
  temperature: number;
  topK: number;
  topP: number;
  typicalP: number;
  /** Non-negative safe integer: the Philox key. */
  seed: number;
  /** The Philox counter's second word: tokens each row generated before this draw. */
  step: number;
}

/**
 * Warp `logits [rows, V]` in place and draw one token per row (Philox counter (row, step)):
 * ids `[rows]` i32 (-1 where every token is removed) and their log-probabilities under the
 * warped distribution `[rows]`.
 */
export function sampleRows(
  rec: Recorder,
  logits: Tensor,
  s: SampleSettings,
): { ids: Tensor; values: Tensor } {
  const V = logits.shape[logits.shape.length - 1];
  const rows = logits.size / V;
  const ids = rec.output([rows], "i32");
  const values = rec.output([rows]);
  SAMPLE.record(rec, {
    uniforms: {
      V,
      temperature: s.temperature,
      topK: s.topK,
      topP: s.topP,
      typicalP: s.typicalP,
      seedLo: s.seed >>> 0,
      seedHi: Math.floor(s.seed / 2 ** 32),
      step: s.step,
    },
    bind: { X: logits, vals: values, ids },
    groups: rows,
  });
  return { ids, values };
}
