/**
 * 2-D convolution, NCHW, as an implicit GEMM: per group, `Y[co, pixel] = Σ_k W[co, k] · X̂[k, pixel]`
 * where `k` runs over (input channel, ky, kx) and `X̂` is the im2col view of the input, gathered
 * on the fly into workgroup memory (never materialized). Tiles of 64 output channels × 64 output
 * pixels, 16 reduction steps at a time, 4×4 outputs per thread (the tiling of matmul.ts).
 *
 * Weight layout is PyTorch's `[Cout, Cin/groups, kh, kw]`, f32 or f16 (with `shader-f16`);
 * input, output, bias and residual are f32; accumulation is f32. The epilogue computes
 * `act(conv + bias + residual)` — the residual is added before the activation, as in a ResNet
 * block (`relu(bn3(conv3(x)) + identity)`). Kernel geometry (size, stride, padding, dilation)
 * is compiled into the shader as constants; sizes are uniforms.
 * Efficient when Cout per group is large (patch embeddings, ResNets); a depthwise convolution
 * works but uses one row of each 64-row tile.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { AdapterClass } from "../gpu/device.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { dtypeBytes, type Tensor } from "../gpu/tensor.ts";
import { type Activation, activationWgsl } from "./activations.ts";
import { rowKernel } from "./reduce_wgsl.ts";
import { range, stageRowsWgsl, TILE_WGSL } from "./tile_wgsl.ts";

/** A size given once for both axes, or as `[height, width]`. */
export type Pair = number | readonly [number, number];

/** Options of {@link conv2d}. */
export interface Conv2dOptions {
  /** Default 1. */
  stride?: Pair;
  /** Zero padding on each side; default 0. */
  padding?: Pair;
  /** Default 1. */
  dilation?: Pair;
  /** Default 1; `Cin` and `Cout` must be multiples of it. */
  groups?: number;
  /** `[Cout]` added before the residual and the activation. */
  bias?: Tensor;
  /** `[N, Cout, Ho, Wo]` added before the activation. */
  residual?: Tensor;
  /** Default "none". */
  act?: Activation;
  /** Write into this `[N, Cout, Ho, Wo]` tensor instead of a new one. */
  out?: Tensor;
}

/** Resolved geometry of one convolution. */
export interface Conv2dGeometry {
  N: number;
  Cin: number;
  H: number;
  W: number;
  Cout: number;
  kh: number;
  kw: number;
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
  Ho: number;
  Wo: number;
}

/** The geometry compiled into the shader, and the epilogue's activation. */
type Variant = Pick<Conv2dGeometry, "kh" | "kw" | "stride" | "padding" | "dilation"> & {
  act: Activation;
};

/** `[h, w]` of a {@link Pair}. */
export function pair(v: Pair): [number, number] {
  return typeof v === "number" ? [v, v] : [v[0], v[1]];
}

/** Sizes of a convolution: batch, channels in and out (and per group), input and output size. */
const SIZES = {
  N: "u32",
  Cin: "u32",
  H: "u32",
  W: "u32",
  Cout: "u32",
  Ho: "u32",
  Wo: "u32",
  cinG: "u32",
  coutG: "u32",
} as const;

