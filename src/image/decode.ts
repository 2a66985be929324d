/**
 * Image decoding to 8-bit RGB, with the conversions of Hugging Face's `load_image`:
 * `PIL.ImageOps.exif_transpose(image)` followed by `image.convert("RGB")`, pixel for pixel as
 * Pillow 9.4 gives them (checked with `max |Δ| = 0` on `../shared/fixtures/images/`).
 *
 * Decoders:
 * - JPEG: libjpeg-turbo and WebP: libwebp, the libraries Pillow links, in WebAssembly
 *   (`wasm_codecs.ts`): baseline, progressive, every chroma subsampling (libjpeg's fancy
 *   upsampling and fixed-point YCbCr → RGB), grayscale; Adobe CMYK/YCCK through `jpeg_cmyk.ts`;
 *   lossy and lossless WebP (alpha dropped);
 * - PNG: `fast-png` (every bit depth and colour type);
 * - GIF (first frame, `gif.ts`) and BMP (`bmp.ts`): small decoders of webcap's own following
 *   Pillow's plugins; TIFF: the pure-JS `tiff` package (`tiff.ts`).
 *
 * Conversion to RGB follows Pillow (`src/libImaging/Convert.c`, `PngImagePlugin._MODES`):
 * - grayscale is replicated; 1/2/4-bit grayscale is scaled to 0..255 (×255, ×85, ×17);
 * - alpha (LA, RGBA, palette transparency) is dropped, not composited, as `convert("RGB")` does;
 * - palette images are looked up in the palette;
 * - 16-bit RGB, RGBA and gray+alpha keep the high byte (Pillow unpacks them with `RGB;16B`,
 *   `RGBA;16B`, `LA;16B`);
 * - 16-bit grayscale opens in Pillow as mode `I;16`, whose conversion to RGB CLAMPS each value
 *   to 255 (`I16_RGB`: any value ≥ 256 becomes white) instead of scaling it. transformers'
 *   `load_image` inherits that, so it is reproduced: a 16-bit gray PNG that uses its full range
 *   comes out mostly white, exactly as it does for the reference models;
 * - CMYK (JPEG) → RGB is Pillow's `cmyk2rgb` on the inverted (Adobe) samples (`jpeg_cmyk.ts`).
 *
 * EXIF orientation (tag 0x0112, values 2..8) is applied as `exif_transpose` does, from a JPEG's
 * APP1 `Exif` segment, a PNG's `eXIf` chunk, a WebP's `EXIF` chunk or a TIFF's first IFD.
 *
 * The pixel limit is checked from the header (PNG IHDR, JPEG SOF, WebP VP8/VP8L/VP8X, GIF
 * screen and frame, BMP/TIFF headers) before any pixel is decoded.
 * @module
 */

import { decode as decodePngData } from "npm:fast-png@^8.0.0";
import { type BmpHeader, bmpHeader, decodeBmp } from "./bmp.ts";
import { decodeGifFrame, gifScreen } from "./gif.ts";
import { decodeCmykJpeg } from "./jpeg_cmyk.ts";
import { decodeTiff } from "./tiff.ts";
import { jpegDecoder, webpDecoder } from "./wasm_codecs.ts";
import { WebcapError } from "../errors.ts";

/** An 8-bit RGB image. */
export interface RgbImage {
  /** Columns. */
  readonly width: number;
  /** Rows. */
  readonly height: number;
  /** Interleaved RGB bytes, row-major: [height, width, 3]. */
  readonly data: Uint8Array;
}

/**
 * RGBA pixels as a canvas gives them (`ImageData`, `getImageData()`): 4 bytes per pixel, rows top
 * to bottom.
 */
export interface ImageDataLike {
  /** Columns. */
  readonly width: number;
  /** Rows. */
  readonly height: number;
  /** Interleaved RGBA bytes, row-major: [height, width, 4]. */
  readonly data: Uint8ClampedArray;
}

