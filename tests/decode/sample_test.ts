import assert from "node:assert/strict";
import { cpuDecoderFactory } from "../../src/decode/cpu_decoder.ts";
import { generate } from "../../src/decode/generate.ts";
import { philox4x32, Rng, sampleIndex, sampleUniform } from "../../src/decode/rng.ts";
import { drawToken } from "../../src/decode/sample.ts";
import { topKWarp, topPWarp, typicalWarp, type WarpSettings } from "../../src/decode/warpers.ts";
import { sum, tokensOf, toyModel } from "./helpers.ts";

const V = 24;
const prompts = [[1], [2], [3]];
const OFF: WarpSettings = { temperature: 1, topK: 0, topP: 1, typicalP: 1, minTokensToKeep: 1 };

function logits(probs: number[]): Float32Array {
  return Float32Array.from(probs, Math.log);
}

Deno.test("rng: a seed reproduces its stream; floats lie in [0, 1)", () => {
  const a = new Rng(12345), b = new Rng(12345), c = new Rng(12346);
  const xs = Array.from({ length: 1000 }, () => a.nextFloat());
  assert.deepEqual(xs, Array.from({ length: 1000 }, () => b.nextFloat()));
  assert.notDeepEqual(xs, Array.from({ length: 1000 }, () => c.nextFloat()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.ok(Math.abs(sum(xs) / xs.length - 0.5) < 0.05);
});

Deno.test("philox 4x32-10: Random123's known-answer vectors", () => {
  const hex = (a: number[]) => a.map((x) => x.toString(16).padStart(8, "0")).join(" ");
  const ones = 0xffffffff;
  assert.equal(hex(philox4x32([0, 0, 0, 0], [0, 0])), "6627e8d5 e169c58d bc57ac4c 9b00dbd8");
  assert.equal(
    hex(philox4x32([ones, ones, ones, ones], [ones, ones])),
    "408f276d 41c83b0e a20bc7c6 6d5451fd",
  );
  assert.equal(
    hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])),
    "d16cfe09 94fdcceb 5001e420 24126ea1",
  );
});

Deno.test("sampleUniform: keyed by seed, stream and step; uniform in [0, 1)", () => {
  const us = Array.from({ length: 2000 }, (_, i) => sampleUniform(2 ** 40 + 3, i % 7, i));
  assert.ok(us.every((u) => u >= 0 && u < 1 && Number.isInteger(u * 2 ** 24)));
  assert.ok(Math.abs(sum(us) / us.length - 0.5) < 0.05);
  assert.equal(sampleUniform(5, 1, 2), sampleUniform(5, 1, 2));
  const others = [sampleUniform(6, 1, 2), sampleUniform(5, 2, 2), sampleUniform(5, 1, 3)];
  assert.ok(others.every((u) => u !== sampleUniform(5, 1, 2)));
  assert.throws(() => sampleUniform(-1, 0, 0), /seed must be a non-negative safe integer/);
});

Deno.test("rng: draws follow the weights", () => {
  const rng = new Rng(5);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 20000; i++) counts[sampleIndex([0.5, 0, 0.3, 0.2], rng)]++;
  assert.equal(counts[1], 0);
  [0.5, 0, 0.3, 0.2].forEach((p, i) => assert.ok(Math.abs(counts[i] / 20000 - p) < 0.02));
  assert.equal(sampleIndex([0, 0], rng), -1);
});

Deno.test("sample: the same seed reproduces the samples, another seed changes them", async () => {
  const run = (seed: number) =>
    generate(cpuDecoderFactory(toyModel(V, 3, 1), V, 3), prompts, {
      doSample: true,
      seed,
      numReturnSequences: 3,
      maxNewTokens: 10,
      eosTokenId: 0,
    });
  const a = await run(99), b = await run(99), c = await run(100);
  assert.deepEqual(a, b);
  assert.notDeepEqual(tokensOf(a), tokensOf(c));
  for (const seqs of a) {
    assert.equal(seqs.length, 3);
    for (const s of seqs) assert.ok(Math.abs(s.score - sum(s.logprobs)) < 1e-4);
  }
});

