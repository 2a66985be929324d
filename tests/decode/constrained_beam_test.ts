import assert from "node:assert/strict";
import { advanceTokens, bank, compileConstraints, stateOf } from "../../src/decode/constraints.ts";
import { cpuDecoderFactory } from "../../src/decode/cpu_decoder.ts";
import { generate } from "../../src/decode/generate.ts";
import type { ForceWord } from "../../src/decode/options.ts";
import { toyModel } from "./helpers.ts";

const V = 16;
const prompts = [[1], [2], [3]];

/** Whether `seq` contains `word` (a phrase, or any of its alternatives). */
function containsWord(seq: number[], word: ForceWord): boolean {
  const alts = Array.isArray(word[0]) ? (word as number[][]) : [word as number[]];
  return alts.some((a) => seq.some((_, i) => a.every((t, j) => seq[i + j] === t)));
}

Deno.test("constraints: progress, restarts and banks follow transformers' ConstraintListState", () => {
  const cs = compileConstraints([[[4, 5, 6]], [[7], [8, 9]]]);
  assert.equal(cs.maxHeight, 3);
  let st = stateOf(cs, [4, 5]);
  assert.deepEqual(advanceTokens(cs, st), [6]);
  assert.equal(bank(cs, st), 3 - 1); // two of three tokens of the word in progress
  st = stateOf(cs, [4, 5, 4]); // broken phrase: sent back to the end of the pending list
  assert.deepEqual(st.pending, [1, 0]);
  assert.deepEqual(advanceTokens(cs, st), [7, 8, 4]);
  st = stateOf(cs, [8, 9, 4, 5, 6]);
  assert.ok(st.completed);
  assert.equal(bank(cs, st), 6);
  assert.deepEqual(advanceTokens(cs, st), []);
  st = stateOf(cs, [8, 7]); // the disjunctive word restarts; 7 is not re-read
  assert.equal(st.complete.length, 0);
  assert.ok(!stateOf(cs, [4, 5, 6, 8]).completed);
});

Deno.test("constrained: every returned caption contains every forced word", async () => {
  const words: ForceWord[][] = [
    [[9]],
    [[6, 2]],
    [[[10, 11], [12]]],
    [[13], [[4, 14], [15]]],
  ];
  for (const forceWordsIds of words) {
    let mattered = false;
    for (const seed of [1, 2, 3]) {
      for (const eos of [[0], [0, 5, 7]]) {
        const free = (await generate(cpuDecoderFactory(toyModel(V, seed), V, 3), prompts, {
          numBeams: 4,
          maxNewTokens: 10,
          eosTokenId: eos,
        })).flat();
        const out = await generate(cpuDecoderFactory(toyModel(V, seed), V, 3), prompts, {
          numBeams: 4,
          numReturnSequences: 2,
          maxNewTokens: 10,
          eosTokenId: eos,
          forceWordsIds,
        });
        for (const seqs of out) {
          assert.ok(
            seqs.length >= 1,
            `no caption for ${JSON.stringify(forceWordsIds)} seed ${seed}`,
          );
          for (const s of seqs) {
            for (const w of forceWordsIds) {
              assert.ok(containsWord(s.tokens, w), `[${s.tokens}] lacks ${JSON.stringify(w)}`);
            }
          }
        }
        mattered ||= free.some((s) => !forceWordsIds.every((w) => containsWord(s.tokens, w)));
      }
    }
    assert.ok(
      mattered,
      `the free search always contains ${JSON.stringify(forceWordsIds)}: no test`,
    );
  }
});
