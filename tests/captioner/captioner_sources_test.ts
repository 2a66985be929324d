import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import { WebcapError } from "../../src/errors.ts";
import { rgbFromRgba } from "../../src/image/decode.ts";
import { fixture, getGpu, rng } from "../util.ts";

const BASE = "http://models.test/";

/** A fetch serving `dir` at {@link BASE}; 404 for absent files. */
function folderFetch(dir: string): typeof fetch {
  return (async (input: string | URL | Request) => {
    const name = String(input instanceof Request ? input.url : input).slice(BASE.length);
    try {
      return new Response(await Deno.readFile(`${dir}/${name}`));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      return new Response(null, { status: 404 });
    }
  }) as typeof fetch;
}

Deno.test("captioner: a model at a URL captions as the same folder on disk", async () => {
  const gpu = await getGpu();
  const png = await Deno.readFile(fixture("hf/preprocess/pattern.png"));
  for (const model of ["vit-gpt2", "clipcap"]) {
    const fromUrl = await Captioner.fromPretrained(BASE, {
      gpu,
      fetch: folderFetch(fixture(`hf/${model}`)),
    });
    const fromDir = await Captioner.fromPretrained(fixture(`hf/${model}`), { gpu });
    try {
      assert.equal(fromUrl.dir, BASE);
      const [a] = await fromUrl.caption(png, { maxNewTokens: 6 });
      const [b] = await fromDir.caption(png, { maxNewTokens: 6 });
      assert.equal(a.error, undefined);
      assert.ok(a.captions[0].tokens.length > 0);
      assert.deepEqual(a.captions, b.captions, model);
    } finally {
      fromUrl.dispose();
      fromDir.dispose();
    }
  }
});

Deno.test("captioner: ImageData-like RGBA pixels caption as their RGB channels", async () => {
  const cap = await Captioner.fromPretrained(fixture("hf/vit-gpt2"), { gpu: await getGpu() });
  try {
    const [width, height] = [40, 30];
    const r = rng(3);
    const rgba = Uint8ClampedArray.from(
      { length: width * height * 4 },
      () => Math.floor(r() * 256),
    );
    const rgb = rgbFromRgba({ width, height, data: rgba }, "x");
    for (let p = 0; p < width * height; p++) {
      assert.deepEqual([...rgb.data.subarray(3 * p, 3 * p + 3)], [
        ...rgba.subarray(4 * p, 4 * p + 3),
      ]);
    }
    const [fromRgba, fromRgb, bad] = await cap.caption([
      { width, height, data: rgba },
      { width, height, data: rgb.data },
      { width, height, data: rgba.subarray(1) },
    ], { maxNewTokens: 6 });
    assert.equal(fromRgba.error, undefined);
    assert.deepEqual(fromRgba.captions, fromRgb.captions);
    assert.ok(
      bad.error instanceof WebcapError && bad.error.code === "BAD_IMAGE",
      String(bad.error),
    );
    assert.match(bad.error.message, /image\[2\].*RGBA/);
  } finally {
    cap.dispose();
  }
});
