/**
 * One step of the beam kernel against the host ranking (`topCandidates`, src/decode/beam.ts):
 * equal scores rank by beam then token, a candidate ending in eos among the first K enters the
 * finished list with score / generated^lp and its parent's tokens, the first K that do not end
 * continue from their parents; a done image is left untouched.
 */
import assert from "node:assert/strict";
import { type Beam, topCandidates } from "../../src/decode/beam.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { type BeamShape, beamStep, hypsWidth, seqWidth } from "../../src/shaders/beam/beam.ts";
import { assertCode, getGpu } from "../util.ts";

const f32bits = (x: number) => new Int32Array(Float32Array.of(x).buffer)[0];
const bitsf32 = (x: number) => new Float32Array(Int32Array.of(x).buffer)[0];

Deno.test("beam step: ties, finished entry, continuing beams and a done image as the host ranks them", async () => {
  const gpu = await getGpu();
  const [images, K, k, V, P, lp] = [2, 2, 4, 10, 1, 2];
  const shape: BeamShape = {
    beams: K,
    keep: k,
    promptLen: P,
    maxNew: 4,
    earlyTrue: false,
    fixedLen: false,
  };
  const W = seqWidth(shape), HS = hypsWidth(shape), L = P + shape.maxNew, eos = 6;
  // step 1: each beam holds one generated token; image 1 is done already
  const beams: Beam[] = [
    { tokens: [3], logprobs: [-1], score: -1 },
    { tokens: [4], logprobs: [-1.5], score: -1.5 },
  ];
  const seq = new Int32Array(images * K * W);
  for (let r = 0; r < images * K; r++) {
    const b = beams[r % K];
    seq.set([5, ...b.tokens], r * W);
    seq[r * W + L] = f32bits(b.logprobs[0]);
    seq[r * W + W - 1] = f32bits(b.score);
  }
  // scores: beam 0 −2 (2), −3 (7), …; beam 1 −2 (6: eos), −3 (1), …
  const vals = Float32Array.from([-1, -2, -3, -4, -0.5, -1.5, -2.5, -9, ...Array(8).fill(-1)]);
  const ids = Int32Array.from([2, 7, 1, 0, 6, 1, 8, 9, 0, 1, 2, 3, 0, 1, 2, 3]);
  const hyps = new Int32Array(images * HS);
  hyps.set([0, 0, 1], 0);
  hyps.set([1, 0, 1], HS);
  const denoms = Float32Array.from({ length: shape.maxNew }, (_, g) => (g + 1) ** lp);
  const consts = Uint32Array.from([...new Uint32Array(denoms.buffer), eos]);
  const up = (d: Int32Array | Uint32Array, dtype: "i32" | "u32") =>
    uploadTensor(gpu, d, [d.length], dtype, "beam-test");
  const t = {
    seqIn: up(seq, "i32"),
    seqOut: up(seq, "i32"),
    hyps: up(hyps, "i32"),
    next: up(new Int32Array(images * K).fill(-7), "i32"),
    parents: up(new Int32Array(images * K).fill(-7), "i32"),
    consts: up(consts, "u32"),
  };
  const top = {
    values: uploadTensor(gpu, vals, [images * K, k], "f32", "beam-test"),
    ids: uploadTensor(gpu, ids, [images * K, k], "i32", "beam-test"),
  };
  const rec = new Recorder(gpu);
  beamStep(rec, top, t, { ...shape, vocab: V, eosCount: 1, step: 1, width: K });
  const reads = [t.next, t.parents, t.hyps, t.seqOut].map((x) => rec.readTensor(x));
  await rec.submit();
  const [next, parents, h, out] = (await Promise.all(reads)) as Int32Array[];

  const out0 = { values: vals.subarray(0, K * k), ids: ids.subarray(0, K * k) };
  const ranked = topCandidates(out0, k, 0, beams, k);
  const cont = ranked.filter((c) => c.token !== eos).slice(0, K);
  assert.deepEqual([...next.subarray(0, K)], cont.map((c) => c.token));
  assert.deepEqual([...parents.subarray(0, K)], cont.map((c) => c.beam));
  assert.deepEqual([...next.subarray(K), ...parents.subarray(K)], Array(2 * K).fill(-7));
  cont.forEach((c, j) => {
    const row = out.subarray(j * W, (j + 1) * W);
    assert.deepEqual([...row.subarray(0, P + 2)], [5, ...beams[c.beam].tokens, c.token]);
    assert.equal(bitsf32(row[W - 1]), c.score);
    assert.equal(bitsf32(row[L + 1]), c.value);
  });
  const ended = ranked.slice(0, K).filter((c) => c.token === eos);
  assert.equal(ended.length, 1);
  assert.deepEqual([...h.subarray(0, 3)], [0, 1, 1]); // live, one finished, may improve
  const e = 3 + K + h[3] * (2 + 2 * shape.maxNew);
  assert.deepEqual([h[e], ...h.subarray(e + 2, e + 4)], [2, ...beams[ended[0].beam].tokens, eos]);
  assert.equal(bitsf32(h[e + 1]), Math.fround(ended[0].score / 2 ** lp));
  assert.deepEqual([...h.subarray(HS, HS + 3)], [1, 0, 1]);
  for (const x of [...Object.values(t), top.values, top.ids]) x.release();
});

Deno.test("beam step: a top-k narrower than the candidates kept is refused", async () => {
  const gpu = await getGpu();
  const shape: BeamShape = {
    beams: 2,
    keep: 4,
    promptLen: 1,
    maxNew: 3,
    earlyTrue: false,
    fixedLen: false,
  };
  const rec = new Recorder(gpu);
  const i32 = (n: number) => rec.output([n], "i32");
  const t = {
    seqIn: i32(2 * seqWidth(shape)),
    seqOut: i32(2 * seqWidth(shape)),
    hyps: i32(hypsWidth(shape)),
    next: i32(2),
    parents: i32(2),
    consts: rec.output([4], "u32"),
  };
  const top = { values: rec.output([2, 3]), ids: rec.output([2, 3], "i32") };
  const s = { ...shape, vocab: 10, eosCount: 1, step: 0, width: 1 };
  assertCode(() => beamStep(rec, top, t, s), "BAD_SHAPE", "top-3", "4 candidates");
  await rec.submit();
});
