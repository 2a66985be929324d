/**
 * Bind groups cached by layout and buffer ranges. The buffers bound step after step are the
 * same objects — weights and caches own theirs, the pool hands the same buffers back to the
 * temporaries of every step, and uniforms sit at a dynamic offset of a recycled arena — so a
 * decoding step finds nearly all of its bind groups already built. The pool drops the groups of
 * a buffer when it destroys it.
 * @module
 */

/** A byte range of a buffer. */
export interface BufferRange {
  /** The buffer. */
  buffer: GPUBuffer;
  /** First byte of the range. */
  offset: number;
  /** Bytes in the range. */
  size: number;
}

/** Past this many groups the cache starts over, so odd binding patterns cannot grow it without end. */
const MAX_GROUPS = 8192;

/** Bind groups by layout, uniform buffer and storage ranges. */
export class BindGroupCache {
  #groups = new Map<string, GPUBindGroup>();
  #keysOf = new Map<GPUBuffer, string[]>();
  #ids = new WeakMap<object, number>();
  #nextId = 0;
  /** Bind groups created (cache misses) since the cache was made. */
  created = 0;
  /** Bind groups reused (cache hits) since the cache was made. */
  reused = 0;

  /** An empty cache creating on `device`. */
  constructor(readonly device: GPUDevice) {}

  #id(o: object): number {
    let id = this.#ids.get(o);
    if (id === undefined) this.#ids.set(o, id = this.#nextId++);
    return id;
  }

  /** The group of `layout` binding `uniform` (dynamic offset) at 0 and `storage` from 1. */
  get(layout: GPUBindGroupLayout, uniform: BufferRange, storage: BufferRange[]): GPUBindGroup {
    const ranges = [uniform, ...storage];
    const key = `${this.#id(layout)}:${
      ranges.map((r) => `${this.#id(r.buffer)}@${r.offset}+${r.size}`).join(",")
    }`;
    let group = this.#groups.get(key);
    if (group) {
      this.reused++;
      return group;
    }
    if (this.#groups.size >= MAX_GROUPS) this.clear();
    group = this.device.createBindGroup({
      layout,
      entries: ranges.map((resource, binding) => ({ binding, resource })),
    });
    this.created++;
    this.#groups.set(key, group);
    for (const r of ranges) {
      const keys = this.#keysOf.get(r.buffer) ?? [];
      keys.push(key);
      this.#keysOf.set(r.buffer, keys);
    }
    return group;
  }

  /** Drop the groups that bind `buffer` (it is being destroyed). */
  forget(buffer: GPUBuffer): void {
    for (const key of this.#keysOf.get(buffer) ?? []) this.#groups.delete(key);
    this.#keysOf.delete(buffer);
  }

  /** Drop every group. */
  clear(): void {
    this.#groups.clear();
    this.#keysOf.clear();
  }

  /** Number of cached groups. */
  get size(): number {
    return this.#groups.size;
  }
}
