/**
 * A built-in 5×8 pixel bitmap font for printable ASCII (32–126), drawn into RGB pixel buffers
 * (attention pictures label their tiles with it, so no font file or canvas is needed).
 * Glyphs sit in a 6×9 cell (one blank column and row as spacing); capitals and digits use
 * rows 0–6, descenders of g, j, p, q, y and the comma reach row 7. Other characters are drawn
 * as `?`.
 * @module
 */

/** Glyph width in pixels (before scaling). */
export const GLYPH_WIDTH = 5;
/** Glyph height in pixels (before scaling). */
export const GLYPH_HEIGHT = 8;
/** Horizontal advance of one character, spacing included (before scaling). */
export const CELL_WIDTH = GLYPH_WIDTH + 1;
/** Line height, spacing included (before scaling). */
export const CELL_HEIGHT = GLYPH_HEIGHT + 1;

const FIRST = 32, LAST = 126;

/**
 * Glyphs of codes 32–126 in order, 5 columns each, one byte (two hex digits) per column from
 * left to right; bit r of a column byte is pixel row r (bit 0 = top).
 */
const GLYPHS = [
  "000000000000005f00000003000300147f147f14242a7f2a12231308646236495522500004030000", //  !"#$%&'
  "001c2241000041221c0014083e081408083e080800a0600000080808080800606000002010080402", // ()*+,-./
  "3e5149453e00427f400042615149462141454b311814127f1027454545393c4a4949300171090503", // 01234567
  "3649494936064949291e003636000000563600000814224100141414141400412214080201510906", // 89:;<=>?
  "324979413e7e0909097e7f494949363e414141227f4141221c7f494949417f090909013e4149497a", // @ABCDEFG
  "7f0808087f00417f41002040413f017f081422417f404040407f020c027f7f0408107f3e4141413e", // HIJKLMNO
  "7f090909063e4151215e7f09192946464949493101017f01013f4040403f1f2040201f3f4038403f", // PQRSTUVW
  "631408146303047804036151494543007f41410002040810200041417f0004020102048080808080", // XYZ[\]^_
  "000102040020545454787f484444383844444420384444487f3854545418087e09010218a4a4a47c", // `abcdefg
  "7f0804047800447d40004080847d007f1028440000417f40007c041804787c080404783844444438", // hijklmno
  "fc2424241818242424fc7c080404084854545420043f4440203c4040207c1c2040201c3c4030403c", // pqrstuvw
  "44281028441ca0a0a07c4464544c44000836410000007f000000413608000804081008", // xyz{|}~
].join("");

/** Column bytes of all glyphs, decoded once. */
const COLUMNS = Uint8Array.from(
  { length: GLYPHS.length / 2 },
  (_, i) => parseInt(GLYPHS.slice(2 * i, 2 * i + 2), 16),
);

/** The code a character is drawn with: itself when printable ASCII, else `?`. */
function glyphCode(ch: string): number {
  const c = ch.codePointAt(0) ?? 63;
  return c >= FIRST && c <= LAST ? c : 63;
}

/** Whether pixel (x, y) of the glyph of `ch` is set (x < 5, y < 8). */
export function glyphPixel(ch: string, x: number, y: number): boolean {
  return ((COLUMNS[(glyphCode(ch) - FIRST) * GLYPH_WIDTH + x] >> y) & 1) === 1;
}

/** Width in pixels of `text` drawn at `scale` (characters counted as code points). */
export function textWidth(text: string, scale = 1): number {
  const n = [...text].length;
  return n === 0 ? 0 : (n * CELL_WIDTH - 1) * scale;
}

/** An RGB image being drawn into: `data` holds `width·height·3` bytes, rows top to bottom. */
export interface RgbCanvas {
  /** Columns. */
  width: number;
  /** Rows. */
  height: number;
  /** RGB bytes, `width·height·3`. */
  data: Uint8Array;
}

/**
 * Draw `text` with its top-left corner at (x, y), each font pixel a `scale`×`scale` square of
 * `color` (RGB); pixels outside the canvas are clipped.
 */
export function drawText(
  canvas: RgbCanvas,
  text: string,
  x: number,
  y: number,
  opts: { scale?: number; color?: readonly [number, number, number] } = {},
): void {
  const scale = opts.scale ?? 1, color = opts.color ?? [0, 0, 0];
  let left = x;
  for (const ch of text) {
    for (let gx = 0; gx < GLYPH_WIDTH; gx++) {
      for (let gy = 0; gy < GLYPH_HEIGHT; gy++) {
        if (glyphPixel(ch, gx, gy)) {
          fillRect(canvas, left + gx * scale, y + gy * scale, scale, color);
        }
      }
    }
    left += CELL_WIDTH * scale;
  }
}

function fillRect(
  c: RgbCanvas,
  x0: number,
  y0: number,
  size: number,
  color: readonly [number, number, number],
): void {
  for (let y = Math.max(0, y0); y < Math.min(c.height, y0 + size); y++) {
    for (let x = Math.max(0, x0); x < Math.min(c.width, x0 + size); x++) {
      c.data.set(color, (y * c.width + x) * 3);
    }
  }
}
