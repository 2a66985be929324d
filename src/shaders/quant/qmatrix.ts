/**
 * Quantized matrices on the GPU and the WGSL that reads them: what `matmul` and `embedding` bind
 * in place of a float weight. A {@link QuantMatrix} is out×in (`[N, K]`, one row per output
 * channel), grouped along K:
 *
 * - `q8`: one signed byte per element, 4 to a u32 word in element order; one group per row
 *   (`groupSize = K`), value = `q · scale` (symmetric).
 * - `q4`: one unsigned nibble per element, 8 to a u32 word, the even element in the low nibble;
 *   groups of `groupSize` along K, value = `q · scale + offset`.
 *
 * Scales are one u32 per group (`[N, K / groupSize]`), the f16 scale in the low half and the f16
 * offset (0 for q8) in the high half, read with `unpack2x16float`: no `shader-f16` needed.
 * @module
 */
import { WebcapError } from "../../errors.ts";
import { type Binding, tensorWindow } from "../../gpu/recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";

/** The quantization schemes. */
export type QuantScheme = "q8" | "q4";

/** Bits per element of each scheme. */
export const QUANT_BITS: Readonly<Record<QuantScheme, number>> = { q8: 8, q4: 4 };

/** A quantized out×in matrix on the GPU (see the module notes for the packing). */
export interface QuantMatrix {
  /** How the elements are packed. */
  readonly scheme: QuantScheme;
  /** `[N, K]`: output channels × input dimension. */
  readonly shape: readonly [number, number];
  /** Elements of K per scale (K itself for q8). */
  readonly groupSize: number;
  /** u32 `[⌈N·K·bits / 32⌉]`: the packed elements, row-major. */
  readonly data: Tensor;
  /** u32 `[N · K / groupSize]`: per group, f16 scale (low half) and f16 offset (high half). */
  readonly scales: Tensor;
}

/** A weight a kernel reads: a float tensor (f32 or f16) or a quantized matrix. */
export type Weight = Tensor | QuantMatrix;

/** Whether `w` is quantized. */
export function isQuant(w: Weight): w is QuantMatrix {
  return "scheme" in w;
}

/** `w` as a float tensor; a quantized one is refused with BAD_DTYPE naming `what`. */
export function floatWeight(w: Weight, what: string): Tensor {
  if (!isQuant(w)) return w;
  throw new WebcapError(
    "BAD_DTYPE",
    `${what}: the weight is quantized (${w.scheme}); this needs float weights: load with dtype f32`,
  );
}

/**
 * WGSL `fn <fn>(n: u32, k: u32) -> f32`: element `[n, k]` of a quantized matrix bound as
 * `<data>` (u32 words) and `<scales>` (u32 per group), `K` and `G` the WGSL expressions of its
 * input dimension and group size.
 */
export function dequantWgsl(
  scheme: QuantScheme,
  names: { fn: string; data: string; scales: string; K: string; G: string },
): string {
  const { fn, data, scales, K, G } = names;
  const q = scheme === "q8"
    ? `f32(extractBits(bitcast<i32>(${data}[i / 4u]), 8u * (i % 4u), 8u))`
    : `f32(extractBits(${data}[i / 8u], 4u * (i % 8u), 4u))`;
  return `
fn ${fn}(n: u32, k: u32) -> f32 {
  let i = n * ${K} + k;
  let so = unpack2x16float(${scales}[n * (${K} / ${G}) + k / ${G}]);
  return ${q} * so.x + so.y;
}
`;
}

/** The bindings of rows `[n0, n0 + n)` of a quantized `[N, K]` matrix. */
export function quantRows(
  q: QuantMatrix,
  n0: number,
  n: number,
): { data: Binding; scales: Binding } {
  const [N, K] = q.shape;
  if (n0 === 0 && n === N) return { data: q.data, scales: q.scales };
  const words = (rows: number) => (rows * K * QUANT_BITS[q.scheme]) / 32;
  const groups = (rows: number) => (rows * K) / q.groupSize;
  return {
    data: tensorWindow(q.data, words(n0), Math.ceil(words(n))),
    scales: tensorWindow(q.scales, groups(n0), groups(n)),
  };
}
