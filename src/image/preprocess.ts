/**
 * Image preprocessing driven by a `preprocessor_config.json`, with the semantics of the default
 * (torchvision) backend of transformers 5's `ViTImageProcessor`, `BlipImageProcessor` and
 * `CLIPImageProcessor`: resize → center crop → fused rescale + normalize → [3, H, W] float32.
 * This is what produced the reference pixel_values (transformers 5.17 names the torchvision
 * classes without a suffix); it matches them bit for bit on PNG input.
 *
 * Resizing reproduces torchvision's `resize(uint8 tensor, antialias=True)` on the CPU, which runs
 * PyTorch's uint8 kernel (a port of Pillow-SIMD's `Resample.c`): separable, horizontal pass
 * first, each pass rounding back to uint8; antialiased (the filter support grows by the
 * downscale factor); weights computed in float64, normalised to sum 1, then quantised to int16
 * with the largest precision that keeps the biggest weight below 2^15; each output is
 * `clamp((Σ w·x + 2^(p-1)) >> p, 0, 255)`. Filters: bilinear = triangle (support 1), bicubic =
 * Keys cubic with a = -0.5 (support 2), lanczos = sinc·sinc(x/3) (support 3).
 * Pillow's own `Image.resize` uses the same filters and bounds but 22-bit int32 weights, so it can
 * differ from this by 1 in a few pixels.
 * `resample` 0 (nearest) maps, as in transformers, to torchvision's NEAREST_EXACT: source index
 * `min(floor((i + 0.5) · in/out), in - 1)` with a float32 ratio.
 * `resample` 1 (lanczos) is resampled with Lanczos as Pillow (and torchvision ≥ 0.27) do;
 * transformers with torchvision < 0.27 substituted bicubic for it.
 * @module
 */

import { WebcapError } from "../errors.ts";
import type { RgbImage } from "./decode.ts";

/** A configured image processor. */
export interface Preprocessor {
  /** Output rows. */
  readonly height: number;
  /** Output columns. */
  readonly width: number;
  /** Preprocess one RGB image to `pixel_values` laid out [3, height, width]. */
  apply(img: RgbImage): Float32Array;
}

type Size = { height: number; width: number } | { shortestEdge: number };

interface Settings {
  doResize: boolean;
  size: Size;
  resample: number;
  doCenterCrop: boolean;
  cropSize: { height: number; width: number };
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  mean: number[];
  std: number[];
}

const IMAGENET_STANDARD = [0.5, 0.5, 0.5];
const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

/** Class defaults of transformers (used for keys the config leaves out). */
const DEFAULTS: Record<string, Record<string, unknown>> = {
  vit: {
    size: { height: 224, width: 224 },
    resample: 2,
    image_mean: IMAGENET_STANDARD,
    image_std: IMAGENET_STANDARD,
    do_center_crop: false,
  },
  blip: {
    size: { height: 384, width: 384 },
    resample: 3,
    image_mean: OPENAI_CLIP_MEAN,
    image_std: OPENAI_CLIP_STD,
    do_center_crop: false,
  },
  clip: {
    size: { shortest_edge: 224 },
    resample: 3,
    image_mean: OPENAI_CLIP_MEAN,
    image_std: OPENAI_CLIP_STD,
    do_center_crop: true,
    crop_size: { height: 224, width: 224 },
  },
};

/** Processor classes (and the legacy feature-extractor names) mapped to a family. */
const FAMILIES: Record<string, string> = {
  ViTImageProcessor: "vit",
  ViTFeatureExtractor: "vit",
  BlipImageProcessor: "blip",
  CLIPImageProcessor: "clip",
  CLIPFeatureExtractor: "clip",
};

function badConfig(source: string, what: string): WebcapError {
  return new WebcapError("BAD_CONFIG", `${source}: ${what}`);
}

function family(config: Record<string, unknown>, source: string): string {
  const name = String(config.image_processor_type ?? config.feature_extractor_type ?? "");
  const fam = FAMILIES[name.replace(/(Fast|Pil)$/, "")];
  if (!fam) {
    throw badConfig(
      source,
      `image processor "${name}" is not supported; expected image_processor_type one of ` +
        `${Object.keys(FAMILIES).join(", ")}.`,
    );
  }
  return fam;
}

/** Largest output side a config may ask for (a [3, side, side] f32 image is 3 GiB). */
export const MAX_SIDE = 16384;

function positiveInt(v: unknown, key: string, source: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw badConfig(source, `"${key}" must be a positive integer, got ${JSON.stringify(v)}.`);
  }
  if (v > MAX_SIDE) {
    throw badConfig(source, `"${key}" ${v} exceeds the largest supported side ${MAX_SIDE}.`);
  }
  return v;
}

