/**
 * Adapter and device acquisition with the adapter's full limits and the optional features it
 * has (`shader-f16`, `timestamp-query`, `subgroups`).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { BindGroupCache } from "./bind_groups.ts";
import { GpuCounters } from "./counters.ts";
import { BufferPool } from "./pool.ts";
import { PipelineCache } from "./pipeline.ts";

/** A ready GPU: device, what it can do, and the shared pool and pipeline cache. */
export interface Gpu {
  /** The WebGPU device every buffer and pipeline is made on. */
  readonly device: GPUDevice;
  /** The adapter's description (or vendor), for logs and bench reports. */
  readonly adapterName: string;
  /**
   * `"cpu"` for a software adapter (llvmpipe/lavapipe, SwiftShader, WARP, or any fallback
   * adapter), else `"gpu"`. Kernels pick their variants by it. Changed only by tests and `bench`.
   */
  adapterClass: AdapterClass;
  /** Whether `shader-f16` is enabled on the device. */
  readonly hasF16: boolean;
  /** Whether `timestamp-query` is enabled on the device. */
  readonly hasTimestamps: boolean;
  /** Whether subgroup operations compile on the device (`subgroups` enabled and probed). */
  readonly hasSubgroups: boolean;
  /**
   * How a kernel that uses subgroup operations is written on this device, `undefined` when it
   * has none: `enable` says whether its WGSL needs `enable subgroups;` (browsers' Tint does;
   * Deno's naga refuses the directive and takes the builtins without it).
   */
  readonly subgroups: { readonly enable: boolean } | undefined;
  /**
   * Whether kernels that can use subgroups do (only where `subgroups` is set): whenever the
   * device has them, on either adapter class. GPUs: one subgroup operation stands for
   * log2(subgroup size) barrier rounds of a workgroup reduction (unmeasured on a GPU so far; the
   * `bench --kernels` rows `… subgroups on` / `off` decide it). CPU adapters too, measured on
   * lavapipe (subgroups of 8; `deno task bench --caption --reps 5`, 5 runs each way alternating,
   * medians): GPU ms 0.78× and wall 0.86× over the 40 fixture cases (geometric means; ViT-GPT2
   * 0.70×, BLIP 0.68×, ClipCap 0.76× GPU ms, Show-Attend-Tell 1.06×, within its noise); layernorm
   * of 20 rows × 64 alone 0.3×. Changed only by tests and `bench`, to compare a kernel with and without them.
   */
  useSubgroups: boolean;
  /** Largest byte size one storage binding may cover. Lowered only by tests. */
  maxBinding: number;
  /** The shared storage-buffer pool (per-step tensors and dedicated weight buffers). */
  readonly pool: BufferPool;
  /** The shared compute-pipeline cache. */
  readonly pipelines: PipelineCache;
  /** The shared bind group cache (the pool tells it of destroyed buffers). */
  readonly bindGroups: BindGroupCache;
  /** Work counters (submits, host waits, dispatches, bytes read back). */
  readonly counters: GpuCounters;
  /** Why the device was lost (set when `device.lost` resolves); `undefined` while it is usable. */
  lost: GPUDeviceLostInfo | undefined;
  /**
   * The first WebGPU error outside any error scope (e.g. creating a buffer while recording)
   * since a failed submission last reported one: often the cause of that submission's error.
   */
  uncaptured: GPUError | undefined;
}

/** What kind of device runs the kernels: a software rasterizer on the CPU, or a GPU. */
export type AdapterClass = "cpu" | "gpu";

const CPU_ADAPTERS = /llvmpipe|lavapipe|swiftshader|\bwarp\b|microsoft basic render/i;

/** The class of an adapter from its info (`isFallbackAdapter`, or a known software name). */
export function adapterClassOf(info: Partial<GPUAdapterInfo> | undefined): AdapterClass {
  if (info?.isFallbackAdapter) return "cpu";
  const text = [info?.vendor, info?.architecture, info?.device, info?.description].join(" ");
  return CPU_ADAPTERS.test(text) ? "cpu" : "gpu";
}

/** Options of {@link requestGpu}. */
export interface GpuOptions {
  /** Passed to `navigator.gpu.requestAdapter`; the browser's default when unset. */
  powerPreference?: GPUPowerPreference;
  /** Do not enable `shader-f16` even when the adapter has it. */
  disableF16?: boolean;
  /** Do not request `subgroups`: every kernel takes its workgroup-memory fallback. */
  disableSubgroups?: boolean;
}

const OPTIONAL_FEATURES = ["shader-f16", "timestamp-query", "subgroups"] as const;

/**
 * The device with the adapter's optional features and full limits. `subgroups` is also tried
 * where the adapter does not list it (Deno's wgpu on Vulkan grants it unlisted); refused, the
 * device is requested again without it, keeping the rest.
 */
