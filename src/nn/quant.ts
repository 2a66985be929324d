/**
 * Weight-only quantization on the host: an out×in f32 matrix `[N, K]` to q8 (per output channel,
 * symmetric, f16 scale) or q4 (groups of `groupSize` along K, f16 scale and offset), back to f32
 * (the parity floor), and onto the GPU as a {@link QuantMatrix}. The packed bytes are the
 * safetensors layout of a quantized model folder (README, "Quantized model folders"):
 *
 * - q8: `q` is `[N, K]` signed bytes; `scale` `[N]` f16; value = `q · scale`.
 * - q4: `q` is `[N, K / 2]` bytes, element `2j` in the low nibble of byte `j`, `2j + 1` in the
 *   high one; `scale` and `offset` `[N, K / groupSize]` f16; value = `q · scale + offset`.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { f16ToF32 } from "../io/dtype.ts";
import type { QuantMatrix, QuantScheme } from "../shaders/quant/qmatrix.ts";
import type { WeightStore } from "../io/weights.ts";
import type { TensorToWrite } from "../io/safetensors_write.ts";
import { f32ToF16, type Param, QUANT_SUFFIX } from "./params.ts";

/** Group size of q4 when none is given. */
export const DEFAULT_GROUP_SIZE = 32;

/** A quantized `[N, K]` matrix on the host, in the file layout. */
export interface HostQuant {
  scheme: QuantScheme;
  /** `[N, K]`: output channels × input dimension. */
  shape: [number, number];
  /** Elements of K per scale (K for q8). */
  groupSize: number;
  /** Packed elements: q8 `[N, K]` int8 bits, q4 `[N, K / 2]` nibble pairs. */
  q: Uint8Array;
  /** f16 bits, one per group (`[N · K / groupSize]`). */
  scale: Uint16Array;
  /** f16 bits, one per group (q4); all zero for q8. */
  offset: Uint16Array;
}

/**
 * Refuse a q4 group size that is not an even integer dividing `K` (no padding: a group never
 * straddles two rows). BAD_OPTION naming the tensor.
 */
export function checkGroupSize(groupSize: number, K: number, name: string): void {
  if (Number.isInteger(groupSize) && groupSize >= 2 && groupSize % 2 === 0 && K % groupSize === 0) {
    return;
  }
  throw new WebcapError(
    "BAD_OPTION",
    `q4 group size ${groupSize} does not divide the input dimension ${K} of "${name}" into ` +
      `even groups; choose an even group size that divides ${K} (groups are never padded)`,
  );
}

/** `[rows, cols]` row-major → `[cols, rows]`. */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  }
  return out;
}

/** One f32 value through f16 and back. */
function toF16(v: number): [number, number] {
  const bits = f32ToF16(Float32Array.of(v))[0];
  return [bits, f16ToF32(Uint16Array.of(bits))[0]];
}

/** Scale bits of `max|w|` over 127 (q8), or of `(max - min) / 15` with offset `min` (q4). */
function groupParams(
  w: Float32Array,
  scheme: QuantScheme,
  name: string,
): { scale: [number, number]; offset: [number, number] } {
  let lo = Infinity, hi = -Infinity;
  for (const v of w) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const scale = toF16(scheme === "q8" ? Math.max(-lo, hi) / 127 : (hi - lo) / 15);
  if (!Number.isFinite(scale[1])) {
    throw new WebcapError(
      "BAD_WEIGHTS",
      `tensor "${name}": values up to ${Math.max(-lo, hi)} give a scale beyond the f16 range`,
    );
  }
  return { scale, offset: scheme === "q8" ? [0, 0] : toF16(lo) };
}

/** Quantize the out×in matrix `w [N, K]` (already checked finite). */
export function quantize(
  w: Float32Array,
  shape: readonly [number, number],
  scheme: QuantScheme,
  groupSize: number,
  name: string,
): HostQuant {
  const [N, K] = shape;
  const G = scheme === "q8" ? K : groupSize;
  if (scheme === "q4") checkGroupSize(G, K, name);
  const groups = (N * K) / G;
  const q = new Uint8Array(scheme === "q8" ? N * K : (N * K) / 2);
  const scale = new Uint16Array(groups), offset = new Uint16Array(groups);
  const [qmin, qmax] = scheme === "q8" ? [-127, 127] : [0, 15];
  for (let g = 0; g < groups; g++) {
    const part = w.subarray(g * G, (g + 1) * G);
    const p = groupParams(part, scheme, name);
    [scale[g], offset[g]] = [p.scale[0], p.offset[0]];
    const [s, o] = [p.scale[1], p.offset[1]];
    part.forEach((v, j) => {
      const i = g * G + j;
      const x = s === 0 ? 0 : Math.min(qmax, Math.max(qmin, Math.round((v - o) / s)));
      if (scheme === "q8") q[i] = x & 0xff;
      else q[i >> 1] |= x << (4 * (i & 1));
    });
  }
  return { scheme, shape: [N, K], groupSize: G, q, scale, offset };
}

/** The f32 values `[N, K]` a quantized matrix stands for. */
export function dequantize(h: HostQuant): Float32Array {
  const [N, K] = h.shape;
  const scale = f16ToF32(h.scale), offset = f16ToF32(h.offset);
  const out = new Float32Array(N * K);
  for (let i = 0; i < out.length; i++) {
    const q = h.scheme === "q8" ? (h.q[i] << 24) >> 24 : (h.q[i >> 1] >> (4 * (i & 1))) & 15;
    const g = Math.floor(i / h.groupSize);
    out[i] = q * scale[g] + offset[g];
  }
  return out;
}