const CONV2D = new Kernel({
  name: "conv2d",
  uniforms: { ...SIZES, K: "u32", pixTiles: "u32", coTiles: "u32" },
  storage: { X: read(), Wt: read(), Y: readWrite(), bias: optional(read()), R: optional(read()) },
  workgroupSize: [16, 16],
  body: (v: Variant, has) => `
const KH = ${v.kh}u; const KW = ${v.kw}u;
const SH = ${v.stride[0]}u; const SW = ${v.stride[1]}u;
const PH = ${v.padding[0]}; const PW = ${v.padding[1]};
const DH = ${v.dilation[0]}u; const DW = ${v.dilation[1]}u;
${activationWgsl(v.act)}
${TILE_WGSL}
fn kernel(wg: vec3u, lid: vec3u) {
  let tile = wg.x;
  let pt = tile % p.pixTiles;
  let g = tile / p.pixTiles / p.coTiles;
  let co0 = (tile / p.pixTiles) % p.coTiles * 64u;
  let hwo = p.Ho * p.Wo;
  let npix = p.N * hwo;
  let tid = lid.y * 16u + lid.x;
  // the output pixel whose im2col column this thread gathers (rows tid / 64 + 4 i)
  let bp = tid % 64u;
  let pix = pt * 64u + bp;
  let pixOk = pix < npix;
  let n = pix / hwo;
  let oy = (pix % hwo) / p.Wo;
  let ox = pix % p.Wo;
  let iy0 = i32(oy * SH) - PH;
  let ix0 = i32(ox * SW) - PW;
  let xbase = (n * p.Cin + g * p.cinG) * p.H * p.W;
  let wbase = g * p.coutG * p.K;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < p.K; k0 += 16u) {
    for (var i = 0u; i < 4u; i++) {
      let e = tid + i * 256u;
      ${stageRowsWgsl("co0", "p.coutG", (co, k) => `f32(Wt[wbase + ${co} * p.K + ${k}])`)}
      let kb = tid / 64u + 4u * i;
      let gkb = k0 + kb;
      var x = 0.0;
      if (pixOk && gkb < p.K) {
        let ci = gkb / (KH * KW);
        let r = gkb % (KH * KW);
        let iy = iy0 + i32((r / KW) * DH);
        let ix = ix0 + i32((r % KW) * DW);
        if (iy >= 0 && iy < i32(p.H) && ix >= 0 && ix < i32(p.W)) {
          x = f32(X[xbase + (ci * p.H + u32(iy)) * p.W + u32(ix)]);
        }
      }
      Bs[kb * 64u + bp] = x;
    }
    workgroupBarrier();
    tile_fma(lid, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let co = co0 + lid.y + i * 16u;
    if (co >= p.coutG) { continue; }
    let c = g * p.coutG + co;
    for (var j = 0u; j < 4u; j++) {
      let q = pt * 64u + lid.x + j * 16u;
      if (q >= npix) { continue; }
      let o = ((q / hwo) * p.Cout + c) * hwo + q % hwo;
      var v = acc[i * 4u + j];
      ${has.bias ? "v += f32(bias[c]);" : ""}
      ${has.R ? "v += f32(R[o]);" : ""}
      Y[o] = Y_t(act(v));
    }
  }
}`,
});

/** Output channels × output pixels of one invocation of {@link CONV2D_CPU}. */
const CPU_TILE = { co: 8, pix: 4 } as const;

/**
 * Convolution for CPU adapters (llvmpipe runs a workgroup's invocations as SIMD lanes, where
 * workgroup memory and barriers only cost): each invocation computes 8 output channels × 4
 * consecutive output pixels in registers, walking the reduction (input channel, ky, kx) directly
 * over the input; the lanes of a workgroup share their channels, so each weight they read is the
 * same address in every lane. Grid: [pixel blocks of 256, channel blocks of 8, groups].
 */
