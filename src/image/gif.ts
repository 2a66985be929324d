/**
 * GIF: the first frame, as Pillow 9.4's `GifImagePlugin` opens it and `convert("RGB")` turns it
 * into pixels:
 * - the canvas is the logical screen, grown to hold the frame if the frame reaches past it;
 * - pixels outside the frame hold the frame's transparent index if its graphic control extension
 *   names one, else index 0;
 * - every decoded index is written, the transparent one included (its colour is not dropped);
 * - indices are looked up in the local colour table, else the global one, else read as gray; a
 *   table with fewer than 256 entries continues with Pillow's gray ramp (index i → i, i, i).
 * LZW follows GIF89a (variable code width up to 12 bits, clear and end codes, no deferred-clear
 * table growth past 4096 codes); interlaced frames are de-interlaced.
 * @module
 */

/** A GIF frame's indices on its canvas, with the colour table that applies. */
export interface GifFrame {
  width: number;
  height: number;
  /** Palette indices, [height, width]. */
  indices: Uint8Array;
  /** RGB triples of the colour table in use, or undefined (gray). */
  palette?: Uint8Array;
}

/** Raised for data that is not a complete GIF frame; the message says what is wrong. */
export class GifError extends Error {}

const u16 = (b: Uint8Array, at: number) => b[at] | (b[at + 1] << 8);

/** Byte reader over the file that throws GifError past its end. */
class Reader {
  at = 0;
  constructor(readonly bytes: Uint8Array) {}
  need(n: number): void {
    if (this.at + n > this.bytes.length) throw new GifError("truncated GIF");
  }
  byte(): number {
    this.need(1);
    return this.bytes[this.at++];
  }
  take(n: number): Uint8Array {
    this.need(n);
    this.at += n;
    return this.bytes.subarray(this.at - n, this.at);
  }
  /** The concatenated data sub-blocks up to the zero-length terminator. */
  blocks(): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let n = this.byte(); n > 0; n = this.byte()) {
      parts.push(this.take(n));
      total += n;
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) out.set(p, (at += p.length) - p.length);
    return out;
  }
}

/** Logical screen size of a GIF (for the pixel limit), from its header. */
export function gifScreen(bytes: Uint8Array): { width: number; height: number } {
  if (bytes.length < 13) throw new GifError("truncated GIF header");
  return { width: u16(bytes, 6), height: u16(bytes, 8) };
}

/** The first frame of a GIF file. */
export function decodeGifFrame(bytes: Uint8Array, maxPixels: number): GifFrame {
  const r = new Reader(bytes);
  r.take(6);
  let width = u16(r.take(2), 0), height = u16(r.take(2), 0);
  const flags = r.byte();
  r.take(2); // background index, aspect ratio
  const global = flags & 0x80 ? r.take(3 << ((flags & 7) + 1)) : undefined;
  let transparent = -1;
  for (;;) {
    const kind = r.byte();
    if (kind === 0x3b) throw new GifError("GIF has no image");
    if (kind === 0x21) {
      const label = r.byte();
      const data = r.blocks();
      if (label === 0xf9 && data.length >= 4) transparent = data[0] & 1 ? data[3] : -1;
      continue;
    }
    if (kind !== 0x2c) continue; // Pillow skips unknown bytes between blocks
    const d = r.take(9);
    const x0 = u16(d, 0), y0 = u16(d, 2), fw = u16(d, 4), fh = u16(d, 6);
    width = Math.max(width, x0 + fw);
    height = Math.max(height, y0 + fh);
    if (width * height > maxPixels) {
      throw new GifError(`frame reaches ${width}×${height}, over the pixel limit ${maxPixels}`);
    }
    const local = d[8] & 0x80 ? r.take(3 << ((d[8] & 7) + 1)) : undefined;
    const minCodeSize = r.byte();
    const frame = lzw(r.blocks(), minCodeSize, fw * fh);
    const indices = new Uint8Array(width * height).fill(transparent < 0 ? 0 : transparent);
    const rows = (d[8] & 0x40) ? interlacedRows(fh) : Array.from({ length: fh }, (_, y) => y);
    rows.forEach((y, i) => {
      indices.set(frame.subarray(i * fw, (i + 1) * fw), (y0 + y) * width + x0);
    });
    return { width, height, indices, palette: local ?? global };
  }
}

/** Row order of an interlaced frame: every 8th from 0, every 8th from 4, every 4th from 2, odd. */
function interlacedRows(h: number): number[] {
  const rows: number[] = [];
  for (const [start, step] of [[0, 8], [4, 8], [2, 4], [1, 2]]) {
    for (let y = start; y < h; y += step) rows.push(y);
  }
  return rows;
}

/** LZW-decode `n` indices; fewer if the end code comes first (the rest stay 0). */
function lzw(data: Uint8Array, minCodeSize: number, n: number): Uint8Array {
  if (minCodeSize < 1 || minCodeSize > 11) {
    throw new GifError(`bad LZW minimum code size ${minCodeSize}`);
  }
  const out = new Uint8Array(n);
  const clear = 1 << minCodeSize, end = clear + 1;
  // Each code's string: its last byte, its prefix code, its length.
  const suffix = new Uint8Array(4096),
    prefix = new Int16Array(4096),
    length = new Uint16Array(4096);
  for (let c = 0; c < clear; c++) [suffix[c], prefix[c], length[c]] = [c, -1, 1];
  let size = minCodeSize + 1, next = end + 1, prev = -1;
  let bits = 0, nbits = 0, pos = 0, written = 0;
  while (written < n) {
    while (nbits < size) {
      if (pos >= data.length) throw new GifError("truncated GIF image data");
      bits |= data[pos++] << nbits;
      nbits += 8;
    }
    const code = bits & ((1 << size) - 1);
    bits >>>= size;
    nbits -= size;
    if (code === clear) {
      [size, next, prev] = [minCodeSize + 1, end + 1, -1];
      continue;
    }
    if (code === end) break;
    if (code > next || (code === next && prev < 0)) throw new GifError("corrupt GIF image data");
    if (prev >= 0 && next < 4096) {
      const first = firstByte(code === next ? prev : code, prefix, suffix);
      [suffix[next], prefix[next], length[next]] = [first, prev, length[prev] + 1];
      next++;
      if (next === 1 << size && size < 12) size++;
    }
    written += emit(code, out, written, prefix, suffix, length);
    prev = code;
  }
  return out;
}

function firstByte(code: number, prefix: Int16Array, suffix: Uint8Array): number {
  while (prefix[code] >= 0) code = prefix[code];
  return suffix[code];
}

/** Write code's string at `at` (clipped to the output); returns how many bytes it holds. */
function emit(
  code: number,
  out: Uint8Array,
  at: number,
  prefix: Int16Array,
  suffix: Uint8Array,
  length: Uint16Array,
): number {
  const len = length[code];
  for (let i = len - 1, c = code; i >= 0; i--, c = prefix[c]) {
    if (at + i < out.length) out[at + i] = suffix[c];
  }
  return len;
}
