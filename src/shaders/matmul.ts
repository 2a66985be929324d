/**
 * Matrix multiply `C[M, N] = act(A[M, K] · W + bias) + residual` with the weight either
 * in×out (`W[K, N]`, GPT-2 `Conv1D`) or out×in (`W[N, K]`, `nn.Linear`: `transposeW`).
 * W may be f32 or f16 (with `shader-f16`), or a quantized out×in {@link QuantMatrix} (q8, q4)
 * that each kernel unpacks and dequantizes in registers (the `quant` variant: same kernels, the
 * weight read through `dequantWgsl`); A, C, bias and residual are f32; accumulation is f32.
 * On GPUs two kernels: a 64×64-tiled one, and a row-batched GEMV for decode steps (M ≤ 32); on
 * CPU adapters (llvmpipe) a register-tiled one without workgroup memory ({@link matmulPlan}).
 * A LayerNorm over A's rows (`norm`) is applied in each kernel's prologue as A is read
 * ({@link normWgsl}), so a pre-LN projection is one dispatch.
 * An out×in weight larger than one storage binding is bound in windows of output columns.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { AdapterClass } from "../gpu/device.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import { type Recorder, tensorWindow } from "../gpu/recorder.ts";
import { dtypeBytes, type Tensor } from "../gpu/tensor.ts";
import { type Activation, activationWgsl } from "./activations.ts";
import { layerNorm, layerNormPlan, type NormParams } from "./layernorm.ts";
import { range, stageRowsWgsl, TILE_WGSL } from "./tile_wgsl.ts";
import {
  dequantWgsl,
  isQuant,
  QUANT_BITS,
  quantRows,
  type QuantScheme,
  type Weight,
} from "./quant/qmatrix.ts";

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /**
   * LayerNorm A's rows before the product: `C = act(LN(A)·W + bias) + residual`, with the mean
   * and 1/std of each row computed as `layerNorm` does (two passes), read in the kernel's
   * prologue; where {@link matmulPlan} does not fuse it, a separate `layerNorm` first.
   */
  norm?: NormParams;
  /** W is stored out×in (`[N, K]`, nn.Linear) instead of in×out (`[K, N]`, Conv1D). */
  transposeW?: boolean;
  /** `[N]` added before the activation. */
  bias?: Tensor;
  act?: Activation;
  /** `[M, N]` added after the activation. */
  residual?: Tensor;
  /** Write into this `[M, N]` tensor instead of a new one. */
  out?: Tensor;
}

interface Variant {
  transposeW: boolean;
  act: Activation;
  /** W is a quantized matrix bound as WQ (packed) and WS (scales) instead of W. */
  quant?: QuantScheme;
}

/** What the tiled and the GEMV kernel share: `C[m, ldc·m + col0 + n]` for the window `[col0, col0 + N)`. */
const MATMUL_IO = {
  uniforms: { M: "u32", N: "u32", K: "u32", ldc: "u32", col0: "u32", G: "u32", eps: "f32" },
  storage: {
    A: read(),
    W: optional(read()),
    WQ: optional(read("u32")),
    WS: optional(read("u32")),
    C: readWrite(),
    bias: optional(read()),
    R: optional(read()),
    gamma: optional(read()), // with beta: the fused LayerNorm of A's rows
    beta: optional(read()),
  },
} as const;

/** Invocations of a GPU kernel's workgroup, which {@link normWgsl}'s `ln_stats` all take part in. */
const GPU_INVOCATIONS = 256;

/**
 * WGSL of the LayerNorm prologue, the one helper every kernel reads a normed A through:
 * `ln_sum(m, k0, step, mean, centred)`, the sum over `k = k0, k0 + step, …` of row m of A of x
 * (or of (x − mean)² when `centred`), the two passes of `layerNorm`; `ln_x(st, x, k)`, element k
 * of a row normed with its `st` = (mean, 1/std), as `layerNorm` writes it. `slots` (GPU
 * kernels): `ln_stats(tid, m0)` fills `ln_st[s]` for the rows `m0 + s`, s < slots, with the
 * workgroup's 256 invocations (up to 32 lanes per row, then one sum per row over its lanes).
 * Else (CPU kernel) `ln_row(m)`, one invocation's statistics of row m; `vec`: A read through
 * `A4` (the vec4 partial sums of `layernorm_cpu`), γ and β through `G4`, `B4`.
 */
