/**
 * Where checkpoint bytes come from: an in-memory buffer (browser or Deno) or a file read range by
 * range through a `Deno.FsFile` (Deno only), plus the generic {@link WeightStore} built over a
 * table of tensors. Nothing here touches `Deno` until a file path is opened, so the module loads
 * in a browser.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { bytesToF32 } from "./dtype.ts";
import type { TensorInfo, WeightStore } from "./weights.ts";

/** Random-access bytes of one file or buffer. */
export interface ByteSource {
  /** File path or a label such as `<bytes>`, for error messages. */
  readonly name: string;
  /** Total length in bytes. */
  readonly size: number;
  /** `length` bytes from `offset`; a view for buffers, a fresh array for files. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Release the file handle (no-op for buffers). */
  close(): void;
}

/** A buffer as a byte source; reads are views into it, never copies. */
export function bytesSource(data: Uint8Array | ArrayBuffer, name = "<bytes>"): ByteSource {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  return {
    name,
    size: bytes.length,
    read(offset, length) {
      checkRange(name, bytes.length, offset, length);
      return Promise.resolve(bytes.subarray(offset, offset + length));
    },
    close() {},
  };
}

/** A file as a byte source: reads seek and read through one handle, one read at a time. */
export async function fileSource(path: string): Promise<ByteSource> {
  if (typeof Deno === "undefined") {
    throw new WebcapError(
      "BAD_OPTION",
      `cannot open "${path}": file paths need Deno; in a browser pass the file's bytes instead`,
    );
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new WebcapError("MISSING_FILE", `weights file "${path}" does not exist`, { cause: e });
    }
    throw e;
  }
  const size = (await file.stat()).size;
  let queue: Promise<unknown> = Promise.resolve();
  return {
    name: path,
    size,
    read(offset, length) {
      checkRange(path, size, offset, length);
      // Seek and read share the handle's position: chain them so concurrent reads never interleave.
      const next = queue.then(() => readAt(file, path, offset, length));
      queue = next.catch(() => {});
      return next;
    },
    close() {
      file.close();
    },
  };
}

/** A byte source for a path (Deno) or a buffer (anywhere; `name` names it in messages). */
export function openSource(
  pathOrBytes: string | Uint8Array | ArrayBuffer,
  name?: string,
): Promise<ByteSource> {
  return typeof pathOrBytes === "string"
    ? fileSource(pathOrBytes)
    : Promise.resolve(bytesSource(pathOrBytes, name));
}

async function readAt(
  file: Deno.FsFile,
  path: string,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < length) {
    const n = await file.read(out.subarray(filled));
    if (n === null) {
      throw new WebcapError(
        "BAD_WEIGHTS",
        `"${path}" ended at byte ${offset + filled} while reading ${length} bytes at ${offset}; ` +
          "the file was truncated or changed while open",
      );
    }
    filled += n;
  }
  return out;
}

function checkRange(name: string, size: number, offset: number, length: number): void {
  if (offset < 0 || length < 0 || offset + length > size) {
    throw new WebcapError(
      "BAD_WEIGHTS",
      `${name}: bytes [${offset}, ${offset + length}) lie outside the ${size}-byte file`,
    );
  }
}

/** One tensor of a store: its description and how to fetch its contiguous bytes. */
export interface StoredTensor {
  /** Name, dtype and shape. */
  readonly info: TensorInfo;
  /** The tensor's contiguous little-endian bytes. */
  read(): Promise<Uint8Array>;
}

/**
 * A {@link WeightStore} over a table of tensors; `close` runs `onClose` once. `metadata`: each
 * file's `__metadata__` by file (default: `source` alone, without any).
 */
export function makeStore(
  source: string,
  tensors: ReadonlyMap<string, StoredTensor>,
  onClose: () => void,
  metadata: ReadonlyMap<string, Readonly<Record<string, string>>> = new Map([[source, {}]]),
): WeightStore {
  const get = (name: string): StoredTensor => {
    const t = tensors.get(name);
    if (t === undefined) throw missingTensor(source, name, tensors.keys());
    return t;
  };
  let closed = false;
  return {
    source,
    names: () => [...tensors.keys()],
    info: (name) => get(name).info,
    has: (name) => tensors.has(name),
    fileMetadata: () => metadata,
    read(name) {
      const t = tensors.get(name);
      return t ? t.read() : Promise.reject(missingTensor(source, name, tensors.keys()));
    },
    async readF32(name) {
      const t = get(name);
      return bytesToF32(await t.read(), t.info.dtype);
    },
    close() {
      if (!closed) onClose();
      closed = true;
    },
  };
}

/** BAD_WEIGHTS error for an absent tensor, listing names that share its last component. */
export function missingTensor(
  source: string,
  name: string,
  names: Iterable<string>,
): WebcapError {
  const last = name.slice(name.lastIndexOf(".") + 1);
  const all = [...names];
  const similar = all.filter((n) => n.endsWith(`.${last}`) || n === last).slice(0, 5);
  const hint = similar.length > 0 ? `; similar names: ${similar.join(", ")}` : "";
  return new WebcapError(
    "BAD_WEIGHTS",
    `tensor "${name}" is not in ${source} (${all.length} tensors${hint}); ` +
      "check the checkpoint matches the model architecture",
  );
}
