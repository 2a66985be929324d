/**
 * A tensor: a GPU buffer, a shape and an element type. Temporaries come from the pool and go
 * back with `release`; long-lived tensors (weights, caches) own a dedicated buffer.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "./device.ts";

/** Element types on the GPU. */
export type DType = "f32" | "f16" | "i32" | "u32";

/** Bytes per element. */
export function dtypeBytes(dtype: DType): number {
  return dtype === "f16" ? 2 : 4;
}

/** Product of the dimensions. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Who frees a buffer; shared by a tensor and its views so the buffer is freed exactly once. */
interface Owner {
  kind: "pooled" | "owned";
  alive: boolean;
}

/** A GPU tensor. Views share the buffer and its owner: releasing any of them frees it once. */
export class Tensor {
  readonly #owner: Owner;
  /**
   * Wrap `buffer` (at least `numel(shape) * dtypeBytes(dtype)` bytes) as a tensor. `owner` is
   * `"pooled"` (released back to `gpu.pool`), `"owned"` (destroyed on release), or the owner
   * shared with the tensor this one views. Prefer {@link emptyTensor} and {@link ownedTensor}.
   */
  constructor(
    readonly gpu: Gpu,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
    owner: Owner | "pooled" | "owned",
  ) {
    this.#owner = typeof owner === "string" ? { kind: owner, alive: true } : owner;
  }

  /** Number of elements. */
  get size(): number {
    return numel(this.shape);
  }
  /** Bytes of data (without padding). */
  get byteSize(): number {
    return this.size * dtypeBytes(this.dtype);
  }
  /** Whether the buffer is still usable. */
  get alive(): boolean {
    return this.#owner.alive;
  }

