/**
 * Weight-only quantization on the host: an out×in f32 matrix `[N, K]` to q8 (per output channel,
 * symmetric, f16 scale) or q4 (groups of `groupSize` along K, f16 scale and offset), back to f32
 * (the parity floor), and onto the GPU as a {@link QuantMatrix}. The packed bytes are the
 * safetensors layout of a quantized model folder (README, "Quantized model folders"):
 *
 * - q8: `q` is `[N, K]` signed bytes; `scale` `[N]` f16; value = `q · scale`.
 * - q4: `q` is `[N, K / 2]` bytes, element `2j` in the low nibble of byte `j`, `2j + 1` in the
 *   high one; `scale` and `offset` `[N, K / groupSize]` f16; value = `q · scale + offset`.
 *
 * In a file every other float tensor (norms, biases, position tables) is F16
 * ({@link quantizedEntries}); a model loaded from it holds them in f32.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { f16ToF32 } from "../io/dtype.ts";
import type { QuantMatrix, QuantScheme } from "../shaders/quant/qmatrix.ts";
import type { TensorInfo, WeightStore } from "../io/weights.ts";
import type { TensorToWrite } from "../io/safetensors_write.ts";
import { numelOf } from "../io/dtype.ts";
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
  version: "webcap.quant_version",
} as const;

/**
 * Version of the layout `quantizedTensors` writes: 2 stores the float tensors in F16 and the
 * patch projection quantized; 1 (no version key) stored them as the checkpoint did. Both load.
 */
export const QUANT_VERSION = 2;

/** A layout version key this webcap reads: absent (version 1) or an integer 1..QUANT_VERSION. */
function checkVersion(file: string, version: string | undefined): void {
  if (version === undefined) return;
  const v = /^[1-9][0-9]*$/.test(version) ? Number(version) : NaN;
  if (v <= QUANT_VERSION) return;
  const why = v > QUANT_VERSION
    ? "a newer webcap wrote it: upgrade webcap, or quantize the original model again with this one"
    : "it is not a layout version: quantize the original model again";
  throw new WebcapError(
    "BAD_WEIGHTS",
    `${file}: quantized layout version ${JSON.stringify(version)} (__metadata__ ` +
      `"${QUANT_METADATA.version}") is not one this webcap reads ` +
      `(versions 1 to ${QUANT_VERSION}, ${QUANT_VERSION} the newest); ${why}`,
  );
}

/** The scheme and group size a file's `__metadata__` declares (as written), and the file. */
interface Declared {
  file: string;
  scheme: string;
  groupSize: string | undefined;
}

/** `d`'s scheme is q8 / q4 and its group size `0` (q8) or an even integer ≥ 2 (q4), if given. */
function checkDeclared(d: Declared): void {
  const { file, scheme, groupSize } = d;
  const bad = (what: string) =>
    new WebcapError(
      "BAD_WEIGHTS",
      `${file}: __metadata__ ${what}; the file is not one webcap wrote`,
    );
  if (scheme !== "q8" && scheme !== "q4") {
    throw bad(`"${QUANT_METADATA.scheme}" is ${JSON.stringify(scheme)}, not q8 or q4`);
  }
  const G = Number(groupSize);
  const ok = scheme === "q8" ? G === 0 : Number.isInteger(G) && G >= 2 && G % 2 === 0;
  if (groupSize !== undefined && !(/^[0-9]+$/.test(groupSize) && ok)) {
    const want = scheme === "q8" ? "0 for q8" : "an even integer for q4";
    throw bad(`"${QUANT_METADATA.groupSize}" is ${JSON.stringify(groupSize)}, not ${want}`);
  }
}

