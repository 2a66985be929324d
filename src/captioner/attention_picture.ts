/**
 * Attention pictures: one tile per caption word, each the input image with that word's
 * attention map laid over it as a heat map, the word written under the tile.
 *
 * Each map is scaled by its own maximum to [0, 1], upsampled to the tile bilinearly (pixel
 * centres aligned, edges clamped, as `align_corners=False`), coloured with the classic "jet"
 * colormap (blue → cyan → yellow → red: r = clamp(1.5 − |4v − 3|), g = clamp(1.5 − |4v − 2|),
 * b = clamp(1.5 − |4v − 1|)) and blended over the image with a constant opacity.
 * @module
 */
import {
  CELL_HEIGHT,
  CELL_WIDTH,
  drawText,
  type RgbCanvas,
  textWidth,
} from "../image/bitmap_font.ts";
import { type AttentionOptions, captionAttention } from "./caption_attention.ts";
import type { Captioner, CaptionOptions, CaptionResult } from "./captioner.ts";
import { WebcapError } from "../errors.ts";
import { loadImage, type RgbImage } from "../image/decode.ts";
import { resizeRgb } from "../image/preprocess.ts";
import { encodeRgbPng } from "../image/png_writer.ts";

/** Options of {@link renderAttentionPicture}. */
export interface AttentionPictureOptions {
  /** Longest side of each tile's image in pixels (default 224). */
  tileSize?: number;
  /** Tiles per row (default 5). */
  perRow?: number;
  /** Weight of the heat colour over the image, 0–1 (default 0.5). */
  opacity?: number;
  /** Pixels per font pixel of the labels (default 2: 12 px per character, 16 px high). */
  fontScale?: number;
}

/** Geometry of an attention picture. */
export interface AttentionPictureLayout {
  /** Width and height of each tile's image. */
  tile: [number, number];
  /** Height of the label band under each tile. */
  labelHeight: number;
  /** Margin around and space between tiles (tile i starts at `gap + col·(tile + gap)`). */
  gap: number;
  /** Tiles per row. */
  cols: number;
  /** Rows of tiles. */
  rows: number;
  /** Width of the whole picture. */
  width: number;
  /** Height of the whole picture. */
  height: number;
}

/** Space around and between tiles, in pixels. */
const GAP = 4;
/** Space above and below a label, in pixels. */
const LABEL_PAD = 4;

function checkOptions(o: Required<AttentionPictureOptions>): void {
  const ok = Number.isInteger(o.tileSize) && o.tileSize >= 8 && Number.isInteger(o.perRow) &&
    o.perRow >= 1 && o.opacity >= 0 && o.opacity <= 1 && Number.isInteger(o.fontScale) &&
    o.fontScale >= 1;
  if (!ok) {
    throw new WebcapError(
      "BAD_OPTION",
      `attention picture options ${JSON.stringify(o)}: tileSize must be an integer ≥ 8, ` +
        "perRow and fontScale integers ≥ 1, opacity in [0, 1]",
    );
  }
}

function withDefaults(opts: AttentionPictureOptions): Required<AttentionPictureOptions> {
  const o = { tileSize: 224, perRow: 5, opacity: 0.5, fontScale: 2, ...opts };
  checkOptions(o);
  return o;
}

/** The tile grid for `words` tiles of an image of `width`×`height`. */
export function attentionPictureLayout(
  width: number,
  height: number,
  words: number,
  opts: AttentionPictureOptions = {},
): AttentionPictureLayout {
  const o = withDefaults(opts);
  const s = o.tileSize / Math.max(width, height);
  const tile: [number, number] = [
    Math.max(1, Math.round(width * s)),
    Math.max(1, Math.round(height * s)),
  ];
  const labelHeight = CELL_HEIGHT * o.fontScale + 2 * LABEL_PAD;
  const cols = Math.max(1, Math.min(words, o.perRow)), rows = Math.max(1, Math.ceil(words / cols));
  return {
    tile,
    labelHeight,
    gap: GAP,
    cols,
    rows,
    width: cols * tile[0] + (cols + 1) * GAP,
    height: rows * (tile[1] + labelHeight) + (rows + 1) * GAP,
  };
}

/** Jet colormap of v in [0, 1] → RGB in [0, 1]. */
function jet(v: number): [number, number, number] {
  const c = (x: number) => Math.min(1, Math.max(0, 1.5 - Math.abs(x)));
  return [c(4 * v - 3), c(4 * v - 2), c(4 * v - 1)];
}

/** `map [gh, gw]` scaled by its maximum and upsampled bilinearly to `[h, w]`. */
function upsample(
  map: Float32Array,
  [gh, gw]: [number, number],
  w: number,
  h: number,
): Float32Array {
  const max = map.reduce((a, b) => Math.max(a, b), 0) || 1;
  const out = new Float32Array(w * h);
  const axis = (i: number, n: number, g: number) => {
    const u = Math.min(g - 1, Math.max(0, (i + 0.5) * g / n - 0.5));
    const i0 = Math.floor(u);
    return { i0, i1: Math.min(g - 1, i0 + 1), f: u - i0 };
  };
  for (let y = 0; y < h; y++) {
    const r = axis(y, h, gh);
    for (let x = 0; x < w; x++) {
      const c = axis(x, w, gw);
      const top = map[r.i0 * gw + c.i0] * (1 - c.f) + map[r.i0 * gw + c.i1] * c.f;
      const bottom = map[r.i1 * gw + c.i0] * (1 - c.f) + map[r.i1 * gw + c.i1] * c.f;
      out[y * w + x] = (top * (1 - r.f) + bottom * r.f) / max;
    }
  }
  return out;
}

