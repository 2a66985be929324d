/**
 * The GPU decoder's loop (`runLoop`: processors, selection or draws on the GPU, chunks of
 * GPU-resident steps) gives exactly what its one-step-per-round-trip path gives, on real
 * architectures, with images that finish at different steps (finished rows keep running inside
 * a chunk on one path, leave at once on the other), for greedy search with every processor and
 * for sampling with every warper.
 */
import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import type { GenerateOptions } from "../../src/decode/options.ts";
import type { GeneratedSequence } from "../../src/decode/search.ts";
import { fixture } from "../util.ts";
import { noise, run } from "./gpu_decoders.ts";

for (const name of ["vit-gpt2", "blip", "clipcap"]) {
  Deno.test(`gpu greedy: ${name} chunked steps equal single steps`, async () => {
    const c = await Captioner.fromPretrained(fixture(`hf/${name}`));
    const encoded = await c.encode([noise(40, 30, 1), noise(30, 40, 2), noise(32, 32, 3)]);
    try {
      const enc = encoded.state!;
      const free = await run(c, enc, { maxNewTokens: 19 }, true);
      // eos tokens taken from the free run so that images end at different steps
      const eos = [...new Set([free[0][0].tokens[2], free[1][0].tokens[9]])];
      const cases: GenerateOptions[] = [
        { maxNewTokens: 19 },
        { maxNewTokens: 19, eosTokenId: eos },
        { maxNewTokens: 19, eosTokenId: eos, minNewTokens: 10, badWordsIds: [[7]] },
        { maxNewTokens: 19, eosTokenId: eos, repetitionPenalty: 1.5, noRepeatNgramSize: 2 },
        {
          maxNewTokens: 12,
          eosTokenId: eos,
          encoderNoRepeatNgramSize: 1,
          badWordsIds: [[free[0][0].tokens[0], free[0][0].tokens[1]], [5]],
        },
        { maxNewTokens: 12, eosTokenId: eos, doSample: true, seed: 3, numReturnSequences: 2 },
        {
          maxNewTokens: 12,
          eosTokenId: eos,
          doSample: true,
          seed: 2 ** 40 + 7,
          temperature: 0.7,
          topK: 20,
          topP: 0.8,
          repetitionPenalty: 1.2,
        },
        { maxNewTokens: 12, doSample: true, seed: 5, topK: 0, typicalP: 0.6, temperature: 1.5 },
      ];
      for (const opts of cases) {
        const chunked = await run(c, enc, opts, true);
        const stepped = await run(c, enc, opts, false);
        if (!opts.doSample) assert.deepEqual(stepped, chunked, JSON.stringify(opts));
        else { // the same draws; log-probabilities summed in float32 on the GPU, float64 on the host
          const tokens = (r: GeneratedSequence[][]) => r.map((seqs) => seqs.map((q) => q.tokens));
          assert.deepEqual(tokens(stepped), tokens(chunked), JSON.stringify(opts));
          stepped.flat().forEach((q, i) =>
            q.logprobs.forEach((l, j) =>
              assert.ok(Math.abs(l - chunked.flat()[i].logprobs[j]) < 1e-4, JSON.stringify(opts))
            )
          );
        }
        if (opts === cases[1]) {
          const lengths = new Set(chunked.map(([s]) => s.tokens.length));
          assert.ok(lengths.size > 1, `images should end at different steps: ${[...lengths]}`);
        }
      }
    } finally {
      encoded.dispose();
      c.dispose();
    }
  });
}

Deno.test("gpu loop: 20 tokens in at most 3 submits; bind groups and buffers per caption do not grow with tokens", async () => {
  const c = await Captioner.fromPretrained(fixture("hf/vit-gpt2"));
  const image = noise(32, 32, 4);
  try {
    for (const opts of [{}, { repetitionPenalty: 1.3 }, { doSample: true, seed: 2 }]) {
      const cost = async (n: number) => {
        const g = c.gpu, submits = g.counters.submits;
        const groups = g.bindGroups.created, buffers = g.pool.created + g.counters.stagingCreated;
        await c.caption([image], { ...opts, maxNewTokens: n, minNewTokens: n });
        return {
          submits: g.counters.submits - submits,
          groups: g.bindGroups.created - groups,
          buffers: g.pool.created + g.counters.stagingCreated - buffers,
        };
      };
      await cost(24), await cost(30); // warm: pipelines, pool buckets, staging ring
      const submits = (await cost(20)).submits;
      assert.ok(submits <= 3, `${JSON.stringify(opts)}: ${submits} submits for 20 tokens`);
      // buffer sizes follow the max length in steps; 24 and 30 tokens share them
      const [short, long] = [await cost(24), await cost(30)];
      const what = `${JSON.stringify(opts)}: ${JSON.stringify(short)} → ${JSON.stringify(long)}`;
      assert.ok(long.groups <= short.groups && long.buffers <= short.buffers, what);
    }
  } finally {
    c.dispose();
  }
});
