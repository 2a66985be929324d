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
 *
 * Training may drop out the probabilities (`dropout`): element (b, h, s, j) of `[B, H, S, L]`
 * is kept as Philox draws it for the key and scaled by 1/(1 − p) before multiplying V; the
 * saved probabilities stay the undropped softmax, and the backward recomputes the mask.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { AdapterClass } from "../gpu/device.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type DropoutKey, dropoutWords } from "./elementwise.ts";
import { PHILOX_WGSL } from "./sample/philox_wgsl.ts";
import { rowKernel } from "./reduce_wgsl.ts";
import { range } from "./tile_wgsl.ts";

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
  /** i32 `[B]`: keys 0..n−1 of row b are seen, the rest masked (a right-padded attention mask). */
  keyLengths?: Tensor;
  /** i32 `[B]`: key/value row of each query row (default: the same row). */
  kvIndex?: Tensor;
  scale: number;
  /** Also write the attention probabilities here: `[B, H, S, L]`. */
  probs?: Tensor;
  /** `[B, S, H·D]`. */
  out?: Tensor;
  /** Dropout of the probabilities (training; absent or p = 0: off). */
  dropout?: AttnDropout;
}

/** Dropout of the attention probabilities at rate `p`, the mask drawn for `key`. */
export interface AttnDropout {
  p: number;
  key: DropoutKey;
}

/** Uniforms of the probability mask (zeros when off). */
const DROP = {
  below: "u32",
  dscale: "f32",
  k0: "u32",
  k1: "u32",
  dstep: "u32",
  dsite: "u32",
} as const;

/** Whether `d` drops anything, and its uniforms. */
function dropUniforms(d: AttnDropout | undefined) {
  if (!d || d.p === 0) {
    return { on: false, u: { below: 0, dscale: 1, k0: 0, k1: 0, dstep: 0, dsite: 0 } };
  }
  const { below, scale, k0, k1 } = dropoutWords(d.p, d.key);
  return { on: true, u: { below, dscale: scale, k0, k1, dstep: d.key.step, dsite: d.key.site } };
}

/** WGSL `kept(i)`: the factor of probability element i, 0 or 1/(1 − p) (1 without dropout). */
function keptWgsl(on: boolean): string {
  return on
    ? `${PHILOX_WGSL}
fn kept(i: u32) -> f32 {
  let draw = philox(vec4u(i, p.dsite, p.dstep, 0u), vec2u(p.k0, p.k1)).x;
  return select(0.0, p.dscale, draw >= p.below);
}`
    : "fn kept(i: u32) -> f32 { return 1.0; }";
}

/** Sizes, operand windows (offset, position and row strides of Q, K, V), scale, dropout. */
const STRIDES = {
  S: "u32",
  L: "u32",
  D: "u32",
  H: "u32",
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
  ...DROP,
} as const;

/** The operand-window fields of {@link STRIDES} for Q, K and V. */
function operandWindows(q: AttnOperand, k: AttnOperand, v: AttnOperand) {
  return {
    qOff: q.offset,
    qPos: q.posStride,
    qRow: q.rowStride,
    kOff: k.offset,
    kPos: k.posStride,
    kRow: k.rowStride,
    vOff: v.offset,
    vPos: v.posStride,
    vRow: v.rowStride,
  };
}

