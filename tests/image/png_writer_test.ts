import assert from "node:assert/strict";
import { decode, encode } from "fast-png";
import { WebcapError } from "../../src/errors.ts";
import { encodeRgbPng } from "../../src/image/png_writer.ts";
import { rng } from "../util.ts";

Deno.test("png writer: fast-png decodes the exact pixels back, for noise and gradients", () => {
  const r = rng(7);
  for (const [w, h, kind] of [[1, 1, "noise"], [7, 5, "noise"], [64, 33, "gradient"]] as const) {
    const data = Uint8Array.from(
      { length: w * h * 3 },
      (_, i) =>
        kind === "noise" ? Math.floor(r() * 256) : (Math.floor(i / 3) % w) * 4 + (i % 3) * 7,
    );
    const png = decode(encodeRgbPng(w, h, data));
    assert.deepEqual([png.width, png.height, png.channels, png.depth], [w, h, 3, 8]);
    assert.deepEqual(png.data, data, `${w}×${h} ${kind}`);
  }
});

Deno.test("png writer: Paeth filtering beats unfiltered storage on a smooth picture", () => {
  const w = 200, h = 150;
  const data = Uint8Array.from({ length: w * h * 3 }, (_, i) => {
    const p = Math.floor(i / 3), x = p % w, y = Math.floor(p / w);
    return Math.round(127 + 120 * Math.sin(x / 17 + (i % 3)) * Math.cos(y / 23));
  });
  const ours = encodeRgbPng(w, h, data).length;
  const plain = encode({ width: w, height: h, data, channels: 3, depth: 8 }).length;
  assert.ok(ours < plain / 2, `filtered ${ours} B vs unfiltered ${plain} B`);
});

Deno.test("png writer: pixels that do not fill the size are refused", () => {
  assert.throws(
    () => encodeRgbPng(2, 2, new Uint8Array(11)),
    (e) =>
      e instanceof WebcapError && e.code === "BAD_SHAPE" && /11 bytes are not 2×2/.test(e.message),
  );
});
