import assert from "node:assert/strict";
import { cpuDecoderFactory } from "../../src/decode/cpu_decoder.ts";
import { diverseBeamSearch } from "../../src/decode/diverse_beam.ts";
import { generate } from "../../src/decode/generate.ts";
import { type GenerateOptions, resolveOptions } from "../../src/decode/options.ts";
import { compileRules } from "../../src/decode/processors.ts";
import { feedPrompt, type GeneratedSequence } from "../../src/decode/search.ts";
import { referenceGroupBeamSearch } from "./group_beam_reference.ts";
import { toyModel } from "./helpers.ts";

const V = 16;
const prompts = [[1], [2], [3]];

/** transformers 4.x beam search (one group) through the group beam search code path. */
async function plainBeam4x(seed: number, opts: GenerateOptions): Promise<GeneratedSequence[][]> {
  const resolved = resolveOptions(opts);
  const factory = cpuDecoderFactory(toyModel(V, seed, 1.2), V, prompts.length);
  const dec = factory.create(resolved.numBeams);
  return await diverseBeamSearch(dec, {
    prompts,
    opts: resolved,
    rules: compileRules(resolved, prompts),
    vocabSize: V,
    first: await feedPrompt(dec, prompts, resolved.numBeams),
  });
}

Deno.test("diverse: penalty 0 equals plain beam search of width G in every group", async () => {
  for (const seed of [1, 2, 3, 4]) {
    for (const earlyStopping of [true, false, "never"] as const) {
      const common = { maxNewTokens: 9, eosTokenId: [0, 5], earlyStopping, lengthPenalty: 0.8 };
      const grouped = await generate(cpuDecoderFactory(toyModel(V, seed, 1.2), V, 3), prompts, {
        ...common,
        numBeams: 6,
        numBeamGroups: 3,
        diversityPenalty: 0,
        numReturnSequences: 6,
      });
      const plain = await plainBeam4x(seed, { ...common, numBeams: 2, numReturnSequences: 2 });
      grouped.forEach((seqs, img) => {
        const expected = plain[img].flatMap((s) => [s, s, s]);
        assert.deepEqual(seqs.map((s) => s.tokens), expected.map((s) => s.tokens), `seed ${seed}`);
        seqs.forEach((s, j) => assert.equal(s.score, expected[j].score));
      });
    }
  }
});

Deno.test("diverse: a strong penalty makes every group choose differently", async () => {
  for (const seed of [5, 6, 7]) {
    const out = await generate(cpuDecoderFactory(toyModel(V, seed, 1.2), V, 3), prompts, {
      numBeams: 4,
      numBeamGroups: 4,
      diversityPenalty: 100,
      numReturnSequences: 4,
      maxNewTokens: 8,
    });
    for (const seqs of out) {
      assert.equal(seqs.length, 4);
      // groups of one beam, never finished (no eos): at every step the four tokens differ
      for (let t = 0; t < 8; t++) {
        assert.equal(new Set(seqs.map((s) => s.tokens[t])).size, 4, `seed ${seed} step ${t}`);
      }
    }
  }
});

Deno.test("diverse: the penalty lowers the overlap between groups", async () => {
  let overlapWith = 0, overlapWithout = 0;
  for (const seed of [8, 9, 10, 11]) {
    const run = (diversityPenalty: number) =>
      generate(cpuDecoderFactory(toyModel(V, seed, 1.2), V, 3), prompts, {
        numBeams: 4,
        numBeamGroups: 2,
        diversityPenalty,
        numReturnSequences: 4,
        maxNewTokens: 8,
        eosTokenId: 0,
      });
    const pairs = (r: GeneratedSequence[][]) =>
      r.reduce((n, seqs) => n + seqs.length - new Set(seqs.map((s) => s.tokens.join())).size, 0);
    overlapWith += pairs(await run(3));
    overlapWithout += pairs(await run(0));
  }
  assert.ok(overlapWithout > 0, "without a penalty the two groups duplicate each other");
  assert.ok(
    overlapWith < overlapWithout,
    `${overlapWith} duplicates with the penalty, ${overlapWithout} without`,
  );
});

Deno.test("diverse: equals a literal port of the reference's group beam search", async () => {
  const configs: GenerateOptions[] = [
    { numBeams: 4, numBeamGroups: 2, diversityPenalty: 0.5 },
    {
      numBeams: 6,
      numBeamGroups: 3,
      diversityPenalty: 1.5,
      earlyStopping: true,
      eosTokenId: [0, 5],
    },
    {
      numBeams: 4,
      numBeamGroups: 4,
      diversityPenalty: 0.3,
      earlyStopping: "never",
      lengthPenalty: 2,
    },
    {
      numBeams: 4,
      numBeamGroups: 2,
      diversityPenalty: 0.8,
      repetitionPenalty: 1.4,
      noRepeatNgramSize: 2,
    },
    {
      numBeams: 4,
      numBeamGroups: 2,
      diversityPenalty: 0.8,
      repetitionPenalty: 0.8,
      minNewTokens: 4,
    },
  ];
  for (const cfg of configs) {
    for (const seed of [21, 22, 23]) {
      const lm = toyModel(V, seed, 1.2);
      const opts: GenerateOptions = {
        maxNewTokens: 9,
        eosTokenId: [0, 6],
        numReturnSequences: cfg.numBeams,
        ...cfg,
      };
      const ours = await generate(cpuDecoderFactory(lm, V, prompts.length), prompts, opts);
      const ref = await referenceGroupBeamSearch(lm, V, prompts, resolveOptions(opts));
      assert.deepEqual(ours, ref, `${JSON.stringify(cfg)} seed ${seed}`);
    }
  }
});

Deno.test("diverse: the penalty is float32 diversityPenalty times the count, as torch computes it", async () => {
  // every group picks token 5 (far ahead), so group g's score is x − f32(f32(d)·g)
  const peaked = (histories: readonly (readonly number[])[]) => {
    const out = new Float32Array(histories.length * V);
    histories.forEach((_, r) => (out[r * V + 5] = 20));
    return out;
  };
  const d = 0.03;
  const f = Math.fround;
  assert.notEqual(f(d * 3), f(f(d) * 3), "d must tell the two roundings apart");
  const [seqs] = await generate(cpuDecoderFactory(peaked, V, 1), [[1]], {
    numBeams: 4,
    numBeamGroups: 4,
    diversityPenalty: d,
    numReturnSequences: 4,
    maxNewTokens: 1,
  });
  const x = seqs[0].logprobs[0]; // group 0: no penalty
  assert.deepEqual(seqs.map((s) => s.tokens), [[5], [5], [5], [5]]);
  assert.deepEqual(
    seqs.map((s) => s.logprobs[0]),
    [0, 1, 2, 3].map((c) => (c === 0 ? x : f(x - f(f(d) * c)))),
  );
});
