import assert from "node:assert/strict";
import { cpuDecoderFactory, type CpuLanguageModel } from "../../src/decode/cpu_decoder.ts";
import { type DecoderFactory, generate } from "../../src/decode/generate.ts";
import { type GenerateOptions, resolveOptions } from "../../src/decode/options.ts";
import { referenceBeamSearch } from "./beam_reference.ts";
import { FullReadDecoder, toyModel } from "./helpers.ts";

const V = 16;
const prompts = [[1], [2], [3], [4]];

function factoryOf(lm: CpuLanguageModel, wide = false): DecoderFactory {
  const f = cpuDecoderFactory(lm, V, prompts.length);
  return wide ? { ...f, create: (r) => new FullReadDecoder(f.create(r)) } : f;
}

/** Exact top-k read-back: asking every candidate changes nothing. */
const EXACTNESS: Record<string, GenerateOptions> = {
  beam: { numBeams: 3, numReturnSequences: 3, repetitionPenalty: 1.4, noRepeatNgramSize: 3 },
  beamNever: { numBeams: 4, earlyStopping: "never", lengthPenalty: 0.5, eosTokenId: [0, 5] },
  diverse: { numBeams: 6, numBeamGroups: 3, diversityPenalty: 0.8, numReturnSequences: 6 },
  diverseRep: {
    numBeams: 4,
    numBeamGroups: 2,
    diversityPenalty: 0.4,
    repetitionPenalty: 1.6,
    numReturnSequences: 4,
  },
  diverseRepLow: { numBeams: 4, numBeamGroups: 4, diversityPenalty: 2, repetitionPenalty: 0.7 },
  constrained: { numBeams: 3, forceWordsIds: [[6, 2], [[9], [10, 11]]], repetitionPenalty: 1.2 },
  greedy: { repetitionPenalty: 1.5, badWordsIds: [[3, 4]] },
};

Deno.test("beam methods: the top-k read-back is exact (same result with every candidate read)", async () => {
  for (const [name, opts] of Object.entries(EXACTNESS)) {
    for (const seed of [1, 2, 3, 4]) {
      const lm = toyModel(V, seed, 1.2);
      const o = { maxNewTokens: 10, eosTokenId: 0, ...opts };
      const narrow = await generate(factoryOf(lm), prompts, o);
      const wide = await generate(factoryOf(lm, true), prompts, o);
      assert.deepEqual(narrow, wide, `${name} seed ${seed}`);
    }
  }
});

Deno.test("beam: 'never' ≥ false ≥ true, rank by rank", async () => {
  for (const seed of [5, 6, 7]) {
    for (const lengthPenalty of [1, 2, 0]) {
      const lm = toyModel(V, seed, 1.2);
      const best = async (earlyStopping: boolean | "never") =>
        (await generate(factoryOf(lm), prompts, {
          numBeams: 3,
          numReturnSequences: 3,
          maxNewTokens: 10,
          eosTokenId: [0, 7],
          lengthPenalty,
          earlyStopping,
        })).map((seqs) => seqs.map((s) => s.score));
      const [never, heuristic, early] = [await best("never"), await best(false), await best(true)];
      never.forEach((scores, i) =>
        scores.forEach((s, j) => {
          assert.ok(
            s >= heuristic[i][j] && heuristic[i][j] >= early[i][j],
            `seed ${seed} lp ${lengthPenalty}`,
          );
        })
      );
    }
  }
});

Deno.test("beam: an image's rows leave the decoder once it is done", async () => {
  const calls: { image: number; t: number }[] = [];
  const lm = toyModel(V, 8, 1.2);
  const spy: CpuLanguageModel = (h, images) => {
    h.forEach((x, r) => calls.push({ image: images[r], t: x.length - 1 }));
    return lm(h, images);
  };
  const K = 3;
  const out = await generate(factoryOf(spy), prompts, {
    numBeams: K,
    numReturnSequences: K,
    earlyStopping: true,
    maxNewTokens: 12,
    eosTokenId: [0, 7, 8],
  });
  out.forEach((seqs, img) => {
    const steps = Math.max(...seqs.map((s) => s.tokens.length));
    const rows = calls.filter((c) => c.image === img && c.t >= 0);
    assert.equal(Math.max(...rows.map((c) => c.t)), steps - 1, `image ${img} ran past its end`);
    assert.equal(rows.filter((c) => c.t === 0).length, 1, "the first step runs one row per image");
  });
  assert.ok(out.some((seqs) => Math.max(...seqs.map((s) => s.tokens.length)) < 12));
});

Deno.test("beam sampling: a seed reproduces it", async () => {
  const lm = toyModel(V, 9, 1.2);
  const run = (seed: number) =>
    generate(factoryOf(lm), prompts, {
      numBeams: 3,
      doSample: true,
      seed,
      maxNewTokens: 8,
      eosTokenId: 0,
      temperature: 1.5,
      topP: 0.9,
    });
  assert.deepEqual(await run(3), await run(3));
  assert.notDeepEqual(await run(3), await run(4));
});

Deno.test("beam: equals a literal port of the reference's vectorized loop", async () => {
  const configs: GenerateOptions[] = [
    { earlyStopping: true },
    { earlyStopping: false, lengthPenalty: 0.6 },
    { earlyStopping: false, lengthPenalty: 2 },
    { earlyStopping: "never", lengthPenalty: 1 },
    { earlyStopping: "never", lengthPenalty: -0.5 },
    { earlyStopping: false, eosTokenId: [0, 7, 9], minNewTokens: 3, noRepeatNgramSize: 2 },
    {
      earlyStopping: true,
      repetitionPenalty: 1.5,
      badWordsIds: [[3], [4, 5]],
      numReturnSequences: 2,
    },
  ];
  for (const cfg of configs) {
    for (const seed of [11, 12, 13]) {
      const lm = toyModel(V, seed, 1.2);
      const opts: GenerateOptions = {
        numBeams: 3,
        numReturnSequences: 3,
        maxNewTokens: 9,
        eosTokenId: [0, 7],
        ...cfg,
      };
      const ours = await generate(factoryOf(lm), prompts, opts);
      const ref = await referenceBeamSearch(lm, V, prompts, resolveOptions(opts));
      assert.deepEqual(ours, ref, `${JSON.stringify(cfg)} seed ${seed}`);
    }
  }
});

Deno.test("beam sampling: without an eos the warpers keep 2 tokens per row (min_tokens_to_keep)", async () => {
  const out = await generate(factoryOf(toyModel(V, 4, 1.2)), prompts, {
    numBeams: 2,
    numReturnSequences: 2,
    doSample: true,
    topK: 1,
    seed: 1,
    maxNewTokens: 3,
  });
  for (const seqs of out) {
    assert.equal(seqs.length, 2, "top-k 1 must still leave 2 tokens to draw beams from");
    assert.notDeepEqual(seqs[0].tokens, seqs[1].tokens);
  }
});
