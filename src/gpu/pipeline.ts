/**
 * Compiled kernels (pipeline and bind group layout) cached by variant key, so a kernel's WGSL
 * is built once per variant, not on every call.
 * @module
 */

/** One variant of a kernel, compiled on one device. */
export interface CompiledKernel {
  /** The variant key (kernel name, variant, element types): the pipeline's label. */
  readonly label: string;
  /** The compiled compute pipeline (entry `main`). */
  readonly pipeline: GPUComputePipeline;
  /** Uniforms at @binding(0) (dynamic offset), storage from @binding(1). */
  readonly layout: GPUBindGroupLayout;
  /** Bytes of the uniform struct (a multiple of 16). */
  readonly uniformBytes: number;
}

/** Compiles each kernel variant once. */
export class PipelineCache {
  #cache = new Map<string, CompiledKernel>();
  /** An empty cache compiling on `device`. */
  constructor(readonly device: GPUDevice) {}

  /** The kernel variant of `key`, built with `build` on first use. */
  get(key: string, build: () => CompiledKernel): CompiledKernel {
    let k = this.#cache.get(key);
    if (!k) {
      k = build();
      this.#cache.set(key, k);
    }
    return k;
  }

  /** Number of compiled variants. */
  get size(): number {
    return this.#cache.size;
  }
}
