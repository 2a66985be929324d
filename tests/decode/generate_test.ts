/** Properties every strategy must hold, run over all of them on toy language models. */
import assert from "node:assert/strict";
import { cpuDecoderFactory } from "../../src/decode/cpu_decoder.ts";
import { generate } from "../../src/decode/generate.ts";
import type { GenerateOptions } from "../../src/decode/options.ts";
import type { GeneratedSequence } from "../../src/decode/search.ts";
import { sum, toyModel } from "./helpers.ts";

const V = 20;
const EOS = 0;
const prompts = [[1, 2], [3, 4], [5, 6]];

const STRATEGIES: Record<string, GenerateOptions> = {
  greedy: {},
  sample: { doSample: true, seed: 11, numReturnSequences: 2, topK: 0 },
  beam: { numBeams: 3, numReturnSequences: 3 },
  beamSample: { numBeams: 3, numReturnSequences: 2, doSample: true, seed: 5, topK: 0 },
  diverse: { numBeams: 4, numBeamGroups: 2, diversityPenalty: 0.7, numReturnSequences: 4 },
  constrained: { numBeams: 3, forceWordsIds: [[7]], numReturnSequences: 2 },
};

async function run(seed: number, opts: GenerateOptions): Promise<GeneratedSequence[][]> {
  const factory = cpuDecoderFactory(toyModel(V, seed, 1.5), V, prompts.length);
  return await generate(factory, prompts, { maxNewTokens: 12, eosTokenId: EOS, ...opts });
}

function contains(seq: number[], word: number[]): boolean {
  for (let i = 0; i + word.length <= seq.length; i++) {
    if (word.every((t, j) => seq[i + j] === t)) return true;
  }
  return false;
}

Deno.test("generate: bad words never appear (single and multi-token, across the prompt)", async () => {
  for (const [name, opts] of Object.entries(STRATEGIES)) {
    for (const seed of [1, 2, 3]) {
      // ban what the unconstrained run produced: two of its tokens and two of its bigrams
      const free = (await run(seed, opts)).flat();
      const singles = [...new Set(free.flatMap((s) => s.tokens))].filter((t) =>
        t !== EOS && t !== 7
      );
      const common = singles.slice(0, 2);
      const bigrams = free
        .flatMap((s) => s.tokens.slice(1).map((t, j) => [s.tokens[j], t]))
        .filter((p) => !p.includes(EOS) && !p.some((t) => common.includes(t)));
      const badWordsIds = [...common.map((t) => [t]), ...bigrams.slice(0, 2), [2, 9]];
      const out = await run(seed, { ...opts, badWordsIds });
      out.forEach((seqs, img) => {
        for (const s of seqs) {
          const full = [...prompts[img], ...s.tokens];
          for (const w of badWordsIds) {
            assert.ok(
              !contains(full.slice(prompts[img].length - w.length + 1), w),
              `${name} seed ${seed}: [${w}] in [${full}]`,
            );
          }
        }
      });
    }
  }
});

Deno.test("generate: no eos before minNewTokens", async () => {
  const eos = [0, 8, 9, 10, 11]; // many eos ids make early endings likely without the rule
  for (const [name, opts] of Object.entries(STRATEGIES)) {
    let endedEarly = false;
    for (const seed of [4, 5, 6, 7]) {
      const free = (await run(seed, { ...opts, eosTokenId: eos })).flat();
      endedEarly ||= free.some((s) => s.tokens.length < 9);
      const out = (await run(seed, { ...opts, eosTokenId: eos, minNewTokens: 9 })).flat();
      for (const s of out) {
        const firstEos = s.tokens.findIndex((t) => eos.includes(t));
        assert.ok(firstEos < 0 || firstEos >= 9, `${name} seed ${seed}: eos at ${firstEos}`);
        assert.ok(s.tokens.length >= 9);
      }
    }
    assert.ok(endedEarly, `${name}: without minNewTokens some sequence should end before 9 tokens`);
  }
});

