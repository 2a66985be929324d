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
import { optional, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowKernel } from "./reduce_wgsl.ts";

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

const ATTENTION = rowKernel({
  name: "attention",
  uniforms: {
    S: "u32",
    L: "u32",
    D: "u32",
    H: "u32",
    past: "u32",
    causal: "u32",
    qOff: "u32",
    qPos: "u32",
    qRow: "u32",
    kOff: "u32",
    kPos: "u32",
    kRow: "u32",
    vOff: "u32",
    vPos: "u32",
    vRow: "u32",
    scale: "f32",
  },
  storage: {
    Q: read(),
    K: read(),
    V: read(),
    O: readWrite(),
    kvIndex: optional(read("i32")),
    Pr: optional(readWrite()),
  },
  workgroupSize: [64],
  body: (_, has) => `
const CH = 1024u;
var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 1024>;
fn score(kb: u32, j: u32, kh: u32) -> f32 {
  let kbase = p.kOff + kb * p.kRow + j * p.kPos + kh;
  var s = 0.0;
  for (var d = 0u; d < p.D; d++) { s = fma(qs[d], f32(K[kbase + d]), s); }
  return s;
}
fn kernel(wg: vec3u, lid: vec3u) {
  let s = wg.x; let h = wg.y; let b = wg.z; let t = lid.x;
  let kb = ${has.kvIndex ? "u32(kvIndex[b])" : "b"};
  let qbase = p.qOff + b * p.qRow + s * p.qPos + h * p.D;
  for (var d = t; d < p.D; d += WG_X) { qs[d] = f32(Q[qbase + d]) * p.scale; }
  workgroupBarrier();
  let n_keys = select(p.L, min(p.L, p.past + s + 1u), p.causal == 1u);
  let kh = h * p.D;
  var m = -3.4e38;
  var l = 0.0;
  var acc: array<f32, 4>;
  for (var c0 = 0u; c0 < n_keys; c0 += CH) {
    let n = min(CH, n_keys - c0);
    var cm = -3.4e38;
    for (var j = t; j < n; j += WG_X) {
      let x = score(kb, c0 + j, kh);
      sc[j] = x;
      cm = max(cm, x);
    }
    cm = reduce(t, cm, true);
    let nm = max(m, cm);
    let corr = exp(m - nm);
    var ps = 0.0;
    for (var j = t; j < n; j += WG_X) { let e = exp(sc[j] - nm); sc[j] = e; ps += e; }
    l = l * corr + reduce(t, ps, false);
    for (var i = 0u; i < 4u; i++) {
      let d = t + i * WG_X;
      if (d < p.D) {
        var a = acc[i] * corr;
        let vbase = p.vOff + kb * p.vRow + c0 * p.vPos + kh + d;
        for (var j = 0u; j < n; j++) { a = fma(sc[j], f32(V[vbase + j * p.vPos]), a); }
        acc[i] = a;
      }
    }
    m = nm;
    workgroupBarrier();
  }
  let obase = (b * p.S + s) * p.H * p.D + kh;
  for (var i = 0u; i < 4u; i++) {
    let d = t + i * WG_X;
    if (d < p.D) { O[obase + d] = O_t(acc[i] / l); }
  }
  ${
    has.Pr
      ? `
  let pbase = ((b * p.H + h) * p.S + s) * p.L;
  for (var j = t; j < p.L; j += WG_X) {
    Pr[pbase + j] = Pr_t(select(0.0, exp(score(kb, j, kh) - m) / l, j < n_keys));
  }`
      : ""
  }
}`,
});

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
  const out = a.out ?? rec.output([B, S, H * D]);
  const [q, k, v] = [a.q, a.k, a.v];
  ATTENTION.record(rec, {
    uniforms: {
      S,
      L,
      D,
      H,
      past: a.causal?.past ?? 0,
      causal: a.causal ? 1 : 0,
      qOff: q.offset,
      qPos: q.posStride,
      qRow: q.rowStride,
      kOff: k.offset,
      kPos: k.posStride,
      kRow: k.rowStride,
      vOff: v.offset,
      vPos: v.posStride,
      vRow: v.rowStride,
      scale: a.scale,
    },
    bind: { Q: q.t, K: k.t, V: v.t, O: out, kvIndex: a.kvIndex, Pr: a.probs },
    groups: [S, H, B],
  });
  return out;
}
