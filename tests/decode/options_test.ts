import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { cpuDecoderFactory } from "../../src/decode/cpu_decoder.ts";
import { generate } from "../../src/decode/generate.ts";
import { optionsFromHF } from "../../src/decode/hf_kwargs.ts";
import { type GenerateOptions, resolveOptions } from "../../src/decode/options.ts";
import { HF_FIXTURES, hfFixture, toyModel } from "./helpers.ts";

/** Each bad option set and the option its error must name. */
const BAD: [GenerateOptions, string][] = [
  [{ maxNewTokens: 0 }, "maxNewTokens"],
  [{ maxNewTokens: 2.5 }, "maxNewTokens"],
  [{ minNewTokens: -1 }, "minNewTokens"],
  [{ minNewTokens: 30, maxNewTokens: 20 }, "minNewTokens"],
  [{ numBeams: 0 }, "numBeams"],
  [{ numReturnSequences: 4, numBeams: 3 }, "numReturnSequences"],
  [{ numReturnSequences: 2 }, "numReturnSequences"],
  [{ lengthPenalty: NaN, numBeams: 2 }, "lengthPenalty"],
  [{ earlyStopping: "always" as unknown as boolean }, "earlyStopping"],
  [{ repetitionPenalty: 0 }, "repetitionPenalty"],
  [{ noRepeatNgramSize: -2 }, "noRepeatNgramSize"],
  [{ encoderNoRepeatNgramSize: 1.5 }, "encoderNoRepeatNgramSize"],
  [{ badWordsIds: [] }, "badWordsIds"],
  [{ badWordsIds: [[1], []] }, "badWordsIds"],
  [{ badWordsIds: [[-3]] }, "badWordsIds"],
  [{ forceWordsIds: [[5]] }, "forceWordsIds"], // numBeams 1
  [{ forceWordsIds: [[5]], numBeams: 2, doSample: true }, "forceWordsIds"],
  [{ forceWordsIds: [[5]], numBeams: 4, numBeamGroups: 2 }, "forceWordsIds"],
  [{ forceWordsIds: [[[1, 2], [1]]], numBeams: 2 }, "forceWordsIds"], // prefix alternative
  [{ forceWordsIds: [[1, 2, 3]], numBeams: 2, maxNewTokens: 2 }, "forceWordsIds"],
  [{ doSample: "yes" as unknown as boolean }, "doSample"],
  [{ doSample: true, temperature: 0 }, "temperature"],
  [{ doSample: true, temperature: -1 }, "temperature"],
  [{ doSample: true, topK: -1 }, "topK"],
  [{ doSample: true, topP: 0 }, "topP"],
  [{ doSample: true, topP: 1.5 }, "topP"],
  [{ doSample: true, typicalP: 0 }, "typicalP"],
  [{ doSample: true, seed: -1 }, "seed"],
  [{ doSample: true, seed: 2 ** 60 }, "seed"], // the generator takes safe integers only
  [{ numBeams: 4, numBeamGroups: 3 }, "numBeamGroups"],
  [{ numBeams: 2, numBeamGroups: 4 }, "numBeamGroups"],
  [{ numBeams: 4, numBeamGroups: 2, doSample: true }, "numBeamGroups"],
  [{ numBeams: 4, diversityPenalty: 1 }, "diversityPenalty"],
  [{ numBeams: 4, numBeamGroups: 2, diversityPenalty: -1 }, "diversityPenalty"],
  [{ promptIds: [1, -1] }, "promptIds"],
  [{ eosTokenId: [2, 0.5] }, "eosTokenId"],
  [{ padTokenId: -1 }, "padTokenId"],
  [{ maxNewToken: 5 } as unknown as GenerateOptions, "maxNewToken"],
];

Deno.test("options: each bad option is refused with BAD_OPTION naming it", () => {
  for (const [opts, name] of BAD) {
    assert.throws(
      () => resolveOptions(opts),
      (e: unknown) =>
        e instanceof WebcapError && e.code === "BAD_OPTION" && e.message.includes(name),
      `expected BAD_OPTION naming ${name} for ${JSON.stringify(opts)}`,
    );
  }
});

Deno.test("options: refused before any model work, including out-of-vocabulary ids", async () => {
  let created = 0;
  const base = cpuDecoderFactory(toyModel(10, 1), 10, 1);
  const factory = { ...base, create: (r: number) => (created++, base.create(r)) };
  const bad: [GenerateOptions, string][] = [
    [{ numBeams: 3, numReturnSequences: 5 }, "numReturnSequences"],
    [{ badWordsIds: [[10]] }, "badWordsIds"],
    [{ forceWordsIds: [[3, 12]], numBeams: 2 }, "forceWordsIds"],
    [{ promptIds: [11] }, "promptIds"],
    [{ eosTokenId: 99 }, "eosTokenId"],
    [{ doSample: true, seed: 1e300 }, "seed"],
  ];
  for (const [opts, name] of bad) {
    await assert.rejects(
      generate(factory, [[0]], opts),
      (e: unknown) =>
        e instanceof WebcapError && e.code === "BAD_OPTION" && e.message.includes(name),
    );
  }
  await assert.rejects(generate(factory, [[0], [1]], {}), WebcapError); // 2 prompts, 1 image
  await assert.rejects(generate({ ...factory, images: 2 }, [[0], [1, 2]], {}), WebcapError);
  assert.equal(created, 0);
});

Deno.test("options: defaults follow transformers", () => {
  const r = resolveOptions({});
  assert.equal(r.maxNewTokens, 20);
  assert.equal(r.numBeams, 1);
  assert.equal(r.topK, 50);
  assert.equal(r.earlyStopping, false);
  assert.equal(r.lengthPenalty, 1);
  assert.deepEqual(
    resolveOptions({ forceWordsIds: [[3], [[4, 5], [6]]], numBeams: 2 }).forceWordsIds,
    [
      [[3]],
      [[4, 5], [6]],
    ],
  );
});

Deno.test("options: every generate.json case's kwargs convert and validate", () => {
  let cases = 0;
  for (const e of Deno.readDirSync(HF_FIXTURES)) {
    let all: Record<string, { kwargs?: Record<string, unknown> }>;
    try {
      all = JSON.parse(Deno.readTextFileSync(hfFixture(`${e.name}/generate.json`)));
    } catch {
      continue;
    }
    for (const [name, c] of Object.entries(all)) {
      if (!c.kwargs) continue;
      const r = resolveOptions({ ...optionsFromHF(c.kwargs), eosTokenId: 3 });
      assert.equal(r.maxNewTokens, c.kwargs.max_new_tokens, `${e.name} ${name}`);
      cases++;
    }
  }
  assert.ok(cases > 0);
  assert.throws(() => optionsFromHF({ max_length: 20 }), /max_length/);
  assert.deepEqual(optionsFromHF({ top_k: null, num_beams: 2 }), { numBeams: 2 });
});
