/** Greedy search's and sampling's loop path (`runLoop`) against their step-by-step paths. */
import assert from "node:assert/strict";
import { CpuDecoder, type CpuLanguageModel } from "../../src/decode/cpu_decoder.ts";
import { type DecoderFactory, generate } from "../../src/decode/generate.ts";
import type { GenerateOptions } from "../../src/decode/options.ts";
import { runLoopByStep } from "../../src/decode/loop.ts";
import type { LoopOut, LoopPlan } from "../../src/decode/step.ts";
import { toyModel } from "./helpers.ts";

const V = 20;
const prompts = [[1, 2], [3, 4], [5, 6], [7, 8]];

/**
 * A CPU decoder with the loop: each row's token feeds its next step without a round trip to the
 * search, as the GPU decoder does (rows that hit an eos keep running).
 */
class ChunkedCpuDecoder extends CpuDecoder {
  chunks = 0;
  runLoop(tokens: Int32Array, plan: LoopPlan): Promise<LoopOut> {
    this.chunks++;
    return runLoopByStep(this, tokens, plan);
  }
}

function factory(lm: CpuLanguageModel, chunked: boolean, made: ChunkedCpuDecoder[]) {
  return {
    vocabSize: V,
    images: prompts.length,
    create(rowsPerImage: number) {
      if (!chunked) return new CpuDecoder(lm, V, prompts.length, rowsPerImage);
      const d = new ChunkedCpuDecoder(lm, V, prompts.length, rowsPerImage);
      made.push(d);
      return d;
    },
  } satisfies DecoderFactory;
}

async function both(seed: number, opts: GenerateOptions) {
  const lm = toyModel(V, seed, 1.5);
  const made: ChunkedCpuDecoder[] = [];
  const stepwise = await generate(factory(lm, false, made), prompts, opts);
  const chunked = await generate(factory(lm, true, made), prompts, opts);
  return { stepwise, chunked, chunks: made[0].chunks };
}

Deno.test("greedy: chunked steps give exactly the step-by-step result", async () => {
  const cases: GenerateOptions[] = [
    { maxNewTokens: 20, eosTokenId: [0, 8, 9] }, // images end at different steps, inside chunks
    { maxNewTokens: 13, eosTokenId: 0 }, // a last, shorter chunk
    { maxNewTokens: 5 },
    { maxNewTokens: 17, eosTokenId: [0, 8, 9, 10], minNewTokens: 11 }, // eos banned across chunks
    { maxNewTokens: 16, eosTokenId: [0, 8], badWordsIds: [[3], [8], [11]], promptIds: [4] },
  ];
  for (const opts of cases) {
    let endedEarly = false;
    for (const seed of [1, 2, 3, 4]) {
      const { stepwise, chunked, chunks } = await both(seed, opts);
      assert.deepEqual(chunked, stepwise, `${JSON.stringify(opts)} seed ${seed}`);
      assert.ok(chunks > 0, "the chunked path ran");
      endedEarly ||= stepwise.some(([s]) => s.tokens.length < opts.maxNewTokens!);
    }
    if (opts.eosTokenId !== undefined) assert.ok(endedEarly, `${JSON.stringify(opts)}: no eos`);
  }
});

Deno.test("greedy and sampling: every processor runs in the loop, as step by step", async () => {
  const cases: GenerateOptions[] = [
    { repetitionPenalty: 1.3 },
    { noRepeatNgramSize: 2 },
    { encoderNoRepeatNgramSize: 2, promptIds: [4, 5] },
    { badWordsIds: [[3], [4, 5]] },
    { doSample: true, seed: 7, numReturnSequences: 3 },
    { doSample: true, seed: 8, topK: 4, topP: 0.8, temperature: 0.7, repetitionPenalty: 1.2 },
    { doSample: true, seed: 9, topK: 0, typicalP: 0.5, noRepeatNgramSize: 2 },
  ];
  for (const opts of cases) {
    const { stepwise, chunked, chunks } = await both(5, {
      maxNewTokens: 12,
      eosTokenId: 0,
      ...opts,
    });
    assert.deepEqual(chunked, stepwise, JSON.stringify(opts));
    assert.equal(chunks, 1, JSON.stringify(opts));
  }
});