/**
 * RGBA pixels to RGB as PIL's `convert("RGB")` does for an RGBA image: the alpha channel is
 * dropped (not composited over a background).
 * @param source name for error messages.
 * @throws WebcapError BAD_IMAGE when `data` does not hold width·height RGBA pixels.
 */
export function rgbFromRgba(img: ImageDataLike, source: string): RgbImage {
  const { width, height, data } = img;
  if (
    !(Number.isInteger(width) && Number.isInteger(height) && width >= 1 && height >= 1) ||
    data.length !== width * height * 4
  ) {
    throw new WebcapError(
      "BAD_IMAGE",
      `${source}: RGBA pixels must be {width, height, data: Uint8ClampedArray[width·height·4]} with width, height ≥ 1`,
    );
  }
  const out = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; q < out.length; p += 4, q += 3) {
    out[q] = data[p];
    out[q + 1] = data[p + 1];
    out[q + 2] = data[p + 2];
  }
  return { width, height, data: out };
}

/** Options of {@link decodeImage} and {@link loadImage}. */
export interface DecodeImageOptions {
  /** Largest accepted width × height (default 100e6); larger images throw IMAGE_TOO_LARGE. */
  maxPixels?: number;
}

/** Default of {@link DecodeImageOptions.maxPixels}. */
export const DEFAULT_MAX_PIXELS = 100e6;

/**
 * The `maxPixels` option, default applied: a positive integer (NaN would admit every image, a
 * negative limit would refuse them all).
 * @throws WebcapError BAD_OPTION naming the value.
 */
export function maxPixelsOption(v: unknown): number {
  if (v === undefined) return DEFAULT_MAX_PIXELS;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) {
    const got = typeof v === "number" ? String(v) : JSON.stringify(v);
    throw new WebcapError(
      "BAD_OPTION",
      `option maxPixels: must be an integer from 1 to 2^53 − 1, got ${got}`,
    );
  }
  return v;
}

type Format = "png" | "jpeg" | "webp" | "gif" | "bmp" | "tiff";

/** A JPEG's frame: what tells CMYK from the rest. */
interface JpegFrame {
  /** Component ids and sampling factors, in frame order. */
  components: { id: number; h: number; v: number }[];
  /** Transform flag of an APP14 Adobe marker, -1 without one. */
  adobeTransform: number;
}

interface Header {
  format: Format;
  width: number;
  height: number;
  /** EXIF orientation 1..8 (1 = as stored). */
  orientation: number;
  /** JPEG only. */
  jpeg?: JpegFrame;
  /** BMP only. */
  bmp?: BmpHeader;
}

function badImage(source: string, what: string, cause?: unknown): WebcapError {
  return new WebcapError(
    "BAD_IMAGE",
    `${source}: ${what}. Provide a valid JPEG, PNG, WebP, GIF, BMP or TIFF image.`,
    cause === undefined ? undefined : { cause },
  );
}

function startsWith(bytes: Uint8Array, sig: number[], at = 0): boolean {
  return sig.every((b, i) => bytes[at + i] === b);
}

function ascii(bytes: Uint8Array, at: number, n: number): string {
  return String.fromCharCode(...bytes.subarray(at, at + n));
}

/** SHORT/LONG values of `wanted` tags in the first IFD of TIFF-structured bytes (EXIF or TIFF). */
function tiffTags(tiff: Uint8Array, wanted: number[]): Map<number, number> {
  const found = new Map<number, number>();
  if (tiff.length < 8) return found;
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return found;
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  const ifd = view.getUint32(4, little);
  if (ifd + 2 > tiff.length) return found;
  const count = view.getUint16(ifd, little);
  for (let i = 0; i < count; i++) {
    const at = ifd + 2 + 12 * i;
    if (at + 12 > tiff.length) break;
    const tag = view.getUint16(at, little);
    const type = view.getUint16(at + 2, little);
    if (!wanted.includes(tag)) continue;
    if (type === 3) found.set(tag, view.getUint16(at + 8, little)); // SHORT
    else if (type === 4) found.set(tag, view.getUint32(at + 8, little)); // LONG
  }
  return found;
}

