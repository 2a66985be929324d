/**
 * Fused multi-head attention `softmax(q·kᵀ·scale [+ causal mask]) · v` in one kernel: scores
 * live in workgroup memory in chunks of 1024 keys with an online (running max) softmax, so
 * nothing of size [heads, queries, keys] goes through memory. One workgroup per
 * (query, head, batch row).
 *
 * Q, K and V are addressed by strides so they can be read in place from a fused QKV projection
 * (`[B·S, 3·hidden]`), a key/value cache (`[rows, maxLen, hidden]`) or encoder states, and
 * `kvIndex` maps each query row to the key/value row it reads (beams of one image share the
 * image's cross-attention keys without copies).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { type Binding, Params, type Recorder } from "../gpu/recorder.ts";
import { emptyTensor, type Tensor } from "../gpu/tensor.ts";
import { workgroupReduceWgsl } from "./reduce_wgsl.ts";

/** Where one operand lives: element offset of (row 0, pos 0, head 0), and strides in elements. */
export interface AttnOperand {
  t: Tensor;
  offset: number;
  /** Stride between positions of one row. */
  posStride: number;
  /** Stride between batch rows. */
  rowStride: number;
}

/** Arguments of {@link attention}. */
export interface AttentionArgs {
  q: AttnOperand;
  k: AttnOperand;
  v: AttnOperand;
  /** Query rows B, queries per row S, heads H, head size D (≤ 256), keys L. */
  batch: number;
  queries: number;
  heads: number;
  headDim: number;
  keys: number;
  /** Causal: query s (absolute position `past + s`) sees keys 0..past+s. */
  causal?: { past: number };
  /** i32 `[B]`: key/value row of each query row (default: the same row). */
  kvIndex?: Tensor;
  scale: number;
  /** Also write the attention probabilities here: `[B, H, S, L]`. */
  probs?: Tensor;
  /** `[B, S, H·D]`. */
  out?: Tensor;
}

function wgsl(indexed: boolean, probs: boolean): string {
  return `
struct P {
  S: u32, L: u32, D: u32, H: u32, past: u32, causal: u32,
  qOff: u32, qPos: u32, qRow: u32, kOff: u32, kPos: u32, kRow: u32, vOff: u32, vPos: u32, vRow: u32,
  scale: f32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
${indexed ? "@group(0) @binding(5) var<storage, read> kvIndex: array<i32>;" : ""}
${probs ? `@group(0) @binding(${indexed ? 6 : 5}) var<storage, read_write> Pr: array<f32>;` : ""}
const CH = 1024u;
var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 1024>;
${workgroupReduceWgsl(64)}
fn score(kb: u32, j: u32, kh: u32) -> f32 {
  let kbase = p.kOff + kb * p.kRow + j * p.kPos + kh;
  var s = 0.0;
  for (var d = 0u; d < p.D; d++) { s = fma(qs[d], K[kbase + d], s); }
  return s;
}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let s = wg.x; let h = wg.y; let b = wg.z; let t = lid.x;
  let kb = ${indexed ? "u32(kvIndex[b])" : "b"};
  let qbase = p.qOff + b * p.qRow + s * p.qPos + h * p.D;
  for (var d = t; d < p.D; d += 64u) { qs[d] = Q[qbase + d] * p.scale; }
  workgroupBarrier();
  let n_keys = select(p.L, min(p.L, p.past + s + 1u), p.causal == 1u);
  let kh = h * p.D;
  var m = -3.4e38;
  var l = 0.0;
  var acc: array<f32, 4>;
  for (var c0 = 0u; c0 < n_keys; c0 += CH) {
    let n = min(CH, n_keys - c0);
    var cm = -3.4e38;
    for (var j = t; j < n; j += 64u) {
      let x = score(kb, c0 + j, kh);
      sc[j] = x;
      cm = max(cm, x);
    }
    cm = reduce(t, cm, true);
    let nm = max(m, cm);
    let corr = exp(m - nm);
    var ps = 0.0;
    for (var j = t; j < n; j += 64u) { let e = exp(sc[j] - nm); sc[j] = e; ps += e; }
    l = l * corr + reduce(t, ps, false);
    for (var i = 0u; i < 4u; i++) {
      let d = t + i * 64u;
      if (d < p.D) {
        var a = acc[i] * corr;
        let vbase = p.vOff + kb * p.vRow + c0 * p.vPos + kh + d;
        for (var j = 0u; j < n; j++) { a = fma(sc[j], V[vbase + j * p.vPos], a); }
        acc[i] = a;
      }
    }
    m = nm;
    workgroupBarrier();
  }
  let obase = (b * p.S + s) * p.H * p.D + kh;
  for (var i = 0u; i < 4u; i++) {
    let d = t + i * 64u;
    if (d < p.D) { O[obase + d] = acc[i] / l; }
  }
  ${
    probs
      ? `
  let pbase = ((b * p.H + h) * p.S + s) * p.L;
  for (var j = t; j < p.L; j += 64u) {
    Pr[pbase + j] = select(0.0, exp(score(kb, j, kh) - m) / l, j < n_keys);
  }`
      : ""
  }
}`;
}

/** Record fused attention; returns `[B, S, H·D]`. */
export function attention(rec: Recorder, a: AttentionArgs): Tensor {
  const { batch: B, queries: S, heads: H, headDim: D, keys: L } = a;
  if (D > 256) {
    throw new WebcapError("BAD_SHAPE", `attention: head size ${D} > 256 is not supported`);
  }
  if (L < 1) throw new WebcapError("BAD_SHAPE", "attention: no keys");
  if (a.kvIndex && (a.kvIndex.dtype !== "i32" || a.kvIndex.size !== B)) {
    throw new WebcapError("BAD_SHAPE", `attention: kvIndex must be i32 [${B}]`);
  }
  if (a.probs && a.probs.size !== B * H * S * L) {
    throw new WebcapError(
      "BAD_SHAPE",
      `attention: probs [${a.probs.shape}] is not [${B}, ${H}, ${S}, ${L}]`,
    );
  }
  const out = a.out ?? emptyTensor(rec.gpu, [B, S, H * D]);
  const params = new Params().u32(S).u32(L).u32(D).u32(H).u32(a.causal?.past ?? 0).u32(
    a.causal ? 1 : 0,
  );
  for (const o of [a.q, a.k, a.v]) params.u32(o.offset).u32(o.posStride).u32(o.rowStride);
  params.f32(a.scale);
  const bindings: Binding[] = [a.q.t, a.k.t, a.v.t, out];
  if (a.kvIndex) bindings.push(a.kvIndex);
  if (a.probs) bindings.push(a.probs);
  rec.dispatch(rec.gpu.pipelines.get(wgsl(!!a.kvIndex, !!a.probs)), params, bindings, [S, H, B]);
  return out;
}
