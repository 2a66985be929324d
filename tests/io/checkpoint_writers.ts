/**
 * Test-only writers that build checkpoints byte by byte: safetensors files, protocol-2 pickles
 * from a tiny value language, legacy torch.save files and zip archives (stored or deflated,
 * optionally with zip64 records). They let tests craft malformed and unusual files.
 * @module
 */
import { concatBytes } from "../../src/bytes.ts";

/** Tensor bytes and description for {@link writeSafetensors}. */
export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** Concatenate byte arrays. */
export const concat = concatBytes;

/** An 8-byte little-endian length followed by `header` JSON, then `data`. */
export function safetensorsBytes(header: unknown, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
  return concat([len, json, data]);
}

/** A valid safetensors file holding `tensors` in insertion order. */
export function writeSafetensors(tensors: Map<string, RawTensor>): Uint8Array {
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.bytes.length] };
    at += t.bytes.length;
  }
  return safetensorsBytes(header, concat([...tensors.values()].map((t) => t.bytes)));
}

/** Pickle values: tuples, globals, calls, persistent ids and object state need a wrapper. */
export type Py =
  | null
  | boolean
  | number
  | bigint
  | string
  | Py[]
  | Map<string | number, Py>
  | { tuple: Py[] }
  | { global: string }
  | { call: Py; args: Py[] }
  | { persid: Py }
  | { build: Py; state: Py };

const te = new TextEncoder();

function emit(v: Py, out: number[]): void {
  const u32 = (n: number) =>
    out.push(n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff);
  if (v === null) out.push(0x4e);
  else if (typeof v === "boolean") out.push(v ? 0x88 : 0x89);
  else if (typeof v === "bigint") {
    const bytes: number[] = [];
    for (let x = v; bytes.length === 0 || x !== 0n;) {
      bytes.push(Number(x & 0xffn));
      x >>= 8n;
    }
    if (bytes[bytes.length - 1] & 0x80) bytes.push(0);
    out.push(0x8a, bytes.length, ...bytes);
  } else if (typeof v === "number") {
    if (Number.isInteger(v)) {
      out.push(0x4a);
      u32(v);
    } else {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, v, false);
      out.push(0x47, ...b);
    }
  } else if (typeof v === "string") {
    const b = te.encode(v);
    out.push(0x58);
    u32(b.length);
    out.push(...b);
  } else if (Array.isArray(v)) {
    out.push(0x5d, 0x28);
    v.forEach((x) => emit(x, out));
    out.push(0x65);
  } else if (v instanceof Map) {
    out.push(0x7d, 0x28);
    for (const [k, x] of v) {
      emit(k, out);
      emit(x, out);
    }
    out.push(0x75);
  } else if ("tuple" in v) {
    out.push(0x28);
    v.tuple.forEach((x) => emit(x, out));
    out.push(0x74);
  } else if ("global" in v) {
    const dot = v.global.lastIndexOf(".");
    out.push(0x63, ...te.encode(`${v.global.slice(0, dot)}\n${v.global.slice(dot + 1)}\n`));
  } else if ("call" in v) {
    emit(v.call, out);
    emit({ tuple: v.args }, out);
    out.push(0x52);
  } else if ("persid" in v) {
    emit(v.persid, out);
    out.push(0x51);
  } else {
    emit(v.build, out);
    emit(v.state, out);
    out.push(0x62);
  }
}

/** A protocol-2 pickle of `v`. */
export function pickle(v: Py): Uint8Array {
  const out = [0x80, 2];
  emit(v, out);
  out.push(0x2e);
  return new Uint8Array(out);
}

/** `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`. */
export function tensorPy(storage: Py, offset: number, shape: number[], stride: number[]): Py {
  return {
    call: { global: "torch._utils._rebuild_tensor_v2" },
    args: [
      { persid: storage },
      offset,
      { tuple: shape },
      { tuple: stride },
      false,
      { call: { global: "collections.OrderedDict" }, args: [] },
    ],
  };
}

/** One storage of a checkpoint: its torch type name, key and raw bytes. */
export interface RawStorage {
  type: string;
  key: string;
  numel: number;
  bytes: Uint8Array;
}

/** The zip format's persistent id for a storage. */
export function zipStorageId(s: RawStorage): Py {
  return { tuple: ["storage", { global: `torch.${s.type}` }, s.key, "cpu", s.numel] };
}

