/**
 * Moving checkpoint tensors onto the GPU one at a time, with shape checks that name the tensor,
 * and optional f16 storage for matrices, or q8 / q4 quantization of the weights of matmuls and
 * embeddings (`weight`; made at load from float tensors, or read as stored by
 * `deno task quantize`, see `quant.ts`). Every tensor loaded is remembered so a model frees
 * all of them with one `dispose`.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import type { WeightStore } from "../io/weights.ts";
import { f16ToF32 } from "../io/dtype.ts";
import type { QuantMatrix, QuantScheme, Weight } from "../shaders/quant/qmatrix.ts";
import {
  checkGroupSize,
  checkQuantFiles,
  DEFAULT_GROUP_SIZE,
  type HostQuant,
  quantize,
  stackQuant,
  transpose,
  uploadQuant,
} from "./quant.ts";

/**
 * How a model's weights are held on the GPU: matrices in f32 or f16, or the weights of matmuls
 * and embeddings quantized to q8 / q4 (other matrices, convolutions, in f32). Norms, biases and
 * position tables are f32 in every case.
 */
export type WeightDtype = "f32" | "f16" | QuantScheme;

/** Suffixes of the tensors that hold a stored quantized matrix's scales and (q4) offsets. */
export const QUANT_SUFFIX = { scale: ".qscale", offset: ".qoffset" } as const;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round f32 values to IEEE f16 bits (round to nearest, ties to even; overflow to ±inf). */
export function f32ToF16(a: Float32Array): Uint16Array {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) {
    f32[0] = a[i];
    const x = u32[0];
    const sign = (x >>> 16) & 0x8000;
    const e = ((x >>> 23) & 0xff) - 112; // rebias 127 → 15
    const mant = x & 0x7fffff;
    if (((x >>> 23) & 0xff) === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
    } else if (e >= 31) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      const m = mant | 0x800000;
      const shift = 14 - e;
      let h = m >>> shift;
      const rem = m & ((1 << shift) - 1), half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      out[i] = sign | h;
    } else {
      let h = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
      out[i] = sign | h;
    }
  }
  return out;
}

/**
 * One checkpoint tensor as a model holds it, by its Hugging Face name: the list a model's
 * `params` gives is what an optimizer, gradient checks, `save` and quantization walk.
 *
 * `tensor` is the GPU tensor holding the values; the parameter is the `numel(shape)` elements
 * of `tensor` from element `offset` on, row-major in the checkpoint's `shape`. Tensors stacked at
 * load (q, k, v as one `[3·out, in]` matrix) give one entry per stored tensor, each at its offset
 * into the stack, so a gradient of the stack or a readback for `save` slices by `offset`.
 * Tied tensors (GPT-2's `lm_head` = `wte`) are held, and listed, once. A value computed at load
 * from several stored tensors (a BatchNorm folded into its conv) is listed under the stored name
 * it replaces with `trainable: false`; it is not the stored value (see `src/nn/resnet.ts`).
 */
export interface Param {
  /** Name in the checkpoint, e.g. `decoder.transformer.h.0.attn.c_attn.weight`. */
  readonly name: string;
  /** Shape as the checkpoint stores it. */
  readonly shape: readonly number[];
  /** The GPU tensor holding it (f32, f16 for matrices loaded in f16, or `quant.data`). */
  readonly tensor: Tensor;
  /** The quantized matrix holding it (out×in, rows from `offset / in` on). */
  readonly quant?: QuantMatrix;
  /** Quantized from the transpose of the checkpoint's tensor (a Conv1D `[in, out]` weight). */
  readonly transposed?: boolean;
  /** First element of this parameter in `tensor`. */
  readonly offset: number;
  /** False for values an optimizer must not update (folded BatchNorms). */
  readonly trainable: boolean;
}

