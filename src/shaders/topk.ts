/**
 * Next-token selection without reading logits back: per-row top-k (best first, ties to the
 * lower id, so k = 1 is argmax as torch breaks ties) and a gather of chosen ids' values.
 * One workgroup per row; k rounds, each a parallel reduction for the best element ranked after
 * the previous pick. Reads the row k times, which for k ≤ 2·beams is far cheaper than a readback.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";

const TOPK = new Kernel({
  name: "topk",
  uniforms: { V: "u32", k: "u32" },
  storage: { X: read(), vals: readWrite(), ids: readWrite("i32") },
  workgroupSize: [256],
  body: () => `
var<workgroup> rv: array<f32, 256>;
var<workgroup> ri: array<u32, 256>;
// (v, i) ranks before (w, j): larger value first, then lower id. NaN ranks last.
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
  if (v != v) { return false; }
  if (w != w) { return true; }
  return v > w || (v == w && i < j);
}
fn kernel(wg: vec3u, lid: vec3u) {
  let row = wg.x;
  let t = lid.x;
  let base = row * p.V;
  var pv = 0.0;
  var pi = 0xffffffffu;
  for (var r = 0u; r < p.k; r++) {
    var bv = 0.0;
    var bi = 0xffffffffu;
    for (var i = t; i < p.V; i += WG_X) {
      let v = f32(X[base + i]);
      let after_prev = pi == 0xffffffffu || before(pv, pi, v, i);
      if (after_prev && (bi == 0xffffffffu || before(v, i, bv, bi))) { bv = v; bi = i; }
    }
    rv[t] = bv; ri[t] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
      if (t < s) {
        let oi = ri[t + s];
        if (oi != 0xffffffffu && (ri[t] == 0xffffffffu || before(rv[t + s], oi, rv[t], ri[t]))) {
          rv[t] = rv[t + s]; ri[t] = oi;
        }
      }
      workgroupBarrier();
    }
    pv = rv[0]; pi = ri[0];
    workgroupBarrier();
    if (t == 0u) { vals[row * p.k + r] = vals_t(pv); ids[row * p.k + r] = i32(pi); }
  }
}`,
});

function recordTopk(rec: Recorder, x: Tensor, k: number, values: Tensor, ids: Tensor): void {
  const V = x.shape[x.shape.length - 1];
  TOPK.record(rec, { uniforms: { V, k }, bind: { X: x, vals: values, ids }, groups: x.size / V });
}

function checkK(x: Tensor, k: number): number {
  const V = x.shape[x.shape.length - 1];
  if (!Number.isInteger(k) || k < 1 || k > V) {
    throw new WebcapError("BAD_OPTION", `topk: k=${k} must be in 1..${V}`);
  }
  return x.size / V;
}

/** Top-k of each row of `x [rows, V]`: values `[rows, k]` f32 and ids `[rows, k]` i32. */
export function topk(rec: Recorder, x: Tensor, k: number): { values: Tensor; ids: Tensor } {
  const rows = checkK(x, k);
  const values = rec.output([rows, k]);
  const ids = rec.output([rows, k], "i32");
  recordTopk(rec, x, k, values, ids);
  return { values, ids };
}

/** Argmax of each row: ids `[rows]` (top-1, ties to the lower id). */
export function argmax(rec: Recorder, x: Tensor): Tensor {
  const rows = checkK(x, 1);
  const ids = rec.output([rows, 1], "i32");
  recordTopk(rec, x, 1, rec.temp([rows, 1]), ids);
  return ids;
}

const GATHER = new Kernel({
  name: "gather_values",
  uniforms: { n: "u32", V: "u32" },
  storage: { X: read(), pairs: read("u32"), Y: readWrite() },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i < p.n) { Y[i] = Y_t(f32(X[pairs[2u * i] * p.V + pairs[2u * i + 1u]])); }
}`,
});

/** Values `x[row, id]` for each `(row, id)` pair in `pairs` (u32 `[n, 2]`): `[n]`. */
export function gatherValues(rec: Recorder, x: Tensor, pairs: Tensor): Tensor {
  const V = x.shape[x.shape.length - 1];
  const n = pairs.size / 2;
  const y = rec.output([n]);
  GATHER.record(rec, {
    uniforms: { n, V },
    bind: { X: x, pairs, Y: y },
    groups: Math.ceil(n / 64),
  });
  return y;
}

const RECORD_TOKENS = new Kernel({
  name: "record_tokens",
  uniforms: { R: "u32", maxLen: "u32", pos: "u32", outAt: "u32" },
  storage: {
    ids: read("i32"),
    vals: read(),
    next: readWrite("i32"),
    H: readWrite("i32"),
    out: readWrite("u32"),
  },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let r = wg.x * WG_X + lid.x;
  if (r >= p.R) { return; }
  let id = ids[r];
  next[r] = id;
  H[r * p.maxLen + p.pos] = id;
  out[p.outAt + r] = bitcast<u32>(id);
  out[p.outAt + p.R + r] = bitcast<u32>(f32(vals[r]));
}`,
});

/**
 * A decoding loop's bookkeeping after a selection of `ids [R]` with `values [R]`: the ids become
 * the next step's input `next [R]` and column `pos` of the histories `hist [R, maxLen]`, and
 * both are written to `out` (u32) at `outAt`: `[R ids | R value bits]`.
 */
export function recordTokens(
  rec: Recorder,
  sel: { ids: Tensor; values: Tensor },
  next: Tensor,
  hist: Tensor,
  out: Tensor,
  at: { pos: number; outAt: number },
): void {
  const R = next.size;
  RECORD_TOKENS.record(rec, {
    uniforms: { R, maxLen: hist.shape[1], pos: at.pos, outAt: at.outAt },
    bind: { ids: sel.ids, vals: sel.values, next, H: hist, out },
    groups: Math.ceil(R / 64),
  });
}