const ORIENTATION = 0x0112;

function orientationOf(tiff: Uint8Array): number {
  const o = tiffTags(tiff, [ORIENTATION]).get(ORIENTATION) ?? 1;
  return o >= 1 && o <= 8 ? o : 1;
}

function pngHeader(bytes: Uint8Array, source: string): Header {
  if (bytes.length < 33 || ascii(bytes, 12, 4) !== "IHDR") {
    throw badImage(source, "truncated PNG (no complete IHDR chunk)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let orientation = 1;
  for (let at = 8; at + 8 <= bytes.length;) {
    const len = view.getUint32(at);
    const type = ascii(bytes, at + 4, 4);
    if (type === "eXIf" && at + 8 + len <= bytes.length) {
      orientation = orientationOf(bytes.subarray(at + 8, at + 8 + len));
    }
    if (type === "IEND") break;
    at += 12 + len;
  }
  return { format: "png", width: view.getUint32(16), height: view.getUint32(20), orientation };
}

const isSof = (m: number) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;

/** Index just past the entropy-coded data that starts at `at` (at the next real marker). */
function skipScan(bytes: Uint8Array, at: number): number {
  for (let i = at; i + 1 < bytes.length; i++) {
    if (bytes[i] !== 0xff) continue;
    const next = bytes[i + 1];
    if (next !== 0x00 && next !== 0xff && (next < 0xd0 || next > 0xd7)) return i;
  }
  return bytes.length;
}

/** Walk a JPEG's segments: frame, markers, orientation, and proof that it ends with EOI. */
function jpegHeader(bytes: Uint8Array, source: string): Header {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frame: JpegFrame = { components: [], adobeTransform: -1 };
  let width = -1, height = -1, orientation = 1;
  let at = 2;
  while (at + 1 < bytes.length) {
    if (bytes[at] !== 0xff) throw badImage(source, `corrupt JPEG (no marker at byte ${at})`);
    const marker = bytes[at + 1];
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    if (marker === 0xd9) {
      if (width < 0) throw badImage(source, "corrupt JPEG (no frame header before end of image)");
      return { format: "jpeg", width, height, orientation, jpeg: frame };
    }
    if ((marker >= 0xd0 && marker <= 0xd8) || marker === 0x01) {
      at += 2;
      continue;
    }
    if (at + 4 > bytes.length) break;
    const len = view.getUint16(at + 2);
    const body = at + 4, end = at + 2 + len;
    if (end > bytes.length) break;
    if (isSof(marker) && len >= 8) {
      height = view.getUint16(body + 1);
      width = view.getUint16(body + 3);
      frame.components = [];
      for (let c = 0; c < bytes[body + 5] && body + 8 + 3 * c <= end; c++) {
        const hv = bytes[body + 7 + 3 * c];
        frame.components.push({ id: bytes[body + 6 + 3 * c], h: hv >> 4, v: hv & 15 });
      }
    } else if (marker === 0xee && len >= 14 && ascii(bytes, body, 5) === "Adobe") {
      frame.adobeTransform = bytes[body + 11];
    } else if (marker === 0xe1 && len >= 8 && ascii(bytes, body, 6) === "Exif\0\0") {
      orientation = orientationOf(bytes.subarray(body + 6, end));
    }
    at = marker === 0xda ? skipScan(bytes, end) : end;
  }
  throw badImage(
    source,
    `truncated JPEG (ends after ${bytes.length} bytes without an end-of-image marker)`,
  );
}

/** Canvas size from the first VP8, VP8L or VP8X chunk; orientation from an EXIF chunk. */
function webpHeader(bytes: Uint8Array, source: string): Header {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let width = -1, height = -1, orientation = 1;
  for (let at = 12; at + 8 <= bytes.length;) {
    const type = ascii(bytes, at, 4), len = view.getUint32(at + 4, true), body = at + 8;
    const has = (n: number) => body + n <= bytes.length;
    if (width < 0 && type === "VP8 " && has(10)) {
      width = view.getUint16(body + 6, true) & 0x3fff;
      height = view.getUint16(body + 8, true) & 0x3fff;
    } else if (width < 0 && type === "VP8L" && has(5)) {
      const bits = view.getUint32(body + 1, true);
      width = (bits & 0x3fff) + 1;
      height = ((bits >>> 14) & 0x3fff) + 1;
    } else if (width < 0 && type === "VP8X" && has(10)) {
      width = (view.getUint32(body + 4, true) & 0xffffff) + 1;
      height = (view.getUint32(body + 6, true) >>> 8) + 1;
    } else if (type === "EXIF" && has(len)) {
      const exif = bytes.subarray(body, body + len);
      orientation = orientationOf(ascii(exif, 0, 6) === "Exif\0\0" ? exif.subarray(6) : exif);
    }
    at = body + len + (len & 1);
  }
  if (width < 0) throw badImage(source, "truncated WebP (no VP8, VP8L or VP8X chunk)");
  return { format: "webp", width, height, orientation };
}

function bmpFileHeader(bytes: Uint8Array, source: string): Header {
  try {
    const bmp = bmpHeader(bytes);
    return { format: "bmp", width: bmp.width, height: bmp.height, orientation: 1, bmp };
  } catch (e) {
    throw badImage(source, (e as Error).message, e);
  }
}

function gifHeader(bytes: Uint8Array, source: string): Header {
  try {
    return { format: "gif", ...gifScreen(bytes), orientation: 1 };
  } catch (e) {
    throw badImage(source, (e as Error).message, e);
  }
}

function tiffHeader(bytes: Uint8Array): Header {
  const tags = tiffTags(bytes, [256, 257, ORIENTATION]);
  const o = tags.get(ORIENTATION) ?? 1;
  return {
    format: "tiff",
    width: tags.get(256) ?? 0,
    height: tags.get(257) ?? 0,
    orientation: o >= 1 && o <= 8 ? o : 1,
  };
}

/** Identify the format from the signature and read the header fields that need no decoding. */
function readHeader(bytes: Uint8Array, source: string): Header {
  if (bytes.length === 0) throw badImage(source, "empty file, not an image");
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) {
    return pngHeader(bytes, source);
  }
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return jpegHeader(bytes, source);
  if (startsWith(bytes, [0x42, 0x4d])) return bmpFileHeader(bytes, source);
  if (startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a])) {
    return tiffHeader(bytes);
  }
  if (ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 4) === "WEBP") {
    return webpHeader(bytes, source);
  }
  if (ascii(bytes, 0, 4) === "GIF8") return gifHeader(bytes, source);
  throw badImage(source, "not an image (unrecognised file signature)");
}