  /** The same buffer seen with another shape of equal size. */
  view(shape: readonly number[]): Tensor {
    if (numel(shape) !== this.size) {
      throw new WebcapError("BAD_SHAPE", `view [${shape}] does not fit tensor [${this.shape}]`);
    }
    return new Tensor(this.gpu, this.buffer, shape, this.dtype, this.#owner);
  }

  /** Free the buffer (back to the pool, or destroyed), through this tensor or any view of it. */
  release(): void {
    if (!this.#owner.alive) {
      throw new WebcapError("DISPOSED", `tensor [${this.shape}] released twice`);
    }
    this.#owner.alive = false;
    if (this.#owner.kind === "pooled") this.gpu.pool.release(this.buffer);
    else this.gpu.pool.destroy(this.buffer);
  }
}

/**
 * Refuse, before anything is allocated, a tensor larger than one buffer (`maxBufferSize`) or,
 * when kernels bind it whole (`bound`), than one storage binding (`maxStorageBufferBindingSize`).
 */
function checkFits(
  gpu: Gpu,
  shape: readonly number[],
  dtype: DType,
  what: { label?: string; bound: boolean; hint: string },
): number {
  const bytes = numel(shape) * dtypeBytes(dtype);
  const maxBuffer = gpu.device.limits.maxBufferSize;
  const [limit, max] = bytes > maxBuffer
    ? ["maxBufferSize", maxBuffer]
    : ["maxStorageBufferBindingSize", what.bound ? gpu.maxBinding : Infinity];
  if (!(bytes <= max)) {
    const name = what.label ? `tensor "${what.label}"` : "a tensor";
    throw new WebcapError(
      "BAD_SHAPE",
      `${name} [${shape}] ${dtype} needs ${bytes} B, more than this device's ${limit} ` +
        `(${max} B): ${what.hint}`,
    );
  }
  return bytes;
}

/** A pooled temporary tensor, contents undefined. */
export function emptyTensor(gpu: Gpu, shape: readonly number[], dtype: DType = "f32"): Tensor {
  const bytes = checkFits(gpu, shape, dtype, {
    bound: true,
    hint: "process fewer images, beams or return sequences at once",
  });
  return new Tensor(gpu, gpu.pool.acquire(bytes), shape, dtype, "pooled");
}

/**
 * A long-lived tensor with its own buffer, contents undefined: a per-row decoding state such as
 * a key/value cache `[rows, maxLength, 2·hidden]`, bound whole by the kernels; or, `windowed`,
 * one that kernels bind in windows like the weights (gradients, optimizer state), which may
 * exceed one storage binding.
 */
export function ownedTensor(
  gpu: Gpu,
  shape: readonly number[],
  dtype: DType,
  label: string,
  opts: { windowed?: boolean } = {},
): Tensor {
  const bytes = checkFits(gpu, shape, dtype, {
    label,
    bound: !opts.windowed,
    hint: opts.windowed
      ? "the model is too large for this device"
      : "it grows with images × beams (or return sequences) × max length; caption fewer " +
        "images at once, with fewer beams or return sequences, or a shorter max length",
  });
  return new Tensor(gpu, gpu.pool.allocate(bytes, label), shape, dtype, "owned");
}

/**
 * Host data for a tensor, by dtype: f32 → Float32Array, f16 → Uint16Array (raw bits),
 * i32 → Int32Array, u32 → Uint32Array.
 */
export type HostData = Float32Array | Int32Array | Uint32Array | Uint16Array;

function hostDtypeOk(data: HostData, dtype: DType): boolean {
  if (dtype === "f32") return data instanceof Float32Array;
  if (dtype === "f16") return data instanceof Uint16Array;
  if (dtype === "i32") return data instanceof Int32Array;
  return data instanceof Uint32Array;
}

/** Write host data into a tensor's buffer (f16 as raw Uint16 bits). */
export function writeTensor(t: Tensor, data: HostData, elementOffset = 0): void {
  if (!hostDtypeOk(data, t.dtype)) {
    throw new WebcapError(
      "BAD_DTYPE",
      `cannot write ${data.constructor.name} into a ${t.dtype} tensor`,
    );
  }
  if (elementOffset + data.length > t.size) {
    throw new WebcapError(
      "BAD_SHAPE",
      `writing ${data.length} elements at ${elementOffset} overflows [${t.shape}]`,
    );
  }
  const end = elementOffset + data.length;
  if (t.dtype === "f16" && (elementOffset % 2 || (end % 2 && end !== t.size))) {
    // GPU writes are 4-byte words: an odd start is refused by WebGPU, an odd end short of the
    // tensor's end would zero the element after it
    throw new WebcapError(
      "BAD_SHAPE",
      `f16 write of ${data.length} elements at ${elementOffset} into [${t.shape}]: start at an even ` +
        "element and end at an even element or the tensor's end",
    );
  }
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const off = elementOffset * dtypeBytes(t.dtype);
  const aligned = bytes.byteLength - (bytes.byteLength % 4);
  if (aligned > 0) t.gpu.device.queue.writeBuffer(t.buffer, off, bytes, 0, aligned);
  if (aligned < bytes.byteLength) {
    // an f16 tail of one element at the tensor's end: pad to 4 bytes (the buffer is rounded up to 4)
    const tail = new Uint8Array(4);
    tail.set(bytes.subarray(aligned));
    t.gpu.device.queue.writeBuffer(t.buffer, off + aligned, tail);
  }
}

/** Upload host data into a new owned tensor. */
export function uploadTensor(
  gpu: Gpu,
  data: HostData,
  shape: readonly number[],
  dtype: DType,
  label = "tensor",
): Tensor {
  if (numel(shape) !== data.length) {
    throw new WebcapError(
      "BAD_SHAPE",
      `${label}: ${data.length} values do not fill shape [${shape}]`,
    );
  }
  const bytes = checkFits(gpu, shape, dtype, {
    label,
    bound: false, // weights larger than one binding are bound in windows
    hint: "process fewer images at once, or use a smaller model",
  });
  const t = new Tensor(gpu, gpu.pool.allocate(bytes, label), shape, dtype, "owned");
  writeTensor(t, data);
  return t;
}

/** Upload host data into a pooled temporary tensor. */
export function uploadTemp(
  gpu: Gpu,
  data: HostData,
  shape: readonly number[],
  dtype: DType,
): Tensor {
  const t = emptyTensor(gpu, shape, dtype);
  writeTensor(t, data);
  return t;
}
