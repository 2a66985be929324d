import assert from "node:assert/strict";
import { writeRandomModel } from "../bench/random_model.ts";
import { Captioner } from "../src/captioner/captioner.ts";

const TINY = {
  hidden: 32,
  heads: 4,
  layers: 2,
  vitInner: 64,
  image: 32,
  patch: 16,
  vocab: 500, // past the fixture tokenizer's 300 ids: the added words must decode
  positions: 64,
};

Deno.test("random ViT-GPT2 folder: same bytes for the same sizes, loads and captions with every id decodable", async () => {
  const [a, b] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  try {
    await writeRandomModel(a, TINY);
    await writeRandomModel(b, TINY);
    for (const f of ["model.safetensors", "config.json", "tokenizer.json"]) {
      assert.deepEqual(await Deno.readFile(`${a}/${f}`), await Deno.readFile(`${b}/${f}`), f);
    }
    const c = await Captioner.fromPretrained(a);
    try {
      const image = { width: 40, height: 36, data: new Uint8Array(40 * 36 * 3).fill(120) };
      const [r] = await c.caption(image, { maxNewTokens: 6, minNewTokens: 6 });
      const { tokens, text } = r.captions[0];
      assert.equal(tokens.length, 6);
      assert.ok(tokens.every((t) => t >= 0 && t < TINY.vocab), `${tokens}`);
      const words = tokens.filter((t) => t >= 300).map((t) => `w${t}`);
      for (const w of words) assert.ok(text.includes(w), `"${text}" lacks ${w}`);
    } finally {
      await c.dispose();
    }
  } finally {
    for (const d of [a, b]) await Deno.remove(d, { recursive: true });
  }
});
