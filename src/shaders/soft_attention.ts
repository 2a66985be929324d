/**
 * Soft (additive, Bahdanau-style) attention over image pixels, as in Show, Attend and Tell, in
 * one dispatch per decoding step (one workgroup per row):
 * `e[p] = w · relu(encAtt[img, p] + decAtt[r])`, `α = softmax_p(e)`,
 * `z[r] = gate[r] ⊙ Σ_p α[p] · enc[img, p]`, where `img = rowImage[r]`, so the encoder data
 * of an image is shared by all of its rows. A scalar bias on `e` cancels in the softmax and
 * is not taken.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowKernel } from "./reduce_wgsl.ts";

/**
 * Sizes and row windows of the soft-attention kernels: pixels, attention and encoder widths, and
 * where each row's α and context sit in their (strided) outputs.
 */
const ROW_UNIFORMS = {
  P: "u32",
  A: "u32",
  C: "u32",
  aOff: "u32",
  aStride: "u32",
  zOff: "u32",
  zStride: "u32",
} as const;

/**
 * Their shared inputs: encoder attention `EA`, decoder attention `DA`, `full_att` weights `WF`,
 * encoder features `E`, gate `G`, each row's image `img`.
 */
const ROW_INPUTS = {
  EA: read(),
  DA: read(),
  WF: read(),
  E: read(),
  G: read(),
  img: read("i32"),
};