function normWgsl(o: { slots?: number; vec?: boolean }): string {
  const sum = o.vec
    ? `
fn ln_sum(m: u32, k0: u32, step: u32, mean: f32, centred: bool) -> f32 {
  var s = vec4f();
  for (var k = k0; k < p.K / 4u; k += step) {
    let x = vec4f(A4[m * p.K / 4u + k]);
    s += select(x, (x - mean) * (x - mean), centred);
  }
  return s.x + s.y + s.z + s.w;
}`
    : `
fn ln_sum(m: u32, k0: u32, step: u32, mean: f32, centred: bool) -> f32 {
  var s = 0.0;
  for (var k = k0; k < p.K; k += step) {
    let x = f32(A[m * p.K + k]);
    s += select(x, (x - mean) * (x - mean), centred);
  }
  return s;
}
fn ln_x(st: vec2f, x: f32, k: u32) -> f32 {
  return (x - st.x) * st.y * f32(gamma[k]) + f32(beta[k]);
}`;
  if (!o.slots) {
    return sum + `
fn ln_row(m: u32) -> vec2f {
  let mean = ln_sum(m, 0u, 1u, 0.0, false) / f32(p.K);
  return vec2f(mean, inverseSqrt(ln_sum(m, 0u, 1u, mean, true) / f32(p.K) + p.eps));
}`;
  }
  const S = o.slots, L = Math.min(32, Math.floor(GPU_INVOCATIONS / S));
  return sum + `
const LN_L = ${L}u;
var<workgroup> ln_part: array<f32, ${S * L}>;
var<workgroup> ln_st: array<vec2f, ${S}>;
fn ln_stats(tid: u32, m0: u32) {
  let s = min(tid / LN_L, ${S - 1}u);
  let m = min(m0 + s, p.M - 1u);
  var mean = 0.0;
  for (var round = 0u; round < 2u; round++) {
    if (tid < ${S * L}u) { ln_part[tid] = ln_sum(m, tid % LN_L, LN_L, mean, round == 1u); }
    workgroupBarrier();
    if (tid < ${S}u) {
      var t = 0.0;
      for (var j = 0u; j < LN_L; j++) { t += ln_part[tid * LN_L + j]; }
      t /= f32(p.K);
      if (round == 0u) { ln_st[tid] = vec2f(t, 0.0); } else { ln_st[tid].y = inverseSqrt(t + p.eps); }
    }
    workgroupBarrier();
    mean = ln_st[s].x;
  }
}`;
}

/** WGSL of `A[m, k]` as a GPU kernel reads it: normed with `ln_st[slot]` when the norm is bound. */
function aAtWgsl(norm: boolean, m: string, k: string, slot: string): string {
  const a = `f32(A[${m} * p.K + ${k}])`;
  return norm ? `ln_x(ln_st[${slot}], ${a}, ${k})` : a;
}

/** `w_at(k, n)`: element `[k, n]` of the logical in×out weight, from W or dequantized. */
function weightWgsl(v: Variant): string {
  if (v.quant) {
    const names = { fn: "dq", data: "WQ", scales: "WS", K: "p.K", G: "p.G" };
    return `${dequantWgsl(v.quant, names)}fn w_at(k: u32, n: u32) -> f32 { return dq(n, k); }`;
  }
  return `
fn w_at(k: u32, n: u32) -> f32 {
  return f32(W[${v.transposeW ? "n * p.K + k" : "k * p.N + n"}]);
}`;
}

function helpers(v: Variant, has: { bias: boolean; R: boolean; W: boolean; WQ: boolean }): string {
  return `
${activationWgsl(v.act)}
fn epilogue(m: u32, n: u32, x: f32) {
  var v = x;
  ${has.bias ? "v += f32(bias[n]);" : ""}
  v = act(v);
  let o = m * p.ldc + p.col0 + n;
  ${has.R ? "v += f32(R[o]);" : ""}
  C[o] = C_t(v);
}
${has.W || has.WQ ? weightWgsl(v) : ""}
`;
}

