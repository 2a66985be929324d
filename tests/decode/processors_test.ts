import assert from "node:assert/strict";
import {
  badWordBans,
  compileRules,
  encoderNoRepeatBans,
  ngramTable,
  noRepeatBans,
  processRows,
} from "../../src/decode/processors.ts";
import { resolveOptions } from "../../src/decode/options.ts";
import { Rng } from "../../src/decode/rng.ts";
import { topK } from "../../src/decode/topk.ts";

function randomRow(n: number, rng: Rng, scale = 4): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.nextFloat() * 2 - 1) * scale);
}

/** Whether `gram` occurs in `seq` as a contiguous run. */
function occurs(seq: number[], gram: number[]): boolean {
  for (let i = 0; i + gram.length <= seq.length; i++) {
    if (gram.every((t, j) => seq[i + j] === t)) return true;
  }
  return false;
}

Deno.test("processors: no-repeat bans exactly the tokens that would repeat an n-gram", () => {
  const rng = new Rng(7);
  for (let trial = 0; trial < 200; trial++) {
    const n = 1 + (trial % 4);
    const len = Math.floor(rng.nextFloat() * 12);
    const h = Array.from({ length: len }, () => Math.floor(rng.nextFloat() * 4));
    const banned = new Set(noRepeatBans(h, n));
    for (let t = 0; t < 4; t++) {
      const would = h.length + 1 >= n && occurs(h, [...h.slice(h.length - n + 1), t]);
      assert.equal(banned.has(t), would, `h=${h} n=${n} t=${t}`);
    }
  }
});

Deno.test("processors: encoder no-repeat bans the prompt's n-grams only", () => {
  const prompt = [5, 1, 2, 3];
  const table = ngramTable(prompt, 3);
  assert.deepEqual(encoderNoRepeatBans([9, 1, 2], 3, table), [3]);
  assert.deepEqual(encoderNoRepeatBans([9, 5, 1], 3, table), [2]);
  assert.deepEqual(encoderNoRepeatBans([2, 3], 3, table), []);
  assert.deepEqual(encoderNoRepeatBans([1], 3, table), []);
});

Deno.test("processors: bad words ban single tokens always and last tokens after their prefix", () => {
  const words = [[5], [7, 8], [1, 2, 3]];
  assert.deepEqual(badWordBans([0, 7], words), [5, 8]);
  assert.deepEqual(badWordBans([7, 1, 2], words), [5, 3]);
  assert.deepEqual(badWordBans([2], words), [5]);
  const rules = compileRules(resolveOptions({ badWordsIds: [[3], [4], [3, 4]], eosTokenId: 3 }), [[
    0,
  ]]);
  assert.deepEqual(rules.badWords, [[4], [3, 4]]); // an eos-only bad word is dropped, as transformers
});

Deno.test("processors: processRows applies log-softmax, penalty once per token, bans, selection", () => {
  const rng = new Rng(3);
  const V = 40;
  const logits = new Float32Array([...randomRow(V, rng), ...randomRow(V, rng)]);
  const seen = [Int32Array.from([3, 3, 7]), Int32Array.from([])];
  const banned = [Int32Array.from([1]), Int32Array.from([0, 2])];
  const proc = {
    logSoftmaxBefore: true,
    repetitionPenalty: 2,
    seen,
    banned,
    logSoftmaxAfter: false,
  };
  const full = processRows(logits, V, proc, { kind: "full" }).values;
  const lse = Math.log(logits.subarray(0, V).reduce((s, x) => s + Math.exp(x), 0));
  assert.ok(Math.abs(full[5] - (logits[5] - lse)) < 1e-5);
  assert.ok(Math.abs(full[3] - 2 * (logits[3] - lse)) < 1e-5); // negative log-prob: ×p, once
  assert.equal(full[1], -Infinity);
  assert.equal(full[V], -Infinity);
  assert.equal(full[V + 2], -Infinity);
  const top = processRows(logits, V, proc, {
    kind: "topk",
    k: 5,
    gather: [Int32Array.from([1, 9]), Int32Array.from([4])],
  });
  for (let r = 0; r < 2; r++) {
    const ref = topK(full, 5, r * V, V);
    assert.deepEqual([...top.ids.subarray(r * 5, r * 5 + 5)], [...ref.ids]);
    assert.deepEqual([...top.values.subarray(r * 5, r * 5 + 5)], [...ref.values]);
  }
  assert.deepEqual([...top.gathered![0]], [full[1], full[9]]);
  assert.deepEqual([...top.gathered![1]], [full[V + 4]]);
  const norm = processRows(logits, V, { ...proc, logSoftmaxAfter: true }, { kind: "full" }).values;
  const mass = norm.subarray(0, V).reduce((s, x) => s + Math.exp(x), 0);
  assert.ok(Math.abs(mass - 1) < 1e-5);
});

Deno.test("processors: positive scores are divided by the repetition penalty", () => {
  const logits = new Float32Array([2, -2, 0.5]);
  const out = processRows(logits, 3, {
    logSoftmaxBefore: false,
    repetitionPenalty: 2,
    seen: [Int32Array.from([0, 1])],
    logSoftmaxAfter: false,
  }, { kind: "full" });
  assert.deepEqual([...out.values], [1, -4, 0.5]);
});

Deno.test("topK: best first, ties to the lower id, NaN last", () => {
  const r = topK([1, 3, 3, NaN, 2, 3], 4);
  assert.deepEqual([...r.ids], [1, 2, 5, 4]);
  assert.deepEqual([...r.values], [3, 3, 3, 2]);
});