async function requestDevice(adapter: GPUAdapter, opts: GpuOptions): Promise<GPUDevice> {
  const features: string[] = OPTIONAL_FEATURES.filter((f) =>
    adapter.features.has(f) && !(f === "shader-f16" && opts.disableF16)
  );
  const requiredLimits: Record<string, number> = {};
  for (const key in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, number>)[key];
    if (typeof v === "number") requiredLimits[key] = v;
  }
  const request = (fs: string[]) =>
    adapter.requestDevice({ requiredFeatures: fs as GPUFeatureName[], requiredLimits });
  const base = features.filter((f) => f !== "subgroups");
  if (opts.disableSubgroups) return await request(base);
  try {
    return await request([...base, "subgroups"]);
  } catch {
    return await request(base);
  }
}

const SUBGROUP_PROBE = `
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) t: u32, @builtin(subgroup_size) n: u32) {
  y[t] = subgroupAdd(f32(n)) + subgroupMax(f32(t));
}`;

/** Whether `code` makes a compute pipeline on `device` without a validation error. */
async function compiles(device: GPUDevice, code: string): Promise<boolean> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ label: "webcap subgroup probe", code });
  device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  return (await device.popErrorScope()) === null;
}

/**
 * How subgroup kernels compile on `device`: with `enable subgroups;` (the WGSL standard, which
 * Tint requires), else without it (naga refuses the directive), else not at all.
 */
async function probeSubgroups(device: GPUDevice): Promise<{ enable: boolean } | undefined> {
  if (!device.features.has("subgroups")) return undefined;
  if (await compiles(device, `enable subgroups;${SUBGROUP_PROBE}`)) return { enable: true };
  if (await compiles(device, SUBGROUP_PROBE)) return { enable: false };
  return undefined;
}

function noAdapter(detail: string): WebcapError {
  return new WebcapError(
    "NO_ADAPTER",
    `No WebGPU adapter: ${detail}. On Linux without a GPU install Mesa's Vulkan software driver ` +
      `(apt-get install -y mesa-vulkan-drivers); on a machine with a GPU install its Vulkan driver; ` +
      `in a browser use one with WebGPU enabled (Chrome/Edge 113+, or --enable-unsafe-webgpu).`,
  );
}

/** Acquire an adapter and a device with the adapter's full limits. */
export async function requestGpu(opts: GpuOptions = {}): Promise<Gpu> {
  if (typeof navigator === "undefined" || !("gpu" in navigator)) {
    throw noAdapter("navigator.gpu does not exist in this runtime");
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: opts.powerPreference });
  if (!adapter) throw noAdapter("navigator.gpu.requestAdapter() returned null");
  const device = await requestDevice(adapter, opts);
  const subgroups = await probeSubgroups(device);
  const info = adapter.info;
  const bindGroups = new BindGroupCache(device);
  const gpu: Gpu = {
    device,
    adapterName: info?.description ||
      [info?.vendor, info?.architecture].filter(Boolean).join(" ") || "unknown adapter",
    adapterClass: adapterClassOf(info),
    hasF16: device.features.has("shader-f16"),
    hasTimestamps: device.features.has("timestamp-query"),
    hasSubgroups: subgroups !== undefined,
    subgroups,
    useSubgroups: subgroups !== undefined,
    maxBinding: device.limits.maxStorageBufferBindingSize,
    pool: new BufferPool(device, (buf) => bindGroups.forget(buf)),
    pipelines: new PipelineCache(device),
    bindGroups,
    counters: new GpuCounters(),
    lost: undefined,
    uncaptured: undefined,
  };
  device.addEventListener("uncapturederror", (e) => {
    const error = (e as GPUUncapturedErrorEvent).error;
    gpu.uncaptured ??= error;
    console.error(`webcap: uncaptured WebGPU error: ${error.message}`);
  });
  device.lost.then((lost) => gpu.lost = lost);
  return gpu;
}

/** The `GPU_LOST` error of a lost device: what was lost, and how to go on. */
export function gpuLostError(lost: GPUDeviceLostInfo): WebcapError {
  return new WebcapError(
    "GPU_LOST",
    `the GPU device was lost (${lost.reason}: ${lost.message || "no message"}); the work in ` +
      `flight was abandoned and everything on that device is gone. Load the model again: ` +
      `getGpu() and Captioner.fromPretrained() acquire a new device`,
  );
}

/** Throw `GPU_LOST` when `gpu`'s device is lost. */
export function checkNotLost(gpu: Gpu): void {
  if (gpu.lost) throw gpuLostError(gpu.lost);
}

let shared: Promise<Gpu> | undefined;

/** The process-wide GPU, acquired on first use and again after its device is lost. */
export function getGpu(): Promise<Gpu> {
  if (shared) return shared;
  const p = requestGpu();
  shared = p;
  const forget = () => {
    if (shared === p) shared = undefined;
  };
  p.then((gpu) => gpu.device.lost.then(forget), forget);
  return p;
}