/** transformers' `get_size_dict`: an int means a square, or for CLIP a shortest edge. */
function parseSize(v: unknown, key: string, source: string, intIsEdge: boolean): Size {
  if (typeof v === "number") {
    const n = positiveInt(v, key, source);
    return intIsEdge ? { shortestEdge: n } : { height: n, width: n };
  }
  const o = (v ?? {}) as Record<string, unknown>;
  if (o.height !== undefined && o.width !== undefined) {
    return {
      height: positiveInt(o.height, `${key}.height`, source),
      width: positiveInt(o.width, `${key}.width`, source),
    };
  }
  if (o.shortest_edge !== undefined && o.longest_edge === undefined) {
    return { shortestEdge: positiveInt(o.shortest_edge, `${key}.shortest_edge`, source) };
  }
  throw badConfig(
    source,
    `"${key}" must be {height, width} or {shortest_edge}, got ${JSON.stringify(v)}.`,
  );
}

function triple(v: unknown, key: string, source: string): number[] {
  const arr = typeof v === "number" ? [v, v, v] : v;
  if (!Array.isArray(arr) || arr.length !== 3 || !arr.every((x) => typeof x === "number")) {
    throw badConfig(source, `"${key}" must be a number or 3 numbers, got ${JSON.stringify(v)}.`);
  }
  if (!arr.every(Number.isFinite)) {
    throw badConfig(source, `"${key}" must hold finite numbers, got [${arr.join(", ")}].`);
  }
  return arr;
}

/** `image_std`: finite and, when normalizing divides by it, nonzero. */
function stdTriple(v: unknown, normalize: boolean, source: string): number[] {
  const std = triple(v, "image_std", source);
  if (normalize && std.includes(0)) {
    throw badConfig(
      source,
      `"image_std" [${std.join(", ")}] holds 0, which normalization would divide by.`,
    );
  }
  return std;
}

function flag(v: unknown, key: string, source: string): boolean {
  if (typeof v !== "boolean") {
    throw badConfig(source, `"${key}" must be true or false, got ${JSON.stringify(v)}.`);
  }
  return v;
}

function parseSettings(config: Record<string, unknown>, source: string): Settings {
  const fam = family(config, source);
  const c = { ...DEFAULTS[fam], ...config };
  const resample = c.resample;
  if (typeof resample !== "number" || ![0, 1, 2, 3].includes(resample)) {
    throw badConfig(
      source,
      `"resample" ${JSON.stringify(resample)} is not supported; use 0 (nearest), ` +
        "1 (lanczos), 2 (bilinear) or 3 (bicubic).",
    );
  }
  const rescaleFactor = c.rescale_factor ?? 1 / 255;
  if (typeof rescaleFactor !== "number" || !(rescaleFactor > 0 && rescaleFactor < Infinity)) {
    throw badConfig(source, `"rescale_factor" must be a positive number.`);
  }
  const doNormalize = flag(c.do_normalize ?? true, "do_normalize", source);
  return {
    doResize: flag(c.do_resize ?? true, "do_resize", source),
    size: parseSize(c.size, "size", source, fam === "clip"),
    resample,
    doCenterCrop: flag(c.do_center_crop, "do_center_crop", source),
    cropSize: c.do_center_crop
      ? parseSize(c.crop_size, "crop_size", source, false) as { height: number; width: number }
      : { height: 0, width: 0 },
    doRescale: flag(c.do_rescale ?? true, "do_rescale", source),
    rescaleFactor,
    doNormalize,
    mean: triple(c.image_mean, "image_mean", source),
    std: stdTriple(c.image_std, doNormalize, source),
  };
}

// ---------------------------------------------------------------------------------------------
// Resampling (torchvision / PyTorch uint8 antialiased kernels)

interface Filter {
  /** Half-width of the kernel at scale 1. */
  support: number;
  fn(x: number): number;
}

const sinc = (x: number) => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));

