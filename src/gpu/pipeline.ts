/**
 * Compute pipelines cached by WGSL source + entry point + override constants.
 * @module
 */

/** A stack frame as V8 (`at fn (url:1:2)`) or Firefox and Safari (`fn@url:1:2`) write it. */
const FRAME = /^\s*(?:at\s+(?:async\s+)?(?:([^\s(]+)\s+\()?|([^\s@]*)@)\S*?([^/\s()]+):\d+:\d+\)?$/;

/**
 * The kernel asking for a pipeline, from the first stack frame outside this file, as
 * `function (file)`, e.g. `unary (elementwise.ts)`: the label GPU errors name it by.
 */
function kernelName(): string {
  for (const line of new Error().stack?.split("\n") ?? []) {
    const m = FRAME.exec(line);
    if (!m || m[3] === "pipeline.ts" || /kernelName|PipelineCache/.test(m[1] ?? m[2])) continue;
    return `${m[1] || m[2] || "anonymous"} (${m[3]})`;
  }
  return "unnamed kernel";
}

/** Creates each compute pipeline once, labelled with the kernel that asked for it first. */
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
      const label = kernelName();
      const module = this.device.createShaderModule({ code, label });
      p = this.device.createComputePipeline({
        label,
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