const CONV2D_CPU = new Kernel({
  name: "conv2d_cpu",
  uniforms: { ...SIZES, K: "u32" },
  storage: { X: read(), Wt: read(), Y: readWrite(), bias: optional(read()), R: optional(read()) },
  workgroupSize: [64],
  body: (v: Variant, has) => {
    const P = CPU_TILE.pix, C = CPU_TILE.co;
    const pixels = range(P).map((j) => `
  let pq${j} = min(q0 + ${j}u, npix - 1u);
  let xb${j} = ((pq${j} / hwo) * p.Cin + g * p.cinG) * p.H * p.W;
  let iy${j} = i32((pq${j} % hwo) / p.Wo * SH) - PH;
  let ix${j} = i32(pq${j} % p.Wo * SW) - PW;`).join("");
    const channels = Array.from(
      { length: C },
      (_, i) => `let w${i} = wbase + min(co0 + ${i}u, p.coutG - 1u) * p.K;`,
    ).join("\n  ");
    const taps = range(P).map((j) => `
    var x${j} = 0.0;
    let y${j} = iy${j} + dy; let z${j} = ix${j} + dx;
    if (y${j} >= 0 && y${j} < i32(p.H) && z${j} >= 0 && z${j} < i32(p.W)) {
      x${j} = f32(X[xb${j} + xoff + u32(y${j}) * p.W + u32(z${j})]);
    }`).join("");
    const fmas = range(C).map((i) =>
      `let wv${i} = f32(Wt[w${i} + k]);
    acc${i} = fma(vec4f(wv${i}), vec4f(x0, x1, x2, x3), acc${i});`
    ).join("\n    ");
    const stores = Array.from(
      { length: C },
      (_, i) =>
        range(P).map((j) => `store(g, co0 + ${i}u, q0 + ${j}u, acc${i}[${j}]);`)
          .join(
            " ",
          ),
    ).join("\n  ");
    return `
const KH = ${v.kh}u; const KW = ${v.kw}u;
const SH = ${v.stride[0]}u; const SW = ${v.stride[1]}u;
const PH = ${v.padding[0]}; const PW = ${v.padding[1]};
const DH = ${v.dilation[0]}; const DW = ${v.dilation[1]};
${activationWgsl(v.act)}
fn store(g: u32, co: u32, q: u32, x: f32) {
  let hwo = p.Ho * p.Wo;
  if (co >= p.coutG || q >= p.N * hwo) { return; }
  let c = g * p.coutG + co;
  let o = ((q / hwo) * p.Cout + c) * hwo + q % hwo;
  var v = x;
  ${has.bias ? "v += f32(bias[c]);" : ""}
  ${has.R ? "v += f32(R[o]);" : ""}
  Y[o] = Y_t(act(v));
}
fn kernel(wg: vec3u, lid: vec3u) {
  let hwo = p.Ho * p.Wo;
  let npix = p.N * hwo;
  let q0 = (wg.x * WG_X + lid.x) * ${P}u;
  if (q0 >= npix) { return; }
  let co0 = wg.y * ${C}u;
  let g = wg.z;
  let wbase = g * p.coutG * p.K;
  ${pixels}
  ${channels}
  ${range(C).map((i) => `var acc${i} = vec4f();`).join("\n  ")}
  for (var k = 0u; k < p.K; k++) {
    let ci = k / (KH * KW);
    let r = k % (KH * KW);
    let dy = i32(r / KW) * DH; let dx = i32(r % KW) * DW;
    let xoff = ci * p.H * p.W;
    ${taps}
    ${fmas}
  }
  ${stores}
}`;
  },
});

function bad(msg: string): WebcapError {
  return new WebcapError("BAD_SHAPE", `conv2d: ${msg}`);
}

/** Check the shapes and options of a convolution and compute its output size. */
export function conv2dGeometry(x: Tensor, w: Tensor, o: Conv2dOptions = {}): Conv2dGeometry {
  if (x.shape.length !== 4 || w.shape.length !== 4) {
    throw bad(
      `wants x [N, Cin, H, W] and weight [Cout, Cin/groups, kh, kw], got [${x.shape}] and [${w.shape}]`,
    );
  }
  if (x.dtype !== "f32" || (w.dtype !== "f32" && w.dtype !== "f16")) {
    throw new WebcapError(
      "BAD_DTYPE",
      `conv2d wants f32 x and f32/f16 weight, got ${x.dtype}, ${w.dtype}`,
    );
  }
  const [N, Cin, H, W] = x.shape;
  const [Cout, cinG, kh, kw] = w.shape;
  const groups = o.groups ?? 1;
  const stride = pair(o.stride ?? 1),
    padding = pair(o.padding ?? 0),
    dilation = pair(o.dilation ?? 1);
  if (
    !Number.isInteger(groups) || groups < 1 || Cin % groups || Cout % groups ||
    cinG !== Cin / groups
  ) {
    throw bad(`weight [${w.shape}] does not fit x [${x.shape}] with groups=${groups}`);
  }
  const ints = [...stride, ...dilation].every((s) => Number.isInteger(s) && s >= 1) &&
    padding.every((q) => Number.isInteger(q) && q >= 0);
  if (!ints) {
    throw bad(`stride ${stride} and dilation ${dilation} must be ≥ 1, padding ${padding} ≥ 0`);
  }
  const Ho = Math.floor((H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0]) + 1;
  const Wo = Math.floor((W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1]) + 1;
  if (Ho < 1 || Wo < 1) throw bad(`kernel ${kh}×${kw} does not fit the padded ${H}×${W} input`);
  const outSize = N * Cout * Ho * Wo;
  if (o.bias && o.bias.size !== Cout) throw bad(`bias [${o.bias.shape}] is not [${Cout}]`);
  if (o.residual && o.residual.size !== outSize) {
    throw bad(`residual [${o.residual.shape}] is not [${N}, ${Cout}, ${Ho}, ${Wo}]`);
  }
  if (o.out && o.out.size !== outSize) {
    throw bad(`out [${o.out.shape}] is not [${N}, ${Cout}, ${Ho}, ${Wo}]`);
  }
  return { N, Cin, H, W, Cout, kh, kw, stride, padding, dilation, groups, Ho, Wo };
}