function checkSize(h: { width: number; height: number }, source: string, maxPixels: number) {
  if (h.width <= 0 || h.height <= 0) {
    throw badImage(source, `image has no pixels (${h.width}×${h.height})`);
  }
  if (h.width * h.height > maxPixels) {
    throw new WebcapError(
      "IMAGE_TOO_LARGE",
      `${source}: ${h.width}×${h.height} = ${h.width * h.height} pixels exceeds the limit of ` +
        `${maxPixels}; pass a larger maxPixels option to decode it.`,
    );
  }
}

/** Unpack `depth`-bit samples (1, 2, 4) of packed PNG rows into one byte per sample. */
function unpackBits(data: Uint8Array, width: number, height: number, depth: number): Uint8Array {
  const out = new Uint8Array(width * height);
  const rowBytes = Math.ceil((width * depth) / 8);
  const mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      const byte = data[y * rowBytes + (bit >> 3)];
      out[y * width + x] = (byte >> (8 - depth - (bit & 7))) & mask;
    }
  }
  return out;
}

/** PNG → RGB with Pillow's rules (see the module doc). */
function decodePng(bytes: Uint8Array, source: string): RgbImage {
  let png;
  try {
    png = decodePngData(bytes);
  } catch (e) {
    throw badImage(source, `corrupt or truncated PNG (${(e as Error).message})`, e);
  }
  const { width, height, depth, channels } = png;
  const n = width * height;
  const out = new Uint8Array(n * 3);
  const samples = depth < 8 ? unpackBits(png.data as Uint8Array, width, height, depth) : png.data;
  if (png.palette) {
    const pal = png.palette;
    for (let i = 0; i < n; i++) {
      const entry = pal[samples[i]] ?? [0, 0, 0]; // Pillow pads short palettes with black
      out[i * 3] = entry[0];
      out[i * 3 + 1] = entry[1];
      out[i * 3 + 2] = entry[2];
    }
    return { width, height, data: out };
  }
  // Pillow: 16-bit grayscale clamps (I;16 → RGB); every other 16-bit type keeps the high byte.
  const gray16 = depth === 16 && channels === 1;
  const scale = depth < 8 ? 255 / ((1 << depth) - 1) : 1;
  const toByte = gray16
    ? (v: number) => Math.min(v, 255)
    : depth === 16
    ? (v: number) => v >> 8
    : (v: number) => v * scale;
  const colour = channels >= 3;
  for (let i = 0; i < n; i++) {
    const base = i * channels;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = toByte(samples[base + (colour ? c : 0)]);
  }
  return { width, height, data: out };
}

