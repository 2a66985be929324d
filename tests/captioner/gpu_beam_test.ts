/**
 * Beam search on the GPU (`runBeams`: candidates, finished lists and early stopping in a kernel,
 * caches gathered by ping-pong, chunks of steps per submission) returns exactly what the host
 * beam search returns over the same decoder's one-step interface, on real architectures: beams
 * 2, 3 and 5, length penalties, every early-stopping mode, several sequences per image, minimum
 * and maximum lengths, processors, and a batch whose images finish at different steps.
 */
import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import type { GenerateOptions } from "../../src/decode/options.ts";
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