/** Blend the heat map of `map` over `base` into `canvas` at (x0, y0). */
function drawTile(
  canvas: RgbCanvas,
  base: RgbImage,
  heat: Float32Array,
  x0: number,
  y0: number,
  opacity: number,
): void {
  for (let y = 0; y < base.height; y++) {
    for (let x = 0; x < base.width; x++) {
      const src = (y * base.width + x) * 3, dst = ((y0 + y) * canvas.width + x0 + x) * 3;
      const color = jet(heat[y * base.width + x]);
      for (let ch = 0; ch < 3; ch++) {
        canvas.data[dst + ch] = Math.round(
          (1 - opacity) * base.data[src + ch] + opacity * 255 * color[ch],
        );
      }
    }
  }
}

/** `word` cut to `maxChars` characters (the last one then `~`), non-ASCII shown as `?`. */
function fitLabel(word: string, maxChars: number): string {
  const chars = [...word];
  if (chars.length <= maxChars) return word;
  return chars.slice(0, Math.max(0, maxChars - 1)).join("") + "~";
}

/**
 * Render one tile per word: the image resized to `tileSize` (longest side, bilinear), its map
 * (`grid[0]`×`grid[1]`, row-major) as a jet heat map blended over it, the word centred under it
 * (cut with `~` when wider than the tile), `perRow` tiles per row on a white background.
 * @returns PNG bytes (8-bit RGB), {@link attentionPictureLayout} in size.
 * @throws WebcapError BAD_OPTION when words and maps differ in number or a map is not the grid.
 */
export function renderAttentionPicture(
  img: RgbImage,
  words: readonly string[],
  maps: readonly Float32Array[],
  grid: [number, number],
  opts: AttentionPictureOptions = {},
): Uint8Array {
  if (words.length !== maps.length || maps.some((m) => m.length !== grid[0] * grid[1])) {
    throw new WebcapError(
      "BAD_OPTION",
      `attention picture: ${words.length} words need as many maps of ${grid[0]}×${grid[1]} ` +
        `values; got ${maps.length} maps of sizes ${[...new Set(maps.map((m) => m.length))]}`,
    );
  }
  const o = withDefaults(opts);
  const L = attentionPictureLayout(img.width, img.height, words.length, o);
  const [tw, th] = L.tile;
  const canvas: RgbCanvas = {
    width: L.width,
    height: L.height,
    data: new Uint8Array(L.width * L.height * 3),
  };
  canvas.data.fill(255);
  const base = resizeRgb(img, tw, th, 2);
  const maxChars = Math.floor((tw + o.fontScale) / (CELL_WIDTH * o.fontScale));
  words.forEach((word, i) => {
    const x0 = GAP + (i % L.cols) * (tw + GAP);
    const y0 = GAP + Math.floor(i / L.cols) * (th + L.labelHeight + GAP);
    drawTile(canvas, base, upsample(maps[i], grid, tw, th), x0, y0, o.opacity);
    const label = fitLabel(word, maxChars);
    const lx = x0 + Math.floor((tw - textWidth(label, o.fontScale)) / 2);
    drawText(canvas, label, lx, y0 + th + LABEL_PAD, { scale: o.fontScale });
  });
  return encodeRgbPng(L.width, L.height, canvas.data);
}

/**
 * Compute the attention maps of one caption of the image at `imagePath` and write them as a PNG
 * picture to `outPath`; prints the path to stderr. The caption comes from `result` when given
 * (the image's result of an earlier {@link Captioner.caption} call with `options`, so the picture
 * shows a caption that was reported: sampling draws differently on every call), else from
 * captioning the image now. It is the first caption when `options.rerank` is set, else the one
 * with the highest score. `attention` picks a decoder layer (default: the mean over layers).
 * @throws the image's WebcapError when it cannot be captioned; BAD_OPTION for a model without
 *   cross-attention (ClipCap).
 */
export async function writeAttentionMap(
  captioner: Captioner,
  imagePath: string,
  options: CaptionOptions,
  outPath: string,
  attention: AttentionOptions & AttentionPictureOptions = {},
  result?: CaptionResult,
): Promise<void> {
  const img = await loadImage(imagePath, { maxPixels: captioner.maxPixels });
  result ??= (await captioner.caption([img], options))[0];
  if (result.error) throw result.error;
  if (result.captions.length === 0) {
    throw new WebcapError("BAD_OPTION", `${imagePath}: the options produced no caption to map`);
  }
  const best = options.rerank
    ? result.captions[0]
    : result.captions.reduce((a, b) => (b.score > a.score ? b : a));
  const { words, maps, grid } = await captionAttention(
    captioner,
    img,
    best,
    captioner.promptIds(options.prompt),
    attention,
  );
  await Deno.writeFile(outPath, renderAttentionPicture(img, words, maps, grid, attention));
  console.error(`attention map of "${best.text}" written to ${outPath}`);
}