const SOFT_ATTENTION = rowKernel({
  name: "soft_attention",
  uniforms: ROW_UNIFORMS,
  storage: {
    ...ROW_INPUTS,
    AL: readWrite(),
    Z: readWrite(),
  },
  workgroupSize: [256],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let r = wg.x;
  let t = lid.x;
  let im = u32(img[r]);
  let a0 = p.aOff + r * p.aStride;
  var m = -3.4e38;
  for (var px = t; px < p.P; px += WG_X) {
    let ea = (im * p.P + px) * p.A;
    var e = 0.0;
    for (var a = 0u; a < p.A; a++) {
      e = fma(f32(WF[a]), max(f32(EA[ea + a]) + f32(DA[r * p.A + a]), 0.0), e);
    }
    AL[a0 + px] = AL_t(e);
    m = max(m, e);
  }
  m = reduce(t, m, true);
  var s = 0.0;
  for (var px = t; px < p.P; px += WG_X) {
    let x = exp(f32(AL[a0 + px]) - m);
    AL[a0 + px] = AL_t(x);
    s += x;
  }
  s = reduce(t, s, false);
  for (var px = t; px < p.P; px += WG_X) { AL[a0 + px] = AL_t(f32(AL[a0 + px]) / s); }
  storageBarrier();
  workgroupBarrier();
  let e0 = im * p.P * p.C;
  for (var c = t; c < p.C; c += WG_X) {
    var acc = 0.0;
    for (var px = 0u; px < p.P; px++) {
      acc = fma(f32(AL[a0 + px]), f32(E[e0 + px * p.C + c]), acc);
    }
    Z[p.zOff + r * p.zStride + c] = Z_t(f32(G[r * p.C + c]) * acc);
  }
}`,
});

/** A destination: element `offset + row · rowStride + i` of `t` gets item i of a row. */
export interface StridedOut {
  t: Tensor;
  offset: number;
  rowStride: number;
}

/** Inputs and outputs of {@link softAttention}. */
export interface SoftAttentionArgs {
  /** Projected encoder output `[images·pixels, A]` (bias included). */
  encAtt: Tensor;
  /** Projected decoder state `[rows, A]` (bias included). */
  decAtt: Tensor;
  /** Scoring vector `[A]` (the `full_att` weight). */
  wFull: Tensor;
  /** Encoder output `[images·pixels, C]`. */
  enc: Tensor;
  /** Gate `[rows, C]` multiplying the context (σ(f_beta(h)) in Show-Attend-Tell). */
  gate: Tensor;
  /** Image of each row, i32 `[rows]`. */
  rowImage: Tensor;
  pixels: number;
  /** Receives α, `pixels` values per row. */
  alpha: StridedOut;
  /** Receives the gated context z, C values per row. */
  z: StridedOut;
}

function fits(o: StridedOut, rows: number, width: number): boolean {
  return o.offset >= 0 && o.rowStride >= 0 &&
    o.offset + (rows - 1) * o.rowStride + width <= o.t.size;
}

/** The {@link ROW_INPUTS} bindings of `a`. */
function rowInputs(a: Omit<SoftAttentionArgs, "z">) {
  return { EA: a.encAtt, DA: a.decAtt, WF: a.wFull, E: a.enc, G: a.gate, img: a.rowImage };
}

/** Shapes shared by the forward and the backward (error messages name `softAttention`). */
function checkArgs(
  a: Omit<SoftAttentionArgs, "z">,
  rows: number,
  P: number,
  A: number,
  C: number,
): void {
  const images = a.enc.size / (P * C);
  const bad = (msg: string) => new WebcapError("BAD_SHAPE", `softAttention: ${msg}`);
  if (a.rowImage.dtype !== "i32") {
    throw new WebcapError("BAD_DTYPE", "softAttention: rowImage must be i32");
  }
  if (!Number.isInteger(images) || a.encAtt.size !== images * P * A) {
    throw bad(
      `enc [${a.enc.shape}] and encAtt [${a.encAtt.shape}] are not [images·${P}, C] and [images·${P}, ${A}]`,
    );
  }
  if (a.decAtt.size !== rows * A || a.gate.size !== rows * C) {
    throw bad(
      `decAtt [${a.decAtt.shape}] / gate [${a.gate.shape}] are not [${rows}, ${A}] / [${rows}, ${C}]`,
    );
  }
  if (!fits(a.alpha, rows, P)) throw bad("an output does not hold every row");
}

/** Record one soft-attention step for every row (one dispatch). */
export function softAttention(rec: Recorder, a: SoftAttentionArgs): void {
  const rows = a.rowImage.size, P = a.pixels, A = a.wFull.size;
  const C = a.enc.shape[a.enc.shape.length - 1];
  checkArgs(a, rows, P, A, C);
  const bad = (msg: string) => new WebcapError("BAD_SHAPE", `softAttention: ${msg}`);
  if (!fits(a.z, rows, C)) throw bad("an output does not hold every row");
  if (a.alpha.t.buffer === a.z.t.buffer) throw bad("alpha and z must be different tensors");
  SOFT_ATTENTION.record(rec, {
    uniforms: {
      P,
      A,
      C,
      aOff: a.alpha.offset,
      aStride: a.alpha.rowStride,
      zOff: a.z.offset,
      zStride: a.z.rowStride,
    },
    bind: {
      ...rowInputs(a),
      AL: a.alpha.t,
      Z: a.z.t,
    },
    groups: rows,
  });
}

// ---- backward ----

/**
 * Backward of {@link SOFT_ATTENTION} for one row per workgroup, from dZ and (optionally) a
 * gradient dAL of α: with `ctx = Σ_p α_p·E_p`, `dG = dZ ⊙ ctx`, `dα_p = (dZ ⊙ G)·E_p + dAL_p`,
 * `de_p = α_p·(dα_p − Σ_q α_q·dα_q)`, `s_pa = EA_pa + DA_a`: `dS_pa = de_p·WF_a·[s_pa > 0]`,
 * `dDA_a = Σ_p dS_pa`, `dWF_a = Σ_p de_p·relu(s_pa)` (this row's share). `De` is scratch.
 */
const SOFT_ATTENTION_BACKWARD = rowKernel({
  name: "soft_attention_backward",
  uniforms: ROW_UNIFORMS,
  storage: {
    ...ROW_INPUTS,
    AL: read(),
    dZ: read(),
    dAL: optional(read()),
    dG: readWrite(),
    dDA: readWrite(),
    dWF: readWrite(),
    dS: readWrite(),
    De: readWrite(),
  },
  workgroupSize: [256],
  body: (_, has) => `
fn kernel(wg: vec3u, lid: vec3u) {
  let r = wg.x;
  let t = lid.x;
  let im = u32(img[r]);
  let a0 = p.aOff + r * p.aStride;
  let z0 = p.zOff + r * p.zStride;
  let e0 = im * p.P * p.C;
  for (var c = t; c < p.C; c += WG_X) {
    var ctx = 0.0;
    for (var px = 0u; px < p.P; px++) { ctx = fma(f32(AL[a0 + px]), f32(E[e0 + px * p.C + c]), ctx); }
    dG[r * p.C + c] = dG_t(f32(dZ[z0 + c]) * ctx);
  }
  var dot = 0.0;
  for (var px = 0u; px < p.P; px++) {
    var part = 0.0;
    for (var c = t; c < p.C; c += WG_X) {
      part = fma(f32(dZ[z0 + c]) * f32(G[r * p.C + c]), f32(E[e0 + px * p.C + c]), part);
    }
    let da = reduce(t, part, false)${has.dAL ? " + f32(dAL[a0 + px])" : ""};
    if (t == 0u) { De[r * p.P + px] = De_t(da); }
    dot = fma(f32(AL[a0 + px]), da, dot);
  }
  storageBarrier();
  workgroupBarrier();
  for (var px = t; px < p.P; px += WG_X) {
    De[r * p.P + px] = De_t(f32(AL[a0 + px]) * (f32(De[r * p.P + px]) - dot));
  }
  storageBarrier();
  workgroupBarrier();
  for (var a = t; a < p.A; a += WG_X) {
    var dda = 0.0;
    var dwf = 0.0;
    for (var px = 0u; px < p.P; px++) {
      let s = f32(EA[(im * p.P + px) * p.A + a]) + f32(DA[r * p.A + a]);
      let de = f32(De[r * p.P + px]);
      let ds = select(0.0, de * f32(WF[a]), s > 0.0);
      dS[(r * p.P + px) * p.A + a] = dS_t(ds);
      dda += ds;
      dwf = fma(de, max(s, 0.0), dwf);
    }
    dDA[r * p.A + a] = dDA_t(dda);
    dWF[r * p.A + a] = dWF_t(dwf);
  }
}`,
});

/** Inputs of {@link softAttentionBackward}: the forward's inputs, its α and the gradients. */
export interface SoftAttentionBackwardArgs extends Omit<SoftAttentionArgs, "z"> {
  /** Gradient of z, read where the forward wrote z. */
  dZ: StridedOut;
  /** Gradient of α, laid out as `alpha` (offset and row stride), when α feeds a loss. */
  dAlpha?: Tensor;
}

/** Gradients of {@link softAttention}'s inputs, per row. */
export interface SoftAttentionGrads {
  /** `[rows, C]`. */
  dGate: Tensor;
  /** `[rows, A]`. */
  dDecAtt: Tensor;
  /** `[rows, A]`: each row's share of the gradient of `wFull` (sum the rows). */
  dWFull: Tensor;
  /** `[rows, pixels·A]`: the gradient of `encAtt` at the rows' images (gather-sum by image). */
  dEncAtt: Tensor;
}

/** Record the backward of one soft-attention step for every row (one dispatch, no atomics). */
export function softAttentionBackward(
  rec: Recorder,
  a: SoftAttentionBackwardArgs,
): SoftAttentionGrads {
  const rows = a.rowImage.size, P = a.pixels, A = a.wFull.size;
  const C = a.enc.shape[a.enc.shape.length - 1];
  checkArgs(a, rows, P, A, C);
  if (!fits(a.dZ, rows, C) || (a.dAlpha && a.dAlpha.size !== a.alpha.t.size)) {
    throw new WebcapError(
      "BAD_SHAPE",
      "softAttentionBackward: dZ does not hold every row or dAlpha is not laid out as alpha",
    );
  }
  const out = {
    dGate: rec.output([rows, C]),
    dDecAtt: rec.output([rows, A]),
    dWFull: rec.output([rows, A]),
    dEncAtt: rec.output([rows, P * A]),
  };
  SOFT_ATTENTION_BACKWARD.record(rec, {
    uniforms: {
      P,
      A,
      C,
      aOff: a.alpha.offset,
      aStride: a.alpha.rowStride,
      zOff: a.dZ.offset,
      zStride: a.dZ.rowStride,
    },
    bind: {
      ...rowInputs(a),
      AL: a.alpha.t,
      dZ: a.dZ.t,
      dAL: a.dAlpha,
      dG: out.dGate,
      dDA: out.dDecAtt,
      dWF: out.dWFull,
      dS: out.dEncAtt,
      De: rec.temp([rows, P]),
    },
    groups: rows,
  });
  return out;
}

/**
 * The encoder features' gradient through z of one step, one thread per element of
 * `dE [images, P, C]`, accumulated in place (a gather over the rows, no atomics):
 * `dE[n, p, c] += Σ_{rows r of image n} α[r, p]·dZ[r, c]·G[r, c]`.
 */
const SOFT_ATTENTION_DFEATURES = new Kernel({
  name: "soft_attention_dfeatures",
  uniforms: {
    rows: "u32",
    P: "u32",
    C: "u32",
    total: "u32",
    aOff: "u32",
    aStride: "u32",
    zOff: "u32",
    zStride: "u32",
  },
  storage: { G: read(), img: read("i32"), AL: read(), dZ: read(), dE: readWrite() },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.total) { return; }
  let c = i % p.C;
  let px = (i / p.C) % p.P;
  let n = i / (p.C * p.P);
  var s = f32(dE[i]);
  for (var r = 0u; r < p.rows; r++) {
    if (u32(img[r]) != n) { continue; }
    let g = f32(dZ[p.zOff + r * p.zStride + c]) * f32(G[r * p.C + c]);
    s = fma(f32(AL[p.aOff + r * p.aStride + px]), g, s);
  }
  dE[i] = dE_t(s);
}`,
});

