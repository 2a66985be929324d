import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import { readGenerationConfig, withDefaults } from "../../src/captioner/generation_config.ts";
import { assertCode, fixture, getGpu } from "../util.ts";
import { modelFolder } from "./model_folder.ts";

const FILE = "m/generation_config.json";
const read = (json: Record<string, unknown>) => readGenerationConfig(json, FILE);

Deno.test("generation_config: lengths as transformers' _prepare_generated_length derives them", () => {
  // max_length counts the decoder prompt (here 1 start + 2 prompt tokens)
  assert.equal(withDefaults(read({ max_length: 8 }), {}, 3).maxNewTokens, 5);
  // transformers reads its default max_length 20 as 20 new tokens
  assert.equal(withDefaults(read({ max_length: 20 }), {}, 3).maxNewTokens, undefined);
  // max_new_tokens wins over max_length; an explicit option wins over both
  assert.equal(withDefaults(read({ max_length: 8, max_new_tokens: 11 }), {}, 3).maxNewTokens, 11);
  assert.equal(withDefaults(read({ max_length: 8 }), { maxNewTokens: 2 }, 3).maxNewTokens, 2);
  assert.equal(withDefaults(read({ min_length: 5 }), {}, 3).minNewTokens, 2);
  assert.equal(withDefaults(read({ min_length: 2 }), {}, 3).minNewTokens, 0);
  assert.equal(withDefaults(read({ min_length: 5, min_new_tokens: 4 }), {}, 3).minNewTokens, 4);
  // a file minimum above the call's maximum bans eos to the end, as transformers does
  assert.equal(withDefaults(read({ min_new_tokens: 9 }), { maxNewTokens: 4 }, 1).minNewTokens, 4);
  assert.equal(withDefaults(read({ min_new_tokens: 30 }), {}, 1).minNewTokens, 20);
  assert.equal(withDefaults(read({ min_new_tokens: 9 }), { minNewTokens: 1 }, 1).minNewTokens, 1);
  assertCode(() => withDefaults(read({ max_length: 3 }), {}, 3), "BAD_OPTION", "max_length", FILE);
});

Deno.test("generation_config: other decoding keys are option defaults; explicit options win", () => {
  const d = read({
    num_beams: 4,
    num_return_sequences: 2,
    no_repeat_ngram_size: 3,
    length_penalty: 0.5,
    early_stopping: "never",
    repetition_penalty: 1.2,
    eos_token_id: 7, // the architecture's, not an option
    transformers_version: "5.17.0",
    suppress_tokens: null,
  });
  assert.deepEqual(withDefaults(d, { numBeams: 5 }, 1), {
    numBeams: 5,
    numReturnSequences: 2,
    noRepeatNgramSize: 3,
    lengthPenalty: 0.5,
    earlyStopping: "never",
    repetitionPenalty: 1.2,
  });
  const sampling = read({ do_sample: true, top_k: 0, top_p: 0.9, temperature: 0.7 });
  assert.deepEqual(withDefaults(sampling, {}, 1), {
    doSample: true,
    topK: 0,
    topP: 0.9,
    temperature: 0.7,
  });
  assert.deepEqual(withDefaults(read({}), {}, 1), {});
});

Deno.test("generation_config: a bad value names the file and key", () => {
  const bad: [Record<string, unknown>, string][] = [
    [{ num_beams: 0 }, "num_beams"],
    [{ top_p: 1.5 }, "top_p"],
    [{ temperature: "hot" }, "temperature"],
    [{ early_stopping: "sometimes" }, "early_stopping"],
    [{ max_length: 2.5 }, "max_length"],
    [{ min_length: -1 }, "min_length"],
    [{ max_new_tokens: 0 }, "max_new_tokens"],
    [{ num_return_sequences: 3 }, "numReturnSequences"], // greedy returns one
    [{ suppress_tokens: [1, 2] }, "suppress_tokens.*does not implement"],
    [{ forced_bos_token_id: 3 }, "forced_bos_token_id"],
  ];
  for (const [json, mention] of bad) assertCode(() => read(json), "BAD_CONFIG", FILE, mention);
});

Deno.test("captioner: generation_config.json's decoding defaults apply, explicit options win", async () => {
  const gpu = await getGpu();
  const plain = await Captioner.fromPretrained(fixture("hf/vit-gpt2"), { gpu });
  const dir = await modelFolder("vit-gpt2", {
    "generation_config.json": (j) => ({
      ...j,
      num_beams: 3,
      num_return_sequences: 2,
      max_length: 6, // 5 new tokens after the start token
      no_repeat_ngram_size: 2,
    }),
  });
  const tuned = await Captioner.fromPretrained(dir, { gpu });
  try {
    const png = await Deno.readFile(fixture("hf/preprocess/pattern.png"));
    const beams = { numBeams: 3, numReturnSequences: 2, maxNewTokens: 5, noRepeatNgramSize: 2 };
    const [want] = await plain.caption(png, beams);
    const [got] = await tuned.caption(png);
    assert.equal(got.captions.length, 2);
    assert.deepEqual(got.captions, want.captions);
    const greedy = { numBeams: 1, numReturnSequences: 1, maxNewTokens: 4, noRepeatNgramSize: 0 };
    assert.deepEqual(
      (await tuned.caption(png, greedy))[0].captions,
      (await plain.caption(png, greedy))[0].captions,
    );
    // a call whose options conflict with the file's says where the other value came from
    await assert.rejects(
      tuned.caption(png, { numBeams: 1 }),
      (e: Error) =>
        /numReturnSequences/.test(e.message) && /generation_config\.json/.test(e.message),
    );
    const badDir = await modelFolder("vit-gpt2", {
      "generation_config.json": (j) => ({ ...j, num_beams: -2 }),
    });
    await assert.rejects(
      Captioner.fromPretrained(badDir, { gpu }),
      (e: Error) => /generation_config\.json: "num_beams"/.test(e.message),
    );
    await Deno.remove(badDir, { recursive: true });
  } finally {
    plain.dispose();
    tuned.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
