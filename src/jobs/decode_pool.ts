/**
 * A pool of worker threads that decode images (`decode_worker.ts` runs the image layer's
 * `decodeImage`), so JPEG/WebP decoding (WebAssembly) does not hold the thread that drives the
 * GPU. A request goes to the worker with the fewest in flight; its encoded bytes are copied to
 * the worker (they may share a buffer with a tar stream's remainder), its pixels come back
 * transferred, not copied. A WebcapError thrown in a worker rejects that request with the same
 * code and message; any other failure (a worker that crashed) rejects every request in flight.
 * Deno only: `close()` terminates the workers, which would otherwise keep the process alive.
 * @module
 */
import { WebcapError, type WebcapErrorCode } from "../errors.ts";
import type { RgbImage } from "../image/decode.ts";

/** A decode request, main thread → worker. */
export interface DecodeRequest {
  id: number;
  /** The encoded image file. */
  bytes: Uint8Array;
  /** A path or URL, for error messages. */
  source: string;
  maxPixels: number;
}

/** A decode reply, worker → main thread: the pixels, or why there are none. */
export type DecodeReply =
  | { id: number; image: RgbImage; error?: undefined }
  | { id: number; error: { code?: WebcapErrorCode; message: string } };

interface Pending {
  resolve: (img: RgbImage) => void;
  reject: (e: Error) => void;
}

/** One worker and the requests it has in flight. */
interface Thread {
  worker: Worker;
  pending: Map<number, Pending>;
}

/** The default pool size: one thread left to the GPU loop, at most 4. */
export function defaultDecodeWorkers(): number {
  return Math.max(0, Math.min(4, (navigator.hardwareConcurrency ?? 1) - 1));
}

/** `size` decoding worker threads; {@link DecodePool.close} ends them. */
export class DecodePool {
  readonly #threads: Thread[];
  #nextId = 0;
  #broken: Error | undefined;

  constructor(size: number) {
    if (!(Number.isSafeInteger(size) && size > 0)) {
      throw new WebcapError("BAD_OPTION", `a decode pool needs ≥ 1 worker, got ${size}`);
    }
    this.#threads = Array.from({ length: size }, () => this.#spawn());
  }

  #spawn(): Thread {
    const worker = new Worker(new URL("./decode_worker.ts", import.meta.url), { type: "module" });
    const t: Thread = { worker, pending: new Map() };
    worker.onmessage = (e: MessageEvent<DecodeReply>) => this.#settle(t, e.data);
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault(); // reported through the requests, not rethrown on this thread
      this.#fail(new Error(`an image decoding worker failed: ${e.message}`));
    };
    return t;
  }

  #settle(t: Thread, reply: DecodeReply): void {
    const p = t.pending.get(reply.id);
    if (!p) return;
    t.pending.delete(reply.id);
    if (!reply.error) p.resolve(reply.image);
    else if (reply.error.code) p.reject(new WebcapError(reply.error.code, reply.error.message));
    else p.reject(new Error(`an image decoding worker failed: ${reply.error.message}`));
  }

  /** Reject every request in flight and end the workers; later requests reject with `e`. */
  #fail(e: Error): void {
    this.#broken ??= e;
    for (const t of this.#threads) {
      t.worker.terminate();
      for (const p of t.pending.values()) p.reject(this.#broken);
      t.pending.clear();
    }
  }

  /**
   * Decode `bytes` as `decodeImage(bytes, source, { maxPixels })` does, on a worker.
   * @throws WebcapError as decodeImage; Error when the pool is closed or a worker failed.
   */
  decode(bytes: Uint8Array, source: string, maxPixels: number): Promise<RgbImage> {
    if (this.#broken) return Promise.reject(this.#broken);
    const t = this.#threads.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      t.pending.set(id, { resolve, reject });
      t.worker.postMessage({ id, bytes, source, maxPixels } satisfies DecodeRequest);
    });
  }

  /** End the workers; requests in flight reject. Safe to call twice. */
  close(): void {
    this.#fail(new Error("the image decoding pool is closed"));
  }
}
