/**
 * Spatial pooling over NCHW tensors with PyTorch semantics: `maxPool2d` (padding never wins:
 * it is −∞; floor or ceil output size) and `adaptiveAvgPool2d` (window `i` covers
 * `[⌊i·In/Out⌋, ⌈(i+1)·In/Out⌉)`, so windows overlap when Out does not divide In), which can
 * write its output channels-last, `[N, Ho·Wo, C]`, as attention over pixels wants it.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type Pair, pair } from "./conv2d.ts";

/** Options of {@link maxPool2d}. */
export interface MaxPoolOptions {
  kernel: Pair;
  /** Default: the kernel size. */
  stride?: Pair;
  /** −∞ padding on each side, at most half the dilated kernel; default 0. */
  padding?: Pair;
  /** Default 1. */
  dilation?: Pair;
  /** Round the output size up (a window must still start inside the input or left padding). */
  ceilMode?: boolean;
  /** Write into this tensor instead of a new one. */
  out?: Tensor;
}

/** Options of {@link adaptiveAvgPool2d}. */
export interface AdaptivePoolOptions {
  /** Write `[N, Ho·Wo, C]` (pixels, then channels) instead of `[N, C, Ho, Wo]`. */
  channelsLast?: boolean;
  /** Write into this tensor instead of a new one. */
  out?: Tensor;
}

/** Pooling reads `X` `[N, C, H, W]` and writes output element `i < total` of `Y`. */
const POOL_IO = { storage: { X: read(), Y: readWrite() }, workgroupSize: [256] } as const;

const MAX_POOL = new Kernel({
  name: "max_pool2d",
  uniforms: {
    total: "u32",
    H: "u32",
    W: "u32",
    Ho: "u32",
    Wo: "u32",
    KH: "u32",
    KW: "u32",
    SH: "u32",
    SW: "u32",
    PH: "i32",
    PW: "i32",
    DH: "u32",
    DW: "u32",
  },
  ...POOL_IO,
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.total) { return; }
  let ox = i % p.Wo;
  let oy = (i / p.Wo) % p.Ho;
  let plane = i / (p.Wo * p.Ho);
  let base = plane * p.H * p.W;
  var m = -3.40282347e38;
  var seen = false;
  for (var ky = 0u; ky < p.KH; ky++) {
    let iy = i32(oy * p.SH) - p.PH + i32(ky * p.DH);
    if (iy < 0 || iy >= i32(p.H)) { continue; }
    for (var kx = 0u; kx < p.KW; kx++) {
      let ix = i32(ox * p.SW) - p.PW + i32(kx * p.DW);
      if (ix < 0 || ix >= i32(p.W)) { continue; }
      let v = f32(X[base + u32(iy) * p.W + u32(ix)]);
      if (!seen || v > m) { m = v; seen = true; }
    }
  }
  Y[i] = Y_t(m);
}`,
});

const ADAPTIVE_AVG_POOL = new Kernel({
  name: "adaptive_avg_pool2d",
  uniforms: { total: "u32", C: "u32", H: "u32", W: "u32", Ho: "u32", Wo: "u32" },
  ...POOL_IO,
  body: (v: { channelsLast: boolean }) => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.total) { return; }
  ${
    v.channelsLast
      ? `// i walks [N, Ho, Wo, C]: consecutive threads write consecutive channels
  let c = i % p.C;
  let ox = (i / p.C) % p.Wo;
  let oy = (i / (p.C * p.Wo)) % p.Ho;
  let n = i / (p.C * p.Wo * p.Ho);`
      : `let ox = i % p.Wo;
  let oy = (i / p.Wo) % p.Ho;
  let c = (i / (p.Wo * p.Ho)) % p.C;
  let n = i / (p.Wo * p.Ho * p.C);`
  }
  let y0 = oy * p.H / p.Ho;
  let y1 = ((oy + 1u) * p.H + p.Ho - 1u) / p.Ho;
  let x0 = ox * p.W / p.Wo;
  let x1 = ((ox + 1u) * p.W + p.Wo - 1u) / p.Wo;
  let base = (n * p.C + c) * p.H * p.W;
  var s = 0.0;
  for (var y = y0; y < y1; y++) {
    for (var x = x0; x < x1; x++) { s += f32(X[base + y * p.W + x]); }
  }
  Y[i] = Y_t(s / f32((y1 - y0) * (x1 - x0)));
}`,
});

