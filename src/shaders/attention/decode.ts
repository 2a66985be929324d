/**
 * One decode step's attention (one new position per row, S = 1) in one kernel: per head, an
 * optional LayerNorm of the row inputs `x [R, h]`, that head's projection (self-attention: q, k
 * and v, with k and v appended to the rows' key/value cache at position `past`; cross-attention:
 * q), then the attention of each row over its keys (self: cache positions 0..past; cross: the
 * keys/values of the row's image). One workgroup per head holds every row of the step (R ≤ 32),
 * so each weight element is read once per step, not once per row.
 *
 * The phases of a workgroup, each over all R rows and separated by barriers:
 * 1. LayerNorm statistics per row (mean, then centred variance, as `layernorm.ts`);
 * 2. projection: the (normalised) rows staged in workgroup memory in chunks of the input
 *    dimension, 64 output columns at a time, each by 4 invocations (a quarter of the inputs
 *    each, R accumulators, then summed); q goes to the head's slice of the output (its scratch
 *    until step 5), k and v to the cache;
 * 3. scores `q·k_j · scale` of every (row, key) into `Pr [R, H, L]`;
 * 4. softmax of each row's scores in place (the probabilities: `crossProbs` when asked for);
 * 5. `Σ_j p_j v_j` of every (row, d) into the output `[R, h]`.
 * Per-row sums and maxima (statistics, softmax) are a row at a time over the workgroup (`reduce`).
 * @module
 */
import { WebcapError } from "../../errors.ts";
import type { Gpu } from "../../gpu/device.ts";
import { optional, read, readWrite } from "../../gpu/kernel.ts";
import type { Recorder } from "../../gpu/recorder.ts";
import { dtypeBytes, type Tensor } from "../../gpu/tensor.ts";
import { dequantWgsl, isQuant, type QuantScheme, type Weight } from "../quant/qmatrix.ts";
import { type NormParams, ROW_STATS_WGSL } from "../layernorm.ts";
import { rowKernel } from "../reduce_wgsl.ts";

/** Most rows one decode attention takes (the accumulators of an invocation). */
export const DECODE_MAX_ROWS = 32;

/** Floats of workgroup memory that stage the rows' inputs (`[R, KC]` chunks). */
const STAGE = 2048;

/** Columns a workgroup projects at once; its 256 invocations split each column's inputs in 4. */
const COLUMN_LANES = 64;

/** The projection of the (normalised) rows: self-attention out 3h (q, k, v), cross out h (q). */
export interface DecodeProjection {
  /** In×out `[h, out]` (`inOut`, GPT-2's Conv1D), or out×in `[out, h]` (float or quantized). */
  w: Weight;
  inOut: boolean;
  /** The bias `[out]`. */
  b?: Tensor;
}

/** Arguments of {@link decodeAttention}; exactly one of `past` (self) and `kvIndex` (cross). */
export interface DecodeAttentionArgs {
  /** Row inputs `[R, h]`, one position per row (R ≤ {@link DECODE_MAX_ROWS}). */
  x: Tensor;
  /** The LayerNorm applied to `x` first (`[h]`). */
  norm?: NormParams;
  proj: DecodeProjection;
  /**
   * Keys/values `[kvRows, L, 2h]` (keys then values of each position): self-attention, the
   * rows' cache (kvRows = R, L its capacity); cross-attention, the images' states (L = encSeq).
   */
  kv: Tensor;
  /** Self-attention: this step's position; its k, v are written there and keys 0..past seen. */
  past?: number;
  /** Cross-attention: i32 `[R]`, the kv row (image) of each row; all L keys seen. */
  kvIndex?: Tensor;
  heads: number;
  scale: number;
  /** Cross-attention: also write the probabilities here, `[R, H, 1, L]`. */
  probs?: Tensor;
}

interface Variant {
  rows: number;
  self: boolean;
  inOut: boolean;
  quant?: QuantScheme;
}

/** WGSL `w_at(k, n)`: element (input k, output n) of the projection weight. */
function weightWgsl(v: Variant): string {
  if (v.quant) {
    const names = { fn: "dq", data: "WQ", scales: "WS", K: "p.h", G: "p.G" };
    return `${dequantWgsl(v.quant, names)}fn w_at(k: u32, n: u32) -> f32 { return dq(n, k); }`;
  }
  return `fn w_at(k: u32, n: u32) -> f32 { return f32(W[${
    v.inOut ? "k * p.N + n" : "n * p.h + k"
  }]); }`;
}