const MATMUL_TILED = new Kernel({
  name: "matmul_tiled",
  ...MATMUL_IO,
  workgroupSize: [16, 16],
  body: (v: Variant, has) => {
    const loadW = v.transposeW
      ? "let nn = e / 16u; let kk = e % 16u;" // W[n, k]: consecutive threads walk k
      : "let kk = e / 64u; let nn = e % 64u;"; // W[k, n]: consecutive threads walk n
    const norm = has.gamma;
    return helpers(v, has) + (norm ? normWgsl({ slots: 64 }) : "") + `
${TILE_WGSL}
fn kernel(wg: vec3u, lid: vec3u) {
  let tid = lid.y * 16u + lid.x;
  let m0 = wg.y * 64u;
  let n0 = wg.x * 64u;
  ${norm ? "ln_stats(tid, m0);" : ""}
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < p.K; k0 += 16u) {
    for (var i = 0u; i < 4u; i++) {
      let e = tid + i * 256u;
      ${stageRowsWgsl("m0", "p.M", (m, k) => aAtWgsl(norm, m, k, `${m} - m0`))}
      ${loadW}
      let gn = n0 + nn; let gkw = k0 + kk;
      var w = 0.0;
      if (gn < p.N && gkw < p.K) { w = w_at(gkw, gn); }
      Bs[kk * 64u + nn] = w;
    }
    workgroupBarrier();
    tile_fma(lid, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      let m = m0 + lid.y + i * 16u;
      let n = n0 + lid.x + j * 16u;
      if (m < p.M && n < p.N) { epilogue(m, n, acc[i * 4u + j]); }
    }
  }
}`;
  },
});

/** The most rows {@link MATMUL_GEMV} takes. */
const GEMV_ROWS = 32;

/**
 * GEMV for M ≤ 32 rows (decode steps: batch × beams): each invocation accumulates all M rows of
 * its slice of k in registers, reduced across the workgroup in groups of 8 rows (8 KiB of
 * workgroup memory at most, 1.25 KiB more for a `norm`'s row statistics). Out×in walks k across 32 lanes per column, 8 columns per workgroup;
 * in×out walks n across 32 lanes and k across 8.
 */
const MATMUL_GEMV = new Kernel({
  name: "matmul_gemv",
  ...MATMUL_IO,
  workgroupSize: [32, 8],
  body: (v: Variant & { rows: number }, has) => {
    const R = v.rows, GR = Math.min(8, R), norm = has.gamma;
    const fmas = `for (var m = 0u; m < MR; m++) {
        acc[m] = fma(${aAtWgsl(norm, "m", "k", "m")}, w, acc[m]);
      }`;
    const head = helpers(v, has) + (norm ? normWgsl({ slots: R }) : "") + `
const MR = ${R}u;
const GR = ${GR}u; // rows per reduction
var<workgroup> red: array<f32, ${256 * GR}>;
`;
    if (v.transposeW) {
      return head + `
fn kernel(wg: vec3u, lid: vec3u) {
  let lane = lid.x;
  let n = wg.x * 8u + lid.y;
  ${norm ? "ln_stats(lid.y * 32u + lane, 0u);" : ""}
  var acc: array<f32, ${Math.ceil(R / GR) * GR}>;
  if (n < p.N) {
    for (var k = lane; k < p.K; k += 32u) {
      let w = w_at(k, n);
      ${fmas}
    }
  }
  let base = (lid.y * 32u + lane) * GR;
  for (var g = 0u; g < MR; g += GR) {
    for (var j = 0u; j < GR; j++) { red[base + j] = acc[g + j]; }
    workgroupBarrier();
    for (var s = 16u; s > 0u; s >>= 1u) {
      if (lane < s) {
        for (var j = 0u; j < GR; j++) { red[base + j] += red[base + s * GR + j]; }
      }
      workgroupBarrier();
    }
    if (lane < GR && g + lane < MR && n < p.N) {
      epilogue(g + lane, n, red[lid.y * 32u * GR + lane]);
    }
    workgroupBarrier();
  }
}`;
    }
    return head + `
fn kernel(wg: vec3u, lid: vec3u) {
  let n = wg.x * 32u + lid.x;
  ${norm ? "ln_stats(lid.y * 32u + lid.x, 0u);" : ""}
  var acc: array<f32, ${Math.ceil(R / GR) * GR}>;
  if (n < p.N) {
    for (var k = lid.y; k < p.K; k += 8u) {
      let w = w_at(k, n);
      ${fmas}
    }
  }
  let base = (lid.y * 32u + lid.x) * GR;
  for (var g = 0u; g < MR; g += GR) {
    for (var j = 0u; j < GR; j++) { red[base + j] = acc[g + j]; }
    workgroupBarrier();
    if (lid.y == 0u && n < p.N) {
      for (var j = 0u; j < GR && g + j < MR; j++) {
        var s = 0.0;
        for (var i = 0u; i < 8u; i++) { s += red[(i * 32u + lid.x) * GR + j]; }
        epilogue(g + j, n, s);
      }
    }
    workgroupBarrier();
  }
}`;
  },
});