const FILTERS: Record<number, Filter> = {
  1: { support: 3, fn: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  2: { support: 1, fn: (x) => Math.max(0, 1 - Math.abs(x)) },
  3: {
    support: 2,
    fn: (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
};

/** Taps of one output index: first input index, weights as int16 at `precision` bits. */
interface Taps {
  start: Int32Array; // [outSize]
  count: Int32Array; // [outSize]
  weights: Int32Array; // [outSize, maxTaps]
  maxTaps: number;
  precision: number;
}

/** Per-output bounds and float64 weights, then int16 quantisation (PyTorch's rules). */
function computeTaps(inSize: number, outSize: number, filter: Filter): Taps {
  const scale = inSize / outSize;
  const support = scale >= 1 ? filter.support * scale : filter.support;
  const invScale = scale >= 1 ? 1 / scale : 1;
  const maxTaps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize), count = new Int32Array(outSize);
  const wf = new Float64Array(outSize * maxTaps);
  let wMax = 0;
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - lo;
    let total = 0;
    for (let j = 0; j < n; j++) {
      const w = filter.fn((j + lo - center + 0.5) * invScale);
      wf[i * maxTaps + j] = w;
      total += w;
    }
    for (let j = 0; j < n; j++) {
      if (total !== 0) wf[i * maxTaps + j] /= total;
      wMax = Math.max(wMax, wf[i * maxTaps + j]);
    }
    start[i] = lo;
    count[i] = n;
  }
  let precision = 0;
  for (; precision < 22; precision++) {
    if (Math.trunc(0.5 + wMax * 2 ** (precision + 1)) >= 1 << 15) break;
  }
  const weights = new Int32Array(wf.length);
  for (let k = 0; k < wf.length; k++) {
    const v = wf[k] * 2 ** precision;
    weights[k] = Math.trunc(v < 0 ? v - 0.5 : v + 0.5);
  }
  return { start, count, weights, maxTaps, precision };
}

/**
 * One separable pass over interleaved RGB bytes: along x (`horizontal`) or y.
 * in: [inH, inW, 3] → out: [outH, outW, 3].
 */
function resamplePass(
  src: Uint8Array,
  inW: number,
  inH: number,
  taps: Taps,
  horizontal: boolean,
): Uint8Array {
  const outW = horizontal ? taps.start.length : inW;
  const outH = horizontal ? inH : taps.start.length;
  const out = new Uint8Array(outW * outH * 3);
  const half = 1 << (taps.precision - 1);
  const step = horizontal ? 3 : inW * 3; // distance between neighbouring taps
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const i = horizontal ? x : y;
      const base = horizontal ? (y * inW + taps.start[i]) * 3 : (taps.start[i] * inW + x) * 3;
      const w0 = i * taps.maxTaps;
      for (let c = 0; c < 3; c++) {
        let acc = half;
        for (let j = 0; j < taps.count[i]; j++) {
          acc += taps.weights[w0 + j] * src[base + j * step + c];
        }
        const v = acc >> taps.precision;
        out[(y * outW + x) * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return out;
}

/** torchvision NEAREST_EXACT: index `min(floor((i + 0.5) · in/out), in - 1)`, float32 ratio. */
function nearestIndex(inSize: number, outSize: number): Int32Array {
  const scale = Math.fround(inSize / outSize);
  const idx = new Int32Array(outSize);
  for (let i = 0; i < outSize; i++) {
    idx[i] = Math.min(Math.floor(Math.fround((i + 0.5) * scale)), inSize - 1);
  }
  return idx;
}

function resizeNearest(img: RgbImage, outW: number, outH: number): RgbImage {
  const xs = nearestIndex(img.width, outW), ys = nearestIndex(img.height, outH);
  const out = new Uint8Array(outW * outH * 3);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const s = (ys[y] * img.width + xs[x]) * 3, d = (y * outW + x) * 3;
      out[d] = img.data[s];
      out[d + 1] = img.data[s + 1];
      out[d + 2] = img.data[s + 2];
    }
  }
  return { width: outW, height: outH, data: out };
}

/**
 * Resize an RGB image as torchvision's `resize(uint8, antialias=True)` on the CPU does
 * (see the module doc). `resample` is PIL's enum: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic.
 */
export function resizeRgb(img: RgbImage, outW: number, outH: number, resample: number): RgbImage {
  if (outW === img.width && outH === img.height) return img;
  if (resample === 0) return resizeNearest(img, outW, outH);
  const filter = FILTERS[resample];
  if (!filter) throw new WebcapError("BAD_OPTION", `resample ${resample} is not supported.`);
  let data = img.data, w = img.width;
  if (outW !== img.width) {
    data = resamplePass(data, w, img.height, computeTaps(img.width, outW, filter), true);
    w = outW;
  }
  if (outH !== img.height) {
    data = resamplePass(data, w, img.height, computeTaps(img.height, outH, filter), false);
  }
  return { width: outW, height: outH, data };
}

// ---------------------------------------------------------------------------------------------
// Geometry and normalisation

/** transformers' `get_resize_output_image_size(default_to_square=False)`: [height, width]. */
function shortestEdgeSize(h: number, w: number, edge: number): [number, number] {
  const long = Math.trunc((edge * Math.max(h, w)) / Math.min(h, w));
  return w <= h ? [long, edge] : [edge, long];
}

/**
 * Center crop as the torchvision backend: zero-pad (left/top get the floor of half the missing
 * size) when the crop is larger, then crop at `trunc((size - crop) / 2)`.
 */
function centerCrop(img: RgbImage, ch: number, cw: number): RgbImage {
  const padTop = ch > img.height ? Math.floor((ch - img.height) / 2) : 0;
  const padLeft = cw > img.width ? Math.floor((cw - img.width) / 2) : 0;
  const paddedH = ch > img.height ? ch : img.height, paddedW = cw > img.width ? cw : img.width;
  const top = Math.trunc((paddedH - ch) / 2) - padTop;
  const left = Math.trunc((paddedW - cw) / 2) - padLeft;
  const out = new Uint8Array(ch * cw * 3);
  for (let y = 0; y < ch; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= img.height) continue;
    for (let x = 0; x < cw; x++) {
      const sx = x + left;
      if (sx < 0 || sx >= img.width) continue;
      const s = (sy * img.width + sx) * 3, d = (y * cw + x) * 3;
      out[d] = img.data[s];
      out[d + 1] = img.data[s + 1];
      out[d + 2] = img.data[s + 2];
    }
  }
  return { width: cw, height: ch, data: out };
}

