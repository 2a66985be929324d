/**
 * A PNG writer for 8-bit RGB pictures that filters every scanline with the Paeth predictor
 * before deflating it. Smooth pictures (heat maps, photos) then come out several times smaller
 * than from an encoder that stores unfiltered rows (fast-png writes filter type 0). Deflate is
 * fflate's (pure JS, synchronous), so the writer runs unchanged in Deno and in browsers.
 * @module
 */
import { zlibSync } from "npm:fflate@^0.8.2";
import { WebcapError } from "../errors.ts";
import { concatBytes } from "../bytes.ts";

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const PAETH = 4;

/** CRC-32 (IEEE, reflected polynomial 0xEDB88320) lookup table, one entry per byte value. */
const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

/** CRC-32 of `bytes`, as PNG chunks carry it. */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Paeth predictor of PNG: whichever of left, up, up-left is closest to left + up − up-left. */
function paeth(a: number, b: number, c: number): number {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Scanlines of `data [height, width, 3]`, each a filter-type byte then the Paeth residuals. */
function filterRows(width: number, height: number, data: Uint8Array): Uint8Array {
  const stride = width * 3, out = new Uint8Array(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    const row = y * stride, prev = row - stride, o = y * (stride + 1);
    out[o] = PAETH;
    for (let i = 0; i < stride; i++) {
      const a = i >= 3 ? data[row + i - 3] : 0;
      const b = y > 0 ? data[prev + i] : 0;
      const c = y > 0 && i >= 3 ? data[prev + i - 3] : 0;
      out[o + 1 + i] = (data[row + i] - paeth(a, b, c)) & 255;
    }
  }
  return out;
}

/** One chunk: length, type, data, CRC-32 of type and data. */
function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length), view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(body, 8);
  view.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

/**
 * Encode `data` (`width·height·3` bytes, RGB, rows top to bottom) as a PNG file.
 * @throws WebcapError BAD_SHAPE when `data` does not hold width·height RGB pixels.
 */
export function encodeRgbPng(width: number, height: number, data: Uint8Array): Uint8Array {
  if (
    !(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0) ||
    data.length !== width * height * 3
  ) {
    throw new WebcapError(
      "BAD_SHAPE",
      `PNG: ${data.length} bytes are not ${width}×${height} RGB pixels`,
    );
  }
  const header = new Uint8Array(13), view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type 2 (RGB), deflate, adaptive filters, no interlace
  const parts = [
    Uint8Array.from(SIGNATURE),
    chunk("IHDR", header),
    chunk("IDAT", zlibSync(filterRows(width, height, data), { level: 9 })),
    chunk("IEND", new Uint8Array(0)),
  ];
  return concatBytes(parts);
}
