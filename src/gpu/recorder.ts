/**
 * Records many dispatches into ONE compute pass (one command encoder) per model step, then
 * submits once. Uniform parameters of all dispatches go into one arena written just before the
 * submit, each bound at a dynamic offset so bind groups are reused across steps. Readbacks
 * requested during recording resolve after the submit.
 *
 * Lifetimes: `scope(fn)` owns every tensor allocated through the recorder inside `fn` (a
 * kernel's output, `temp`, `upload`). When `fn` returns, those it does not return are released
 * after the submit; those it returns move to the enclosing scope, or to the caller outside every
 * scope. `keep(t)` takes a tensor out of the scopes for whoever keeps it (a cache, an encoder
 * state, activations saved for a backward pass), which releases it. Outside any scope a kernel's
 * output is the caller's and a `temp` is released after the submit.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { BufferRange } from "./bind_groups.ts";
import { type Gpu, gpuLostError } from "./device.ts";
import type { CompiledKernel } from "./pipeline.ts";
import { bucketSize } from "./pool.ts";
import {
  type DType,
  dtypeBytes,
  emptyTensor,
  type HostData,
  numel,
  Tensor,
  writeTensor,
} from "./tensor.ts";

/** A byte window of a tensor's buffer (a table larger than one binding is bound in windows). */
export interface TensorWindow {
  /** The tensor whose buffer is bound. */
  tensor: Tensor;
  /** First byte of the window (256-aligned). */
  offset: number;
  /** Bytes in the window (a multiple of 4). */
  size: number;
}

/** Elements `[first, first + count)` of `t` as a binding (`first` · element size 256-aligned). */
export function tensorWindow(t: Tensor, first: number, count: number): TensorWindow {
  const eb = dtypeBytes(t.dtype);
  return { tensor: t, offset: first * eb, size: Math.ceil((count * eb) / 4) * 4 };
}

/** A storage binding: a whole tensor, or a byte window of one. */
export type Binding = Tensor | TensorWindow;

const ARENA_BYTES = 64 * 1024;
const UNIFORM_ALIGN = 256;

interface Arena {
  buffer: GPUBuffer;
  host: Uint8Array;
  used: number;
}

const arenaFree = new WeakMap<GPUDevice, Arena[]>();

function takeArena(device: GPUDevice): Arena {
  const free = arenaFree.get(device) ?? [];
  arenaFree.set(device, free);
  const a = free.pop() ?? {
    buffer: device.createBuffer({
      size: ARENA_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: "uniform-arena",
    }),
    host: new Uint8Array(ARENA_BYTES),
    used: 0,
  };
  a.used = 0;
  return a;
}

/** Unmapped readback buffers of each device by size (powers of two from 256 B): the staging ring. */
const stagingFree = new WeakMap<GPUDevice, Map<number, GPUBuffer[]>>();

function takeStaging(gpu: Gpu, bytes: number): GPUBuffer {
  const size = Math.max(256, 2 ** Math.ceil(Math.log2(bytes)));
  const free = stagingFree.get(gpu.device)?.get(size);
  const reused = free?.pop();
  if (reused) return reused;
  gpu.counters.stagingCreated++;
  return gpu.device.createBuffer({
    size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    label: "readback",
  });
}

function giveStaging(device: GPUDevice, buf: GPUBuffer): void {
  const bySize = stagingFree.get(device) ?? new Map<number, GPUBuffer[]>();
  stagingFree.set(device, bySize);
  const list = bySize.get(buf.size) ?? [];
  list.push(buf);
  bySize.set(buf.size, list);
}

/**
 * A tensor the recorder may release: owned by the scope at `depth` (0: released after the
 * submit), or given away (`depth` -1) to a caller or a keeper.
 */
interface Tracked {
  t: Tensor;
  depth: number;
  /** A pooled output or temporary, which {@link Recorder.recycle} may reuse (not an upload). */
  recyclable?: boolean;
}

/** The tensors in a scope's result: a tensor, or arrays and plain objects holding tensors. */
function returnedBuffers(v: unknown, out = new Set<GPUBuffer>()): Set<GPUBuffer> {
  if (v instanceof Tensor) out.add(v.buffer);
  else if (Array.isArray(v)) { for (const x of v) returnedBuffers(x, out); }
  else if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) returnedBuffers(x, out);
  }
  return out;
}

