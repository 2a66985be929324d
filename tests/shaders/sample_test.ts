/**
 * The GPU sampler (`sampleRows`: warpers and the Philox draw) against the host reference
 * (`drawToken` with `sampleUniform`), and the GPU processors from histories (`processHistory`)
 * against `applyProcessing` with the host's ban lists, on random rows and on rows built with ties
 * at the top-k and top-p boundaries.
 */
import assert from "node:assert/strict";
import { Recorder } from "../../src/gpu/recorder.ts";
import { applyProcessing, compileRules, rowProcessing } from "../../src/decode/processors.ts";
import { resolveOptions } from "../../src/decode/options.ts";
import { sampleUniform } from "../../src/decode/rng.ts";
import { drawToken } from "../../src/decode/sample.ts";
import type { WarpSettings } from "../../src/decode/warpers.ts";
import { packWords, processHistory } from "../../src/shaders/logits_process.ts";
import { sampleRows } from "../../src/shaders/sample/sample.ts";
import { getGpu, randomF32 } from "../util.ts";

const V = 50;

/** Rows of V logits: random ones, then ties at the top-k / top-p boundaries. */
function rows(): Float32Array {
  const tied = (probs: number[]) =>
    Float32Array.from({ length: V }, (_, i) => i < probs.length ? Math.log(probs[i]) : -30);
  const out = [
    ...Array.from({ length: 12 }, (_, r) => randomF32(V, r + 1, 3)),
    // masses chosen away from every top-p boundary (the sums differ in the last bits)
    tied([0.11, 0.11, 0.11, 0.11, 0.56]), // top-p 0.75: the two low-index ties go
    tied([0.28, 0.28, 0.28, 0.08, 0.08]), // top-k 2: the three tied at the top stay
    tied([0.04, 0.31, 0.04, 0.31, 0.3]),
  ];
  const x = new Float32Array(out.length * V);
  out.forEach((r, i) => x.set(r, i * V));
  return x;
}

async function gpuDraws(x: Float32Array, warp: WarpSettings, seed: number, step: number) {
  const gpu = await getGpu();
  const rec = new Recorder(gpu);
  const logits = rec.upload(x, [x.length / V, V], "f32");
  const sel = sampleRows(rec, logits, { ...warp, seed, step });
  const reads = [rec.readTensor(sel.ids), rec.readTensor(sel.values)];
  rec.releaseAfterSubmit(sel.ids, sel.values);
  await rec.submit();
  return { ids: (await reads[0]) as Int32Array, values: (await reads[1]) as Float32Array };
}

const OFF: WarpSettings = { temperature: 1, topK: 0, topP: 1, typicalP: 1, minTokensToKeep: 1 };

Deno.test("sampleRows: the host's draws under every warper, ties included", async () => {
  const x = rows();
  const R = x.length / V;
  const warps: WarpSettings[] = [
    OFF,
    { ...OFF, temperature: 0.6 },
    { ...OFF, topK: 2 },
    { ...OFF, topK: 7, temperature: 1.4 },
    { ...OFF, topP: 0.75 },
    { ...OFF, topP: 0.3, topK: 10 },
    { ...OFF, typicalP: 0.5 },
    { ...OFF, typicalP: 0.9, topP: 0.9, topK: 20, temperature: 0.8 },
  ];
  for (const warp of warps) {
    for (const [seed, step] of [[1, 0], [2 ** 33 + 5, 3], [77, 11]]) {
      const got = await gpuDraws(x, warp, seed, step);
      for (let r = 0; r < R; r++) {
        const want = drawToken(x.subarray(r * V, (r + 1) * V), warp, sampleUniform(seed, r, step));
        const what = `${JSON.stringify(warp)} seed ${seed} step ${step} row ${r}`;
        assert.equal(got.ids[r], want.token, what);
        assert.ok(Math.abs(got.values[r] - want.logprob) < 1e-4, what);
      }
    }
  }
});

Deno.test("sampleRows: a row with every token removed draws -1", async () => {
  const x = new Float32Array(V).fill(-Infinity);
  const got = await gpuDraws(x, OFF, 3, 0);
  assert.equal(got.ids[0], -1);
});

Deno.test("processHistory: transformers' processors from the histories, as the host applies them", async () => {
  const gpu = await getGpu();
  const prompt = [3, 9, 4];
  const histories = [[...prompt, 7, 3, 9, 7, 3], [...prompt, 1, 1, 2, 2, 1], [
    ...prompt,
    9,
    4,
    9,
    49,
    5,
  ]];
  const opts = resolveOptions({
    repetitionPenalty: 1.7,
    noRepeatNgramSize: 2,
    encoderNoRepeatNgramSize: 2,
    badWordsIds: [[5], [3, 9, 8], [2, 1, 6], [49, 5, 11]],
    minNewTokens: 6,
    eosTokenId: [0, 12],
  });
  const rules = compileRules(opts, histories.map(() => prompt));
  for (const logSoftmax of [false, true]) {
    const x = Float32Array.from(randomF32(3 * V, 9, 4));
    const rowsState = histories.map((history, image) => ({ image, history }));
    const mode = { logSoftmaxBefore: false, logSoftmaxAfter: logSoftmax };
    const want = x.slice();
    applyProcessing(want, V, rowProcessing(rules, rowsState, prompt.length, mode));
    const rec = new Recorder(gpu);
    const logits = rec.upload(x, [3, V], "f32");
    const hist = rec.upload(Int32Array.from(histories.flat()), [3, 8], "i32");
    const lists = packWords(rules.badWords, rules.eos);
    processHistory(rec, logits, hist, rec.upload(lists, [lists.length], "u32"), {
      ...rules,
      promptLen: prompt.length,
      len: 8,
      words: rules.badWords.length,
      eosCount: rules.eos.length,
      logSoftmax,
    });
    const read = rec.readTensor(logits);
    await rec.submit();
    const got = (await read) as Float32Array;
    want.forEach((w, i) => {
      if (w === -Infinity) assert.equal(got[i], -Infinity, `${i}: banned on the host`);
      else assert.ok(Math.abs(got[i] - w) < 1e-5, `${i}: ${got[i]} vs ${w}`);
    });
    assert.ok(want.some((w) => w === -Infinity) && want.some((w) => w > -Infinity));
  }
});