const ATTENTION = rowKernel({
  name: "attention",
  uniforms: { ...STRIDES, past: "u32", causal: "u32" },
  storage: {
    Q: read(),
    K: read(),
    V: read(),
    O: readWrite(),
    kvIndex: optional(read("i32")),
    keyLen: optional(read("i32")),
    Pr: optional(readWrite()),
  },
  workgroupSize: [64],
  body: (v: { drop: boolean }, has) => `
${keptWgsl(v.drop)}
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
  let n_keys = min(select(p.L, min(p.L, p.past + s + 1u), p.causal == 1u), ${
    has.keyLen ? "u32(keyLen[b])" : "p.L"
  });
  let kh = h * p.D;
  let pbase = ((b * p.H + h) * p.S + s) * p.L;
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
    for (var j = t; j < n; j += WG_X) {
      let e = exp(sc[j] - nm);
      sc[j] = e * kept(pbase + c0 + j); // dropped out after the (undropped) normalizer
      ps += e;
    }
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
  for (var j = t; j < p.L; j += WG_X) {
    Pr[pbase + j] = Pr_t(select(0.0, exp(score(kb, j, kh) - m) / l, j < n_keys));
  }`
      : ""
  }
}`,
});

/** WGSL of the vec4 `dot(q, k_j)` of a head of `d4` vec4s, K read at `kbase`. */
function scoreWgsl(d4: number): string {
  const terms = range(d4).map((i) =>
    `dot(q${i}, vec4f(${range(4).map((c) => `f32(K[kbase + ${4 * i + c}u])`).join(", ")}))`
  );
  return terms.join(" + ");
}

/**
 * Attention for CPU adapters (llvmpipe runs the 64 invocations of a workgroup as SIMD lanes):
 * one invocation per query, its scaled q and its output row in vec4 registers, two passes over
 * the keys (the maximum, then the exponentials and their sum with V) and no workgroup memory or
 * barriers. The lanes of a workgroup are queries of one head and batch row, so each K and V
 * element they read is the same address for every lane. `D` (a multiple of 4) is compiled in;
 * neither probabilities nor dropout (training keeps {@link ATTENTION}).
 */
const ATTENTION_CPU = new Kernel({
  name: "attention_cpu",
  uniforms: { ...STRIDES, past: "u32", causal: "u32" },
  storage: {
    Q: read(),
    K: read(),
    V: read(),
    O: readWrite(),
    kvIndex: optional(read("i32")),
    keyLen: optional(read("i32")),
  },
  workgroupSize: [64],
  body: (v: { D: number }, has) => {
    const d4 = range(v.D / 4);
    const qs = d4.map((i) =>
      `let q${i} = vec4f(${
        range(4).map((c) => `f32(Q[qbase + ${4 * i + c}u])`).join(", ")
      }) * p.scale;`
    );
    const vs = d4.map((i) =>
      `acc${i} = fma(vec4f(e), vec4f(${
        range(4).map((c) => `f32(V[vbase + ${4 * i + c}u])`).join(", ")
      }), acc${i});`
    );
    const outs = d4.flatMap((i) =>
      range(4).map((c) => `O[obase + ${4 * i + c}u] = O_t(acc${i}[${c}] / l);`)
    );
    return `