Deno.test("sample: top-k = 1 equals greedy search", async () => {
  const greedy = await generate(cpuDecoderFactory(toyModel(V, 4), V, 3), prompts, {
    maxNewTokens: 12,
    eosTokenId: 0,
    repetitionPenalty: 1.3,
  });
  for (const seed of [1, 2, 3]) {
    const sampled = await generate(cpuDecoderFactory(toyModel(V, 4), V, 3), prompts, {
      maxNewTokens: 12,
      eosTokenId: 0,
      repetitionPenalty: 1.3,
      doSample: true,
      topK: 1,
      seed,
    });
    assert.deepEqual(tokensOf(sampled), tokensOf(greedy));
  }
});

Deno.test("sample: top-p never draws outside the nucleus", () => {
  // ascending cumulative mass: 0.05, 0.10, 0.20, 0.50, 1.00 → with p = 0.75 only {0, 1} survive
  const row = logits([0.5, 0.3, 0.1, 0.05, 0.05]);
  const rng = new Rng(8);
  const seen = new Set<number>();
  for (let i = 0; i < 3000; i++) {
    const { token, logprob } = drawToken(row, { ...OFF, topP: 0.75 }, rng.nextFloat());
    assert.ok(token === 0 || token === 1, `drew ${token} outside the nucleus`);
    seen.add(token);
    const renormalized = token === 0 ? 0.5 / 0.8 : 0.3 / 0.8;
    assert.ok(Math.abs(logprob - Math.log(renormalized)) < 1e-5);
  }
  assert.deepEqual([...seen].sort(), [0, 1]);
});

Deno.test("warpers: top-p, top-k and typical keep what transformers keeps", () => {
  const p = [0.4, 0.25, 0.2, 0.1, 0.05];
  const kept = (row: Float32Array) => [...row.keys()].filter((i) => row[i] > -Infinity);
  let row = logits(p);
  topPWarp(row, 0.6, 1);
  assert.deepEqual(kept(row), [0, 1]); // cum asc 0.05 .15 .35 .6 1 → remove ≤ 0.4
  row = logits(p);
  topPWarp(row, 0.01, 3);
  assert.deepEqual(kept(row), [0, 1, 2]); // minTokensToKeep
  row = Float32Array.from([1, 3, 3, 2]);
  topKWarp(row, 2, 1);
  assert.deepEqual(kept(row), [1, 2]);
  row = Float32Array.from([1, 3, 2, 3]);
  topKWarp(row, 1, 1);
  assert.deepEqual(kept(row), [1, 3]); // ties with the k-th value survive
  // typical: entropy H; rank by |−log p − H|; keep until the cumulative mass reaches 0.5
  row = logits(p);
  typicalWarp(row, 0.5, 1);
  const H = -p.reduce((s, x) => s + x * Math.log(x), 0);
  const order = p.map((_, i) => i).sort((a, b) =>
    Math.abs(-Math.log(p[a]) - H) - Math.abs(-Math.log(p[b]) - H)
  );
  let mass = 0;
  const expected: number[] = [];
  for (const i of order) {
    expected.push(i);
    mass += p[i];
    if (mass >= 0.5) break;
  }
  assert.deepEqual(kept(row), expected.sort());
});

Deno.test("sample: finished rows leave the decoder", async () => {
  const factory = cpuDecoderFactory(toyModel(V, 6, 1), V, 3);
  const out = await generate(factory, prompts, {
    doSample: true,
    seed: 4,
    numReturnSequences: 4,
    maxNewTokens: 15,
    eosTokenId: [0, 1, 2, 3],
  });
  const lengths = out.flat().map((s) => s.tokens.length);
  const dec = factory.created[0];
  // prompt of one token: one narrowed row per image for the first step, then one row per live sample
  assert.equal(dec.rowSteps, 3 + sum(lengths) - 12);
  assert.ok(lengths.some((l) => l < 15), "some sample should end early with 4 eos tokens");
});