/**
 * The convolution kernel of an adapter class: {@link CONV2D_CPU} on CPU adapters, the
 * implicit GEMM in workgroup tiles on GPUs. Measured on llvmpipe (BENCHMARKS.md).
 */
export function conv2dPlan(cls: AdapterClass): "cpu" | "tiled" {
  return cls === "cpu" ? "cpu" : "tiled";
}

/**
 * Record `act(conv2d(x, w) + bias + residual)`: x `[N, Cin, H, W]`, w `[Cout, Cin/groups, kh, kw]`
 * → `[N, Cout, Ho, Wo]` with PyTorch's output size `⌊(H + 2p − d(k−1) − 1) / s⌋ + 1`.
 */
export function conv2d(rec: Recorder, x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  const g = conv2dGeometry(x, w, opts);
  const out = opts.out ?? rec.output([g.N, g.Cout, g.Ho, g.Wo]);
  const limit = rec.gpu.maxBinding;
  for (
    const [name, bytes] of [["x", x.byteSize], ["output", out.byteSize], [
      "weight",
      w.size * dtypeBytes(w.dtype),
    ]] as const
  ) {
    if (bytes > limit) {
      throw bad(`${name} (${bytes} B) exceeds one storage binding (${limit} B); split the batch`);
    }
  }
  const coutG = g.Cout / g.groups, cinG = g.Cin / g.groups;
  const pixTiles = Math.ceil((g.N * g.Ho * g.Wo) / 64);
  const coTiles = Math.ceil(coutG / 64);
  const { N, Cin, H, W, Cout, Ho, Wo, kh, kw, stride, padding, dilation } = g;
  const variant = { kh, kw, stride, padding, dilation, act: opts.act ?? "none" };
  const sizes = { N, Cin, H, W, Cout, Ho, Wo, cinG, coutG, K: cinG * kh * kw };
  const bind = { X: x, Wt: w, Y: out, bias: opts.bias, R: opts.residual };
  if (conv2dPlan(rec.gpu.adapterClass) === "cpu") {
    const pixBlocks = Math.ceil((N * Ho * Wo) / CPU_TILE.pix / 64);
    const groups = [pixBlocks, Math.ceil(coutG / CPU_TILE.co), g.groups] as const;
    CONV2D_CPU.record(rec, { variant, uniforms: sizes, bind, groups });
    return out;
  }
  CONV2D.record(rec, {
    variant,
    uniforms: { ...sizes, pixTiles, coTiles },
    bind,
    groups: pixTiles * coTiles * g.groups,
  });
  return out;
}

/** The geometry constants of the backward kernels (the forward's, as WGSL). */
function geometryWgsl(v: Pick<Variant, "kh" | "kw" | "stride" | "padding" | "dilation">): string {
  return `
const KH = ${v.kh}u; const KW = ${v.kw}u;
const SH = ${v.stride[0]}; const SW = ${v.stride[1]};
const PH = ${v.padding[0]}; const PW = ${v.padding[1]};
const DH = ${v.dilation[0]}; const DW = ${v.dilation[1]};`;
}

/**
 * dX of a convolution (the transposed convolution of dY): one invocation per input element
 * `(n, ci, iy, ix)` sums `dY[n, co, oy, ox] · W[co, ci, ky, kx]` over its group's output channels
 * and the taps with `oy·s − p + ky·d = iy`; `R` (optional) is added.
 */
