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
fn kernel(wg: vec3u, lid: vec3u) {
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
