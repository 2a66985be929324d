/**
 * safetensors reading: an 8-byte little-endian header length N, N bytes of JSON describing each
 * tensor (`dtype`, `shape`, `data_offsets` relative to the data section), then the data section.
 * Validation follows the reference Rust crate (huggingface/safetensors `read_metadata` and
 * `Metadata::validate`): header at most 100 MB, UTF-8 JSON object, tensors sorted by offsets
 * must tile the data section exactly (no overlap, no hole, nothing after the last tensor) and
 * each span must equal shape × dtype size.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { DTYPE_BYTES, DTYPES, isDtype, numelOf } from "./dtype.ts";
import { makeStore, openSource, type StoredTensor } from "./tensor_source.ts";
import type { TensorInfo, WeightStore } from "./weights.ts";

/** Largest header accepted, as in the reference implementation. */
export const MAX_HEADER_BYTES = 100_000_000;

/** A tensor entry of a safetensors header; `begin`/`end` are offsets into the data section. */
export interface SafetensorsEntry extends TensorInfo {
  /** First byte in the data section. */
  begin: number;
  /** One past the last byte in the data section. */
  end: number;
}

/** A parsed and validated safetensors header. */
export interface SafetensorsHeader {
  /** Bytes before the data section (8 + JSON length): the data section starts here. */
  headerBytes: number;
  /** Tensors by name, in header order. */
  tensors: Map<string, SafetensorsEntry>;
  /** The `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
}

function bad(source: string, what: string): WebcapError {
  return new WebcapError("BAD_SAFETENSORS", `${source}: ${what}`);
}

/**
 * The JSON header length N stored in the first 8 bytes, checked against the limit and `fileSize`.
 * @returns 8 + N, the offset of the data section.
 */
function readHeaderLength(bytes: Uint8Array, source: string, fileSize: number): number {
  if (fileSize < 8 || bytes.length < 8) {
    throw bad(
      source,
      `${fileSize} bytes is shorter than the 8-byte header length; the file is truncated or not safetensors`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (n > MAX_HEADER_BYTES) {
    throw bad(
      source,
      `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit; the file is corrupt or not safetensors`,
    );
  }
  if (8 + n > fileSize) {
    throw bad(
      source,
      `header length ${n} runs past the end of the ${fileSize}-byte file; the file is truncated or not safetensors`,
    );
  }
  return 8 + n;
}

function decodeHeaderJson(bytes: Uint8Array, headerBytes: number, source: string): unknown {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, headerBytes));
  } catch {
    throw bad(source, "header is not valid UTF-8; the file is corrupt or not safetensors");
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw bad(
      source,
      `header is not valid JSON (${(e as Error).message}); the file is corrupt or not safetensors`,
    );
  }
}

function parseMetadata(value: unknown, source: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad(source, "__metadata__ must be a JSON object mapping strings to strings");
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      throw bad(
        source,
        `__metadata__ value of "${k}" is ${JSON.stringify(v)}; values must be strings`,
      );
    }
    out[k] = v;
  }
  return out;
}

const isIndex = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function parseEntry(name: string, raw: unknown, source: string): SafetensorsEntry {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw bad(
      source,
      `tensor "${name}": entry must be an object with dtype, shape and data_offsets`,
    );
  }
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  const missing = ["dtype", "shape", "data_offsets"].filter((k) => !Object.hasOwn(raw, k));
  if (missing.length > 0) {
    throw bad(
      source,
      `tensor "${name}": entry must be an object with dtype, shape and data_offsets (missing ${
        missing.join(", ")
      })`,
    );
  }
  if (!isDtype(dtype)) {
    throw bad(
      source,
      `tensor "${name}" has unsupported dtype ${JSON.stringify(dtype)} (webcap reads ${
        DTYPES.join(", ")
      })`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    throw bad(
      source,
      `tensor "${name}" has shape ${
        JSON.stringify(shape)
      }; a shape is an array of non-negative integers`,
    );
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) {
    throw bad(
      source,
      `tensor "${name}" has data_offsets ${
        JSON.stringify(offsets)
      }; expected [begin, end] with non-negative integers`,
    );
  }
  const [begin, end] = offsets as number[];
  if (begin > end) {
    throw bad(source, `tensor "${name}" has data_offsets begin ${begin} > end ${end}`);
  }
  const bytes = numelOf(shape) * DTYPE_BYTES[dtype];
  if (!Number.isSafeInteger(bytes) || bytes !== end - begin) {
    throw bad(
      source,
      `tensor "${name}": shape [${shape.join(", ")}] × ${dtype} (${DTYPE_BYTES[dtype]} bytes) = ` +
        `${bytes} bytes, but data_offsets [${begin}, ${end}] span ${end - begin} bytes`,
    );
  }
  return { name, dtype, shape: [...shape], begin, end };
}