function check4d(op: string, x: Tensor): [number, number, number, number] {
  if (x.shape.length !== 4 || x.dtype !== "f32") {
    throw new WebcapError(
      "BAD_SHAPE",
      `${op} wants an f32 [N, C, H, W] tensor, got ${x.dtype} [${x.shape}]`,
    );
  }
  return x.shape as unknown as [number, number, number, number];
}

function checkOut(op: string, out: Tensor | undefined, shape: number[]): void {
  if (out && out.size !== shape.reduce((a, b) => a * b)) {
    throw new WebcapError("BAD_SHAPE", `${op}: out [${out.shape}] is not [${shape}]`);
  }
}

/** PyTorch's pooling output length along one axis. */
export function pooledSize(
  size: number,
  k: number,
  s: number,
  p: number,
  d: number,
  ceil: boolean,
): number {
  const span = size + 2 * p - d * (k - 1) - 1;
  let out = Math.floor((ceil ? span + s - 1 : span) / s) + 1;
  if (ceil && (out - 1) * s >= size + p) out--;
  return out;
}

/** Record max pooling: x `[N, C, H, W]` → `[N, C, Ho, Wo]`. */
export function maxPool2d(rec: Recorder, x: Tensor, opts: MaxPoolOptions): Tensor {
  const [N, C, H, W] = check4d("maxPool2d", x);
  const k = pair(opts.kernel), s = pair(opts.stride ?? opts.kernel);
  const pd = pair(opts.padding ?? 0), d = pair(opts.dilation ?? 1);
  for (const a of [0, 1]) {
    if (
      !(k[a] >= 1 && s[a] >= 1 && d[a] >= 1 && pd[a] >= 0 && pd[a] <= (d[a] * (k[a] - 1) + 1) / 2)
    ) {
      throw new WebcapError(
        "BAD_OPTION",
        `maxPool2d: kernel ${k}, stride ${s}, dilation ${d} must be ≥ 1 and padding ${pd} at most half the dilated kernel`,
      );
    }
  }
  const Ho = pooledSize(H, k[0], s[0], pd[0], d[0], !!opts.ceilMode);
  const Wo = pooledSize(W, k[1], s[1], pd[1], d[1], !!opts.ceilMode);
  if (Ho < 1 || Wo < 1) {
    throw new WebcapError("BAD_SHAPE", `maxPool2d: kernel ${k} does not fit input [${x.shape}]`);
  }
  checkOut("maxPool2d", opts.out, [N, C, Ho, Wo]);
  const out = opts.out ?? rec.output([N, C, Ho, Wo]);
  const total = N * C * Ho * Wo;
  MAX_POOL.record(rec, {
    uniforms: {
      total,
      H,
      W,
      Ho,
      Wo,
      KH: k[0],
      KW: k[1],
      SH: s[0],
      SW: s[1],
      PH: pd[0],
      PW: pd[1],
      DH: d[0],
      DW: d[1],
    },
    bind: { X: x, Y: out },
    groups: Math.ceil(total / 256),
  });
  return out;
}

/**
 * Record adaptive average pooling: x `[N, C, H, W]` → `[N, C, Ho, Wo]`, or `[N, Ho·Wo, C]` with
 * `channelsLast`.
 */