const CONV2D_DX = new Kernel({
  name: "conv2d_dx",
  uniforms: { ...SIZES, total: "u32" },
  storage: { dY: read(), Wt: read(), dX: readWrite(), R: optional(read()) },
  workgroupSize: [64],
  body: (v: Variant, has) => `
${geometryWgsl(v)}
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.total) { return; }
  let ix = i32(i % p.W);
  let iy = i32((i / p.W) % p.H);
  let ci = (i / (p.H * p.W)) % p.Cin;
  let n = i / (p.Cin * p.H * p.W);
  let g = ci / p.cinG;
  let hwo = p.Ho * p.Wo;
  var s = 0.0;
  for (var ky = 0u; ky < KH; ky++) {
    let ty = iy + PH - i32(ky) * DH;
    if (ty < 0 || ty % SH != 0 || u32(ty / SH) >= p.Ho) { continue; }
    for (var kx = 0u; kx < KW; kx++) {
      let tx = ix + PW - i32(kx) * DW;
      if (tx < 0 || tx % SW != 0 || u32(tx / SW) >= p.Wo) { continue; }
      let o = u32(ty / SH) * p.Wo + u32(tx / SW);
      for (var co = 0u; co < p.coutG; co++) {
        let c = g * p.coutG + co;
        let w = f32(Wt[((c * p.cinG + ci % p.cinG) * KH + ky) * KW + kx]);
        s = fma(f32(dY[(n * p.Cout + c) * hwo + o]), w, s);
      }
    }
  }
  ${has.R ? "s += f32(R[i]);" : ""}
  dX[i] = dX_t(s);
}`,
});

/**
 * dW of a convolution, accumulated (GPU adapters): one workgroup per weight element `(co, ci, ky, kx)` reduces
 * `dY[n, co, oy, ox] · X[n, ci, oy·s − p + ky·d, ox·s − p + kx·d]` over `(n, oy, ox)` in a fixed
 * order (deterministic).
 */
const CONV2D_DW = rowKernel({
  name: "conv2d_dw",
  uniforms: SIZES,
  storage: { dY: read(), X: read(), dW: readWrite() },
  workgroupSize: [64],
  body: (v: Variant) => `
${geometryWgsl(v)}
fn kernel(wg: vec3u, lid: vec3u) {
  let e = wg.x;
  let kx = e % KW;
  let ky = (e / KW) % KH;
  let ci = (e / (KH * KW)) % p.cinG;
  let c = e / (KH * KW * p.cinG);
  let xc = (c / p.coutG) * p.cinG + ci;
  let hwo = p.Ho * p.Wo;
  var s = 0.0;
  for (var q = lid.x; q < p.N * hwo; q += WG_X) {
    let n = q / hwo;
    let iy = i32((q % hwo) / p.Wo) * SH - PH + i32(ky) * DH;
    let ix = i32(q % p.Wo) * SW - PW + i32(kx) * DW;
    if (iy < 0 || iy >= i32(p.H) || ix < 0 || ix >= i32(p.W)) { continue; }
    let xv = f32(X[((n * p.Cin + xc) * p.H + u32(iy)) * p.W + u32(ix)]);
    s = fma(f32(dY[(n * p.Cout + c) * hwo + q % hwo]), xv, s);
  }
  let t = reduce(lid.x, s, false);
  if (lid.x == 0u) { dW[e] = dW_t(f32(dW[e]) + t); }
}`,
});

/**
 * dW of a convolution, accumulated, for CPU adapters (llvmpipe runs a workgroup as SIMD lanes, where
 * one workgroup per weight element made the SAT encoder's backward the slowest step). Per group, `dW[co, k] += Σ_(n, oy, ox) dY[n, co, oy, ox] ·
 * X̂[n, k, oy, ox]`, `k` = (ci, ky, kx), `X̂` the im2col view. One invocation per register tile of
 * 4 output channels × 4 values of `k`, summing over `(n, oy, ox)` in order: deterministic, no
 * atomics, no workgroup memory. Tiles past the edge clamp their loads and skip their stores.
 */