/**
 * Register tile of one invocation of {@link MATMUL_REGS}: `tm` rows × `tn` columns (tn % 4 = 0);
 * `vec`: A and W are read as vec4 (bindings `A4`, `W4`; K % 4 = 0, and N % 4 = 0 for an in×out W).
 */
interface RegTile {
  tm: number;
  tn: number;
  vec: boolean;
}

/** WGSL of the vec4 `w<j>_<h>` (W at k + j, columns c<4h>…c<4h+3>) of one k-step. */
function weightsWgsl(v: Variant & RegTile, width: number): string[] {
  const groups = range(v.tn / 4);
  if (!v.vec) {
    return range(width).flatMap((j) =>
      groups.map((h) => {
        const w = range(4).map((c) => `w_at(k + ${j}u, c${4 * h + c})`);
        return `let w${j}_${h} = vec4f(${w.join(", ")});`;
      })
    );
  }
  if (!v.transposeW) { // W4 [K, N/4]: four columns of one k per load
    return range(4).flatMap((j) =>
      groups.map((h) => `let w${j}_${h} = vec4f(W4[(k + ${j}u) * p.N / 4u + q${h}]);`)
    );
  }
  // W4 [N, K/4]: four k of one column per load, transposed in registers
  const cols = range(v.tn).map((c) => `let wc${c} = vec4f(W4[wb${c} + k / 4u]);`);
  return [
    ...cols,
    ...range(4).flatMap((j) =>
      groups.map((h) => {
        const w = range(4).map((c) => `wc${4 * h + c}[${j}]`);
        return `let w${j}_${h} = vec4f(${w.join(", ")});`;
      })
    ),
  ];
}

/**
 * WGSL of one k-step of {@link MATMUL_REGS}: A rows and W columns as vec4 over `width` k (4 in
 * the unrolled loop, 1 in the remainder), fma'd into the vec4 accumulators `acc<r>_<h>`; with
 * `norm`, A's rows normed with their statistics `st<r>` ({@link normWgsl}).
 */
function regStepWgsl(v: Variant & RegTile, width: number, norm: boolean): string {
  const lines: string[] = [];
  if (norm && v.vec) lines.push("let g4 = vec4f(G4[k / 4u]);", "let b4 = vec4f(B4[k / 4u]);");
  for (const r of range(v.tm)) {
    const at = (j: number) => {
      const x = `f32(A[ra${r} + k + ${j}u])`;
      return norm ? `ln_x(st${r}, ${x}, k + ${j}u)` : x;
    };
    const a = range(4).map((j) => j < width ? at(j) : "0.0");
    const a4 = `vec4f(A4[(ra${r} + k) / 4u])`;
    lines.push(
      v.vec
        ? `let a${r} = ${norm ? `(${a4} - st${r}.x) * st${r}.y * g4 + b4` : a4};`
        : `let a${r} = vec4f(${a.join(", ")});`,
    );
  }
  lines.push(...weightsWgsl(v, width));
  for (const j of range(width)) {
    for (const h of range(v.tn / 4)) {
      for (const r of range(v.tm)) {
        lines.push(`acc${r}_${h} = fma(vec4f(a${r}[${j}]), w${j}_${h}, acc${r}_${h});`);
      }
    }
  }
  return lines.join("\n    ");
}

/** WGSL of the clamped column indices a register tile reads W at. */
function columnsWgsl(v: Variant & RegTile): string[] {
  const cols = range(v.tn).map((c) => `let c${c} = min(n0 + ${c}u, p.N - 1u);`);
  if (!v.vec) return cols;
  if (v.transposeW) return [...cols, ...range(v.tn).map((c) => `let wb${c} = c${c} * p.K / 4u;`)];
  return range(v.tn / 4).map((h) => `let q${h} = min(n0 / 4u + ${h}u, p.N / 4u - 1u);`);
}

/**
 * Register-tiled matmul for CPU adapters (llvmpipe runs invocations as SIMD lanes, so workgroup
 * memory and barriers only cost): each invocation computes a `tm × tn` block of C in vec4
 * accumulators, k unrolled by 4; no workgroup memory, no barriers. Edge rows and columns read
 * clamped indices and are not written. The same kernel with `tm` = M serves decode steps. With
 * `vec`, A and W are bound a second time as vec4 arrays (`A4`, `W4`): on llvmpipe each load
 * across the lanes is a gather, and a vec4 load is one where four scalar loads are four.
 */