fn kernel(wg: vec3u, lid: vec3u) {
  let s = wg.x * WG_X + lid.x; let h = wg.y; let b = wg.z;
  if (s >= p.S) { return; }
  let kb = ${has.kvIndex ? "u32(kvIndex[b])" : "b"};
  let kh = h * p.D;
  let qbase = p.qOff + b * p.qRow + s * p.qPos + kh;
  ${qs.join("\n  ")}
  let n_keys = min(select(p.L, min(p.L, p.past + s + 1u), p.causal == 1u), ${
      has.keyLen ? "u32(keyLen[b])" : "p.L"
    });
  var m = -3.4e38;
  for (var j = 0u; j < n_keys; j++) {
    let kbase = p.kOff + kb * p.kRow + j * p.kPos + kh;
    m = max(m, ${scoreWgsl(v.D / 4)});
  }
  var l = 0.0;
  ${d4.map((i) => `var acc${i} = vec4f();`).join("\n  ")}
  for (var j = 0u; j < n_keys; j++) {
    let kbase = p.kOff + kb * p.kRow + j * p.kPos + kh;
    let vbase = p.vOff + kb * p.vRow + j * p.vPos + kh;
    let e = exp(${scoreWgsl(v.D / 4)} - m);
    l += e;
    ${vs.join("\n    ")}
  }
  let obase = (b * p.S + s) * p.H * p.D + kh;
  ${outs.join("\n  ")}
}`;
  },
});

/**
 * The attention kernel of a call on an adapter class: {@link ATTENTION_CPU} on CPU adapters when
 * the head size is a multiple of 4 (at most 256) and neither probabilities nor dropout are asked
 * for, else the workgroup kernel {@link ATTENTION}. Measured on llvmpipe at ViT-B/16's 12 heads ×
 * 197 × 197 × 64 (BENCHMARKS.md).
 */
export function attentionPlan(cls: AdapterClass, a: AttentionArgs): "cpu" | "workgroup" {
  const plain = !a.probs && !(a.dropout && a.dropout.p > 0) && a.headDim % 4 === 0;
  return cls === "cpu" && plain ? "cpu" : "workgroup";
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
  if (a.keyLengths && (a.keyLengths.dtype !== "i32" || a.keyLengths.size !== B)) {
    throw new WebcapError("BAD_SHAPE", `attention: keyLengths must be i32 [${B}]`);
  }
  if (a.probs && a.probs.size !== B * H * S * L) {
    throw new WebcapError(
      "BAD_SHAPE",
      `attention: probs [${a.probs.shape}] is not [${B}, ${H}, ${S}, ${L}]`,
    );
  }
  const out = a.out ?? rec.output([B, S, H * D]);
  const [q, k, v] = [a.q, a.k, a.v];
  const drop = dropUniforms(a.dropout);
  const uniforms = {
    S,
    L,
    D,
    H,
    past: a.causal?.past ?? 0,
    causal: a.causal ? 1 : 0,
    ...operandWindows(q, k, v),
    scale: a.scale,
    ...drop.u,
  };
  const bind = { Q: q.t, K: k.t, V: v.t, O: out, kvIndex: a.kvIndex, keyLen: a.keyLengths };
  if (attentionPlan(rec.gpu.adapterClass, a) === "cpu") {
    const groups = [Math.ceil(S / 64), H, B] as const;
    ATTENTION_CPU.record(rec, { variant: { D }, uniforms, bind, groups });
    return out;
  }
  ATTENTION.record(rec, {
    variant: { drop: drop.on },
    uniforms,
    bind: { ...bind, Pr: a.probs },
    groups: [S, H, B],
  });
  return out;
}

// ---- backward ----

/**
 * Per (query s, head h, row b): `dP_j = dO·v_j`, `dS_j = P_j (dP_j − Σ_i P_i dP_i)` into `dS`
 * `[B, H, S, L]`, then `dq = scale · Σ_j dS_j k_j` (written at Q's place in `dQ`). Masked keys
 * have P = 0, so dS = 0 there. With dropout, `dP_j` (of the undropped P) is `kept_j · dO·v_j`.
 */
const ATTENTION_DQ = rowKernel({
  name: "attention_dq",
  uniforms: STRIDES,
  storage: { K: read(), V: read(), Pr: read(), dO: read(), dS: readWrite(), dQ: readWrite() },
  workgroupSize: [64],
  body: (v: { drop: boolean }) => `
${keptWgsl(v.drop)}
var<workgroup> go: array<f32, 256>;
fn kernel(wg: vec3u, lid: vec3u) {
  let s = wg.x; let h = wg.y; let b = wg.z; let t = lid.x;
  let obase = (b * p.S + s) * p.H * p.D + h * p.D;
  for (var d = t; d < p.D; d += WG_X) { go[d] = f32(dO[obase + d]); }
  workgroupBarrier();
  let pbase = ((b * p.H + h) * p.S + s) * p.L;
  var acc = 0.0;
  for (var j = t; j < p.L; j += WG_X) {
    let vb = p.vOff + b * p.vRow + j * p.vPos + h * p.D;
    var dp = 0.0;
    for (var d = 0u; d < p.D; d++) { dp = fma(go[d], f32(V[vb + d]), dp); }
    dp *= kept(pbase + j);
    dS[pbase + j] = dS_t(dp);
    acc += f32(Pr[pbase + j]) * dp;
  }
  let tot = reduce(t, acc, false);
  for (var j = t; j < p.L; j += WG_X) {
    dS[pbase + j] = dS_t(f32(Pr[pbase + j]) * (f32(dS[pbase + j]) - tot));
  }
  storageBarrier();
  let kb = p.kOff + b * p.kRow + h * p.D;
  let qb = p.qOff + b * p.qRow + s * p.qPos + h * p.D;
  for (var d = t; d < p.D; d += WG_X) {
    var g = 0.0;
    for (var j = 0u; j < p.L; j++) { g = fma(f32(dS[pbase + j]), f32(K[kb + j * p.kPos + d]), g); }
    dQ[qb + d] = dQ_t(g * p.scale);
  }
}`,
});

/**
 * Per (key j, head h, row b): `dk = scale · Σ_s dS_sj q_s` and `dv = Σ_s P_sj kept_sj dO_s`,
 * written at K's and V's places in `dKV`.
 */
const ATTENTION_DKV = new Kernel({
  name: "attention_dkv",
  uniforms: STRIDES,
  storage: { Q: read(), Pr: read(), dO: read(), dS: read(), dKV: readWrite() },
  workgroupSize: [64],
  body: (v: { drop: boolean }) => `