/**
 * Add one step's gradient of the encoder features through z (not through `encAtt`: take that
 * from its linear's backward) to `dEnc` (f32, `enc`'s size), deterministically.
 */
export function softAttentionDFeatures(
  rec: Recorder,
  a: Omit<SoftAttentionBackwardArgs, "dAlpha">,
  dEnc: Tensor,
): void {
  const rows = a.rowImage.size, P = a.pixels, C = a.enc.shape[a.enc.shape.length - 1];
  checkArgs(a, rows, P, a.wFull.size, C);
  if (!fits(a.dZ, rows, C) || dEnc.size !== a.enc.size || dEnc.dtype !== "f32") {
    throw new WebcapError(
      "BAD_SHAPE",
      `softAttentionDFeatures: dZ does not hold every row or dEnc ${dEnc.dtype} [${dEnc.shape}] ` +
        `is not f32 [${a.enc.shape}]`,
    );
  }
  SOFT_ATTENTION_DFEATURES.record(rec, {
    uniforms: {
      rows,
      P,
      C,
      total: dEnc.size,
      aOff: a.alpha.offset,
      aStride: a.alpha.rowStride,
      zOff: a.dZ.offset,
      zStride: a.dZ.rowStride,
    },
    bind: { G: a.gate, img: a.rowImage, AL: a.alpha.t, dZ: a.dZ.t, dE: dEnc },
    groups: Math.ceil(dEnc.size / 64),
  });
}