const MATMUL_REGS = new Kernel({
  name: "matmul_regs",
  uniforms: MATMUL_IO.uniforms,
  storage: {
    ...MATMUL_IO.storage,
    A4: optional(read("float4")),
    W4: optional(read("float4")),
    G4: optional(read("float4")), // with B4: γ and β of the fused LayerNorm, with A4
    B4: optional(read("float4")),
  },
  workgroupSize: [64],
  body: (v: Variant & RegTile, has) => {
    const { tm, tn } = v;
    const norm = has.gamma || has.G4;
    const rows = range(tm).flatMap((r) => [
      `let ra${r} = min(m0 + ${r}u, p.M - 1u) * p.K;`,
      ...(norm ? [`let st${r} = ln_row(min(m0 + ${r}u, p.M - 1u));`] : []),
    ]).join("\n  ");
    const accs = range(tm).flatMap((r) => range(tn / 4).map((h) => `var acc${r}_${h} = vec4f();`));
    const stores = range(tm).flatMap((r) =>
      range(tn).map((c) =>
        `if (m0 + ${r}u < p.M && n0 + ${c}u < p.N) { epilogue(m0 + ${r}u, n0 + ${c}u, acc${r}_${
          c >> 2
        }[${c & 3}]); }`
      )
    );
    const tail = v.vec ? "" : `for (; k < p.K; k++) {
    ${regStepWgsl(v, 1, norm)}
  }`;
    return helpers(v, has) + (norm ? normWgsl({ vec: v.vec }) : "") + `
fn kernel(wg: vec3u, lid: vec3u) {
  let n0 = (wg.x * WG_X + lid.x) * ${tn}u;
  let m0 = wg.y * ${tm}u;
  if (n0 >= p.N) { return; }
  ${rows}
  ${columnsWgsl(v).join("\n  ")}
  ${accs.join("\n  ")}
  var k = 0u;
  for (; k + 4u <= p.K; k += 4u) {
    ${regStepWgsl(v, 4, norm)}
  }
  ${tail}
  ${stores.join("\n  ")}
}`;
  },
});

/** Whether a matmul can read A and W as vec4 ({@link RegTile}'s `vec`): float W, K and N fit. */
export function vec4Fits(w: Weight, K: number, N: number, transposeW: boolean): boolean {
  return !isQuant(w) && K % 4 === 0 && (transposeW || N % 4 === 0);
}

function checkShapes(a: Tensor, w: Weight, o: MatmulOptions): { M: number; N: number; K: number } {
  if (a.shape.length !== 2 || w.shape.length !== 2) {
    throw new WebcapError(
      "BAD_SHAPE",
      `matmul wants 2-D A and W, got [${a.shape}] and [${w.shape}]`,
    );
  }
  if (isQuant(w) && !o.transposeW) {
    throw new WebcapError(
      "BAD_SHAPE",
      `matmul: a quantized W [${w.shape}] is out×in; call with transposeW`,
    );
  }
  if (a.dtype !== "f32" || (!isQuant(w) && w.dtype !== "f32" && w.dtype !== "f16")) {
    throw new WebcapError(
      "BAD_DTYPE",
      `matmul wants f32 A and f32/f16/quantized W, got ${a.dtype}, ${isQuant(w) ? "" : w.dtype}`,
    );
  }
  const [M, K] = a.shape;
  const [K2, N] = o.transposeW ? [w.shape[1], w.shape[0]] : w.shape;
  if (K !== K2) {
    throw new WebcapError(
      "BAD_SHAPE",
      `matmul: A [${a.shape}] and W [${w.shape}] disagree on K (transposeW=${!!o.transposeW})`,
    );
  }
  if (o.bias && o.bias.size !== N) {
    throw new WebcapError("BAD_SHAPE", `matmul: bias [${o.bias.shape}] is not [${N}]`);
  }
  if (o.residual && o.residual.size !== M * N) {
    throw new WebcapError(
      "BAD_SHAPE",
      `matmul: residual [${o.residual.shape}] is not [${M}, ${N}]`,
    );
  }
  if (o.norm && (o.norm.w.size !== K || o.norm.b.size !== K)) {
    throw new WebcapError(
      "BAD_SHAPE",
      `matmul: norm γ [${o.norm.w.shape}] and β [${o.norm.b.shape}] are not [${K}] (A's rows)`,
    );
  }
  if (o.out && o.out.size !== M * N) {
    throw new WebcapError("BAD_SHAPE", `matmul: out [${o.out.shape}] is not [${M}, ${N}]`);
  }
  return { M, N, K };
}

