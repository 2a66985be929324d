/**
 * Moving checkpoint tensors onto the GPU one at a time, with shape checks that name the tensor,
 * and optional f16 storage for matrices. Every tensor loaded is remembered so a model frees
 * all of them with one `dispose`.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { type DType, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import type { WeightStore } from "../io/weights.ts";

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
  /** The GPU tensor holding it (f32, or f16 for matrices loaded in f16). */
  readonly tensor: Tensor;
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
  constructor(
    readonly gpu: Gpu,
    readonly store: WeightStore,
    /** Storage type of matrices (weights of matmuls, embeddings and convolutions). */
    readonly matrixDtype: DType = "f32",
  ) {
    if (matrixDtype === "f16" && !gpu.hasF16) {
      throw new WebcapError(
        "NO_FEATURE",
        `matrices in f16 need the WebGPU feature shader-f16, which ${gpu.adapterName} lacks; use f32`,
      );
    }
  }

  #check(name: string, shape: readonly number[]): void {
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
    if (storage === "matrix" && this.matrixDtype === "f16") {
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
