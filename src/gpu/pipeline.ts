/**
 * Compute pipelines cached by WGSL source + entry point + override constants.
 * @module
 */

/** Creates each compute pipeline once. */
export class PipelineCache {
  #cache = new Map<string, GPUComputePipeline>();
  /** An empty cache compiling on `device`. */
  constructor(readonly device: GPUDevice) {}

  /** The pipeline of `code` (entry `main`) with `constants`, compiled on first use. */
  get(
    code: string,
    constants: Record<string, number> = {},
    entryPoint = "main",
  ): GPUComputePipeline {
    const key = `${entryPoint}|${JSON.stringify(constants)}|${code}`;
    let p = this.#cache.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code });
      p = this.device.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint, constants },
      });
      this.#cache.set(key, p);
    }
    return p;
  }

  /** Number of compiled pipelines. */
  get size(): number {
    return this.#cache.size;
  }
}
