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
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { dtypeBytes, type Tensor } from "../gpu/tensor.ts";
import { type Activation, activationWgsl } from "./activations.ts";
import { stageRowsWgsl, TILE_WGSL } from "./tile_wgsl.ts";

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

const CONV2D = new Kernel({
  name: "conv2d",
  uniforms: {
    N: "u32",
    Cin: "u32",
    H: "u32",
    W: "u32",
    Cout: "u32",
    Ho: "u32",
    Wo: "u32",
    cinG: "u32",
    coutG: "u32",
    K: "u32",
    pixTiles: "u32",
    coTiles: "u32",
  },
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
  CONV2D.record(rec, {
    variant: { kh, kw, stride, padding, dilation, act: opts.act ?? "none" },
    uniforms: { N, Cin, H, W, Cout, Ho, Wo, cinG, coutG, K: cinG * kh * kw, pixTiles, coTiles },
    bind: { X: x, Wt: w, Y: out, bias: opts.bias, R: opts.residual },
    groups: pixTiles * coTiles * g.groups,
  });
  return out;
}