/** JPEG → RGB: libjpeg-turbo, or for 4 components Pillow's CMYK path. */
async function decodeJpeg(bytes: Uint8Array, source: string, frame: JpegFrame): Promise<RgbImage> {
  if (frame.components.length === 4) {
    return await decodeCmykJpeg(bytes, frame, (what) => badImage(source, what));
  }
  const out = await jpegDecoder.decode(bytes);
  if (typeof out === "string") throw badImage(source, `corrupt JPEG (libjpeg: ${out})`);
  return rgbFromRgba(out, source); // alpha dropped
}

async function decodeWebp(bytes: Uint8Array, source: string): Promise<RgbImage> {
  const out = await webpDecoder.decode(bytes);
  if (typeof out === "string") throw badImage(source, `corrupt or unsupported WebP (${out})`);
  return rgbFromRgba(out, source); // alpha dropped
}

/** GIF's first frame → RGB: palette lookup over Pillow's gray ramp (see `gif.ts`). */
function decodeGif(bytes: Uint8Array, source: string, maxPixels: number): RgbImage {
  let frame;
  try {
    frame = decodeGifFrame(bytes, maxPixels);
  } catch (e) {
    throw badImage(source, `corrupt GIF (${(e as Error).message})`, e);
  }
  const { width, height, indices, palette } = frame;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < indices.length; i++) {
    const k = indices[i];
    const inPalette = palette !== undefined && 3 * k + 3 <= palette.length;
    for (let c = 0; c < 3; c++) data[3 * i + c] = inPalette ? palette[3 * k + c] : k;
  }
  return { width, height, data };
}

function decodeBmpImage(bytes: Uint8Array, source: string, h: BmpHeader): RgbImage {
  try {
    return { width: h.width, height: h.height, data: decodeBmp(bytes, h) };
  } catch (e) {
    throw badImage(source, `corrupt or unsupported BMP (${(e as Error).message})`, e);
  }
}

function decodeTiffImage(bytes: Uint8Array, source: string): RgbImage {
  try {
    return decodeTiff(bytes);
  } catch (e) {
    throw badImage(source, `corrupt or unsupported TIFF (${(e as Error).message})`, e);
  }
}

