import assert from "node:assert/strict";
import { Captioner, type CaptionOptions } from "../../src/captioner/captioner.ts";
import type { Reranker } from "../../src/decode/rerank.ts";
import { assertRejectsCode, fixture, getGpu } from "../util.ts";
import { modelFolder } from "./model_folder.ts";

Deno.test("fromPretrained: null options, unknown dtype, bad maxPixels are BAD_OPTION before any file is read", async () => {
  const missing = "/nonexistent/model"; // reading it first would give MISSING_FILE
  const bad: [unknown, string][] = [
    [null, "null"],
    ["f16", "string"],
    [{ dtype: "bf16" }, "dtype.*bf16"],
    [{ dtype: 16 }, "dtype"],
    [{ maxPixels: NaN }, "maxPixels.*NaN"],
    [{ maxPixels: -1 }, "maxPixels"],
    [{ maxPixels: Infinity }, "maxPixels"],
  ];
  for (const [opts, mention] of bad) {
    await assertRejectsCode(
      Captioner.fromPretrained(missing, opts as never),
      "BAD_OPTION",
      mention,
    );
  }
});

Deno.test("captioner: null options, a non-array to encode and malformed rerankers are BAD_OPTION; fractional RGB sizes are BAD_IMAGE", async () => {
  const gpu = await getGpu();
  const cap = await Captioner.fromPretrained(fixture("hf/vit-gpt2"), { gpu });
  try {
    const { height: H, width: W } = cap.preprocessor;
    const image = { width: W, height: H, data: new Uint8Array(W * H * 3).fill(90) };
    const before = { live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes };
    await assertRejectsCode(
      cap.caption(image, null as never),
      "BAD_OPTION",
      "caption options",
      "null",
    );
    await assertRejectsCode(cap.encode(null as never), "BAD_OPTION", "array", "null");
    const badReranks: [unknown, string][] = [
      [null, "null"],
      [{ reranker: {} }, "score"],
      [{ reranker: null }, "score"],
      [{ reranker: { score: () => 1 }, weight: NaN }, "weight.*NaN"],
    ];
    for (const [rerank, mention] of badReranks) {
      const opts = { maxNewTokens: 2, rerank } as CaptionOptions;
      await assertRejectsCode(cap.caption(image, opts), "BAD_OPTION", "rerank", mention);
    }
    assert.deepEqual({ live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes }, before);
    const nan: Reranker = { score: () => NaN };
    await assertRejectsCode(
      cap.caption(image, { maxNewTokens: 2, rerank: { reranker: nan } }),
      "BAD_OPTION",
      "scored .* NaN",
    );
    // 1.5 × 2 × 3 = 9 bytes: only the integer check catches it
    const [frac] = await cap.caption({ width: 1.5, height: 2, data: new Uint8Array(9) });
    assert.equal(frac.error?.code, "BAD_IMAGE");
    // the captioner is still usable
    const [ok] = await cap.caption(image, { maxNewTokens: 2 });
    assert.equal(ok.error, undefined);
    assert.ok(ok.captions[0].tokens.length > 0);
  } finally {
    cap.dispose();
  }
});

Deno.test("captioner: EncodedImages.dispose() twice is a no-op", async () => {
  const gpu = await getGpu();
  const cap = await Captioner.fromPretrained(fixture("hf/vit-gpt2"), { gpu });
  try {
    const { height: H, width: W } = cap.preprocessor;
    const encoded = await cap.encode([
      { width: W, height: H, data: new Uint8Array(W * H * 3).fill(3) },
    ]);
    const live = gpu.pool.liveBytes;
    encoded.dispose();
    assert.ok(gpu.pool.liveBytes < live, "the first dispose frees the states");
    encoded.dispose();
  } finally {
    cap.dispose();
  }
});

Deno.test("fromPretrained: a tokenizer smaller than the vocabulary is BAD_TOKENIZER, out-of-range decoder ids BAD_CONFIG", async () => {
  const gpu = await getGpu();
  const owned = gpu.pool.ownedBytes;
  const smallTokenizer = await modelFolder("vit-gpt2", {
    "tokenizer.json": { copy: fixture("hf/bert-tokenizer.json") },
  });
  await assertRejectsCode(
    Captioner.fromPretrained(smallTokenizer, { gpu }),
    "BAD_TOKENIZER",
    "160 tokens",
    "300",
  );
  await Deno.remove(smallTokenizer, { recursive: true });
  const vocab = 300;
  const cases: [string, string, (j: Record<string, unknown>) => unknown, string][] = [
    [
      "vit-gpt2",
      "generation_config.json",
      (j) => ({ ...j, decoder_start_token_id: vocab }),
      "start",
    ],
    ["vit-gpt2", "generation_config.json", (j) => ({ ...j, eos_token_id: 1e6 }), "end token"],
    ["vit-gpt2", "generation_config.json", (j) => ({ ...j, pad_token_id: vocab }), "padding"],
    [
      "blip",
      "config.json",
      (j) => ({ ...j, text_config: { ...(j.text_config as object), bos_token_id: 160 } }),
      "start",
    ],
  ];
  for (const [model, file, edit, mention] of cases) {
    const dir = await modelFolder(model, { [file]: edit });
    await assertRejectsCode(
      Captioner.fromPretrained(dir, { gpu }),
      "BAD_CONFIG",
      mention,
      "vocabulary",
    );
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(gpu.pool.ownedBytes, owned, "the refused models' weights are freed");
});