const CONV2D_DW_CPU = new Kernel({
  name: "conv2d_dw_cpu",
  uniforms: { ...SIZES, K: "u32", kTiles: "u32", coTiles: "u32", tiles: "u32" },
  storage: { dY: read(), X: read(), dW: readWrite() },
  workgroupSize: [64],
  body: (v: Variant) => `
${geometryWgsl(v)}
// X[n, ...] for the 4 columns at input pixel (iy, ix) [4], zero outside the image.
fn loadX(xb: vec4u, iy: vec4i, ix: vec4i) -> vec4f {
  let ok = (iy >= vec4i(0)) & (iy < vec4i(i32(p.H))) & (ix >= vec4i(0)) & (ix < vec4i(i32(p.W)));
  let i = (xb * p.H + vec4u(clamp(iy, vec4i(0), vec4i(i32(p.H) - 1)))) * p.W
    + vec4u(clamp(ix, vec4i(0), vec4i(i32(p.W) - 1)));
  let xv = vec4f(f32(X[i.x]), f32(X[i.y]), f32(X[i.z]), f32(X[i.w]));
  return select(vec4f(0.0), xv, ok);
}
fn kernel(wg: vec3u, lid: vec3u) {
  let t = wg.x * WG_X + lid.x;
  if (t >= p.tiles) { return; }
  let k0 = (t % p.kTiles) * 4u;
  let co0 = ((t / p.kTiles) % p.coTiles) * 4u;
  let g = t / (p.kTiles * p.coTiles);
  // the tile's 4 columns k = (ci, ky, kx) and 4 rows co (global channel), clamped
  let k = min(vec4u(k0) + vec4u(0u, 1u, 2u, 3u), vec4u(p.K - 1u));
  let xc = g * p.cinG + k / (KH * KW);
  let offY = vec4i((k / KW) % KH) * DH - PH;
  let offX = vec4i(k % KW) * DW - PW;
  let c = g * p.coutG + min(vec4u(co0) + vec4u(0u, 1u, 2u, 3u), vec4u(p.coutG - 1u));
  let hwo = p.Ho * p.Wo;
  var acc: array<vec4f, 4>; // acc[i][j]: row co0 + i, column k0 + j
  for (var n = 0u; n < p.N; n++) {
    let yb = (vec4u(n * p.Cout) + c) * hwo;
    let xb = vec4u(n * p.Cin) + xc;
    for (var oy = 0u; oy < p.Ho; oy++) {
      let iy = vec4i(i32(oy) * SH) + offY;
      for (var ox = 0u; ox < p.Wo; ox++) {
        let xv = loadX(xb, iy, vec4i(i32(ox) * SW) + offX);
        let o = oy * p.Wo + ox;
        acc[0] = fma(vec4f(f32(dY[yb.x + o])), xv, acc[0]);
        acc[1] = fma(vec4f(f32(dY[yb.y + o])), xv, acc[1]);
        acc[2] = fma(vec4f(f32(dY[yb.z + o])), xv, acc[2]);
        acc[3] = fma(vec4f(f32(dY[yb.w + o])), xv, acc[3]);
      }
    }
  }
  for (var i = 0u; i < 4u; i++) {
    if (co0 + i >= p.coutG) { break; }
    for (var j = 0u; j < 4u; j++) {
      if (k0 + j >= p.K) { break; }
      let e = (g * p.coutG + co0 + i) * p.K + k0 + j;
      dW[e] = dW_t(f32(dW[e]) + acc[i][j]);
    }
  }
}`,
});