/** WGSL of phase 1: `stats[2r]`, `stats[2r + 1]` = mean and 1/std of row r. */
const NORM_STATS_WGSL = `${ROW_STATS_WGSL}
fn norm_stats(t: u32) {
  for (var r = 0u; r < MR; r++) {
    let st = row_stats(t, r * p.h, p.h, p.eps);
    if (t == 0u) { stats[2u * r] = st.x; stats[2u * r + 1u] = st.y; }
  }
  workgroupBarrier();
}`;

/** WGSL of phase 4: each row's scores `Pr[(r·H + hd)·L + j]`, j < keys, become probabilities. */
const SOFTMAX_WGSL = `
fn softmax(t: u32, hd: u32) {
  for (var r = 0u; r < MR; r++) {
    let b = (r * p.H + hd) * p.L;
    var m = -3.4e38;
    for (var j = t; j < p.keys; j += WG_X) { m = max(m, f32(Pr[b + j])); }
    m = reduce(t, m, true);
    var l = 0.0;
    for (var j = t; j < p.keys; j += WG_X) { l += exp(f32(Pr[b + j]) - m); }
    l = reduce(t, l, false);
    for (var j = t; j < p.keys; j += WG_X) { Pr[b + j] = Pr_t(exp(f32(Pr[b + j]) - m) / l); }
  }
}`;

/** WGSL of phase 2: the head's q (and k, v) of every row, staged x chunk by chunk. */
function projectWgsl(v: Variant, has: { gamma: boolean; bias: boolean }): string {
  const xAt = has.gamma
    ? "(x - stats[2u * r]) * stats[2u * r + 1u] * f32(gamma[k]) + f32(beta[k])"
    : "x";
  return `
fn x_at(r: u32, k: u32) -> f32 { let x = f32(X[r * p.h + k]); return ${xAt}; }
fn project(t: u32, hd: u32) {
  let P = ${v.self ? "3u * p.D" : "p.D"}; // columns of the head: q (k, v)
  let lane = t % CL; // the column of the invocation in each group of CL columns
  let slice = t / CL; // its share of the inputs: k ≡ slice (mod SLICES)
  for (var c0 = 0u; c0 < P; c0 += CL) {
    let c = c0 + lane;
    let part = c / p.D; // 0 q, 1 k, 2 v
    let d = c % p.D;
    let n = part * p.h + hd * p.D + d;
    var acc: array<f32, MR>;
    for (var r = 0u; r < MR; r++) { acc[r] = 0.0; } // naga zeroes a loop's var once
    for (var k0 = 0u; k0 < p.h; k0 += KC) {
      let kc = min(KC, p.h - k0);
      for (var i = t; i < MR * kc; i += WG_X) {
        let r = i / kc;
        xs[r * KC + i % kc] = x_at(r, k0 + i % kc);
      }
      workgroupBarrier();
      if (c < P) {
        for (var kk = slice; kk < kc; kk += SLICES) {
          let w = w_at(k0 + kk, n);
          for (var r = 0u; r < MR; r++) { acc[r] = fma(xs[r * KC + kk], w, acc[r]); }
        }
      }
      workgroupBarrier();
    }
    for (var r = 0u; r < MR; r++) { // the slices' sums of row r
      sums[t] = acc[r];
      workgroupBarrier();
      if (slice == 0u && c < P) {
        var y = ${has.bias ? "f32(bias[n])" : "0.0"};
        for (var s = 0u; s < SLICES; s++) { y += sums[s * CL + lane]; }
        if (part == 0u) {
          O[r * p.h + hd * p.D + d] = O_t(y);
        } else {
          KV[kv_row(r) + p.past * 2u * p.h + (part - 1u) * p.h + hd * p.D + d] = KV_t(y);
        }
      }
      workgroupBarrier();
    }
  }
}`;
}