export function adaptiveAvgPool2d(
  rec: Recorder,
  x: Tensor,
  size: Pair,
  opts: AdaptivePoolOptions = {},
): Tensor {
  const [N, C, H, W] = check4d("adaptiveAvgPool2d", x);
  const [Ho, Wo] = pair(size);
  if (!(Number.isInteger(Ho) && Number.isInteger(Wo) && Ho >= 1 && Wo >= 1)) {
    throw new WebcapError(
      "BAD_OPTION",
      `adaptiveAvgPool2d: output size ${size} must be positive integers`,
    );
  }
  const shape = opts.channelsLast ? [N, Ho * Wo, C] : [N, C, Ho, Wo];
  checkOut("adaptiveAvgPool2d", opts.out, shape);
  const out = opts.out ?? rec.output(shape);
  const total = N * C * Ho * Wo;
  ADAPTIVE_AVG_POOL.record(rec, {
    variant: { channelsLast: !!opts.channelsLast },
    uniforms: { total, C, H, W, Ho, Wo },
    bind: { X: x, Y: out },
    groups: Math.ceil(total / 256),
  });
  return out;
}

// ---- backward ----

/**
 * Backward of {@link ADAPTIVE_AVG_POOL}, one thread per input element (a gather, no atomics):
 * `dX[n, c, y, x] = Σ_{cells (oy, ox) whose window holds (y, x)} dY[cell] / |window|`.
 */
const ADAPTIVE_AVG_POOL_BACKWARD = new Kernel({
  name: "adaptive_avg_pool2d_backward",
  uniforms: { total: "u32", C: "u32", H: "u32", W: "u32", Ho: "u32", Wo: "u32" },
  storage: { dY: read(), dX: readWrite() },
  workgroupSize: [256],
  body: (v: { channelsLast: boolean }) => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.total) { return; }
  let x = i % p.W;
  let y = (i / p.W) % p.H;
  let c = (i / (p.W * p.H)) % p.C;
  let n = i / (p.W * p.H * p.C);
  var s = 0.0;
  for (var oy = y * p.Ho / p.H; oy < p.Ho; oy++) {
    let y0 = oy * p.H / p.Ho;
    let y1 = ((oy + 1u) * p.H + p.Ho - 1u) / p.Ho;
    if (y0 > y) { break; }
    if (y >= y1) { continue; }
    for (var ox = x * p.Wo / p.W; ox < p.Wo; ox++) {
      let x0 = ox * p.W / p.Wo;
      let x1 = ((ox + 1u) * p.W + p.Wo - 1u) / p.Wo;
      if (x0 > x) { break; }
      if (x >= x1) { continue; }
      let o = ${
    v.channelsLast
      ? "((n * p.Ho + oy) * p.Wo + ox) * p.C + c"
      : "((n * p.C + c) * p.Ho + oy) * p.Wo + ox"
  };
      s += f32(dY[o]) / f32((y1 - y0) * (x1 - x0));
    }
  }
  dX[i] = dX_t(s);
}`,
});

/**
 * Backward of {@link adaptiveAvgPool2d}: output gradient `dy` (`[N, C, Ho, Wo]`, or
 * `[N, Ho·Wo, C]` with `channelsLast`) → dX `[N, C, H, W]` of the input's `shape`.
 */
export function adaptiveAvgPool2dBackward(
  rec: Recorder,
  dy: Tensor,
  shape: readonly number[],
  size: Pair,
  opts: Pick<AdaptivePoolOptions, "channelsLast"> = {},
): Tensor {
  const [Ho, Wo] = pair(size);
  const [N, C, H, W] = shape;
  if (shape.length !== 4 || dy.dtype !== "f32" || dy.size !== N * C * Ho * Wo) {
    throw new WebcapError(
      "BAD_SHAPE",
      `adaptiveAvgPool2dBackward: dY ${dy.dtype} [${dy.shape}] is not the f32 pooled [${shape}] ` +
        `to ${Ho}×${Wo}`,
    );
  }
  const dx = rec.output([N, C, H, W]);
  ADAPTIVE_AVG_POOL_BACKWARD.record(rec, {
    variant: { channelsLast: !!opts.channelsLast },
    uniforms: { total: dx.size, C, H, W, Ho, Wo },
    bind: { dY: dy, dX: dx },
    groups: Math.ceil(dx.size / 256),
  });
  return dx;
}
