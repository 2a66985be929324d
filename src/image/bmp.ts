/**
 * BMP to RGB as Pillow 9.4's `BmpImagePlugin` and `convert("RGB")` do: OS/2 (12-byte) and
 * Windows (40/64/108/124-byte) headers, bottom-up or top-down rows, 1/4/8-bit palettes (a
 * palette shorter than an index continues with Pillow's gray ramp), 16-bit 5-5-5 and 5-6-5
 * (`v·255/31`, `v·255/63`, truncated), 24-bit, 32-bit (BGRX and the bit-field layouts Pillow
 * accepts; alpha dropped), and RLE8/RLE4 with Pillow's run semantics.
 * @module
 */

/** Raised for a BMP Pillow would refuse; the message says why. */
export class BmpError extends Error {}

/** What the header says. */
export interface BmpHeader {
  width: number;
  height: number;
  /** Rows stored top row first. */
  topDown: boolean;
  bits: number;
  compression: number;
  /** Palette entries (1/4/8-bit), or bit masks. */
  colors: number;
  headerSize: number;
  /** Offset of the pixel data. */
  offset: number;
  /** R, G, B, A masks of BI_BITFIELDS (zeros otherwise). */
  masks: number[];
}

const RAW = 0, RLE8 = 1, RLE4 = 2, BITFIELDS = 3;

/** Read a BMP's file and info headers (Pillow's `_bitmap`). */
export function bmpHeader(bytes: Uint8Array): BmpHeader {
  if (bytes.length < 18) throw new BmpError("truncated BMP header");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerSize = v.getUint32(14, true);
  if (![12, 40, 64, 108, 124].includes(headerSize)) {
    throw new BmpError(`unsupported BMP header size ${headerSize}`);
  }
  if (bytes.length < 14 + headerSize) throw new BmpError("truncated BMP header");
  let offset = v.getUint32(10, true);
  const h: BmpHeader = headerSize === 12
    ? {
      width: v.getUint16(18, true),
      height: v.getUint16(20, true),
      topDown: false,
      bits: v.getUint16(24, true),
      compression: RAW,
      colors: 0,
      headerSize,
      offset,
      masks: [0, 0, 0, 0],
    }
    : {
      width: v.getInt32(18, true),
      height: Math.abs(v.getInt32(22, true)),
      topDown: bytes[25] === 0xff,
      bits: v.getUint16(28, true),
      compression: v.getUint32(30, true),
      colors: v.getUint32(46, true),
      headerSize,
      offset,
      masks: [0, 0, 0, 0],
    };
  if (h.compression === BITFIELDS) {
    // 40-byte headers keep R, G, B masks right after the header; larger ones hold all four.
    const at = 54, n = headerSize >= 56 ? 4 : 3;
    if (bytes.length < at + 4 * n) throw new BmpError("truncated BMP bit masks");
    for (let i = 0; i < n; i++) h.masks[i] = v.getUint32(at + 4 * i, true);
  }
  if (!h.colors) h.colors = 2 ** h.bits;
  if (offset === 14 + headerSize && h.bits <= 8) offset += 4 * h.colors;
  h.offset = offset;
  return h;
}

/** Pillow's raw mode for a bit-field layout, or undefined when it refuses it. */
function bitfieldMode(bits: number, m: number[]): string | undefined {
  const key = `${bits}:${m.map((x) => x.toString(16)).join(",")}`;
  return ({
    "32:ff0000,ff00,ff,0": "BGRX",
    "32:ff000000,ff0000,ff00,0": "XBGR",
    "32:ff000000,ff0000,ff00,ff": "ABGR",
    "32:ff,ff00,ff0000,ff000000": "RGBA",
    "32:ff0000,ff00,ff,ff000000": "BGRA",
    "32:0,0,0,0": "BGRA",
    "24:ff0000,ff00,ff,0": "BGR",
    "16:f800,7e0,1f,0": "BGR;16",
    "16:7c00,3e0,1f,0": "BGR;15",
  } as Record<string, string>)[bits === 32 ? key : key.replace(/,[0-9a-f]+$/, ",0")];
}

/** Byte offsets of R, G, B in a 3- or 4-byte pixel of each raw mode. */
const CHANNELS: Record<string, number[]> = {
  BGR: [2, 1, 0],
  BGRX: [2, 1, 0],
  BGRA: [2, 1, 0],
  XBGR: [3, 2, 1],
  ABGR: [3, 2, 1],
  RGBA: [0, 1, 2],
};

/** Decode a BMP file to RGB, [height, width, 3]. */
export function decodeBmp(bytes: Uint8Array, h: BmpHeader): Uint8Array {
  if (![1, 4, 8, 16, 24, 32].includes(h.bits)) {
    throw new BmpError(`unsupported BMP pixel depth ${h.bits}`);
  }
  const palette = h.bits <= 8 ? readPalette(bytes, h) : undefined;
  if (h.compression === RLE8 || h.compression === RLE4) {
    if (!palette) throw new BmpError(`RLE compression with ${h.bits}-bit pixels`);
    const indices = rle(bytes, h, h.compression === RLE4);
    return lookup(orderRows(indices, h.width, h.height, h.topDown), palette);
  }
  if (h.compression !== RAW && h.compression !== BITFIELDS) {
    throw new BmpError(`unsupported BMP compression ${h.compression}`);
  }
  const mode = h.compression === BITFIELDS
    ? bitfieldMode(h.bits, h.masks)
    : { 16: "BGR;15", 24: "BGR", 32: "BGRX" }[h.bits];
  if (h.compression === BITFIELDS && !mode) {
    throw new BmpError("unsupported BMP bit-field layout");
  }
  const stride = ((h.width * h.bits + 31) >> 3) & ~3;
  if (h.offset + stride * h.height > bytes.length) throw new BmpError("truncated BMP pixel data");
  const out = new Uint8Array(h.width * h.height * 3);
  for (let y = 0; y < h.height; y++) {
    const row = bytes.subarray(h.offset + stride * y, h.offset + stride * (y + 1));
    const dst = (h.topDown ? y : h.height - 1 - y) * h.width * 3;
    if (palette) unpackIndices(row, h.width, h.bits, palette, out, dst);
    else unpackRow(row, h.width, mode!, out, dst);
  }
  return out;
}