/**
 * Per-channel affine map in float32 as the torchvision backend computes it. With rescale and
 * normalize both on they are fused: `(x - f32(mean·(1/r))) / f32(std·(1/r))`.
 * Returns [3, H, W].
 */
function normalize(img: RgbImage, s: Settings): Float32Array {
  const f = Math.fround;
  const n = img.width * img.height;
  const out = new Float32Array(3 * n);
  const inv = f(1 / s.rescaleFactor);
  for (let c = 0; c < 3; c++) {
    const fused = s.doRescale && s.doNormalize;
    const mean = fused ? f(f(s.mean[c]) * inv) : f(s.mean[c]);
    const std = fused ? f(f(s.std[c]) * inv) : f(s.std[c]);
    const scale = f(s.rescaleFactor);
    for (let i = 0; i < n; i++) {
      const v = img.data[i * 3 + c];
      out[c * n + i] = s.doNormalize ? f(v - mean) / std : s.doRescale ? v * scale : v;
    }
  }
  return out;
}

function checkImage(img: RgbImage): void {
  if (
    !(Number.isInteger(img.width) && Number.isInteger(img.height)) ||
    !(img.width > 0 && img.height > 0) || img.data.length !== img.width * img.height * 3
  ) {
    throw new WebcapError(
      "BAD_IMAGE",
      `preprocess: image data has ${img.data.length} bytes, expected ` +
        `${img.width}×${img.height}×3; pass an RgbImage from decodeImage/loadImage.`,
    );
  }
}

/** A shortest-edge resize of a very elongated image could not be allocated: refuse it. */
function checkResize(img: RgbImage, w: number, h: number): void {
  if (w * h > MAX_SIDE * MAX_SIDE) {
    throw new WebcapError(
      "IMAGE_TOO_LARGE",
      `preprocess: resizing the ${img.width}×${img.height} image to ${w}×${h} exceeds ` +
        `${MAX_SIDE}×${MAX_SIDE} pixels; crop the image to a less extreme aspect ratio.`,
    );
  }
}

/**
 * Build the image processor that a `preprocessor_config.json` describes
 * (`ViTImageProcessor`, `BlipImageProcessor`, `CLIPImageProcessor`, their `Fast` variants and the
 * legacy `ViTFeatureExtractor` / `CLIPFeatureExtractor`; missing keys take the class defaults).
 * `do_convert_rgb` needs no step: {@link RgbImage}s are RGB already.
 * @param config the parsed JSON.
 * @param source file name for error messages.
 * @throws WebcapError BAD_CONFIG for an unknown class, an invalid value, or settings whose output
 * size would depend on the image (shortest-edge resize or no resize, without a center crop).
 */
export function preprocessorFromConfig(config: object, source: string): Preprocessor {
  const s = parseSettings(config as Record<string, unknown>, source);
  const fixed = s.doCenterCrop ? s.cropSize : s.doResize && "height" in s.size ? s.size : null;
  if (!fixed) {
    throw badConfig(
      source,
      "the output size would depend on each image (no fixed-size resize and no center crop); " +
        "set size to {height, width} or enable do_center_crop.",
    );
  }
  return {
    height: fixed.height,
    width: fixed.width,
    apply(img: RgbImage): Float32Array {
      checkImage(img);
      let out = img;
      if (s.doResize) {
        const [h, w] = "height" in s.size
          ? [s.size.height, s.size.width]
          : shortestEdgeSize(img.height, img.width, s.size.shortestEdge);
        checkResize(img, w, h);
        out = resizeRgb(out, w, h, s.resample);
      }
      if (s.doCenterCrop) out = centerCrop(out, s.cropSize.height, s.cropSize.width);
      return normalize(out, s);
    },
  };
}