const DECODE_ATTENTION = rowKernel({
  name: "decode_attention",
  uniforms: {
    h: "u32",
    H: "u32",
    D: "u32",
    N: "u32",
    G: "u32",
    past: "u32",
    keys: "u32",
    L: "u32",
    scale: "f32",
    eps: "f32",
  },
  storage: {
    X: read(),
    gamma: optional(read()),
    beta: optional(read()),
    W: optional(read()),
    WQ: optional(read("u32")),
    WS: optional(read("u32")),
    bias: optional(read()),
    KV: readWrite(),
    kvIndex: optional(read("i32")),
    O: readWrite(),
    Pr: readWrite(),
  },
  workgroupSize: [256],
  body: (v: Variant, has) => {
    const kc = Math.floor(STAGE / v.rows);
    return `
const MR = ${v.rows}u;
const KC = ${kc}u;
const CL = ${COLUMN_LANES}u;
const SLICES = WG_X / CL;
var<workgroup> sums: array<f32, WG_X>; // per invocation, its slice's sum of one row
var<workgroup> xs: array<f32, ${v.rows * kc}>; // [R, KC]: a chunk of the rows' inputs
var<workgroup> stats: array<f32, ${2 * v.rows}>; // per row: mean, 1/std
${weightWgsl(v)}
fn kv_row(r: u32) -> u32 { return ${has.kvIndex ? "u32(kvIndex[r])" : "r"} * p.L * 2u * p.h; }
${has.gamma ? NORM_STATS_WGSL : ""}
${projectWgsl(v, has)}
fn scores(t: u32, hd: u32) {
  for (var i = t; i < MR * p.keys; i += WG_X) {
    let r = i / p.keys; let j = i % p.keys;
    let qb = r * p.h + hd * p.D;
    let kb = kv_row(r) + j * 2u * p.h + hd * p.D;
    var s = 0.0;
    for (var d = 0u; d < p.D; d++) { s = fma(f32(O[qb + d]) * p.scale, f32(KV[kb + d]), s); }
    Pr[(r * p.H + hd) * p.L + j] = Pr_t(s);
  }
}
${SOFTMAX_WGSL}
fn weigh(t: u32, hd: u32) {
  for (var i = t; i < MR * p.D; i += WG_X) {
    let r = i / p.D; let d = i % p.D;
    let b = (r * p.H + hd) * p.L;
    let vb = kv_row(r) + p.h + hd * p.D + d;
    var a = 0.0;
    for (var j = 0u; j < p.keys; j++) { a = fma(f32(Pr[b + j]), f32(KV[vb + j * 2u * p.h]), a); }
    O[r * p.h + hd * p.D + d] = O_t(a);
  }
}
fn kernel(wg: vec3u, lid: vec3u) {
  let t = lid.x; let hd = wg.x;
  ${has.gamma ? "norm_stats(t);" : ""}
  project(t, hd);
  storageBarrier();
  scores(t, hd);
  storageBarrier();
  softmax(t, hd);
  storageBarrier();
  weigh(t, hd);
}`;
  },
});

/** Storage bindings of the kernel at most (a quantized weight is two, a LayerNorm two). */
const MAX_BINDINGS = 10;

/** Bytes of a weight's largest binding. */
function weightBytes(w: Weight): number {
  const ts = isQuant(w) ? [w.data, w.scales] : [w];
  return Math.max(...ts.map((t) => t.size * dtypeBytes(t.dtype)));
}

/**
 * Whether a decode step of `rows` rows projecting with `w` takes {@link decodeAttention}
 * ("fused") or layernorm, matmul, copy and attention ("separate"). Fused needs R ≤ 32, the
 * weight in one binding and 10 storage bindings per stage. GPUs: fused, for the dispatches a
 * decode step costs there (~11 µs each in Deno on an H100; 5 fewer per GPT-2 layer with
 * cross-attention, 3 per BLIP layer), unmeasured on a GPU so far; the `bench --kernels` rows
 * `decode self-attn` / `cross-attn` `fused` / `separate` decide it. CPU adapters: separate,
 * measured on llvmpipe (2 cores
 * shared, load ~4): per step at h = 32, 4 heads, 20 keys, fused against separate 0.76 / 0.75 ms
 * at R = 1, 1.2–1.4 / 0.8–1.1 at R = 3, 8.4–8.9 / 1.2–1.4 at R = 8 (llvmpipe keeps the R
 * accumulators of an invocation across barriers in memory); fixture greedy captions (20 tokens,
 * best of 9, three alternating runs) ViT-GPT2 50 / 49 ms, BLIP 49 / 47, ClipCap 46 / 44.
 */
