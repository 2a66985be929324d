import assert from "node:assert/strict";
import { type RandomArch, writeRandomModel } from "../bench/random_model.ts";
import { Captioner } from "../src/captioner/captioner.ts";

const TINY = {
  hidden: 32,
  heads: 4,
  layers: 2,
  vitInner: 64,
  image: 32,
  patch: 16,
  vocab: 500, // past the fixture tokenizers' 300 (ViT-GPT2) and 160 (BLIP) ids: added words must decode
  positions: 64,
};

/** Two folders of `arch` at TINY sizes: same bytes; the first loads and captions decodably. */
async function checkRandomModel(arch: RandomArch, fixtureVocab: number) {
  const [a, b] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  try {
    await writeRandomModel(a, TINY, arch);
    await writeRandomModel(b, TINY, arch);
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
      const words = tokens.filter((t) => t >= fixtureVocab).map((t) => `w${t}`);
      for (const w of words) assert.ok(text.includes(w), `"${text}" lacks ${w}`);
    } finally {
      await c.dispose();
    }
  } finally {
    for (const d of [a, b]) await Deno.remove(d, { recursive: true });
  }
}

Deno.test("random ViT-GPT2 folder: same bytes for the same sizes, loads and captions with every id decodable", async () => {
  await checkRandomModel("vit-gpt2", 300);
});

Deno.test("random BLIP folder (BLIP-base's layout, sizes passed in): same bytes, loads and captions with every id decodable", async () => {
  await checkRandomModel("blip", 160);
});
