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
import { read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowKernel } from "./reduce_wgsl.ts";

const SOFT_ATTENTION = rowKernel({
  name: "soft_attention",
  uniforms: {
    P: "u32",
    A: "u32",
    C: "u32",
    aOff: "u32",
    aStride: "u32",
    zOff: "u32",
    zStride: "u32",
  },
  storage: {
    EA: read(),
    DA: read(),
    WF: read(),
    E: read(),
    G: read(),
    img: read("i32"),
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

/** Record one soft-attention step for every row (one dispatch). */
export function softAttention(rec: Recorder, a: SoftAttentionArgs): void {
  const rows = a.rowImage.size, P = a.pixels, A = a.wFull.size;
  const C = a.enc.shape[a.enc.shape.length - 1];
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
  if (!fits(a.alpha, rows, P) || !fits(a.z, rows, C)) {
    throw bad("an output does not hold every row");
  }
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
      EA: a.encAtt,
      DA: a.decAtt,
      WF: a.wFull,
      E: a.enc,
      G: a.gate,
      img: a.rowImage,
      AL: a.alpha.t,
      Z: a.z.t,
    },
    groups: rows,
  });
}
