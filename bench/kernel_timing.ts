/**
 * What every `bench --kernels` row is timed with: seeded inputs, the median of GPU timestamps
 * (else wall time of submit-and-wait) with the dispatches recorded, and runs under an adapter
 * class or subgroup setting other than the device's own.
 * @module
 */
import type { AdapterClass, Gpu } from "../src/gpu/device.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../src/gpu/tensor.ts";
import { f32ToF16 } from "../src/nn/params.ts";
import type { MatmulPlan } from "../src/shaders/matmul.ts";

/** One benchmark row (also the JSON record). */
export interface KernelRow {
  name: string;
  shape: string;
  /** The kernel variant that ran (matmul: its plan and adapter class; `(plan)`: the plan's choice). */
  variant?: string;
  ms: number;
  gflops?: number;
  gbps?: number;
  /** Dispatches one run records (the fusion rows: each costs the host ~11 µs in Deno on a GPU). */
  dispatches?: number;
  timer: "gpu-timestamp" | "wall";
  /** The adapter that ran it. */
  adapter: string;
}

/** A row before the adapter's name is added. */
export type Timing = Omit<KernelRow, "adapter">;

/** A seeded random tensor of `n` elements in [-1, 1), f32 or (weights) f16. */
export type Upload = (n: number, shape: number[], seed: number, dtype?: "f32" | "f16") => Tensor;

function random(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

/** The {@link Upload} of `gpu`. */
export function uploader(gpu: Gpu): Upload {
  return (n, shape, seed, dtype = "f32") =>
    dtype === "f16"
      ? uploadTensor(gpu, f32ToF16(random(n, seed)), shape, "f16")
      : uploadTensor(gpu, random(n, seed), shape, "f32");
}

/** The median of {@link timeIt}'s runs, its timer and the dispatches one run records. */
export interface Timed {
  ms: number;
  timer: KernelRow["timer"];
  dispatches: number;
}

/** Median time of `reps` runs of `record` (after one warm-up), in ms. */
export async function timeIt(
  gpu: Gpu,
  record: (rec: Recorder) => Tensor[],
  reps: number,
): Promise<Timed> {
  const times: number[] = [];
  let dispatches = 0;
  for (let i = 0; i <= reps; i++) {
    const rec = new Recorder(gpu, { timestamps: true });
    const t0 = performance.now();
    const outs = record(rec);
    dispatches = rec.dispatches;
    rec.releaseAfterSubmit(...outs);
    const gpuMs = await rec.submit();
    await gpu.device.queue.onSubmittedWorkDone();
    const wall = performance.now() - t0;
    if (i > 0) times.push(gpuMs.length ? gpuMs.reduce((a, b) => a + b, 0) : wall);
  }
  times.sort((a, b) => a - b);
  return {
    ms: times[Math.floor(times.length / 2)],
    timer: gpu.hasTimestamps ? "gpu-timestamp" : "wall",
    dispatches,
  };
}

/** `fn` with the kernels of adapter class `cls` (the plans read `gpu.adapterClass`). */
export async function asClass<T>(gpu: Gpu, cls: AdapterClass, fn: () => Promise<T>): Promise<T> {
  const own = gpu.adapterClass;
  gpu.adapterClass = cls;
  try {
    return await fn();
  } finally {
    gpu.adapterClass = own;
  }
}

/** `fn` with kernels using subgroups or not (`on` only counts where the device has them). */
export async function withSubgroups<T>(gpu: Gpu, on: boolean, fn: () => Promise<T>): Promise<T> {
  const own = gpu.useSubgroups;
  gpu.useSubgroups = on && gpu.hasSubgroups;
  try {
    return await fn();
  } finally {
    gpu.useSubgroups = own;
  }
}

/**
 * The adapter classes whose kernels this adapter can run side by side: on a CPU adapter the GPU
 * kernels (what every adapter ran before the CPU variants) and then its own; on a GPU its own.
 */
export function benchClasses(gpu: Gpu): AdapterClass[] {
  return gpu.adapterClass === "cpu" ? ["gpu", "cpu"] : ["gpu"];
}

/** The rows `time` gives under each of {@link benchClasses}. */
export async function perClass<T>(
  gpu: Gpu,
  time: (cls: AdapterClass) => Promise<T | T[]>,
): Promise<T[]> {
  let rows: T[] = [];
  for (const cls of benchClasses(gpu)) rows = rows.concat(await asClass(gpu, cls, () => time(cls)));
  return rows;
}

/** A matmul plan as the `variant` column names it: `gpu: gemv`, `cpu: regs 8x16 vec4`. */
export function matmulVariant(cls: AdapterClass, p: MatmulPlan): string {
  const kernel = p.kernel === "regs" ? `regs ${p.tm}x${p.tn}${p.vec ? " vec4" : ""}` : p.kernel;
  return `${cls}: ${kernel}`;
}
