/** Float64 CPU references shared by the kernel tests. */
import type { Activation } from "../../src/shaders/activations.ts";
import { pair } from "../../src/shaders/conv2d.ts";

/** erf by its Taylor/continued series in float64 (|error| < 1e-14 for the ranges tested). */
export function erf(x: number): number {
  const z = Math.abs(x);
  let r: number;
  if (z < 3) {
    let term = z, sum = z;
    for (let n = 1; n < 200; n++) {
      term *= -z * z / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // continued fraction for erfc
    let f = 0;
    for (let n = 60; n >= 1; n--) f = (n / 2) / (z + f);
    r = 1 - Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + f);
  }
  return x < 0 ? -r : r;
}

/** The activation in float64. */
export function actRef(act: Activation, x: number): number {
  switch (act) {
    case "none":
      return x;
    case "gelu":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "gelu_new":
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case "quick_gelu":
      return x / (1 + Math.exp(-1.702 * x));
    case "relu":
      return Math.max(x, 0);
    case "tanh":
      return Math.tanh(x);
    case "sigmoid":
      return 1 / (1 + Math.exp(-x));
  }
}

export { f32ToF16 as f32ToF16Bits } from "../../src/nn/params.ts";
export { f16ToF32 as f16BitsToF32 } from "../../src/io/dtype.ts";

/** ∂/∂x of `f` at `x` by central differences in float64. */
export function fd(f: (x: Float64Array) => number, x: ArrayLike<number>, h = 1e-5): Float64Array {
  const p = Float64Array.from(x), g = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const v = p[i];
    p[i] = v + h;
    const a = f(p);
    p[i] = v - h;
    const b = f(p);
    p[i] = v;
    g[i] = (a - b) / (2 * h);
  }
  return g;
}

/** The high 32 bits of the 64-bit product of two u32 (exact: 16-bit halves). */
function mulhi32(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const lh = al * bh, hl = ah * bl;
  const mid = ((al * bl) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (ah * bh + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/** Philox4x32-10 (Salmon et al., Random123) of `counter` under `key`: four u32 words. */
export function philox4x32(counter: readonly number[], key: readonly number[]): number[] {
  let [c0, c1, c2, c3] = counter.map((v) => v >>> 0);
  let [k0, k1] = key.map((v) => v >>> 0);
  for (let r = 0; r < 10; r++) {
    const lo0 = Math.imul(0xD2511F53, c0) >>> 0, hi0 = mulhi32(0xD2511F53, c0);
    const lo1 = Math.imul(0xCD9E8D57, c2) >>> 0, hi1 = mulhi32(0xCD9E8D57, c2);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + 0x9E3779B9) >>> 0;
    k1 = (k1 + 0xBB67AE85) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/** The geometry, residual and activation of {@link convRef}. */
export interface ConvRefOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
  act?: Activation;
}

/**
 * Every tap of a convolution, PyTorch semantics: calls `tap(o, xi, wi)` for each output index `o`
 * (into `[N, Cout, Ho, Wo]`), input index `xi` and weight index `wi` that meet inside the image.
 */
function convTaps(
  xs: number[],
  ws: number[],
  c: ConvRefOptions,
  tap: (o: number, xi: number, wi: number) => void,
): void {
  const [N, Cin, H, W] = xs;
  const [Cout, cinG, kh, kw] = ws;
  const [sh, sw] = pair(c.stride ?? 1),
    [ph, pw] = pair(c.padding ?? 0),
    [dh, dw] = pair(c.dilation ?? 1);
  const coutG = Cout / (c.groups ?? 1);
  const [, , Ho, Wo] = convShape(xs, ws, c);
  for (let n = 0; n < N; n++) {
    for (let co = 0; co < Cout; co++) {
      const g = Math.floor(co / coutG);
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          const o = ((n * Cout + co) * Ho + oy) * Wo + ox;
          for (let ci = 0; ci < cinG; ci++) {
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * sh - ph + ky * dh;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * sw - pw + kx * dw;
                if (ix < 0 || ix >= W) continue;
                tap(
                  o,
                  ((n * Cin + g * cinG + ci) * H + iy) * W + ix,
                  ((co * cinG + ci) * kh + ky) * kw + kx,
                );
              }
            }
          }
        }
      }
    }
  }
}

/** `[N, Cout, Ho, Wo]` of a convolution. */
function convShape(xs: number[], ws: number[], c: ConvRefOptions): number[] {
  const [sh, sw] = pair(c.stride ?? 1),
    [ph, pw] = pair(c.padding ?? 0),
    [dh, dw] = pair(c.dilation ?? 1);
  const Ho = Math.floor((xs[2] + 2 * ph - dh * (ws[2] - 1) - 1) / sh) + 1;
  const Wo = Math.floor((xs[3] + 2 * pw - dw * (ws[3] - 1) - 1) / sw) + 1;
  return [xs[0], ws[0], Ho, Wo];
}

/** Direct float64 convolution, PyTorch semantics. */
export function convRef(
  x: ArrayLike<number>,
  xs: number[],
  w: ArrayLike<number>,
  ws: number[],
  c: ConvRefOptions,
  bias?: ArrayLike<number>,
  res?: ArrayLike<number>,
): { out: Float64Array; shape: number[] } {
  const shape = convShape(xs, ws, c), [, Cout, Ho, Wo] = shape;
  const out = new Float64Array(shape.reduce((a, b) => a * b));
  convTaps(xs, ws, c, (o, xi, wi) => out[o] += x[xi] * w[wi]);
  for (let o = 0; o < out.length; o++) {
    const s = out[o] + (bias ? bias[Math.floor(o / (Ho * Wo)) % Cout] : 0) + (res ? res[o] : 0);
    out[o] = actRef(c.act ?? "none", s);
  }
  return { out, shape };
}

/** Float64 weight gradient of a convolution: `Σ dy[o] · x[xi]` over the taps of each weight. */
export function convDwRef(
  x: ArrayLike<number>,
  xs: number[],
  dy: ArrayLike<number>,
  ws: number[],
  c: ConvRefOptions,
): Float64Array {
  const dw = new Float64Array(ws.reduce((a, b) => a * b));
  convTaps(xs, ws, c, (o, xi, wi) => dw[wi] += dy[o] * x[xi]);
  return dw;
}