/**
 * Show-Attend-Tell's doubly stochastic attention term over α `[R, T, P]`: per (r, p),
 * `u = 1 − Σ_{t kept} α_rtp`, `Out = scale·u²`, and `dA_rtp = −2·scale·u` at kept steps
 * (target ≥ 0), 0 elsewhere.
 */
const ATTENTION_COVERAGE = new Kernel({
  name: "attention_coverage",
  uniforms: { R: "u32", T: "u32", P: "u32", scale: "f32" },
  storage: { AL: read(), tgt: read("i32"), Out: readWrite(), dA: readWrite() },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.R * p.P) { return; }
  let r = i / p.P;
  let px = i % p.P;
  var s = 0.0;
  for (var t = 0u; t < p.T; t++) {
    if (tgt[r * p.T + t] >= 0) { s += f32(AL[(r * p.T + t) * p.P + px]); }
  }
  let u = 1.0 - s;
  Out[i] = Out_t(p.scale * u * u);
  for (var t = 0u; t < p.T; t++) {
    let o = (r * p.T + t) * p.P + px;
    dA[o] = dA_t(select(0.0, -2.0 * p.scale * u, tgt[r * p.T + t] >= 0));
  }
}`,
});

/**
 * `scale·Σ_{r,p} (1 − Σ_t α_rtp)²` over α `[R, T, P]`, the sum over t running over the steps
 * whose `targets [R·T]` (i32) are not −100 (sgrvinod's `alpha_c·((1 − α.sum(1))²).mean()` is
 * `scale = alpha_c / (R·P)`). Returns the terms `[R, P]` (to sum) and the gradient `[R, T, P]`.
 */
export function attentionCoverage(
  rec: Recorder,
  alpha: Tensor,
  targets: Tensor,
  scale: number,
): { terms: Tensor; dAlpha: Tensor } {
  const [R, T, P] = alpha.shape;
  if (alpha.shape.length !== 3 || targets.dtype !== "i32" || targets.size !== R * T) {
    throw new WebcapError(
      "BAD_SHAPE",
      `attentionCoverage wants alpha [R, T, P] and i32 targets [R·T], got [${alpha.shape}] and ` +
        `${targets.dtype} [${targets.shape}]`,
    );
  }
  const out = { terms: rec.output([R, P]), dAlpha: rec.output([R, T, P]) };
  ATTENTION_COVERAGE.record(rec, {
    uniforms: { R, T, P, scale },
    bind: { AL: alpha, tgt: targets, Out: out.terms, dA: out.dAlpha },
    groups: Math.ceil((R * P) / 64),
  });
  return out;
}
