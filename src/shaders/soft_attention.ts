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
import { Params, type Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { grid } from "./matmul.ts";
import { workgroupReduceWgsl } from "./reduce_wgsl.ts";

const WGSL = `
struct P { R: u32, P: u32, A: u32, C: u32, aOff: u32, aStride: u32, zOff: u32, zStride: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> EA: array<f32>;
@group(0) @binding(2) var<storage, read> DA: array<f32>;
@group(0) @binding(3) var<storage, read> WF: array<f32>;
@group(0) @binding(4) var<storage, read> E: array<f32>;
@group(0) @binding(5) var<storage, read> G: array<f32>;
@group(0) @binding(6) var<storage, read> img: array<i32>;
@group(0) @binding(7) var<storage, read_write> AL: array<f32>;
@group(0) @binding(8) var<storage, read_write> Z: array<f32>;
${workgroupReduceWgsl(256)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let r = wg.y * 65535u + wg.x;
  if (r >= p.R) { return; }
  let t = lid.x;
  let im = u32(img[r]);
  let a0 = p.aOff + r * p.aStride;
  var m = -3.4e38;
  for (var px = t; px < p.P; px += 256u) {
    let ea = (im * p.P + px) * p.A;
    var e = 0.0;
    for (var a = 0u; a < p.A; a++) { e = fma(WF[a], max(EA[ea + a] + DA[r * p.A + a], 0.0), e); }
    AL[a0 + px] = e;
    m = max(m, e);
  }
  m = reduce(t, m, true);
  var s = 0.0;
  for (var px = t; px < p.P; px += 256u) {
    let x = exp(AL[a0 + px] - m);
    AL[a0 + px] = x;
    s += x;
  }
  s = reduce(t, s, false);
  for (var px = t; px < p.P; px += 256u) { AL[a0 + px] = AL[a0 + px] / s; }
  storageBarrier();
  workgroupBarrier();
  let e0 = im * p.P * p.C;
  for (var c = t; c < p.C; c += 256u) {
    var acc = 0.0;
    for (var px = 0u; px < p.P; px++) { acc = fma(AL[a0 + px], E[e0 + px * p.C + c], acc); }
    Z[p.zOff + r * p.zStride + c] = G[r * p.C + c] * acc;
  }
}`;

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
  const params = new Params().u32(rows).u32(P).u32(A).u32(C)
    .u32(a.alpha.offset).u32(a.alpha.rowStride).u32(a.z.offset).u32(a.z.rowStride);
  rec.dispatch(
    rec.gpu.pipelines.get(WGSL),
    params,
    [a.encAtt, a.decAtt, a.wFull, a.enc, a.gate, a.rowImage, a.alpha.t, a.z.t],
    grid(rows),
  );
}