/** One command encoder with one open compute pass; `submit` ends and submits it. */
export class Recorder {
  /** The command encoder every pass and copy is recorded on. */
  readonly encoder: GPUCommandEncoder;
  #pass: GPUComputePassEncoder | undefined;
  #arenas: Arena[] = [];
  #reads: {
    staging: GPUBuffer;
    bytes: number;
    resolve: (b: ArrayBuffer) => void;
    reject: (e: unknown) => void;
  }[] = [];
  /** Pipeline label and workgroup grid of each dispatch, to name the kernel a GPU error is about. */
  #kernels: { label: string; groups: number[] }[] = [];
  /** In order of allocation (or of `releaseAfterSubmit` for tensors allocated elsewhere). */
  #tracked: Tracked[] = [];
  #byBuffer = new Map<GPUBuffer, Tracked>();
  #depth = 0;
  /**
   * Buffers of {@link recycle}d scopes by size, handed to later outputs and temporaries of this
   * recording (never to uploads, whose host writes precede the whole submission) and released
   * to the pool after the submit.
   */
  #spare = new Map<number, GPUBuffer[]>();
  #query: { set: GPUQuerySet; resolve: GPUBuffer; read: GPUBuffer; passes: number } | undefined;
  #submitted = false;
  /** Dispatches recorded so far. */
  dispatches = 0;

  /**
   * A fresh recorder on `gpu`. With `timestamps` (and a device that has `timestamp-query`),
   * the first `maxPasses` (default 64; 512 when only `gpu.counters.timeSubmits` asks) compute
   * passes are timed.
   */
  constructor(readonly gpu: Gpu, opts: { timestamps?: boolean; maxPasses?: number } = {}) {
    this.encoder = gpu.device.createCommandEncoder();
    const counted = gpu.counters.timeSubmits;
    if ((opts.timestamps || counted) && gpu.hasTimestamps) {
      const passes = opts.maxPasses ?? (opts.timestamps ? 64 : 512);
      const device = gpu.device;
      this.#query = {
        set: device.createQuerySet({ type: "timestamp", count: passes * 2 }),
        resolve: device.createBuffer({
          size: passes * 16,
          usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
        }),
        read: device.createBuffer({
          size: passes * 16,
          usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        }),
        passes: 0,
      };
    }
  }

  #openPass(): GPUComputePassEncoder {
    if (this.#submitted) throw new Error("Recorder: already submitted");
    if (!this.#pass) {
      const q = this.#query;
      let timestampWrites: GPUComputePassTimestampWrites | undefined;
      if (q && q.passes * 2 < q.set.count) {
        timestampWrites = {
          querySet: q.set,
          beginningOfPassWriteIndex: q.passes * 2,
          endOfPassWriteIndex: q.passes * 2 + 1,
        };
        q.passes++;
      }
      this.#pass = this.encoder.beginComputePass({ timestampWrites });
    }
    return this.#pass;
  }

  /** End the open compute pass (a later dispatch opens a new one). */
  endPass(): void {
    this.#pass?.end();
    this.#pass = undefined;
  }

  #uniform(bytes: Uint8Array): { buffer: GPUBuffer; offset: number } {
    let a = this.#arenas.at(-1);
    if (!a || a.used + bytes.byteLength > ARENA_BYTES) {
      a = takeArena(this.gpu.device);
      this.#arenas.push(a);
    }
    const offset = a.used;
    a.host.set(bytes, offset);
    a.used = Math.ceil((offset + bytes.byteLength) / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    return { buffer: a.buffer, offset };
  }

  /** The buffer range of a binding, refused when it exceeds the device's binding limit. */
  #storage(b: Binding): BufferRange {
    const t = "shape" in b ? b : b.tensor;
    if (!t.alive) {
      throw new WebcapError(
        "DISPOSED",
        `tensor "${t.buffer.label}" [${t.shape}] was released: the model, state or tensor it ` +
          `belongs to was disposed before this use`,
      );
    }
    const r = "shape" in b
      ? { buffer: b.buffer, offset: 0, size: Math.max(4, Math.ceil(b.byteSize / 4) * 4) }
      : { buffer: t.buffer, offset: b.offset, size: b.size };
    if (r.size > this.gpu.maxBinding) {
      const what = "shape" in b ? `tensor [${b.shape}]` : `buffer range of ${r.buffer.label}`;
      throw new WebcapError(
        "BAD_SHAPE",
        `a ${what} of ${r.size} B exceeds this device's largest storage binding ` +
          `(maxStorageBufferBindingSize ${this.gpu.maxBinding} B); process fewer images at once`,
      );
    }
    return r;
  }

  /**
   * Record one dispatch of a compiled kernel: `uniforms` (its packed struct) at @binding(0),
   * `bindings` from @binding(1), `groups` within the per-dimension limit. Kernels call this
   * through `Kernel.record` (kernel.ts).
   */
  dispatch(
    k: CompiledKernel,
    uniforms: Uint8Array,
    bindings: Binding[],
    groups: readonly [number, number, number],
  ): void {
    const storage = bindings.map((b) => this.#storage(b));
    const u = this.#uniform(uniforms);
    const group = this.gpu.bindGroups.get(
      k.layout,
      { buffer: u.buffer, offset: 0, size: k.uniformBytes },
      storage,
    );
    const pass = this.#openPass();
    pass.setPipeline(k.pipeline);
    pass.setBindGroup(0, group, [u.offset]);
    pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    this.#kernels.push({ label: k.label, groups: [groups[0], groups[1], groups[2]] });
    this.dispatches++;
    this.gpu.counters.dispatches++;
  }

  /** Copy bytes between buffers (ends the open pass). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.endPass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /**
   * Schedule a readback of `bytes` bytes of `src` through a staging buffer of the device's ring;
   * the promise resolves after `submit`.
   */
  read(src: GPUBuffer, bytes: number, srcOffset = 0): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = takeStaging(this.gpu, size);
    this.copy(src, srcOffset, staging, 0, size);
    return handled(
      new Promise((resolve, reject) => this.#reads.push({ staging, bytes, resolve, reject })),
    );
  }

  /** Read a whole tensor back as a typed array of its dtype (f16 as raw Uint16 bits). */
  readTensor(t: Tensor): Promise<Float32Array | Int32Array | Uint32Array | Uint16Array> {
    return handled(
      this.read(t.buffer, t.byteSize).then((buf) => {
        if (t.dtype === "f32") return new Float32Array(buf, 0, t.size);
        if (t.dtype === "i32") return new Int32Array(buf, 0, t.size);
        if (t.dtype === "u32") return new Uint32Array(buf, 0, t.size);
        return new Uint16Array(buf, 0, t.size);
      }),
    );
  }

  #track(t: Tensor, depth: number, recyclable = false): Tensor {
    const r = { t, depth, recyclable };
    this.#tracked.push(r);
    this.#byBuffer.set(t.buffer, r);
    return t;
  }

  #untrack(r: Tracked): void {
    r.depth = -1;
    this.#byBuffer.delete(r.t.buffer);
  }

  /**
   * A kernel's output, pooled, contents undefined: the current scope's, or the caller's outside
   * any scope.
   */
  output(shape: readonly number[], dtype: DType = "f32"): Tensor {
    const t = this.#fresh(shape, dtype);
    return this.#depth > 0 ? this.#track(t, this.#depth, true) : t;
  }

  /** A pooled tensor: a spare buffer of a recycled scope when one of its size is free. */
  #fresh(shape: readonly number[], dtype: DType): Tensor {
    const buf = this.#spare.get(bucketSize(numel(shape) * dtypeBytes(dtype)))?.pop();
    return buf
      ? new Tensor(this.gpu, buf, shape, dtype, "pooled")
      : emptyTensor(this.gpu, shape, dtype);
  }

  /**
   * A pooled temporary, contents undefined: the current scope's, or released after the submit
   * outside any scope.
   */
  temp(shape: readonly number[], dtype: DType = "f32"): Tensor {
    return this.#track(this.#fresh(shape, dtype), this.#depth, true);
  }

  /** A {@link temp} holding `data` (never a recycled buffer: the write precedes the submission). */
  upload(data: HostData, shape: readonly number[], dtype: DType): Tensor {
    const t = this.#track(emptyTensor(this.gpu, shape, dtype), this.#depth);
    writeTensor(t, data);
    return t;
  }

  /**
   * {@link scope}, whose dead tensors are reused at once by the outputs and temporaries recorded
   * after it in this submission (dispatches run in order), not only after the submit: a loop of
   * steps in one submission then binds the same buffers at every step, and its bind groups are
   * built once. Nothing recorded later may read what `fn` did not return.
   */
  recycle<T>(fn: () => T): T {
    const first = this.#tracked.length;
    const result = this.scope(fn);
    const dead = this.#tracked.slice(first).filter((r) => r.depth === 0 && r.recyclable);
    for (const r of dead.reverse()) { // popped in allocation order: the same roles next time
      this.#untrack(r);
      const list = this.#spare.get(r.t.buffer.size) ?? [];
      list.push(r.t.buffer);
      this.#spare.set(r.t.buffer.size, list);
    }
    return result;
  }

  /**
   * Run `fn` (synchronous) in a new scope: the tensors allocated through this recorder inside it
   * are released after the submit, except those `fn` returns (a tensor, or arrays and plain
   * objects holding tensors: they move to the enclosing scope, or to the caller outside every
   * scope) and those kept with {@link keep}. Also when `fn` throws.
   */
  scope<T>(fn: () => T): T {
    const depth = ++this.#depth, first = this.#tracked.length;
    let result: T | undefined;
    try {
      result = fn();
      return result;
    } finally {
      this.#depth--;
      const returned = returnedBuffers(result);
      for (const r of this.#tracked.slice(first)) { // what this scope holds was tracked after it opened
        if (r.depth !== depth) continue;
        if (!returned.has(r.t.buffer)) r.depth = 0;
        else if (this.#depth > 0) r.depth = this.#depth;
        else this.#untrack(r);
      }
    }
  }

  /**
   * `t` (or the tensor it views), taken out of every scope and out of the releases after the
   * submit: whoever keeps it (a cache, an encoder state, a backward pass) releases it.
   */
  keep<T extends Tensor>(t: T): T {
    const r = this.#byBuffer.get(t.buffer);
    if (r) this.#untrack(r);
    return t;
  }

  /**
   * Release these tensors once the work is submitted (the queue orders later reuse after it):
   * for long-lived tensors ending their life, such as a cache being replaced.
   */
  releaseAfterSubmit(...ts: Tensor[]): void {
    for (const t of ts) {
      const r = this.#byBuffer.get(t.buffer);
      if (r) r.depth = 0;
      else this.#track(t, 0);
    }
  }

  /**
   * Submit everything recorded and wait for the readbacks (if any). Returns GPU time in
   * milliseconds per timed pass when timestamps were requested and available. WebGPU's error
   * scopes are pushed and popped around the submit and awaited with the readbacks: checking
   * costs no extra round trip.
   * @throws WebcapError `GPU_ERROR` when WebGPU reports a validation or out-of-memory error for
   *   this submission (naming the kernel), `GPU_LOST` when the device is lost; the readbacks
   *   then reject with the same error (and nobody has to await them).
   */
  async submit(): Promise<number[]> {
    if (this.#depth > 0) throw new Error("Recorder: submit inside a scope");
    this.endPass();
    const q = this.#query;
    if (q && q.passes > 0) {
      this.encoder.resolveQuerySet(q.set, 0, q.passes * 2, q.resolve, 0);
      this.encoder.copyBufferToBuffer(q.resolve, 0, q.read, 0, q.passes * 16);
    }
    const device = this.gpu.device;
    const scopes = this.#checkedSubmit(device);
    this.#submitted = true;
    arenaFree.get(device)?.push(...this.#arenas); // none when nothing was dispatched
    this.#arenas = [];
    // in reverse order of allocation, so the pool's LIFO free lists hand the next step the same
    // buffers in the same roles and its bind groups are cached
    for (const r of this.#tracked.reverse()) if (r.depth === 0) r.t.release();
    this.#tracked = [];
    for (const list of this.#spare.values()) for (const b of list) this.gpu.pool.release(b);
    this.#spare.clear();
    this.#byBuffer.clear();
    const reads = this.#reads;
    this.#reads = [];
    const maps = reads.map((r) => r.staging.mapAsync(GPUMapMode.READ));
    const counters = this.gpu.counters;
    counters.submits++;
    if (maps.length) counters.hostWaits++;
    counters.bytesRead += reads.reduce((s, r) => s + r.bytes, 0);
    const timed = q && q.passes > 0 ? q : undefined;
    if (timed) maps.push(timed.read.mapAsync(GPUMapMode.READ));
    const [errors, mapped] = await Promise.all([scopes, Promise.allSettled(maps)]);
    const mapError = mapped.find((m) => m.status === "rejected")?.reason;
    const failure = await this.#failure(errors, mapError);
    for (const r of reads) { // a mapped buffer goes back to the ring, a failed one is dropped
      if (failure) {
        r.reject(failure);
        r.staging.destroy();
      } else {
        r.resolve(r.staging.getMappedRange().slice(0, r.bytes));
        r.staging.unmap();
        giveStaging(device, r.staging);
      }
    }
    const ns = timed && !failure
      ? new BigInt64Array(timed.read.getMappedRange().slice(0, timed.passes * 16))
      : [];
    if (q) { for (const b of [q.read, q.resolve, q.set]) b.destroy(); }
    if (failure) throw failure;
    const ms = Array.from(
      { length: ns.length / 2 },
      (_, i) => Number(ns[2 * i + 1] - ns[2 * i]) / 1e6,
    );
    if (counters.timeSubmits) counters.gpuMs += ms.reduce((a, b) => a + b, 0);
    return ms;
  }

  /** Write the uniforms and submit inside validation and out-of-memory error scopes. */
  #checkedSubmit(device: GPUDevice): Promise<(GPUError | null)[]> {
    // pushed and popped in one task: recorders submitting concurrently cannot interleave.
    // A lost device may reject a pop: the loss is reported instead.
    const pop = () =>
      [device.popErrorScope(), device.popErrorScope()].map((p) => p.catch(() => null));
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
    try {
      for (const a of this.#arenas) device.queue.writeBuffer(a.buffer, 0, a.host, 0, a.used);
      device.queue.submit([this.encoder.finish()]);
    } catch (e) {
      pop();
      throw e;
    }
    return Promise.all(pop());
  }

  /** The error this submission failed with, if any: the device's loss first, then WebGPU's. */
  async #failure(
    errors: (GPUError | null)[],
    mapError: unknown,
  ): Promise<WebcapError | undefined> {
    const [validation, oom] = errors;
    // a failed map with no error of ours is how a loss shows before `device.lost` resolves
    const lost = this.gpu.lost ??
      (mapError && !validation && !oom ? await lostWithin(this.gpu.device, 1000) : undefined);
    if (lost) return gpuLostError(lost);
    const scoped = validation ?? oom;
    if (scoped) {
      await new Promise((r) => setTimeout(r, 0)); // uncaptured errors are dispatched as tasks
      const first = this.gpu.uncaptured; // an error while recording: the likely cause
      this.gpu.uncaptured = undefined;
      const message = first
        ? `${scoped.message} (first reported: ${first.message})`
        : scoped.message;
      return oom || first instanceof GPUOutOfMemoryError
        ? this.#gpuError(
          "out-of-memory",
          message,
          "process fewer images, beams or return sequences at once, or dispose models not in use",
        )
        : this.#gpuError("validation", message, "a bug: please report it with this message");
    }
    if (mapError) {
      return this.#gpuError(
        "readback",
        `mapping a result buffer failed (${mapError})`,
        "if this repeats, the GPU driver is failing",
      );
    }
  }

  /** A `GPU_ERROR` naming the kernel: the dispatch whose grid the message quotes, else all of them. */
  #gpuError(kind: string, message: string, hint: string): WebcapError {
    const ks = this.#kernels;
    const grid = /\[(\d+), (\d+), (\d+)\]/.exec(message)?.slice(1).join();
    const i = grid ? ks.findIndex((k) => k.groups.join() === grid) : -1;
    const names = [...new Set(ks.map((k) => `"${k.label}"`))];
    const where = i >= 0
      ? `kernel "${ks[i].label}" (dispatch ${i + 1} of ${ks.length}, workgroups [${ks[i].groups}])`
      : names.length === 1
      ? `kernel ${names[0]}`
      : `a submission of ${ks.length} dispatches (kernels ${names.join(", ") || "none"})`;
    return new WebcapError(
      "GPU_ERROR",
      `WebGPU ${kind} error in ${where}: ${message}. Its results were discarded; ${hint}`,
    );
  }
}

/** Mark a promise handled: a readback nobody awaits after a failed submit is no unhandled rejection. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/** The loss info of `device` if it resolves within `ms`. */
async function lostWithin(device: GPUDevice, ms: number): Promise<GPUDeviceLostInfo | undefined> {
  let timer = 0;
  const timeout = new Promise<undefined>((resolve) => timer = setTimeout(resolve, ms));
  try {
    return await Promise.race([device.lost, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Record with `fn`, submit, and return its result after the GPU finished. */
export async function run<T>(gpu: Gpu, fn: (rec: Recorder) => T): Promise<Awaited<T>> {
  const rec = new Recorder(gpu);
  const out = fn(rec);
  await rec.submit();
  return await out;
}
