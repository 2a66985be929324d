import assert from "node:assert/strict";
import {
  CELL_WIDTH,
  drawText,
  GLYPH_HEIGHT,
  GLYPH_WIDTH,
  glyphPixel,
  type RgbCanvas,
  textWidth,
} from "../../src/image/bitmap_font.ts";

/** `text` drawn at `scale` on a white canvas just large enough. */
function render(text: string, scale = 1): RgbCanvas {
  const width = Math.max(1, textWidth(text, scale)), height = GLYPH_HEIGHT * scale;
  const c = { width, height, data: new Uint8Array(width * height * 3).fill(255) };
  drawText(c, text, 0, 0, { scale });
  return c;
}

function bitmap(ch: string): string {
  let s = "";
  for (let y = 0; y < GLYPH_HEIGHT; y++) {
    for (let x = 0; x < GLYPH_WIDTH; x++) s += glyphPixel(ch, x, y) ? "#" : ".";
  }
  return s;
}

Deno.test("bitmap font: the 95 printable ASCII glyphs are pairwise distinct, only space is blank", () => {
  const seen = new Map<string, string>();
  for (let c = 32; c <= 126; c++) {
    const ch = String.fromCharCode(c), b = bitmap(ch);
    assert.ok(!seen.has(b), `${JSON.stringify(ch)} looks like ${JSON.stringify(seen.get(b))}`);
    seen.set(b, ch);
    assert.equal(b.includes("#"), ch !== " ", JSON.stringify(ch));
  }
});

Deno.test("bitmap font: order matters, non-ASCII draws as '?', scale multiplies", () => {
  assert.notDeepEqual(render("ab").data, render("ba").data);
  assert.deepEqual(render("é\u0001").data, render("??").data);
  assert.equal(textWidth("abc", 2), (3 * CELL_WIDTH - 1) * 2);
  const one = render("A"), two = render("A", 2);
  for (let y = 0; y < two.height; y++) {
    for (let x = 0; x < two.width; x++) {
      const a = one.data[(Math.floor(y / 2) * one.width + Math.floor(x / 2)) * 3];
      assert.equal(two.data[(y * two.width + x) * 3], a, `pixel ${x},${y}`);
    }
  }
});

Deno.test("bitmap font: drawing clips at the canvas edges", () => {
  // "|" is column 2, rows 0–6: at x = -4, scale 2 it covers canvas columns 0–1, rows -6…7.
  const c = { width: 4, height: 4, data: new Uint8Array(48).fill(255) };
  drawText(c, "|", -4, -6, { scale: 2, color: [255, 0, 0] });
  for (let y = 0; y < 4; y++) {
    for (let x = 0; x < 4; x++) {
      assert.equal(c.data[(y * 4 + x) * 3 + 1], x < 2 ? 0 : 255, `${x},${y}`);
    }
  }
});