/** Palette as RGB triples of 256 entries: the file's (BGRX or OS/2 BGR), then the gray ramp. */
function readPalette(bytes: Uint8Array, h: BmpHeader): Uint8Array {
  if (h.colors > 256) throw new BmpError(`unsupported BMP palette size ${h.colors}`);
  const entry = h.headerSize === 12 ? 3 : 4;
  const at = 14 + h.headerSize;
  const pal = new Uint8Array(768);
  for (let i = 0; i < 256; i++) pal.fill(i, 3 * i, 3 * i + 3);
  for (let i = 0; i < h.colors && at + entry * i + 3 <= bytes.length; i++) {
    const p = at + entry * i;
    pal.set([bytes[p + 2], bytes[p + 1], bytes[p]], 3 * i);
  }
  return pal;
}

function unpackIndices(
  row: Uint8Array,
  width: number,
  bits: number,
  pal: Uint8Array,
  out: Uint8Array,
  dst: number,
) {
  const mask = (1 << bits) - 1;
  for (let x = 0; x < width; x++) {
    const bit = x * bits;
    const i = (row[bit >> 3] >> (8 - bits - (bit & 7))) & mask;
    out.set(pal.subarray(3 * i, 3 * i + 3), dst + 3 * x);
  }
}

function unpackRow(row: Uint8Array, width: number, mode: string, out: Uint8Array, dst: number) {
  if (mode === "BGR;15" || mode === "BGR;16") {
    const g6 = mode === "BGR;16";
    for (let x = 0; x < width; x++) {
      const p = row[2 * x] | (row[2 * x + 1] << 8);
      out[dst + 3 * x] = Math.trunc(((p >> (g6 ? 11 : 10)) & 31) * 255 / 31);
      out[dst + 3 * x + 1] = g6
        ? Math.trunc(((p >> 5) & 63) * 255 / 63)
        : Math.trunc(((p >> 5) & 31) * 255 / 31);
      out[dst + 3 * x + 2] = Math.trunc((p & 31) * 255 / 31);
    }
    return;
  }
  const size = mode === "BGR" ? 3 : 4;
  const [r, g, b] = CHANNELS[mode];
  for (let x = 0; x < width; x++) {
    out[dst + 3 * x] = row[size * x + r];
    out[dst + 3 * x + 1] = row[size * x + g];
    out[dst + 3 * x + 2] = row[size * x + b];
  }
}

/** Pillow's `BmpRleDecoder`: indices in file row order (width·height of them). */
function rle(bytes: Uint8Array, h: BmpHeader, rle4: boolean): Uint8Array {
  const n = h.width * h.height;
  const data = new Uint8Array(n);
  let len = 0, x = 0, at = h.offset;
  const push = (v: number) => {
    if (len < n) data[len] = v;
    len++;
  };
  while (len < n && at + 2 <= bytes.length) {
    const count = bytes[at], byte = bytes[at + 1];
    at += 2;
    if (count) { // encoded run
      const run = x + count > h.width ? Math.max(0, h.width - x) : count;
      for (let i = 0; i < run; i++) push(rle4 ? (i % 2 ? byte & 15 : byte >> 4) : byte);
      x += run;
    } else if (byte === 0) { // end of line
      while (len % h.width !== 0) push(0);
      x = 0;
    } else if (byte === 1) { // end of bitmap
      break;
    } else if (byte === 2) { // delta
      if (at + 2 > bytes.length) break;
      for (let i = bytes[at] + bytes[at + 1] * h.width; i > 0; i--) push(0);
      at += 2;
      x = len % h.width;
    } else { // absolute run
      const want = rle4 ? byte >> 1 : byte;
      const got = bytes.subarray(at, at + want);
      for (const b of got) rle4 ? (push(b >> 4), push(b & 15)) : push(b);
      at += got.length;
      if (got.length < want) break;
      x += byte;
      if (at % 2 !== 0) at++; // runs are word-aligned (in file offsets, as Pillow reads them)
    }
  }
  if (len < n) throw new BmpError("truncated BMP RLE data (not enough image data)");
  return data;
}

/** Rows of one byte per pixel into top-to-bottom order. */
function orderRows(v: Uint8Array, row: number, height: number, topDown: boolean): Uint8Array {
  if (topDown) return v;
  const out = new Uint8Array(v.length);
  for (let y = 0; y < height; y++) {
    out.set(v.subarray(y * row, (y + 1) * row), (height - 1 - y) * row);
  }
  return out;
}

function lookup(indices: Uint8Array, pal: Uint8Array): Uint8Array {
  const out = new Uint8Array(indices.length * 3);
  for (let i = 0; i < indices.length; i++) {
    out[3 * i] = pal[3 * indices[i]];
    out[3 * i + 1] = pal[3 * indices[i] + 1];
    out[3 * i + 2] = pal[3 * indices[i] + 2];
  }
  return out;
}