export function decodeAttentionPlan(gpu: Gpu, rows: number, w: Weight): "fused" | "separate" {
  const fits = rows <= DECODE_MAX_ROWS && weightBytes(w) <= gpu.maxBinding &&
    gpu.device.limits.maxStorageBuffersPerShaderStage >= MAX_BINDINGS;
  return gpu.adapterClass === "gpu" && fits ? "fused" : "separate";
}

/** BAD_SHAPE naming `what` unless `ok`. */
function check(ok: boolean, what: string): void {
  if (!ok) throw new WebcapError("BAD_SHAPE", `decodeAttention: ${what}`);
}

/** Check the arguments; returns R, h, the head size D, the weight's out dim N and L. */
function checkArgs(a: DecodeAttentionArgs) {
  const [R, h] = a.x.shape;
  check(a.x.shape.length === 2 && a.x.dtype === "f32", `x [${a.x.shape}] must be f32 [R, h]`);
  check(R >= 1 && R <= DECODE_MAX_ROWS, `${R} rows; 1 to ${DECODE_MAX_ROWS} are supported`);
  check(a.heads >= 1 && h % a.heads === 0, `hidden ${h} is not divisible by ${a.heads} heads`);
  const self = a.past !== undefined;
  check(self !== (a.kvIndex !== undefined), "give exactly one of past (self) and kvIndex (cross)");
  const N = self ? 3 * h : h;
  const { w, inOut, b: bias } = a.proj;
  check(!(isQuant(w) && inOut), `a quantized weight [${w.shape}] is out×in`);
  const want = inOut ? [h, N] : [N, h];
  check(w.shape[0] === want[0] && w.shape[1] === want[1], `weight [${w.shape}] is not [${want}]`);
  check(!bias || bias.size === N, `bias [${bias?.shape}] is not [${N}]`);
  check(!a.norm || (a.norm.w.size === h && a.norm.b.size === h), `norm is not [${h}]`);
  const [kvRows, L, w2] = a.kv.shape;
  check(a.kv.shape.length === 3 && w2 === 2 * h, `kv [${a.kv.shape}] is not [rows, L, ${2 * h}]`);
  if (self) {
    check(kvRows === R, `the cache has ${kvRows} rows for ${R}`);
    check(Number.isInteger(a.past) && a.past! >= 0 && a.past! < L, `past ${a.past} ∉ [0, ${L})`);
    check(!a.probs, "probs are written for cross-attention only");
  } else {
    check(a.kvIndex!.dtype === "i32" && a.kvIndex!.size === R, `kvIndex must be i32 [${R}]`);
  }
  check(
    !a.probs || a.probs.size === R * a.heads * L,
    `probs [${a.probs?.shape}] is not [${R}, ${a.heads}, 1, ${L}]`,
  );
  return { R, h, D: h / a.heads, N, L };
}

/** Record one decode step's attention (see the module notes); returns `[R, h]`. */
export function decodeAttention(rec: Recorder, a: DecodeAttentionArgs): Tensor {
  const { R, h, D, N, L } = checkArgs(a);
  const w = a.proj.w;
  const out = rec.output([R, h]);
  const probs = a.probs ?? rec.temp([R, a.heads, L]);
  const self = a.past !== undefined;
  DECODE_ATTENTION.record(rec, {
    variant: {
      rows: R,
      self,
      inOut: a.proj.inOut,
      quant: isQuant(w) ? w.scheme : undefined,
    },
    uniforms: {
      h,
      H: a.heads,
      D,
      N,
      G: isQuant(w) ? w.groupSize : 0,
      past: a.past ?? 0,
      keys: self ? a.past! + 1 : L,
      L,
      scale: a.scale,
      eps: a.norm?.eps ?? 0,
    },
    bind: {
      X: a.x,
      gamma: a.norm?.w,
      beta: a.norm?.b,
      ...(isQuant(w) ? { WQ: w.data, WS: w.scales } : { W: w }),
      bias: a.proj.b,
      KV: a.kv,
      kvIndex: a.kvIndex,
      O: out,
      Pr: probs,
    },
    groups: a.heads,
  });
  return out;
}