/**
 * The f32 values a tensor of the checkpoint stands for once quantized as `p` holds it (`values`
 * in the checkpoint's shape and layout): the weights of the parity floor of a q8 / q4 run.
 */
export function quantizedValues(values: Float32Array, p: Param): Float32Array {
  const h = hostQuantOf(values, p);
  const back = dequantize(h);
  return p.transposed ? transpose(back, h.shape[0], h.shape[1]) : back;
}

/** Quantized matrices of equal K stacked on N (q, k, v as one `[Σ N, K]`). */
export function stackQuant(parts: readonly HostQuant[]): HostQuant {
  const cat = <T extends Uint8Array | Uint16Array>(arrays: T[], make: (n: number) => T): T => {
    const out = make(arrays.reduce((s, a) => s + a.length, 0));
    let o = 0;
    for (const a of arrays) {
      out.set(a, o);
      o += a.length;
    }
    return out;
  };
  const [first] = parts;
  return {
    ...first,
    shape: [parts.reduce((s, p) => s + p.shape[0], 0), first.shape[1]],
    q: cat(parts.map((p) => p.q), (n) => new Uint8Array(n)),
    scale: cat(parts.map((p) => p.scale), (n) => new Uint16Array(n)),
    offset: cat(parts.map((p) => p.offset), (n) => new Uint16Array(n)),
  };
}

/** Upload as a {@link QuantMatrix}: packed bytes as u32 words, scale and offset as one u32. */
export function uploadQuant(gpu: Gpu, h: HostQuant, label: string): QuantMatrix {
  const words = new Uint32Array(Math.ceil(h.q.length / 4));
  new Uint8Array(words.buffer).set(h.q);
  const so = new Uint32Array(h.scale.length);
  for (let g = 0; g < so.length; g++) so[g] = h.scale[g] | (h.offset[g] << 16);
  return {
    scheme: h.scheme,
    shape: h.shape,
    groupSize: h.groupSize,
    data: uploadTensor(gpu, words, [words.length], "u32", `${label} (${h.scheme})`),
    scales: uploadTensor(gpu, so, [so.length], "u32", `${label} (${h.scheme} scales)`),
  };
}

/** Keys of the `__metadata__` of a quantized model folder's safetensors. */
export const QUANT_METADATA = {
  scheme: "webcap.quantization",
  groupSize: "webcap.group_size",
  originalDtype: "webcap.original_dtype",
} as const;

/**
 * The tensors of `store` as a quantized model folder holds them, for `writeSafetensors`: each
 * parameter quantized in `params` as `<name>` (q8: I8 `[N, K]`, q4: U8 `[N, K / 2]`, out×in),
 * `<name>.qscale` (F16, q8 `[N]`, q4 `[N, K / G]`) and, q4, `<name>.qoffset` (F16 `[N, K / G]`);
 * every other tensor as stored. Each matrix is quantized when written, one at a time.
 */
export function quantizedTensors(store: WeightStore, params: readonly Param[]): TensorToWrite[] {
  const quantized = new Map(params.filter((p) => p.quant).map((p) => [p.name, p]));
  const pending = new Map<string, Promise<HostQuant>>();
  const host = (p: Param) => {
    const h = pending.get(p.name) ??
      store.readF32(p.name).then((v) => hostQuantOf(v, p));
    pending.set(p.name, h);
    return h;
  };
  const f16 = (a: Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return store.names().flatMap((name): TensorToWrite[] => {
    const p = quantized.get(name);
    const info = store.info(name);
    if (!p) return [{ name, dtype: info.dtype, shape: info.shape, read: () => store.read(name) }];
    const q = p.quant!;
    const [N, K] = [info.shape.reduce((a, b) => a * b, 1) / q.shape[1], q.shape[1]];
    const groups = q.scheme === "q8" ? [N] : [N, K / q.groupSize];
    const last = async (h: Promise<HostQuant>) => {
      pending.delete(name);
      return await h;
    };
    const parts: TensorToWrite[] = [
      {
        name,
        dtype: q.scheme === "q8" ? "I8" : "U8",
        shape: q.scheme === "q8" ? [N, K] : [N, K / 2],
        read: async () => (await host(p)).q,
      },
      {
        name: name + QUANT_SUFFIX.scale,
        dtype: "F16",
        shape: groups,
        read: async () => f16((await (q.scheme === "q8" ? last(host(p)) : host(p))).scale),
      },
    ];
    if (q.scheme === "q4") {
      parts.push({
        name: name + QUANT_SUFFIX.offset,
        dtype: "F16",
        shape: groups,
        read: async () => f16((await last(host(p))).offset),
      });
    }
    return parts;
  });
}

/** `values` of parameter `p` (checkpoint layout) quantized as `p` is held. */
function hostQuantOf(values: Float32Array, p: Param): HostQuant {
  const q = p.quant!;
  const K = q.shape[1], N = values.length / K;
  const w = p.transposed ? transpose(values, K, N) : values;
  return quantize(w, [N, K], q.scheme, q.groupSize, p.name);
}
