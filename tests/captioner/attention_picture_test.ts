import assert from "node:assert/strict";
import { decode } from "fast-png";
import {
  attentionPictureLayout,
  renderAttentionPicture,
  writeAttentionMap,
} from "../../src/captioner/attention_picture.ts";
import { Captioner, type CaptionOptions } from "../../src/captioner/captioner.ts";
import { WebcapError } from "../../src/errors.ts";
import type { RgbImage } from "../../src/image/decode.ts";
import { fixture } from "../util.ts";

const GRAY: RgbImage = { width: 64, height: 48, data: new Uint8Array(64 * 48 * 3).fill(128) };

/** A 3×3 map with all weight in cell `k`. */
function oneHot(k: number): Float32Array {
  const m = new Float32Array(9);
  m[k] = 1;
  return m;
}

function pixel(png: { width: number; data: ArrayLike<number> }, x: number, y: number): number[] {
  const i = (y * png.width + x) * 3;
  return [png.data[i], png.data[i + 1], png.data[i + 2]];
}

Deno.test("attention picture: the PNG decodes to the tile grid of its word count", () => {
  for (const [n, cols, rows] of [[1, 1, 1], [3, 3, 1], [5, 5, 1], [7, 5, 2], [11, 5, 3]]) {
    const words = Array.from({ length: n }, (_, i) => `w${i}`);
    const maps = words.map((_, i) => oneHot(i % 9));
    const png = decode(renderAttentionPicture(GRAY, words, maps, [3, 3], { tileSize: 32 }));
    const layout = attentionPictureLayout(GRAY.width, GRAY.height, n, { tileSize: 32 });
    assert.deepEqual([layout.cols, layout.rows], [cols, rows], `${n} words`);
    assert.deepEqual(layout.tile, [32, 24], "tiles keep the image's aspect, longest side tileSize");
    assert.deepEqual([png.width, png.height, png.channels, png.depth], [
      layout.width,
      layout.height,
      3,
      8,
    ]);
    assert.ok(png.width >= cols * 32 && png.height >= rows * (24 + layout.labelHeight));
  }
});

Deno.test("attention picture: heat follows the map, labels are drawn under each tile", () => {
  const opts = { tileSize: 60, perRow: 2 };
  const L = attentionPictureLayout(GRAY.width, GRAY.height, 2, opts);
  const png = decode(renderAttentionPicture(GRAY, ["a", ""], [oneHot(0), oneHot(8)], [3, 3], opts));
  const [tw, th] = L.tile, y0 = L.gap;
  const [x0, x1] = [L.gap, 2 * L.gap + tw];
  const hot = (x: number, y: number) => {
    const [r, , b] = pixel(png, x, y);
    return r > b + 60;
  };
  const cold = (x: number, y: number) => {
    const [r, , b] = pixel(png, x, y);
    return b > r + 60;
  };
  assert.ok(
    hot(x0, y0) && cold(x0 + tw - 1, y0 + th - 1),
    "tile 1: hot top-left, cold bottom-right",
  );
  assert.ok(
    cold(x1, y0) && hot(x1 + tw - 1, y0 + th - 1),
    "tile 2: cold top-left, hot bottom-right",
  );
  assert.deepEqual(pixel(png, x0 - 1, y0), [255, 255, 255], "white margin left of tile 1");
  const darkInLabel = (left: number) => {
    let n = 0;
    for (let y = y0 + th; y < y0 + th + L.labelHeight; y++) {
      for (let x = left; x < left + tw; x++) if (pixel(png, x, y)[0] < 64) n++;
    }
    return n;
  };
  assert.ok(darkInLabel(x0) > 0, "the word 'a' is written under tile 1");
  assert.equal(darkInLabel(x1), 0, "an empty word leaves the band white");
});

Deno.test("attention picture: mismatched maps and bad options are named errors", () => {
  const bad = (f: () => unknown, re: RegExp) =>
    assert.throws(
      f,
      (e) => e instanceof WebcapError && e.code === "BAD_OPTION" && re.test(e.message),
    );
  bad(
    () => renderAttentionPicture(GRAY, ["a", "b"], [oneHot(0)], [3, 3]),
    /2 words need as many maps/,
  );
  bad(() => renderAttentionPicture(GRAY, ["a"], [new Float32Array(4)], [3, 3]), /maps of 3×3/);
  bad(() => renderAttentionPicture(GRAY, ["a"], [oneHot(0)], [3, 3], { opacity: 2 }), /opacity/);
});

Deno.test("attention picture: writeAttentionMap captions a fixture image and writes its picture", async () => {
  const captioner = await Captioner.fromPretrained(fixture("hf/vit-gpt2"), { offline: true });
  const out = await Deno.makeTempFile({ suffix: ".png" });
  try {
    const image = fixture("hf/preprocess/pattern.png");
    const options = { maxNewTokens: 4 };
    await writeAttentionMap(captioner, image, options, out);
    const [result] = await captioner.caption(image, options);
    const n = result.captions[0].tokens.length;
    const png = decode(await Deno.readFile(out));
    const layout = attentionPictureLayout(320, 240, n);
    assert.deepEqual([png.width, png.height], [layout.width, layout.height]);
  } finally {
    captioner.dispose();
    await Deno.remove(out);
  }
});

Deno.test("attention picture: writeAttentionMap maps the caption of a given result (reranked: the first)", async () => {
  const captioner = await Captioner.fromPretrained(fixture("hf/vit-gpt2"), { offline: true });
  const out = await Deno.makeTempFile({ suffix: ".png" });
  try {
    const image = fixture("hf/preprocess/pattern.png");
    const caption = (tokens: number[], score: number) => ({
      text: "",
      score,
      tokens,
      logprobs: [],
    });
    const result = { source: image, captions: [caption([7, 8, 9], -2), caption([7, 8], -1)] };
    const width = async (options: CaptionOptions) => {
      await writeAttentionMap(captioner, image, options, out, {}, result);
      return decode(await Deno.readFile(out)).width;
    };
    // a sampled caption is not drawn again: the picture shows the given result's caption
    assert.equal(await width({ doSample: true }), attentionPictureLayout(320, 240, 2).width);
    const rerank = { reranker: { score: () => 0 } };
    assert.equal(await width({ rerank }), attentionPictureLayout(320, 240, 3).width);
  } finally {
    captioner.dispose();
    await Deno.remove(out);
  }
});
