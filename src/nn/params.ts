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

/** Loads named tensors from a store to the GPU and keeps them for disposal. */
export class ParamLoader {
  readonly tensors: Tensor[] = [];
  constructor(
    readonly gpu: Gpu,
    readonly store: WeightStore,
    /** Storage type of matrices (weights of matmuls and embeddings). */
    readonly matrixDtype: DType = "f32",
  ) {}

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

  async #upload(
    data: Float32Array,
    shape: readonly number[],
    name: string,
    dtype: DType,
  ): Promise<Tensor> {
    const t = dtype === "f16"
      ? uploadTensor(this.gpu, f32ToF16(data), shape, "f16", name)
      : uploadTensor(this.gpu, data, shape, "f32", name);
    this.tensors.push(t);
    return await Promise.resolve(t);
  }

  /** A tensor kept in f32 (norms, biases, position tables). */
  async f32(name: string, shape: readonly number[]): Promise<Tensor> {
    this.#check(name, shape);
    return this.#upload(await this.store.readF32(name), shape, name, "f32");
  }

  /** A matrix in the loader's matrix dtype. */
  async matrix(name: string, shape: readonly number[]): Promise<Tensor> {
    this.#check(name, shape);
    return this.#upload(await this.store.readF32(name), shape, name, this.matrixDtype);
  }

  /** Several out×in matrices stacked on the output dimension (`[Σ out, in]`), e.g. q, k, v. */
  async stacked(names: string[], shape: readonly number[], asMatrix: boolean): Promise<Tensor> {
    const parts: Float32Array[] = [];
    for (const n of names) {
      this.#check(n, shape);
      parts.push(await this.store.readF32(n));
    }
    const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    const outShape = [shape[0] * names.length, ...shape.slice(1)];
    return this.#upload(all, outShape, names.join("+"), asMatrix ? this.matrixDtype : "f32");
  }

  /** Free every tensor loaded. */
  dispose(): void {
    for (const t of this.tensors) t.release();
    this.tensors.length = 0;
  }
}
