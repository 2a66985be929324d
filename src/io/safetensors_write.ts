/**
 * safetensors writing (Deno): the 8-byte little-endian header length, the JSON header (padded
 * with spaces to a multiple of 8 bytes, as the reference crate writes it), then each tensor's
 * bytes in header order. Tensors are read one at a time while writing, so a checkpoint is never
 * held whole in memory.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { type Dtype, DTYPE_BYTES, numelOf } from "./dtype.ts";

/** A tensor to write: its description and a function giving its little-endian bytes. */
export interface TensorToWrite {
  /** The tensor's name in the file's header. */
  readonly name: string;
  /** Its element type as safetensors names it. */
  readonly dtype: Dtype;
  /** Its shape. */
  readonly shape: readonly number[];
  /** Its data as little-endian bytes, read when the file is written. */
  read(): Promise<Uint8Array> | Uint8Array;
}

/** The header bytes (length and JSON) of `tensors` laid out in order. */
function headerBytes(
  tensors: readonly TensorToWrite[],
  metadata: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let at = 0;
  for (const t of tensors) {
    const bytes = numelOf(t.shape) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + bytes] };
    at += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (new TextEncoder().encode(json).length % 8)) % 8);
  const body = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
  out.set(body, 8);
  return out;
}

/** Write `tensors` as a safetensors file at `path` (created or truncated). */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata: Record<string, string> = {},
): Promise<void> {
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name) || t.name === "__metadata__") {
      throw new WebcapError("BAD_SAFETENSORS", `${path}: tensor name "${t.name}" used twice`);
    }
    names.add(t.name);
  }
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    await writeAll(file, headerBytes(tensors, metadata));
    for (const t of tensors) {
      const bytes = await t.read();
      const want = numelOf(t.shape) * DTYPE_BYTES[t.dtype];
      if (bytes.length !== want) {
        throw new WebcapError(
          "BAD_SHAPE",
          `${path}: tensor "${t.name}" has ${bytes.length} bytes; [${t.shape}] ${t.dtype} is ${want}`,
        );
      }
      await writeAll(file, bytes);
    }
  } finally {
    file.close();
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let o = 0; o < bytes.length;) o += await file.write(bytes.subarray(o));
}