Deno.test("generate: scores equal the (length-penalized) sum of the returned logprobs", async () => {
  for (const [name, opts] of Object.entries(STRATEGIES)) {
    const beams = (opts.numBeams ?? 1) > 1;
    for (const lengthPenalty of beams ? [1, 0.6, -0.5, 2] : [1]) {
      const out = await run(7, { ...opts, lengthPenalty, repetitionPenalty: 1.2 });
      for (const s of out.flat()) {
        const expected = sum(s.logprobs) / (beams ? s.tokens.length ** lengthPenalty : 1);
        assert.ok(
          Math.abs(s.score - expected) < 1e-5 * Math.max(1, Math.abs(expected)),
          `${name} lp ${lengthPenalty}: ${s.score} vs ${expected}`,
        );
        assert.equal(s.logprobs.length, s.tokens.length);
        assert.ok(s.tokens.length <= 12);
        const eosAt = s.tokens.indexOf(EOS);
        assert.ok(eosAt < 0 || eosAt === s.tokens.length - 1, `${name}: tokens after eos`);
      }
      if (beams && !opts.doSample) {
        for (const seqs of out) {
          for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i - 1].score >= seqs[i].score);
        }
      }
    }
  }
});

Deno.test("generate: no n-gram repeats with noRepeatNgramSize, prompt included", async () => {
  for (const [name, opts] of Object.entries(STRATEGIES)) {
    for (const n of [1, 2, 3]) {
      const out = await run(8, { ...opts, noRepeatNgramSize: n });
      out.forEach((seqs, img) => {
        for (const s of seqs) {
          const full = [...prompts[img], ...s.tokens];
          const grams = new Set<string>();
          for (let i = 0; i + n <= full.length; i++) {
            const g = full.slice(i, i + n).join(",");
            assert.ok(!grams.has(g), `${name} n=${n}: [${g}] repeats in [${full}]`);
            grams.add(g);
          }
        }
      });
    }
  }
});

Deno.test("generate: promptIds follow the start tokens and are not returned", async () => {
  const seen: number[][] = [];
  const lm = toyModel(V, 9);
  const factory = cpuDecoderFactory(
    (h, im) => (seen.push(...h.map((x) => [...x])), lm(h, im)),
    V,
    1,
  );
  const out = await generate(factory, [[1]], { promptIds: [4, 5], maxNewTokens: 3 });
  assert.deepEqual(seen[2].slice(0, 3), [1, 4, 5]);
  assert.equal(out[0][0].tokens.length, 3);
});

Deno.test("generate: greedy rows of finished images leave the decoder", async () => {
  const factory = cpuDecoderFactory(toyModel(V, 2, 1.5), V, 3);
  const out = await generate(factory, prompts, { maxNewTokens: 12, eosTokenId: [0, 8, 9] });
  const lengths = out.map((s) => s[0].tokens.length);
  assert.ok(lengths.some((l) => l < 12), "an image should finish early");
  // one prompt step for every image, then one row per generated token
  assert.equal(factory.created[0].rowSteps, 3 + sum(lengths));
});

Deno.test("generate: a reserved start id outside the vocabulary is accepted first in prompts only", async () => {
  const lm = toyModel(V, 12, 1.5);
  const clamp: typeof lm = (h, im) => lm(h.map((x) => x.map((t) => (t >= V ? 0 : t))), im);
  const factory = { ...cpuDecoderFactory(clamp, V, 2), reservedStartId: V + 3 };
  for (const opts of Object.values(STRATEGIES)) {
    const out = await generate(factory, [[V + 3], [V + 3]], {
      ...opts,
      maxNewTokens: 6,
      eosTokenId: EOS,
      repetitionPenalty: 1.3,
      noRepeatNgramSize: 2,
    });
    for (const s of out.flat()) assert.ok(s.tokens.every((t) => t >= 0 && t < V));
  }
  await assert.rejects(generate(factory, [[1, V + 3], [1, V + 3]], {}), /not a token id/);
});
