/**
 * Next-token selection without reading logits back: per-row top-k (best first, ties to the
 * lower id, so k = 1 is argmax as torch breaks ties) and a gather of chosen ids' values.
 * One workgroup per row; k rounds, each a parallel reduction for the best element ranked after
 * the previous pick. Reads the row k times, which for k ≤ 2·beams is far cheaper than a readback.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Params, type Recorder } from "../gpu/recorder.ts";
import { emptyTensor, type Tensor } from "../gpu/tensor.ts";
import { grid } from "./matmul.ts";

const TOPK = `
struct P { rows: u32, V: u32, k: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> vals: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<i32>;
var<workgroup> rv: array<f32, 256>;
var<workgroup> ri: array<u32, 256>;
// (v, i) ranks before (w, j): larger value first, then lower id. NaN ranks last.
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
  if (v != v) { return false; }
  if (w != w) { return true; }
  return v > w || (v == w && i < j);
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.y * 65535u + wg.x;
  if (row >= p.rows) { return; }
  let t = lid.x;
  let base = row * p.V;
  var pv = 0.0;
  var pi = 0xffffffffu;
  for (var r = 0u; r < p.k; r++) {
    var bv = 0.0;
    var bi = 0xffffffffu;
    for (var i = t; i < p.V; i += 256u) {
      let v = X[base + i];
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
    if (t == 0u) { vals[row * p.k + r] = pv; ids[row * p.k + r] = i32(pi); }
  }
}`;

/** Top-k of each row of `x [rows, V]`: values `[rows, k]` f32 and ids `[rows, k]` i32. */
export function topk(rec: Recorder, x: Tensor, k: number): { values: Tensor; ids: Tensor } {
  const V = x.shape[x.shape.length - 1];
  const rows = x.size / V;
  if (!Number.isInteger(k) || k < 1 || k > V) {
    throw new WebcapError("BAD_OPTION", `topk: k=${k} must be in 1..${V}`);
  }
  const values = emptyTensor(rec.gpu, [rows, k]);
  const ids = emptyTensor(rec.gpu, [rows, k], "i32");
  rec.dispatch(
    rec.gpu.pipelines.get(TOPK),
    new Params().u32(rows).u32(V).u32(k),
    [x, values, ids],
    grid(rows),
  );
  return { values, ids };
}

/** Argmax of each row: ids `[rows]` (top-1, ties to the lower id). */
export function argmax(rec: Recorder, x: Tensor): Tensor {
  const { values, ids } = topk(rec, x, 1);
  rec.releaseAfterSubmit(values);
  return ids;
}

const GATHER = `
struct P { n: u32, V: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> pairs: array<u32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < p.n) { Y[g.x] = X[pairs[2u * g.x] * p.V + pairs[2u * g.x + 1u]]; }
}`;

/** Values `x[row, id]` for each `(row, id)` pair in `pairs` (u32 `[n, 2]`): `[n]`. */
export function gatherValues(rec: Recorder, x: Tensor, pairs: Tensor): Tensor {
  const V = x.shape[x.shape.length - 1];
  const n = pairs.size / 2;
  const y = emptyTensor(rec.gpu, [n]);
  rec.dispatch(rec.gpu.pipelines.get(GATHER), new Params().u32(n).u32(V), [x, pairs, y], [
    Math.ceil(n / 64),
  ]);
  return y;
}