${keptWgsl(v.drop)}
fn kernel(wg: vec3u, lid: vec3u) {
  let j = wg.x; let h = wg.y; let b = wg.z;
  let kd = p.kOff + b * p.kRow + j * p.kPos + h * p.D;
  let vd = p.vOff + b * p.vRow + j * p.vPos + h * p.D;
  for (var d = lid.x; d < p.D; d += WG_X) {
    var gk = 0.0; var gv = 0.0;
    for (var s = 0u; s < p.S; s++) {
      let pi = ((b * p.H + h) * p.S + s) * p.L + j;
      gk = fma(f32(dS[pi]), f32(Q[p.qOff + b * p.qRow + s * p.qPos + h * p.D + d]), gk);
      gv = fma(f32(Pr[pi]) * kept(pi), f32(dO[(b * p.S + s) * p.H * p.D + h * p.D + d]), gv);
    }
    dKV[kd + d] = dKV_t(gk * p.scale);
    dKV[vd + d] = dKV_t(gv);
  }
}`,
});

/**
 * Arguments of {@link attentionBackward}: those of the forward (its `dropout` the same), its
 * probabilities and `dO`.
 */
export interface AttentionBackwardArgs
  extends Omit<AttentionArgs, "kvIndex" | "out" | "probs" | "causal" | "keyLengths"> {
  /** `[B, H, S, L]` as the forward wrote them (0 at masked keys). */
  probs: Tensor;
  /** `[B, S, H·D]`. */
  dO: Tensor;
  /** Written at q's offset and strides (every q element of the call is overwritten). */
  dQ: Tensor;
  /** Written at k's and v's offsets and strides. */
  dKV: Tensor;
}

/** Backward of {@link attention} (no `kvIndex`): writes dQ into `dQ`, dK and dV into `dKV`. */
export function attentionBackward(rec: Recorder, a: AttentionBackwardArgs): void {
  const { batch: B, queries: S, heads: H, headDim: D, keys: L } = a;
  if (D > 256) {
    throw new WebcapError("BAD_SHAPE", `attentionBackward: head size ${D} > 256 is not supported`);
  }
  if (a.probs.size !== B * H * S * L || a.dO.size !== B * S * H * D) {
    throw new WebcapError(
      "BAD_SHAPE",
      `attentionBackward: probs [${a.probs.shape}] or dO [${a.dO.shape}] do not fit ` +
        `B=${B} H=${H} S=${S} L=${L} D=${D}`,
    );
  }
  const [q, k, v] = [a.q, a.k, a.v];
  const drop = dropUniforms(a.dropout);
  const uniforms = {
    S,
    L,
    D,
    H,
    ...operandWindows(q, k, v),
    scale: a.scale,
    ...drop.u,
  };
  const dS = rec.temp([B, H, S, L]);
  ATTENTION_DQ.record(rec, {
    variant: { drop: drop.on },
    uniforms,
    bind: { K: k.t, V: v.t, Pr: a.probs, dO: a.dO, dS, dQ: a.dQ },
    groups: [S, H, B],
  });
  ATTENTION_DKV.record(rec, {
    variant: { drop: drop.on },
    uniforms,
    bind: { Q: q.t, Pr: a.probs, dO: a.dO, dS, dKV: a.dKV },
    groups: [L, H, B],
  });
}
