/**
 * Beam search on the GPU (`runBeams`: candidates, finished lists and early stopping in a kernel,
 * caches gathered by ping-pong, chunks of steps per submission) returns exactly what the host
 * beam search returns over the same decoder's one-step interface, on real architectures: beams
 * 2, 3 and 5, length penalties, every early-stopping mode, several sequences per image, minimum
 * and maximum lengths, processors, and a batch whose images finish at different steps.
 */
import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import { GpuDecoder } from "../../src/captioner/gpu_decoder.ts";
import { type GenerateOptions, resolveOptions } from "../../src/decode/options.ts";
import { compileRules } from "../../src/decode/processors.ts";
import { WebcapError } from "../../src/errors.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { fixture } from "../util.ts";
import { noise, run } from "./gpu_decoders.ts";

for (const name of ["vit-gpt2", "blip", "clipcap", "show-attend-tell"]) {
  Deno.test(`gpu beams: ${name} equals the host beam search`, async () => {
    const c = await Captioner.fromPretrained(fixture(`hf/${name}`));
    const encoded = await c.encode([noise(40, 30, 1), noise(30, 40, 2)]);
    try {
      const enc = encoded.state!;
      const free = await run(c, enc, { maxNewTokens: 12 }, true);
      // eos tokens taken from a greedy run so that hypotheses end at different steps
      const eos = [...new Set([free[0][0].tokens[2], free[1][0].tokens[6]])];
      const [a, b] = [free[0][0].tokens, free[1][0].tokens];
      const eos3 = [...new Set([a[1], a[3], b[2]])]; // frequent ends: finished lists fill up
      const cases: GenerateOptions[] = [
        { maxNewTokens: 10, numBeams: 3 },
        { maxNewTokens: 10, numBeams: 2, eosTokenId: eos, lengthPenalty: 0.5 },
        { maxNewTokens: 10, numBeams: 3, eosTokenId: eos, earlyStopping: true },
        {
          maxNewTokens: 10,
          numBeams: 3,
          eosTokenId: eos,
          earlyStopping: "never",
          lengthPenalty: 2,
        },
        {
          maxNewTokens: 10,
          numBeams: 3,
          eosTokenId: eos3,
          earlyStopping: "never",
          lengthPenalty: 2,
        },
        { maxNewTokens: 10, numBeams: 2, eosTokenId: eos3, earlyStopping: "never" },
        { maxNewTokens: 10, numBeams: 5, eosTokenId: eos, numReturnSequences: 3 },
        { maxNewTokens: 9, numBeams: 3, eosTokenId: eos, minNewTokens: 5, lengthPenalty: 2 },
        {
          maxNewTokens: 8,
          numBeams: 3,
          eosTokenId: eos,
          repetitionPenalty: 1.5,
          noRepeatNgramSize: 2,
          badWordsIds: [[7]],
        },
      ];
      const lengths = new Set<string>();
      for (const opts of cases) {
        const gpu = await run(c, enc, opts, true);
        const host = await run(c, enc, opts, false);
        assert.deepEqual(gpu, host, JSON.stringify(opts));
        lengths.add(gpu.map(([s]) => s.tokens.length).join());
      }
      assert.ok(lengths.size > 1, `images should end at different steps: ${[...lengths]}`);
    } finally {
      encoded.dispose();
      c.dispose();
    }
  });
}

Deno.test("gpu beams: 20 tokens in at most 3 submits; bind groups and buffers per caption do not grow with tokens", async () => {
  const c = await Captioner.fromPretrained(fixture("hf/vit-gpt2"));
  const image = noise(32, 32, 4);
  try {
    for (const numBeams of [3, 5]) {
      const cost = async (n: number) => {
        const g = c.gpu, submits = g.counters.submits;
        const groups = g.bindGroups.created, buffers = g.pool.created + g.counters.stagingCreated;
        await c.caption([image], { numBeams, maxNewTokens: n, minNewTokens: n });
        return {
          submits: g.counters.submits - submits,
          groups: g.bindGroups.created - groups,
          buffers: g.pool.created + g.counters.stagingCreated - buffers,
        };
      };
      // warm: pipelines, pool buckets, staging ring, the bind groups of both ping-pong phases
      for (const n of [24, 30, 24, 30]) await cost(n);
      const submits = (await cost(20)).submits;
      assert.ok(submits <= 3, `beam ${numBeams}: ${submits} submits for 20 tokens`);
      // buffer sizes follow the max length in steps; 24 and 30 tokens share them
      const [short, long] = [await cost(24), await cost(30)];
      const what = `beam ${numBeams}: ${JSON.stringify(short)} → ${JSON.stringify(long)}`;
      assert.ok(long.groups <= short.groups && long.buffers <= short.buffers, what);
    }
  } finally {
    c.dispose();
  }
});

Deno.test("gpu beams: rows that are not images × beams, or more candidates than the vocabulary, are refused before any work", async () => {
  const c = await Captioner.fromPretrained(fixture("hf/vit-gpt2"));
  const encoded = await c.encode([noise(32, 32, 5)]);
  const rec = new Recorder(c.gpu);
  const st = c.model.beginDecode(rec, encoded.state!, Int32Array.from([0, 0, 0]), 8);
  const dec = new GpuDecoder(c.gpu, c.model, st, rec);
  try {
    const V = dec.vocabSize, prompt = c.promptIds(undefined);
    const plan = {
      prompts: [prompt],
      rules: compileRules(resolveOptions({ numBeams: 2 }), [prompt]),
      numBeams: 2,
      keep: 4,
      lengthPenalty: 1,
      earlyStopping: false,
      maxSteps: 4,
    };
    const tokens = new Int32Array(3).fill(prompt.at(-1)!);
    for (
      const [p, mention] of [[plan, "3 rows for 1 images of 2 beams"], [{
        ...plan,
        numBeams: 3,
        keep: V + 1,
      }, `${V + 1} candidates of ${V}`]] as const
    ) {
      await assert.rejects(dec.runBeams(tokens, p), (e: unknown) => {
        assert.ok(e instanceof WebcapError && e.code === "BAD_OPTION", String(e));
        assert.match(e.message, new RegExp(mention));
        return true;
      });
    }
    assert.equal(dec.rows, 3);
  } finally {
    await dec.dispose();
    encoded.dispose();
    c.dispose();
  }
});
