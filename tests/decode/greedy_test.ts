/** Greedy search's chunked path (`greedySteps`) against its step-by-step path. */
import assert from "node:assert/strict";
import { CpuDecoder, type CpuLanguageModel } from "../../src/decode/cpu_decoder.ts";
import { type DecoderFactory, generate } from "../../src/decode/generate.ts";
import type { GenerateOptions } from "../../src/decode/options.ts";
import type { RowProcessing } from "../../src/decode/step.ts";
import { toyModel } from "./helpers.ts";

const V = 20;
const prompts = [[1, 2], [3, 4], [5, 6], [7, 8]];

/**
 * A CPU decoder with the fast path: each row's top-1 token feeds its next step without a
 * round trip to the search, as the GPU decoder does (rows that hit an eos keep running).
 */
class ChunkedCpuDecoder extends CpuDecoder {
  chunks = 0;
  async greedySteps(
    tokens: Int32Array,
    steps: number,
    procAt: (i: number) => RowProcessing,
  ): Promise<{ ids: Int32Array; values: Float32Array }> {
    this.chunks++;
    const R = this.rows;
    const ids = new Int32Array(steps * R), values = new Float32Array(steps * R);
    let feed = tokens;
    for (let i = 0; i < steps; i++) {
      const out = await this.step(feed, procAt(i), { kind: "topk", k: 1 });
      ids.set(out.ids, i * R);
      values.set(out.values, i * R);
      feed = out.ids;
    }
    return { ids, values };
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

Deno.test("greedy: processors that depend on the chosen tokens keep the step-by-step path", async () => {
  const cases: GenerateOptions[] = [
    { repetitionPenalty: 1.3 },
    { noRepeatNgramSize: 2 },
    { encoderNoRepeatNgramSize: 2 },
    { badWordsIds: [[3], [4, 5]] },
  ];
  for (const opts of cases) {
    const { stepwise, chunked, chunks } = await both(5, {
      maxNewTokens: 12,
      eosTokenId: 0,
      ...opts,
    });
    assert.deepEqual(chunked, stepwise, JSON.stringify(opts));
    assert.equal(chunks, 0, JSON.stringify(opts));
  }
});