/** db of a convolution, accumulated: one workgroup per output channel reduces dY over `(n, pixel)`. */
const CONV2D_DB = rowKernel({
  name: "conv2d_db",
  uniforms: { N: "u32", C: "u32", HW: "u32" },
  storage: { dY: read(), db: readWrite() },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let c = wg.x;
  var s = 0.0;
  for (var q = lid.x; q < p.N * p.HW; q += WG_X) {
    s += f32(dY[((q / p.HW) * p.C + c) * p.HW + q % p.HW]);
  }
  let t = reduce(lid.x, s, false);
  if (lid.x == 0u) { db[c] = db_t(f32(db[c]) + t); }
}`,
});

/**
 * Records dW: on CPU adapters {@link CONV2D_DW_CPU} (one invocation per 4 × 4 tile of each group's
 * `[coutG, K]`, each summing over every `(n, oy, ox)`), elsewhere {@link CONV2D_DW} (one workgroup
 * per weight element: a GPU has the lanes to split that sum).
 */
function recordDw(
  rec: Recorder,
  variant: Variant,
  sizes: Record<keyof typeof SIZES, number>,
  dy: Tensor,
  x: Tensor,
  dW: Tensor,
  groups: number,
): void {
  if (rec.gpu.adapterClass !== "cpu") {
    const bind = { dY: dy, X: x, dW };
    CONV2D_DW.record(rec, { variant, uniforms: sizes, bind, groups: dW.size });
    return;
  }
  const K = sizes.cinG * variant.kh * variant.kw;
  const kTiles = Math.ceil(K / 4), coTiles = Math.ceil(sizes.coutG / 4);
  const tiles = kTiles * coTiles * groups;
  CONV2D_DW_CPU.record(rec, {
    variant,
    uniforms: { ...sizes, K, kTiles, coTiles, tiles },
    bind: { dY: dy, X: x, dW },
    groups: Math.ceil(tiles / 64),
  });
}

/** Where {@link conv2dBackward} accumulates; an absent one (a frozen parameter) is skipped. */
export interface Conv2dGrads {
  /** `[Cout, Cin/groups, kh, kw]`, f32. */
  dW?: Tensor;
  /** `[Cout]`, f32. */
  db?: Tensor;
}

/** Options of {@link conv2dBackward}: the forward's geometry, and what to do with dX. */
export interface Conv2dBackwardOptions
  extends Pick<Conv2dOptions, "stride" | "padding" | "dilation" | "groups"> {
  /** `[N, Cin, H, W]` added to dX (a gradient arriving by another path). */
  residual?: Tensor;
  /** Skip dX (the input needs no gradient); returns undefined. */
  noDx?: boolean;
}

/**
 * Backward of {@link conv2d} without its activation and residual (take their backward first):
 * input `x [N, Cin, H, W]`, weight `w`, output gradient `dy [N, Cout, Ho, Wo]`. Accumulates dW and
 * db into `grads`; returns `dX (+ residual)` `[N, Cin, H, W]` unless `noDx`. No atomics: the same
 * inputs give the same bits.
 */
export function conv2dBackward(
  rec: Recorder,
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  grads: Conv2dGrads,
  opts: Conv2dBackwardOptions = {},
): Tensor | undefined {
  const { stride: s, padding, dilation, groups } = opts;
  const g = conv2dGeometry(x, w, { stride: s, padding, dilation, groups });
  const { N, Cin, H, W, Cout, Ho, Wo, kh, kw, stride } = g;
  const want = (name: string, t: Tensor | undefined, size: number) => {
    if (t && (t.size !== size || t.dtype !== "f32")) {
      throw bad(`${name} is ${t.dtype} [${t.shape}], want f32 of ${size} values`);
    }
  };
  want("dy", dy, N * Cout * Ho * Wo);
  want("dW", grads.dW, w.size);
  want("db", grads.db, Cout);
  want("residual", opts.residual, x.size);
  const variant = {
    kh,
    kw,
    stride,
    padding: g.padding,
    dilation: g.dilation,
    act: "none" as const,
  };
  const sizes = { N, Cin, H, W, Cout, Ho, Wo, cinG: Cin / g.groups, coutG: Cout / g.groups };
  if (grads.dW) recordDw(rec, variant, sizes, dy, x, grads.dW, g.groups);
  if (grads.db) {
    CONV2D_DB.record(rec, {
      uniforms: { N, C: Cout, HW: Ho * Wo },
      bind: { dY: dy, db: grads.db },
      groups: Cout,
    });
  }
  if (opts.noDx) return undefined;
  const dx = rec.output(x.shape);
  CONV2D_DX.record(rec, {
    variant,
    uniforms: { ...sizes, total: x.size },
    bind: { dY: dy, Wt: w, dX: dx, R: opts.residual },
    groups: Math.ceil(x.size / 64),
  });
  return dx;
}