/** `data` has a NaN or ±Inf: BAD_WEIGHTS naming `name` and the first such index. */
function checkFinite(data: Float32Array, name: string, source: string): void {
  let s = 0;
  for (let i = 0; i < data.length; i++) s += data[i] * 0; // NaN once any value is NaN or ±Inf
  if (s === 0) return;
  const i = data.findIndex((v) => !Number.isFinite(v));
  throw new WebcapError(
    "BAD_WEIGHTS",
    `${source}: tensor "${name}" holds ${data[i]} at element ${i}; weights must be finite`,
  );
}

/** f16 bits with an all-ones exponent (Inf after rounding): BAD_WEIGHTS naming `name`. */
function checkF16Range(bits: Uint16Array, data: Float32Array, name: string, source: string): void {
  const i = bits.findIndex((b) => (b & 0x7c00) === 0x7c00);
  if (i < 0) return;
  throw new WebcapError(
    "BAD_WEIGHTS",
    `${source}: tensor "${name}" holds ${
      data[i]
    } at element ${i}, beyond the f16 range (±65504); load with dtype f32`,
  );
}

/** How a tensor is stored on the GPU: f32 always, or in the loader's matrix dtype. */
export type Storage = "f32" | "matrix";

/**
 * Loads named tensors from a store to the GPU: shapes checked by name, values checked finite,
 * each recorded as a {@link Param}; frees them all with one `dispose`.
 */
export class ParamLoader {
  /** Every parameter loaded, in load order. */
  readonly params: Param[] = [];
  readonly #tensors: Tensor[] = [];
  #filesChecked = false;
  constructor(
    readonly gpu: Gpu,
    readonly store: WeightStore,
    /** Storage type of matrices (weights of matmuls, embeddings and convolutions). */
    readonly matrixDtype: WeightDtype = "f32",
    /** q4: elements of the input dimension per scale and offset. */
    readonly groupSize: number = DEFAULT_GROUP_SIZE,
  ) {
    if (matrixDtype === "f16" && !gpu.hasF16) {
      throw new WebcapError(
        "NO_FEATURE",
        `matrices in f16 need the WebGPU feature shader-f16, which ${gpu.adapterName} lacks; use f32`,
      );
    }
  }

  /** The store's quantized files checked ({@link checkQuantFiles}) before its first tensor loads. */
  #checkFiles(): void {
    if (this.#filesChecked) return;
    checkQuantFiles(this.store);
    this.#filesChecked = true;
  }