/** The one scheme and group size the files of `store` declare; BAD_WEIGHTS when two disagree. */
function declaredQuant(store: WeightStore): Declared | undefined {
  let first: Declared | undefined;
  for (const [file, meta] of store.fileMetadata()) {
    checkVersion(file, meta[QUANT_METADATA.version]);
    const scheme = meta[QUANT_METADATA.scheme];
    if (scheme === undefined) continue;
    const d = { file, scheme, groupSize: meta[QUANT_METADATA.groupSize] };
    checkDeclared(d);
    if (first && (first.scheme !== d.scheme || first.groupSize !== d.groupSize)) {
      const what = (x: Declared) =>
        `${x.scheme}, group size ${x.groupSize ?? "absent"} in ${x.file}`;
      throw new WebcapError(
        "BAD_WEIGHTS",
        `${store.source}: the shards declare different quantizations (${what(first)}; ` +
          `${what(d)}); quantize the original model again`,
      );
    }
    first ??= d;
  }
  return first;
}

/** Each stored quantized matrix of `store` (`<name>` with `<name>.qscale`) fits `d`. */
function checkTensorsFit(store: WeightStore, d: Declared): void {
  for (const scaleName of store.names().filter((n) => n.endsWith(QUANT_SUFFIX.scale))) {
    const name = scaleName.slice(0, -QUANT_SUFFIX.scale.length);
    if (!store.has(name)) continue; // the loader names the missing tensor
    const { dtype, shape } = store.info(name);
    const stored = dtype === "I8" ? "q8" : dtype === "U8" ? "q4" : dtype;
    const bad = (what: string) =>
      new WebcapError(
        "BAD_WEIGHTS",
        `${store.source}: quantized tensor "${name}" ${what}, but ` +
          `${d.file === store.source ? "the file" : d.file} declares ` +
          `${d.scheme}${d.scheme === "q4" ? `, group size ${d.groupSize}` : ""} in __metadata__`,
      );
    if (stored !== d.scheme) throw bad(`is stored as ${stored}`);
    const groups = store.info(scaleName).shape;
    if (d.scheme === "q8" || d.groupSize === undefined) continue;
    if (shape.length !== 2 || groups.length !== 2) continue; // the loader names the shape
    const G = (2 * shape[1]) / groups[1];
    if (G !== Number(d.groupSize)) {
      throw bad(`has groups of ${G} (${groups[1]} per row of ${2 * shape[1]})`);
    }
  }
}

/**
 * Refuse a store whose quantized files this webcap cannot read, before any tensor is loaded:
 * a layout version (`webcap.quant_version`) that is not an integer in 1..{@link QUANT_VERSION},
 * a scheme or group size that is not one webcap writes, that differs between shards, or that the
 * stored quantized tensors contradict. Files without the keys (version 1, hand-made) pass.
 * @throws WebcapError BAD_WEIGHTS naming the file and what it found.
 */
export function checkQuantFiles(store: WeightStore): void {
  const d = declaredQuant(store);
  if (d) checkTensorsFit(store, d);
}

/** How a quantized parameter is laid out in the file: scheme, input dimension, group size. */
export interface QuantLayout {
  scheme: QuantScheme;
  /** Input dimension of the out×in matrix. */
  K: number;
  /** Elements of K per scale (K for q8). */
  groupSize: number;
}

/** Float dtypes a quantized file stores in F16 (others, e.g. integer buffers, stay as stored). */
const TO_F16 = new Set(["F32", "F64", "BF16", "F16"]);

/**
 * The header entries (name, dtype, shape) of a quantized folder's safetensors, in order, for the
 * tensors `infos` of a checkpoint: a tensor in `quant` as `<name>` (q8: I8 `[N, K]`, q4: U8
 * `[N, K / 2]`), `<name>.qscale` (F16, q8 `[N]`, q4 `[N, K / G]`) and, q4, `<name>.qoffset`; a
 * float tensor in F16 unless named in `keep` (values beyond the f16 range); others as stored.
 * The file's size is the arithmetic of these entries.
 */
