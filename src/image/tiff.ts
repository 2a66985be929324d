/**
 * TIFF (first page) to RGB through the pure-JS `tiff` package (uncompressed, LZW, Deflate,
 * PackBits), converted as Pillow does: gray replicated (WhiteIsZero inverted, 1-bit → 0/255,
 * 16-bit gray clamped at 255 as Pillow's `I;16` → RGB), 16-bit colour keeps the high byte,
 * palettes of 16-bit entries keep their high bytes, extra samples (alpha) dropped.
 * @module
 */

import { decode } from "npm:tiff@7.1.3";

/** Decode the first page; throws the package's Error for data it refuses. */
export function decodeTiff(bytes: Uint8Array): { width: number; height: number; data: Uint8Array } {
  const ifd = decode(bytes, { pages: [0] })[0];
  const { width, height, samplesPerPixel: spp, bitsPerSample: bits, type } = ifd;
  const src = ifd.data;
  if (src instanceof Float32Array || src instanceof Float64Array) {
    throw new Error("floating-point samples are not supported");
  }
  if (bits !== 1 && bits !== 8 && bits !== 16) throw new Error(`${bits}-bit samples`);
  const out = new Uint8Array(width * height * 3);
  const gray = (v: number) => {
    const g = bits === 1 ? v * 255 : bits === 16 ? Math.min(v, 255) : v;
    return type === 0 ? 255 - g : g; // WhiteIsZero
  };
  for (let i = 0; i < width * height; i++) {
    const s = i * spp;
    if (type === 3) {
      const entry = ifd.palette?.[src[s]] ?? [0, 0, 0];
      for (let c = 0; c < 3; c++) out[3 * i + c] = entry[c] >> 8;
    } else if (type === 2) {
      for (let c = 0; c < 3; c++) out[3 * i + c] = bits === 16 ? src[s + c] >> 8 : src[s + c];
    } else if (type === 0 || type === 1) {
      out.fill(gray(src[s]), 3 * i, 3 * i + 3);
    } else {
      throw new Error(`photometric interpretation ${type} is not supported`);
    }
  }
  return { width, height, data: out };
}