  #check(name: string, shape: readonly number[]): void {
    if (this.store.has(name + QUANT_SUFFIX.scale)) {
      throw new WebcapError(
        "BAD_WEIGHTS",
        `${this.store.source}: tensor "${name}" is stored quantized; load the model with the ` +
          `dtype it was quantized to (q8 or q4)`,
      );
    }
    if (!this.store.has(name)) {
      throw new WebcapError(
        "BAD_WEIGHTS",
        `${this.store.source}: tensor "${name}" is missing (the config expects shape [${shape}])`,
      );
    }
    const got = this.store.info(name).shape;
    const ok = got.length === shape.length && got.every((d, i) => d === shape[i]);
    if (!ok) {
      throw new WebcapError(
        "BAD_WEIGHTS",
        `${this.store.source}: tensor "${name}" has shape [${got}] but the config implies [${shape}]`,
      );
    }
  }

  /** Tensor `name` on the host, shape-checked against `shape` and checked finite. */
  async read(name: string, shape: readonly number[]): Promise<Float32Array> {
    this.#checkFiles();
    this.#check(name, shape);
    const data = await this.store.readF32(name);
    checkFinite(data, name, this.store.source);
    return data;
  }

  /**
   * Upload host values as one GPU tensor holding the parameters `names` (each `numel / names`
   * elements, in order); `trainable` false for values computed at load.
   */
  upload(
    data: Float32Array,
    shape: readonly number[],
    names: readonly string[],
    storage: Storage,
    trainable = true,
  ): Tensor {
    const label = names.join("+");
    let t: Tensor;
    if (storage === "matrix" && this.matrixDtype === "f16") { // q8 / q4: other matrices in f32
      const bits = f32ToF16(data);
      checkF16Range(bits, data, label, this.store.source);
      t = uploadTensor(this.gpu, bits, shape, "f16", label);
    } else {
      t = uploadTensor(this.gpu, data, shape, "f32", label);
    }
    this.#tensors.push(t);
    const each = data.length / names.length;
    const partShape = [shape[0] / names.length, ...shape.slice(1)];
    names.forEach((name, i) => {
      const stored = names.length === 1 ? shape : partShape;
      this.params.push({ name, shape: stored, tensor: t, offset: i * each, trainable });
    });
    return t;
  }

  /** A tensor kept in f32 (norms, biases, position tables). */
  async f32(name: string, shape: readonly number[]): Promise<Tensor> {
    return this.upload(await this.read(name, shape), shape, [name], "f32");
  }

  /** A matrix in the loader's matrix dtype. */
  async matrix(name: string, shape: readonly number[]): Promise<Tensor> {
    return this.upload(await this.read(name, shape), shape, [name], "matrix");
  }

  /** Several tensors of `shape` stacked on the first dimension (`[Σ out, …]`), e.g. q, k, v. */
  async stacked(names: string[], shape: readonly number[], storage: Storage): Promise<Tensor> {
    const parts: Float32Array[] = [];
    for (const n of names) parts.push(await this.read(n, shape));
    const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return this.upload(all, [shape[0] * names.length, ...shape.slice(1)], names, storage);
  }

  /** Whether matmul and embedding weights are quantized. */
  get quantized(): boolean {
    return this.matrixDtype === "q8" || this.matrixDtype === "q4";
  }

  /**
   * The weight of a matmul or embedding, `[out, in]` as stored (`inOut`: `[in, out]`, GPT-2's
   * Conv1D; `stored`: another row-major shape of `[out, in]`, e.g. a patch convolution's
   * `[out, C, p, p]`): quantized (out×in) when the loader's dtype is q8 / q4, else a matrix
   * viewed as `[out, in]` (as stored when `inOut`).
   */
  async weight(
    name: string,
    shape: readonly [number, number],
    inOut = false,
    stored: readonly number[] = inOut ? [shape[1], shape[0]] : shape,
  ): Promise<Weight> {
    if (!this.quantized) {
      const t = await this.matrix(name, stored);
      return inOut ? t : t.view([...shape]);
    }
    const h = await this.#hostQuant(name, shape, inOut, stored);
    return this.#uploadQuant(h, stored, [name], inOut);
  }

  /** Weights `names`, each `[out, in]`, stacked on out (`[k·out, in]`), quantized or not. */
  async stackedWeight(names: string[], shape: readonly [number, number]): Promise<Weight> {
    if (!this.quantized) return this.stacked(names, shape, "matrix");
    const parts: HostQuant[] = [];
    for (const n of names) parts.push(await this.#hostQuant(n, shape, false));
    return this.#uploadQuant(stackQuant(parts), shape, names);
  }

  #uploadQuant(
    h: HostQuant,
    stored: readonly number[],
    names: readonly string[],
    transposed = false,
  ): QuantMatrix {
    const q = uploadQuant(this.gpu, h, names.join("+"));
    this.#tensors.push(q.data, q.scales);
    const each = (h.shape[0] * h.shape[1]) / names.length;
    names.forEach((name, i) => {
      this.params.push({
        name,
        shape: stored,
        tensor: q.data,
        quant: q,
        transposed,
        offset: i * each,
        trainable: true,
      });
    });
    return q;
  }

  /** `name` `[out, in]` quantized on the host: as stored, or made from a float tensor now. */
  async #hostQuant(
    name: string,
    shape: readonly [number, number],
    inOut: boolean,
    stored: readonly number[] = inOut ? [shape[1], shape[0]] : shape,
  ) {
    this.#checkFiles();
    const scheme = this.matrixDtype as QuantScheme;
    if (this.store.has(name + QUANT_SUFFIX.scale)) return this.#storedQuant(name, shape, scheme);
    if (scheme === "q4") checkGroupSize(this.groupSize, shape[1], name);
    const data = await this.read(name, stored);
    const w = inOut ? transpose(data, shape[1], shape[0]) : data;
    return quantize(w, shape, scheme, this.groupSize, name);
  }

  /** A quantized matrix as `deno task quantize` stores it, every part checked against `shape`. */
  async #storedQuant(name: string, shape: readonly [number, number], scheme: QuantScheme) {
    const [N, K] = shape;
    const { store } = this;
    const bad = (what: string) =>
      new WebcapError("BAD_WEIGHTS", `${store.source}: quantized tensor "${name}": ${what}`);
    const q = store.info(name);
    const stored = q.dtype === "I8" ? "q8" : q.dtype === "U8" ? "q4" : undefined;
    if (stored !== scheme) {
      throw bad(`stored as ${stored ?? q.dtype}, but the model is loaded as ${scheme}`);
    }
    const qShape = scheme === "q8" ? [N, K] : [N, K / 2];
    const scaleName = name + QUANT_SUFFIX.scale;
    const s = store.info(scaleName);
    const groups = scheme === "q8" ? 1 : s.shape[1];
    const G = K / groups;
    const sShape = scheme === "q8" ? [N] : [N, groups];
    const same = (a: readonly number[], b: readonly number[]) =>
      a.length === b.length && a.every((d, i) => d === b[i]);
    if (!same(q.shape, qShape)) throw bad(`shape [${q.shape}], the config implies [${qShape}]`);
    if (s.dtype !== "F16" || !same(s.shape, sShape)) {
      throw bad(`${scaleName} is ${s.dtype} [${s.shape}]; the layout wants F16 [${sShape}]`);
    }
    if (!Number.isInteger(G)) {
      throw bad(`${scaleName} has ${groups} groups per row, which do not divide the input ${K}`);
    }
    if (scheme === "q4") checkGroupSize(G, K, name);
    const f16 = async (n: string) => new Uint16Array((await store.read(n)).slice().buffer);
    const scale = await f16(scaleName);
    const offset = scheme === "q4"
      ? await this.#storedOffset(name, sShape, bad)
      : new Uint16Array(N);
    for (const [what, bits] of [["scale", scale], ["offset", offset]] as const) {
      const i = f16ToF32(bits).findIndex((v) => !Number.isFinite(v));
      if (i >= 0) throw bad(`${what} ${i} is not finite`);
    }
    const bytes = (await store.read(name)).slice();
    return { scheme, shape: [N, K], groupSize: G, q: bytes, scale, offset } as HostQuant;
  }

  async #storedOffset(name: string, shape: number[], bad: (what: string) => Error) {
    const n = name + QUANT_SUFFIX.offset;
    const info = this.store.has(n) ? this.store.info(n) : undefined;
    const ok = info?.dtype === "F16" && info.shape.join() === shape.join();
    if (!ok) {
      throw bad(
        `${n} is ${info ? `${info.dtype} [${info.shape}]` : "missing"}; wants F16 [${shape}]`,
      );
    }
    return new Uint16Array((await this.store.read(n)).slice().buffer);
  }

  /** Run `load` and give what it returns the parameters it loaded, as `params`. */
  async owning<T extends object>(load: () => T | Promise<T>): Promise<T & { params: Param[] }> {
    const start = this.params.length;
    const loaded = await load();
    return Object.assign(loaded, { params: this.params.slice(start) });
  }

  /** Free every tensor loaded. */
  dispose(): void {
    for (const t of this.#tensors) t.release();
    this.#tensors.length = 0;
    this.params.length = 0;
  }
}