export function quantizedEntries(
  infos: readonly TensorInfo[],
  quant: ReadonlyMap<string, QuantLayout>,
  keep: ReadonlySet<string> = new Set(),
): TensorInfo[] {
  return infos.flatMap((info): TensorInfo[] => {
    const { name, dtype, shape } = info;
    const q = quant.get(name);
    if (!q) {
      const f16 = TO_F16.has(dtype) && !keep.has(name);
      return [{ name, dtype: f16 ? "F16" : dtype, shape: [...shape] }];
    }
    const N = numelOf(shape) / q.K;
    const groups = q.scheme === "q8" ? [N] : [N, q.K / q.groupSize];
    const scale = { name: name + QUANT_SUFFIX.scale, dtype: "F16" as const, shape: groups };
    return q.scheme === "q8" ? [{ name, dtype: "I8", shape: [N, q.K] }, scale] : [
      { name, dtype: "U8", shape: [N, q.K / 2] },
      scale,
      { name: name + QUANT_SUFFIX.offset, dtype: "F16", shape: groups },
    ];
  });
}

/** Float tensors of `store` not to quantize whose values do not fit in f16: kept as stored. */
async function beyondF16(store: WeightStore, quantized: ReadonlySet<string>): Promise<Set<string>> {
  const keep = new Set<string>();
  for (const name of store.names()) {
    if (quantized.has(name) || !TO_F16.has(store.info(name).dtype)) continue;
    const bits = f32ToF16(await store.readF32(name));
    if (bits.some((b) => (b & 0x7c00) === 0x7c00)) keep.add(name);
  }
  return keep;
}

/**
 * The tensors of `store` as a quantized model folder holds them ({@link quantizedEntries}), for
 * `writeSafetensors`: each parameter quantized in `params` packed with its scales (and offsets),
 * every other float tensor rounded to F16. Each matrix is quantized when written, one at a time.
 */
export async function quantizedTensors(
  store: WeightStore,
  params: readonly Param[],
): Promise<TensorToWrite[]> {
  const byName = new Map(
    params.filter((p) => p.quant && store.has(p.name)).map((p) => [p.name, p]),
  );
  const layout = new Map([...byName].map(([n, p]) => [n, layoutOf(p.quant!)]));
  const entries = quantizedEntries(
    store.names().map((n) => store.info(n)),
    layout,
    await beyondF16(store, new Set(byName.keys())),
  );
  const host = new Map<string, Promise<HostQuant>>();
  const hostOf = (name: string) => {
    const p = byName.get(name)!;
    const h = host.get(name) ?? store.readF32(name).then((v) => hostQuantOf(v, p));
    host.set(name, h);
    return h;
  };
  const bytes = (a: Uint8Array | Uint16Array) =>
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return entries.map((e): TensorToWrite => {
    const base = e.name.replace(/\.q(scale|offset)$/, "");
    const last = e.name.endsWith(layout.get(base)?.scheme === "q8" ? ".qscale" : ".qoffset");
    const read = async () => {
      if (!byName.has(base)) {
        if (e.dtype !== "F16" || store.info(e.name).dtype === "F16") return store.read(e.name);
        return bytes(f32ToF16(await store.readF32(e.name)));
      }
      const h = await hostOf(base);
      if (last) host.delete(base); // the matrix's last part: its host copy is done
      return bytes(e.name === base ? h.q : e.name.endsWith(".qscale") ? h.scale : h.offset);
    };
    return { ...e, read };
  });
}

/** The file layout of a quantized matrix. */
function layoutOf(q: QuantMatrix): QuantLayout {
  return { scheme: q.scheme, K: q.shape[1], groupSize: q.groupSize };
}

/** `values` of parameter `p` (checkpoint layout) quantized as `p` is held. */
function hostQuantOf(values: Float32Array, p: Param): HostQuant {
  const q = p.quant!;
  const K = q.shape[1], N = values.length / K;
  const w = p.transposed ? transpose(values, K, N) : values;
  return quantize(w, [N, K], q.scheme, q.groupSize, p.name);
}