/** Bytes one output column of W takes in bindings (a quantized one: packed elements + scales). */
function bytesPerColumn(w: Weight, K: number): number {
  if (!isQuant(w)) return K * dtypeBytes(w.dtype);
  return Math.max((K * QUANT_BITS[w.scheme]) / 8, (K / w.groupSize) * 4);
}

/** Column windows of W so that each fits one binding (only out×in weights can be windowed). */
function columnWindows(
  rec: Recorder,
  w: Weight,
  N: number,
  K: number,
  transposeW: boolean,
): [number, number][] {
  const bytesPerCol = bytesPerColumn(w, K);
  if (N * bytesPerCol <= rec.gpu.maxBinding) return [[0, N]];
  if (!transposeW) {
    throw new WebcapError(
      "BAD_SHAPE",
      `matmul: in×out weight [${w.shape}] exceeds one storage binding (${rec.gpu.maxBinding} B); store it out×in`,
    );
  }
  const align = 256;
  const step = Math.floor(rec.gpu.maxBinding / bytesPerCol / align) * align;
  if (step === 0) {
    throw new WebcapError("BAD_SHAPE", `matmul: one weight row of [${w.shape}] exceeds a binding`);
  }
  const out: [number, number][] = [];
  for (let c = 0; c < N; c += step) out.push([c, Math.min(step, N - c)]);
  return out;
}

/** The weight bindings of columns `[col0, col0 + n)` of an out×in W `[N, K]` (or all of W). */
function weightBindings(w: Weight, col0: number, n: number, N: number, K: number) {
  if (isQuant(w)) {
    const { data, scales } = quantRows(w, col0, n);
    return { WQ: data, WS: scales };
  }
  return { W: col0 === 0 && n === N ? w : tensorWindow(w, col0 * K, n * K) };
}

/** The kernel (and register tile) a matmul takes. */
export type MatmulPlan =
  & (
    | { kernel: "tiled" }
    | { kernel: "gemv" }
    | { kernel: "regs"; tm: number; tn: number; vec: boolean }
  )
  & {
    /** Whether a `norm` is applied in the kernel's prologue (else a `layerNorm` dispatch first). */
    fuseNorm: boolean;
  };

/**
 * The kernel of a matmul of `M` rows, `N` columns and inner dimension `K` on an adapter class;
 * `vec`: A and W can be read as vec4 ({@link vec4Fits}). GPUs: 64×64 tiles in workgroup memory,
 * GEMV for decode steps (M ≤ 32: batch × beams; a decode step's 24 rows as 36 tiled workgroups
 * of 64×768×2304 would leave most of a GPU idle, the GEMV gives 288), and a `norm` always in the
 * prologue (a dispatch is what a decode step's time is made of there; unmeasured on a GPU so far,
 * the `bench --kernels` rows `matmul norm fused` / `separate` decide it). CPU adapters:
 * {@link MATMUL_REGS}, tiles measured on llvmpipe (2 cores loaded by other work, so ±30 %;
 * GFLOP/s, BENCHMARKS.md). Prefill 197×768×768: 8×8 with vec4 loads
 * (3.9–5.3 out×in, 3.8–4.2 in×out) over scalar 8×8 (3.3 / 2.4), 4×8 (2.7 / 3.3), 8×4
 * (3.1 / 1.3), 4×16 (2.2 / 2.4), 16×4 (2.9 / 2.3), 16×8 (2.4 / 3.5); the 64×64 tiles give 0.4.
 * Decode rows: M × 16 where N gives at least two workgroups of 64 invocations (N ≥ 2048:
 * 1×768×50257 out×in 0.63–1.26 against 0.56–0.64 for M × 8; 5×768×2304 7.1 against 3.5), else
 * M × 8 (1×3072×768: 0.83 against 0.52 for M × 16, which leaves one core idle). Quantized
 * weights take the same kernel through `w_at` (scalar). A `norm` is fused on CPU adapters only
 * where `layerNorm` would take its workgroup kernel (K < 256 or K % 4 ≠ 0, slow on llvmpipe):
 * each invocation there recomputes its rows' statistics and normalises every A element it reads,
 * which costs more than the one-row-per-invocation `layerNorm` it saves (0.65 ms for 197×768,
 * 0.09 ms for 1×768 in `bench --kernels`). Llvmpipe, load 4–7, GPU ms per op from timestamps,
 * layerNorm + matmul / fused: 197×768×2304 out×in 179 / 285, 197×768×3072 186 / 422, 5×768×2304
 * 4.0 / 6.2, 50×256×768 3.4 / 7.6, 5×256×1024 0.45 / 0.79; but 65×128×384 3.8 / 1.7, and the
 * fixture's 17×32×96 0.66 / 0.10, 3×32×128 0.15 / 0.03.
 */