/** The legacy format's persistent id (a sixth field, the view metadata, is None). */
export function legacyStorageId(s: RawStorage, view: Py = null): Py {
  return { tuple: ["storage", { global: `torch.${s.type}` }, s.key, "cpu", s.numel, view] };
}

/** A legacy (pre-1.6) torch.save file: magic, protocol, sys info, main, keys, storages. */
export function legacyCheckpoint(main: Py, storages: RawStorage[]): Uint8Array {
  const sysInfo = new Map<string, Py>([["protocol_version", 1001], ["little_endian", true]]);
  const parts = [
    pickle(0x1950a86a20f9469cfc6cn),
    pickle(1001),
    pickle(sysInfo),
    pickle(main),
    pickle(storages.map((s) => s.key)),
  ];
  for (const s of storages) {
    const count = new Uint8Array(8);
    new DataView(count.buffer).setBigInt64(0, BigInt(s.numel), true);
    parts.push(count, s.bytes);
  }
  return concat(parts);
}

async function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * A zip archive of `entries`; `deflate` compresses them, `zip64` saturates the 32-bit fields and
 * writes the zip64 extra fields and end records instead. CRCs are left 0 (readers here skip them).
 */
export async function writeZip(
  entries: [string, Uint8Array][],
  opts: { deflate?: boolean; zip64?: boolean } = {},
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let at = 0;
  for (const [name, data] of entries) {
    const body = opts.deflate ? await deflateRaw(data) : data;
    const nameBytes = te.encode(name);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(8, opts.deflate ? 8 : 0, true);
    local.setUint32(18, body.length, true);
    local.setUint32(22, data.length, true);
    local.setUint16(26, nameBytes.length, true);
    parts.push(new Uint8Array(local.buffer), nameBytes, body);
    const extra = new DataView(new ArrayBuffer(opts.zip64 ? 28 : 0));
    if (opts.zip64) {
      extra.setUint16(0, 1, true);
      extra.setUint16(2, 24, true);
      extra.setBigUint64(4, BigInt(data.length), true);
      extra.setBigUint64(12, BigInt(body.length), true);
      extra.setBigUint64(20, BigInt(at), true);
    }
    const cd = new DataView(new ArrayBuffer(46));
    const big = (n: number) => (opts.zip64 ? 0xffffffff : n);
    cd.setUint32(0, 0x02014b50, true);
    cd.setUint16(10, opts.deflate ? 8 : 0, true);
    cd.setUint32(20, big(body.length), true);
    cd.setUint32(24, big(data.length), true);
    cd.setUint16(28, nameBytes.length, true);
    cd.setUint16(30, extra.byteLength, true);
    cd.setUint32(42, big(at), true);
    central.push(new Uint8Array(cd.buffer), nameBytes, new Uint8Array(extra.buffer));
    at += 30 + nameBytes.length + body.length;
  }
  const cdBytes = concat(central);
  const tail: Uint8Array[] = [];
  if (opts.zip64) {
    const rec = new DataView(new ArrayBuffer(56 + 20));
    rec.setUint32(0, 0x06064b50, true);
    rec.setBigUint64(4, 44n, true);
    rec.setBigUint64(24, BigInt(entries.length), true);
    rec.setBigUint64(32, BigInt(entries.length), true);
    rec.setBigUint64(40, BigInt(cdBytes.length), true);
    rec.setBigUint64(48, BigInt(at), true);
    rec.setUint32(56, 0x07064b50, true);
    rec.setBigUint64(64, BigInt(at + cdBytes.length), true);
    rec.setUint32(72, 1, true);
    tail.push(new Uint8Array(rec.buffer));
  }
  const eocd = new DataView(new ArrayBuffer(22));
  eocd.setUint32(0, 0x06054b50, true);
  eocd.setUint16(8, opts.zip64 ? 0xffff : entries.length, true);
  eocd.setUint16(10, opts.zip64 ? 0xffff : entries.length, true);
  eocd.setUint32(12, opts.zip64 ? 0xffffffff : cdBytes.length, true);
  eocd.setUint32(16, opts.zip64 ? 0xffffffff : at, true);
  tail.push(new Uint8Array(eocd.buffer));
  return concat([...parts, cdBytes, ...tail]);
}

/** Fixture folder of the reference checkpoints. */
export const FIXTURES = new URL("../../../shared/fixtures/hf/", import.meta.url);

/** Absolute path of a fixture file. */
export const fixture = (rel: string): string => new URL(rel, FIXTURES).pathname;
