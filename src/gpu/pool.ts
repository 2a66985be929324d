/**
 * A pool of storage buffers bucketed by size, so the tensors of one decoding step reuse the
 * buffers of the previous step instead of allocating.
 * @module
 */

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Round a byte size up to its pool bucket: 256 B minimum, then powers of two up to 1 MiB, then MiB steps. */
export function bucketSize(bytes: number): number {
  const min = Math.max(bytes, 256);
  if (min <= 1 << 20) return 1 << Math.ceil(Math.log2(min));
  return Math.ceil(min / (1 << 20)) * (1 << 20);
}

/** Storage buffers by bucket size; `acquire` reuses a free one when it can. */
export class BufferPool {
  #free = new Map<number, GPUBuffer[]>();
  #live = new Set<GPUBuffer>();
  #bytesLive = 0;
  #bytesFree = 0;
  #owned = new Set<GPUBuffer>();
  #bytesOwned = 0;
  #taken: GPUBuffer[] | undefined;
  #peak = 0;
  /** Buffers created (pooled and dedicated) since the pool was made. */
  created = 0;

  /**
   * An empty pool allocating on `device`; `onDestroy` hears of each buffer before it is
   * destroyed (the bind group cache drops the groups that bind it).
   */
  constructor(
    readonly device: GPUDevice,
    readonly onDestroy: (buf: GPUBuffer) => void = () => {},
  ) {}

  /** A buffer of at least `bytes` bytes (STORAGE | COPY_SRC | COPY_DST). */
  acquire(bytes: number): GPUBuffer {
    const size = bucketSize(bytes);
    const list = this.#free.get(size);
    let buf = list?.pop();
    if (buf) this.#bytesFree -= size;
    else {
      buf = this.device.createBuffer({ size, usage: USAGE, label: `pool-${size}` });
      this.created++;
    }
    this.#live.add(buf);
    this.#bytesLive += size;
    this.#notePeak();
    this.#taken?.push(buf);
    return buf;
  }

  /** Give a buffer back for reuse. Releasing a buffer twice is a bug and throws. */
  release(buf: GPUBuffer): void {
    if (!this.#live.delete(buf)) throw new Error(`BufferPool: buffer ${buf.label} released twice`);
    this.#bytesLive -= buf.size;
    this.#bytesFree += buf.size;
    const list = this.#free.get(buf.size) ?? [];
    list.push(buf);
    this.#free.set(buf.size, list);
  }

  /** A dedicated buffer of exactly `bytes` (rounded to 4) for long-lived data such as weights. */
  allocate(bytes: number, label: string): GPUBuffer {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const buf = this.device.createBuffer({ size, usage: USAGE, label });
    this.created++;
    this.#owned.add(buf);
    this.#bytesOwned += size;
    this.#notePeak();
    this.#taken?.push(buf);
    return buf;
  }

  /** Destroy a buffer made by {@link allocate}. */
  destroy(buf: GPUBuffer): void {
    if (!this.#owned.delete(buf)) {
      throw new Error(`BufferPool: buffer ${buf.label} destroyed twice`);
    }
    this.#bytesOwned -= buf.size;
    this.onDestroy(buf);
    buf.destroy();
  }

  /**
   * Run the synchronous `fn`; when it throws, every buffer it acquired or allocated and still
   * holds goes back to the pool or is destroyed, so a half-built state leaks nothing.
   */
  releaseOnThrow<T>(fn: () => T): T {
    if (this.#taken) throw new Error("BufferPool: releaseOnThrow does not nest");
    const taken: GPUBuffer[] = this.#taken = [];
    try {
      return fn();
    } catch (e) {
      for (const b of taken) {
        if (this.#live.has(b)) this.release(b);
        else if (this.#owned.has(b)) this.destroy(b);
      }
      throw e;
    } finally {
      this.#taken = undefined;
    }
  }

  /** Destroy the free buffers (live ones stay). */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const b of list) {
        this.onDestroy(b);
        b.destroy();
      }
    }
    this.#free.clear();
    this.#bytesFree = 0;
  }

  #notePeak(): void {
    this.#peak = Math.max(this.#peak, this.#bytesLive + this.#bytesOwned);
  }

  /** Most bytes held by live and dedicated buffers at once since the last {@link resetPeak}. */
  get peakBytes(): number {
    return this.#peak;
  }

  /** Start measuring {@link peakBytes} from the bytes held now. */
  resetPeak(): void {
    this.#peak = this.#bytesLive + this.#bytesOwned;
  }

  /** Bytes held by live (acquired, not released) buffers. */
  get liveBytes(): number {
    return this.#bytesLive;
  }
  /** Bytes held by dedicated buffers (weights, caches). */
  get ownedBytes(): number {
    return this.#bytesOwned;
  }
  /** Bytes held in the free lists. */
  get freeBytes(): number {
    return this.#bytesFree;
  }
}