export function matmulPlan(
  cls: AdapterClass,
  M: number,
  N: number,
  vec: boolean,
  K: number,
): MatmulPlan {
  if (cls === "cpu") {
    const fuseNorm = fusesNorm(cls, K);
    if (M > 8) return { kernel: "regs", tm: 8, tn: 8, vec, fuseNorm };
    return { kernel: "regs", tm: M, tn: N >= 2048 ? 16 : 8, vec, fuseNorm };
  }
  return M <= GEMV_ROWS ? { kernel: "gemv", fuseNorm: true } : { kernel: "tiled", fuseNorm: true };
}

/** Whether matmul reads a `norm` of K-wide rows in its prologue (else a `layerNorm` first). */
function fusesNorm(cls: AdapterClass, K: number): boolean {
  return cls === "gpu" || layerNormPlan(cls, K) === "workgroup";
}

/** Record `act(A·W + bias) + residual` into `rec`; returns `[M, N]`. */
export function matmul(rec: Recorder, a: Tensor, w: Weight, opts: MatmulOptions = {}): Tensor {
  const { M, N, K } = checkShapes(a, w, opts);
  const quant = isQuant(w) ? w.scheme : undefined;
  const v: Variant = { transposeW: !!opts.transposeW, act: opts.act ?? "none", quant };
  const G = isQuant(w) ? w.groupSize : 0;
  const cls = rec.gpu.adapterClass;
  const fused = opts.norm && fusesNorm(cls, K);
  const ln = fused ? opts.norm : undefined;
  const x = opts.norm && !fused // A, normed by a layerNorm dispatch where the kernel does not
    ? layerNorm(rec, a, opts.norm.w, opts.norm.b, opts.norm.eps, rec.temp(a.shape))
    : a;
  const out = opts.out ?? rec.output([M, N]);
  for (const [col0, n] of columnWindows(rec, w, N, K, v.transposeW)) {
    const whole = col0 === 0 && n === N;
    const bias = whole || !opts.bias ? opts.bias : tensorWindow(opts.bias, col0, n);
    const call = {
      uniforms: { M, N: n, K, ldc: N, col0, G, eps: ln?.eps ?? 0 },
      bind: {
        A: x,
        ...weightBindings(w, col0, n, N, K),
        C: out,
        bias,
        R: opts.residual,
        gamma: ln?.w,
        beta: ln?.b,
      },
    };
    const plan = matmulPlan(cls, M, n, vec4Fits(w, K, n, v.transposeW), K);
    if (plan.kernel === "regs") {
      const { tm, tn, vec } = plan;
      const groups = [Math.ceil(n / tn / 64), Math.ceil(M / tm)] as const;
      const bind = vec // A, W, γ and β as vec4
        ? { ...call.bind, W: undefined, A4: x, W4: call.bind.W }
        : call.bind;
      const norm4 = vec ? { gamma: undefined, beta: undefined, G4: ln?.w, B4: ln?.b } : {};
      MATMUL_REGS.record(rec, {
        ...call,
        bind: { ...bind, ...norm4 },
        variant: { ...v, tm, tn, vec },
        groups,
      });
    } else if (plan.kernel === "gemv") {
      const groups = Math.ceil(n / (v.transposeW ? 8 : 32));
      MATMUL_GEMV.record(rec, { ...call, variant: { ...v, rows: M }, groups });
    } else {
      MATMUL_TILED.record(rec, {
        ...call,
        variant: v,
        groups: [Math.ceil(n / 64), Math.ceil(M / 64)],
      });
    }
  }
  return out;
}

// ---- backward ----