/**
 * Apply an EXIF orientation as PIL's `exif_transpose`: 2 mirror, 3 rotate 180°, 4 flip,
 * 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 90° counter-clockwise.
 */
export function applyOrientation(img: RgbImage, orientation: number): RgbImage {
  if (orientation <= 1 || orientation > 8) return img;
  const { width: w, height: h, data } = img;
  const swap = orientation >= 5;
  const ow = swap ? h : w, oh = swap ? w : h;
  const out = new Uint8Array(data.length);
  // Source column/row of output pixel (x, y) for each orientation.
  const src: Record<number, (x: number, y: number) => [number, number]> = {
    2: (x, y) => [w - 1 - x, y],
    3: (x, y) => [w - 1 - x, h - 1 - y],
    4: (x, y) => [x, h - 1 - y],
    5: (x, y) => [y, x],
    6: (x, y) => [y, h - 1 - x],
    7: (x, y) => [w - 1 - y, h - 1 - x],
    8: (x, y) => [w - 1 - y, x],
  };
  const at = src[orientation];
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const [sx, sy] = at(x, y);
      const s = (sy * w + sx) * 3, d = (y * ow + x) * 3;
      out[d] = data[s];
      out[d + 1] = data[s + 1];
      out[d + 2] = data[s + 2];
    }
  }
  return { width: ow, height: oh, data: out };
}

/** Decode after the header checks, by format. */
function decodeFormat(
  bytes: Uint8Array,
  source: string,
  header: Header,
  maxPixels: number,
): RgbImage | Promise<RgbImage> {
  switch (header.format) {
    case "png":
      return decodePng(bytes, source);
    case "jpeg":
      return decodeJpeg(bytes, source, header.jpeg!);
    case "webp":
      return decodeWebp(bytes, source);
    case "gif":
      return decodeGif(bytes, source, maxPixels);
    case "bmp":
      return decodeBmpImage(bytes, source, header.bmp!);
    case "tiff":
      return decodeTiffImage(bytes, source);
  }
}

/**
 * Decode an image file's bytes to RGB as transformers' `load_image` does (EXIF orientation
 * applied, then PIL `convert("RGB")` semantics; see the module doc). The WebAssembly decoders
 * (JPEG, WebP) are compiled on first use and reused.
 * @param bytes the file's contents.
 * @param source name for error messages (a path or URL).
 * @throws WebcapError BAD_IMAGE (not an image, unsupported format, truncated or corrupt data,
 * 0×0), IMAGE_TOO_LARGE (over `maxPixels`, checked from the header before decoding).
 */
export async function decodeImage(
  bytes: Uint8Array,
  source: string,
  opts: DecodeImageOptions = {},
): Promise<RgbImage> {
  const maxPixels = maxPixelsOption(opts.maxPixels);
  const header = readHeader(bytes, source);
  // A TIFF whose first IFD lacks the size tags is checked after decoding.
  if (header.format !== "tiff" || header.width * header.height > 0) {
    checkSize(header, source, maxPixels);
  }
  const img = await decodeFormat(bytes, source, header, maxPixels);
  checkSize(img, source, maxPixels);
  return applyOrientation(img, header.orientation);
}

/**
 * Read and decode an image file (Deno).
 * @throws WebcapError MISSING_FILE if the file cannot be read (or outside Deno, where paths
 * cannot be read), else as {@link decodeImage}.
 */
export async function loadImage(path: string, opts: DecodeImageOptions = {}): Promise<RgbImage> {
  if (typeof Deno === "undefined") {
    throw new WebcapError(
      "MISSING_FILE",
      `${path}: image file paths need Deno; in a browser pass the file's bytes, RGB pixels or ImageData`,
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new WebcapError(
      "MISSING_FILE",
      `${path}: cannot read the image file (${(e as Error).message}); check the path.`,
      { cause: e },
    );
  }
  return await decodeImage(bytes, path, opts);
}