/** Check that the tensors, sorted by offsets, tile [0, dataBytes) exactly. */
function checkTiling(tensors: Iterable<SafetensorsEntry>, dataBytes: number, source: string): void {
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: SafetensorsEntry | undefined;
  for (const t of sorted) {
    if (t.end > dataBytes) {
      throw bad(
        source,
        `tensor "${t.name}" data_offsets [${t.begin}, ${t.end}] run past the ${dataBytes}-byte data ` +
          "section; the file is truncated or its header is wrong",
      );
    }
    if (t.begin < pos) {
      throw bad(
        source,
        `tensor "${t.name}" [${t.begin}, ${t.end}] overlaps tensor "${prev!.name}" [${
          prev!.begin
        }, ${prev!.end}]`,
      );
    }
    if (t.begin > pos) {
      throw bad(
        source,
        `bytes [${pos}, ${t.begin}) before tensor "${t.name}" belong to no tensor; safetensors forbids holes`,
      );
    }
    pos = t.end;
    prev = t;
  }
  if (pos !== dataBytes) {
    throw bad(
      source,
      `data section has ${dataBytes - pos} bytes after the last tensor that belong to no tensor; ` +
        "the file is corrupt",
    );
  }
}

/**
 * Parse and validate a safetensors header.
 * @param bytes the file, or at least its first 8 + N bytes (the header).
 * @param source file name for error messages.
 * @param fileSize total file length when `bytes` holds only the header (default `bytes.length`).
 * @throws WebcapError BAD_SAFETENSORS naming the file and the tensor at fault.
 */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  source: string,
  fileSize: number = bytes.length,
): SafetensorsHeader {
  const headerBytes = readHeaderLength(bytes, source, fileSize);
  if (bytes.length < headerBytes) {
    throw bad(source, `only ${bytes.length} of the ${headerBytes} header bytes were given`);
  }
  const json = decodeHeaderJson(bytes, headerBytes, source);
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw bad(
      source,
      `header must be a JSON object, got ${Array.isArray(json) ? "an array" : typeof json}`,
    );
  }
  // Object.entries lists a "__proto__" key as an own property; a Map keeps it a plain name.
  const tensors = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = Object.create(null);
  for (const [name, raw] of Object.entries(json)) {
    if (name === "__metadata__") metadata = parseMetadata(raw, source);
    else tensors.set(name, parseEntry(name, raw, source));
  }
  checkTiling(tensors.values(), fileSize - headerBytes, source);
  return { headerBytes, tensors, metadata };
}

/**
 * Open a safetensors file (Deno: the header is read once, then each tensor with its own
 * seek + read) or buffer (anywhere: tensors are views into it, never copies).
 * @param opts.name what a buffer is called in messages (e.g. the URL it came from).
 * @throws WebcapError BAD_SAFETENSORS for a malformed file, MISSING_FILE for an absent one.
 */
export async function openSafetensors(
  pathOrBytes: string | Uint8Array | ArrayBuffer,
  opts: { name?: string } = {},
): Promise<WeightStore> {
  const src = await openSource(pathOrBytes, opts.name);
  try {
    const prefix = await src.read(0, Math.min(8, src.size));
    const headerBytes = readHeaderLength(prefix, src.name, src.size);
    const header = parseSafetensorsHeader(await src.read(0, headerBytes), src.name, src.size);
    const tensors = new Map<string, StoredTensor>();
    for (const [name, t] of header.tensors) {
      const info: TensorInfo = { name, dtype: t.dtype, shape: t.shape };
      const read = () => src.read(headerBytes + t.begin, t.end - t.begin);
      tensors.set(name, { info, read });
    }
    const metadata = new Map([[src.name, header.metadata]]);
    return makeStore(src.name, tensors, () => src.close(), metadata);
  } catch (e) {
    src.close();
    throw e;
  }
}