/** `C[P, Q] (+)= Σ_m A[m, P] · B[m, Q]`: a weight gradient (`Xᵀ·dY` or `dYᵀ·X`), m in order. */
const MATMUL_TN = new Kernel({
  name: "matmul_tn",
  uniforms: { M: "u32", P: "u32", Q: "u32", acc: "u32" },
  storage: { A: read(), B: read(), C: readWrite() },
  workgroupSize: [16, 16],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let q = wg.x * 16u + lid.x;
  let i = wg.y * 16u + lid.y;
  if (i >= p.P || q >= p.Q) { return; }
  var s = 0.0;
  for (var m = 0u; m < p.M; m++) { s = fma(f32(A[m * p.P + i]), f32(B[m * p.Q + q]), s); }
  let o = i * p.Q + q;
  C[o] = C_t(select(0.0, f32(C[o]), p.acc == 1u) + s);
}`,
});

/** `Y[N] (+)= Σ_m X[m, N]`: a bias gradient, one invocation per column, m in order. */
const COLUMN_SUM = new Kernel({
  name: "column_sum",
  uniforms: { M: "u32", N: "u32", acc: "u32" },
  storage: { X: read(), Y: readWrite() },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let n = wg.x * WG_X + lid.x;
  if (n >= p.N) { return; }
  var s = 0.0;
  for (var m = 0u; m < p.M; m++) { s += f32(X[m * p.N + n]); }
  Y[n] = Y_t(select(0.0, f32(Y[n]), p.acc == 1u) + s);
}`,
});

/** `c [P, Q] += aᵀ·b` for `a [M, P]`, `b [M, Q]` (`accumulate` false: `c = aᵀ·b`). */
export function matmulTN(rec: Recorder, a: Tensor, b: Tensor, c: Tensor, accumulate = true): void {
  const [M, P] = a.shape, Q = b.size / M;
  if (a.shape.length !== 2 || b.size !== M * Q || c.size !== P * Q || !Number.isInteger(Q)) {
    throw new WebcapError(
      "BAD_SHAPE",
      `matmulTN: a [${a.shape}], b [${b.shape}] and c [${c.shape}] do not make aᵀ·b`,
    );
  }
  MATMUL_TN.record(rec, {
    uniforms: { M, P, Q, acc: accumulate ? 1 : 0 },
    bind: { A: a, B: b, C: c },
    groups: [Math.ceil(Q / 16), Math.ceil(P / 16)],
  });
}

/** `y [N] += Σ_rows x [M, N]` (`accumulate` false: `y = Σ_rows x`). */
export function columnSum(rec: Recorder, x: Tensor, y: Tensor, accumulate = true): void {
  const N = y.size, M = x.size / N;
  if (!Number.isInteger(M)) {
    throw new WebcapError("BAD_SHAPE", `columnSum: [${x.shape}] has no rows of [${y.shape}]`);
  }
  COLUMN_SUM.record(rec, {
    uniforms: { M, N, acc: accumulate ? 1 : 0 },
    bind: { X: x, Y: y },
    groups: Math.ceil(N / 64),
  });
}

/**
 * Where the gradients of `Y = X·W + b` go; each is accumulated into (tied weights add up). A
 * frozen W or b has none: its gradient is not computed.
 */
export interface MatmulGrads {
  /** Same layout as W. */
  dW?: Tensor;
  /** `[N]`, when the layer has a bias. */
  db?: Tensor;
}

/**
 * Backward of `Y [M, N] = X [M, K] · W + b` (W in×out `[K, N]`, or out×in `[N, K]` with
 * `transposeW`): `dW += Xᵀ·dY` (or `dYᵀ·X`), `db += Σ_rows dY`, and returns `dX = dY·Wᵀ
 * (+ residual)` unless `noDx`.
 */
export function matmulBackward(
  rec: Recorder,
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  grads: MatmulGrads,
  opts: { transposeW?: boolean; residual?: Tensor; noDx?: boolean } = {},
): Tensor | undefined {
  const { M, N } = checkShapes(x, w, { transposeW: opts.transposeW });
  if (
    dy.size !== M * N || (grads.dW && grads.dW.size !== w.size) || (grads.db && grads.db.size !== N)
  ) {
    throw new WebcapError(
      "BAD_SHAPE",
      `matmulBackward: dY [${dy.shape}], dW [${grads.dW?.shape}] or db do not fit X [${x.shape}] · W [${w.shape}]`,
    );
  }
  const dy2 = dy.view([M, N]);
  if (grads.dW && opts.transposeW) matmulTN(rec, dy2, x, grads.dW);
  else if (grads.dW) matmulTN(rec, x, dy2, grads.dW);
  if (grads.db) columnSum(rec, dy2, grads.db);
  if (opts.noDx) return undefined;
  return matmul(rec, dy2, w, { transposeW: !opts.transposeW, residual: opts.residual });
}
