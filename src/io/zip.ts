/**
 * A minimal zip reader for torch ≥ 1.6 checkpoints: the central directory (zip64 included, which
 * torch always writes), stored entries read range by range, and deflated entries inflated whole
 * with `DecompressionStream("deflate-raw")`. CRCs are not checked (tensors are read in ranges).
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { ByteSource } from "./tensor_source.ts";

/** One file of a zip archive, from the central directory. */
export interface ZipEntry {
  /** Path inside the archive. */
  readonly name: string;
  /** 0 = stored, 8 = deflate. */
  readonly method: number;
  /** Bytes in the archive. */
  readonly compressedSize: number;
  /** Bytes once extracted. */
  readonly size: number;
  /** Offset of the entry's local header. */
  readonly localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const EOCD_BYTES = 22;
const MAX_COMMENT = 0xffff;

function bad(src: ByteSource, what: string): WebcapError {
  return new WebcapError("BAD_PICKLE", `${src.name}: ${what}; the checkpoint zip is corrupt`);
}

function u64(view: DataView, at: number, src: ByteSource): number {
  const v = view.getUint32(at + 4, true) * 2 ** 32 + view.getUint32(at, true);
  if (!Number.isSafeInteger(v)) throw bad(src, `64-bit field ${v} at ${at} is too large`);
  return v;
}

function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** True if the bytes start like a zip archive (a local file header). */
export function isZip(head: Uint8Array): boolean {
  return head.length >= 4 && dataView(head).getUint32(0, true) === SIG_LOCAL;
}

interface Directory {
  entries: number;
  offset: number;
  size: number;
}

/** Locate the central directory from the end-of-central-directory record (zip64 if saturated). */
async function findDirectory(src: ByteSource): Promise<Directory> {
  const tailLen = Math.min(src.size, EOCD_BYTES + MAX_COMMENT + 20);
  const tail = await src.read(src.size - tailLen, tailLen);
  const view = dataView(tail);
  let at = tail.length - EOCD_BYTES;
  while (at >= 0 && view.getUint32(at, true) !== SIG_EOCD) at--;
  if (at < 0) throw bad(src, "no end-of-central-directory record");
  const dir = {
    entries: view.getUint16(at + 10, true),
    size: view.getUint32(at + 12, true),
    offset: view.getUint32(at + 16, true),
  };
  if (dir.entries !== 0xffff && dir.size !== 0xffffffff && dir.offset !== 0xffffffff) return dir;
  const loc = at - 20;
  if (loc < 0 || view.getUint32(loc, true) !== SIG_ZIP64_LOCATOR) {
    throw bad(src, "zip64 fields without a zip64 locator");
  }
  const eocd64At = u64(view, loc + 8, src);
  const rec = dataView(await src.read(eocd64At, 56));
  if (rec.getUint32(0, true) !== SIG_ZIP64_EOCD) throw bad(src, "bad zip64 end record");
  return { entries: u64(rec, 32, src), size: u64(rec, 40, src), offset: u64(rec, 48, src) };
}

/** The zip64 extra field (id 1) replaces saturated sizes/offset, in this order. */
function applyZip64(
  extra: DataView,
  fields: { size: number; compressedSize: number; localHeaderOffset: number },
  src: ByteSource,
): void {
  for (let at = 0; at + 4 <= extra.byteLength;) {
    const id = extra.getUint16(at, true);
    const len = extra.getUint16(at + 2, true);
    if (id === 1) {
      let p = at + 4;
      for (const key of ["size", "compressedSize", "localHeaderOffset"] as const) {
        if (fields[key] !== 0xffffffff) continue;
        if (p + 8 > at + 4 + len) throw bad(src, "short zip64 extra field");
        fields[key] = u64(extra, p, src);
        p += 8;
      }
    }
    at += 4 + len;
  }
}

/**
 * Read the central directory of a zip archive.
 * @returns entries by name.
 * @throws WebcapError BAD_PICKLE if the archive is malformed.
 */
export async function readZipDirectory(src: ByteSource): Promise<Map<string, ZipEntry>> {
  const dir = await findDirectory(src);
  if (dir.offset + dir.size > src.size) throw bad(src, "central directory runs past the end");
  const bytes = await src.read(dir.offset, dir.size);
  const view = dataView(bytes);
  const names = new TextDecoder();
  const out = new Map<string, ZipEntry>();
  let at = 0;
  for (let i = 0; i < dir.entries; i++) {
    if (at + 46 > bytes.length || view.getUint32(at, true) !== SIG_CENTRAL) {
      throw bad(src, `central directory entry ${i} is malformed`);
    }
    const flags = view.getUint16(at + 8, true);
    const nameLen = view.getUint16(at + 28, true);
    const extraLen = view.getUint16(at + 30, true);
    const commentLen = view.getUint16(at + 32, true);
    const name = names.decode(bytes.subarray(at + 46, at + 46 + nameLen));
    if (flags & 1) throw bad(src, `entry "${name}" is encrypted`);
    const fields = {
      compressedSize: view.getUint32(at + 20, true),
      size: view.getUint32(at + 24, true),
      localHeaderOffset: view.getUint32(at + 42, true),
    };
    const extraAt = at + 46 + nameLen;
    applyZip64(dataView(bytes.subarray(extraAt, extraAt + extraLen)), fields, src);
    const method = view.getUint16(at + 10, true);
    if (method === 0 && fields.compressedSize !== fields.size) {
      throw bad(src, `stored entry "${name}" has sizes ${fields.compressedSize} ≠ ${fields.size}`);
    }
    out.set(name, { name, method, ...fields });
    at = extraAt + extraLen + commentLen;
  }
  return out;
}

/** Offset of the entry's data: after its local header, whose extra field may differ (padding). */
async function dataStart(src: ByteSource, entry: ZipEntry): Promise<number> {
  const head = dataView(await src.read(entry.localHeaderOffset, 30));
  if (head.getUint32(0, true) !== SIG_LOCAL) throw bad(src, `no local header for "${entry.name}"`);
  const start = entry.localHeaderOffset + 30 + head.getUint16(26, true) + head.getUint16(28, true);
  if (start + entry.compressedSize > src.size) {
    throw bad(src, `entry "${entry.name}" runs past the end`);
  }
  return start;
}

async function inflate(data: Uint8Array, entry: ZipEntry, src: ByteSource): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("deflate-raw"),
  );
  let out: Uint8Array;
  try {
    out = new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw bad(src, `entry "${entry.name}" does not inflate (${(e as Error).message})`);
  }
  if (out.length !== entry.size) {
    throw bad(src, `entry "${entry.name}" inflates to ${out.length} bytes, not ${entry.size}`);
  }
  return out;
}

/**
 * Bytes [start, start + length) of an entry's extracted content. Stored entries read only that
 * range; deflated entries are inflated whole, then sliced.
 */
export async function readZipEntry(
  src: ByteSource,
  entry: ZipEntry,
  start = 0,
  length: number = entry.size - start,
): Promise<Uint8Array> {
  if (start < 0 || length < 0 || start + length > entry.size) {
    throw bad(
      src,
      `bytes [${start}, ${
        start + length
      }) lie outside the ${entry.size}-byte entry "${entry.name}"`,
    );
  }
  const at = await dataStart(src, entry);
  if (entry.method === 0) return src.read(at + start, length);
  if (entry.method !== 8) {
    throw bad(src, `entry "${entry.name}" uses unsupported compression ${entry.method}`);
  }
  const whole = await inflate(await src.read(at, entry.compressedSize), entry, src);
  return whole.subarray(start, start + length);
}
