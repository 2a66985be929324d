/**
 * Per-row processing of decoder logits in place, in the order of the decoding contract
 * (src/decode/step.ts): optional log-softmax, repetition penalty on listed tokens, banned
 * tokens to -inf, optional log-softmax. Token lists come packed in one u32 buffer:
 * `[seenOffsets(rows+1) | bannedOffsets(rows+1) | seen ids | banned ids]`, offsets relative to
 * the start of their id section. Seen lists must hold each token at most once.
 * @module
 */
import { Params, type Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { grid } from "./matmul.ts";
import { workgroupReduceWgsl } from "./reduce_wgsl.ts";

const WGSL = `
struct P { rows: u32, V: u32, before: u32, after: u32, penalty: f32, seenIds: u32, bannedIds: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read> L: array<u32>;
// -inf's bits, read at run time: WGSL forbids a constant expression that evaluates to -inf.
var<private> NEG_INF_BITS: u32 = 0xff800000u;
${workgroupReduceWgsl(256)}
fn log_softmax(t: u32, base: u32) {
  var m = -3.4e38;
  for (var i = t; i < p.V; i += 256u) { m = max(m, X[base + i]); }
  m = reduce(t, m, true);
  var s = 0.0;
  for (var i = t; i < p.V; i += 256u) { s += exp(X[base + i] - m); }
  let lse = m + log(reduce(t, s, false));
  for (var i = t; i < p.V; i += 256u) { X[base + i] = X[base + i] - lse; }
  storageBarrier();
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.y * 65535u + wg.x;
  if (row >= p.rows) { return; }
  let t = lid.x;
  let base = row * p.V;
  if (p.before == 1u) { log_softmax(t, base); }
  if (p.penalty != 1.0) {
    for (var i = L[row] + t; i < L[row + 1u]; i += 256u) {
      let o = base + L[p.seenIds + i];
      let x = X[o];
      X[o] = select(x / p.penalty, x * p.penalty, x < 0.0);
    }
  }
  storageBarrier();
  let b0 = p.rows + 1u;
  for (var i = L[b0 + row] + t; i < L[b0 + row + 1u]; i += 256u) {
    X[base + L[p.bannedIds + i]] = bitcast<f32>(NEG_INF_BITS);
  }
  storageBarrier();
  if (p.after == 1u) { log_softmax(t, base); }
}`;

/** Apply the per-row processing to `logits [rows, V]` in place; `lists` packed as described above. */
export function processLogits(
  rec: Recorder,
  logits: Tensor,
  lists: Tensor,
  o: { rows: number; before: boolean; after: boolean; penalty: number; seenTotal: number },
): void {
  const V = logits.shape[logits.shape.length - 1];
  const seenIds = 2 * (o.rows + 1);
  const params = new Params().u32(o.rows).u32(V).u32(o.before ? 1 : 0).u32(o.after ? 1 : 0)
    .f32(o.penalty).u32(seenIds).u32(seenIds + o.seenTotal);
  rec.dispatch(rec.gpu.pipelines.get(WGSL), params, [logits, lists], grid(o.rows));
}
