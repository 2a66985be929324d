import assert from "node:assert/strict";
import type { Gpu } from "../../src/gpu/device.ts";
import { readWrite } from "../../src/gpu/kernel.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../../src/gpu/tensor.ts";
import { attention, attentionBackward } from "../../src/shaders/attention.ts";
import { batchNorm2dBackward } from "../../src/shaders/batchnorm.ts";
import { conv2dBackward } from "../../src/shaders/conv2d.ts";
import { layerNorm, layerNormBackward, layerNormTrain } from "../../src/shaders/layernorm.ts";
import { packWords, processHistory, processLogits } from "../../src/shaders/logits_process.ts";
import { gradCoef, sumSquares, sumSquaresGroups } from "../../src/shaders/optim.ts";
import { rowKernel } from "../../src/shaders/reduce_wgsl.ts";
import { sampleRows } from "../../src/shaders/sample/sample.ts";
import { softAttention, softAttentionBackward } from "../../src/shaders/soft_attention.ts";
import { crossEntropy, softmax } from "../../src/shaders/softmax.ts";
import {
  ADAPTER_CLASSES,
  asAdapterClass,
  getGpu,
  randomF32,
  readAll,
  withSubgroups,
} from "../util.ts";

/** A kernel per workgroup size: row r of `X [rows, D]` → `Y [rows, 2 · WG_X]` (sum, max) as each invocation sees them. */
const reduceKernel = (wg: number) =>
  rowKernel({
    name: `test_reduce_${wg}`,
    uniforms: { D: "u32" },
    storage: { X: readWrite(), Y: readWrite() },
    workgroupSize: [wg],
    body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let t = lid.x;
  var s = 0.0;
  var m = -3.4e38;
  for (var i = t; i < p.D; i += WG_X) { let x = f32(X[wg.x * p.D + i]); s += x; m = max(m, x); }
  let sum = reduce(t, s, false);
  let mx = reduce(t, m, true);
  Y[(wg.x * WG_X + t) * 2u] = Y_t(sum);
  Y[(wg.x * WG_X + t) * 2u + 1u] = Y_t(mx);
}`,
  });

const WORKGROUPS = [1, 4, 64, 256, 1024];
const KERNELS = new Map(WORKGROUPS.map((wg) => [wg, reduceKernel(wg)]));

for (const wg of WORKGROUPS) {
  Deno.test(`reduce WG_X=${wg}: sum and max in every invocation, with and without subgroups`, async () => {
    const gpu = await getGpu();
    const rows = 5, D = 3001; // not a multiple of any workgroup size
    const x = randomF32(rows * D, wg, 10);
    const tx = uploadTensor(gpu, x, [rows, D], "f32");
    const run = (on: boolean) =>
      withSubgroups(gpu, on, async () => {
        const rec = new Recorder(gpu);
        const y = rec.output([rows, wg, 2]);
        KERNELS.get(wg)!.record(rec, { uniforms: { D }, bind: { X: tx, Y: y }, groups: rows });
        const [out] = await readAll(rec, [y]);
        y.release();
        return out;
      });
    const [off, on] = [await run(false), await run(true)];
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * D, (r + 1) * D);
      const sum = row.reduce((a, v) => a + v, 0);
      const max = row.reduce((a, v) => Math.max(a, v), -Infinity);
      for (const [name, got] of [["tree", off], ["subgroups", on]] as const) {
        for (let t = 0; t < wg; t++) {
          const at = (r * wg + t) * 2;
          assert.ok(
            Math.abs(got[at] - sum) < 1e-3,
            `${name} row ${r} lane ${t}: ${got[at]} vs ${sum}`,
          );
          assert.equal(got[at + 1], max, `${name} row ${r} lane ${t}: max`);
          assert.equal(got[at], got[r * wg * 2], `${name} row ${r}: lane ${t} sees another sum`);
        }
      }
    }
    tx.release();
  });
}

/**
 * Run `fn` on each adapter class with subgroups off and on (where the device has them) and
 * assert the outputs agree within `tol` (relative to each output's largest magnitude).
 */
async function sameWithSubgroups(fn: () => Promise<Float32Array[]>, tol: number): Promise<void> {
  const gpu = await getGpu();
  for (const cls of ADAPTER_CLASSES) {
    const [off, on] = [
      await asAdapterClass(gpu, cls, () => withSubgroups(gpu, false, fn)),
      await asAdapterClass(gpu, cls, () => withSubgroups(gpu, true, fn)),
    ];
    off.forEach((a, k) => {
      const b = on[k];
      const scale = a.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-30);
      for (let i = 0; i < a.length; i++) {
        const ok = a[i] === b[i] || Math.abs(a[i] - b[i]) <= tol * scale;
        assert.ok(ok, `${cls} output ${k} [${i}]: ${a[i]} without subgroups, ${b[i]} with`);
      }
    });
  }
}

/** Upload f32 data, and a float32 copy of each output after one submit. */
async function withInputs(
  build: (up: (data: Float32Array, shape: readonly number[]) => Tensor, rec: Recorder) => Tensor[],
): Promise<Float32Array[]> {
  const gpu = await getGpu();
  const inputs: Tensor[] = [];
  const up = (data: Float32Array, shape: readonly number[]) => {
    const t = uploadTensor(gpu, data, [...shape], "f32");
    inputs.push(t);
    return t;
  };
  const rec = new Recorder(gpu);
  const outs = build(up, rec);
  const got = await readAll(rec, outs);
  for (const t of [...inputs, ...outs]) if (!inputs.includes(t)) t.release();
  for (const t of inputs) t.release();
  return got;
}

const ints = (gpu: Gpu, a: number[]) => uploadTensor(gpu, Int32Array.from(a), [a.length], "i32");

const TOL = 1e-5;

Deno.test("softmax, log-softmax, cross entropy: the same with and without subgroups", () =>
  sameWithSubgroups(async () => {
    const gpu = await getGpu();
    const labels = ints(gpu, [3, 500, 999]);
    const got = await withInputs((up, rec) => {
      const x = up(randomF32(3 * 1001, 1, 30), [3, 1001]);
      const ce = crossEntropy(rec, x, labels, up(new Float32Array([1, 0.5, 2]), [3]), 0.1);
      return [softmax(rec, x), softmax(rec, x, { log: true }), ...Object.values(ce)];
    });
    labels.release();
    return got;
  }, TOL));

Deno.test("layerNorm, its saved statistics and its backward: the same with and without subgroups", () =>
  sameWithSubgroups(() =>
    withInputs((up, rec) => {
      const [rows, D] = [9, 300];
      const x = up(randomF32(rows * D, 4, 3).map((v) => v + 5), [rows, D]);
      const [g, b] = [up(randomF32(D, 5), [D]), up(randomF32(D, 6), [D])];
      const s = layerNormTrain(rec, x, g, b, 1e-5);
      const grads = { dGamma: up(new Float32Array(D), [D]), dBeta: up(new Float32Array(D), [D]) };
      const dx = layerNormBackward(rec, s, g, up(randomF32(rows * D, 7), [rows, D]), grads);
      return [layerNorm(rec, x, g, b, 1e-5), s.y, s.mean, s.rstd, dx, grads.dGamma, grads.dBeta];
    }), TOL));

Deno.test("processLogits and processHistory (log-softmax): the same with and without subgroups", () =>
  sameWithSubgroups(async () => {
    const gpu = await getGpu();
    const [rows, V] = [2, 777];
    const lists = uploadTensor(gpu, new Uint32Array(2 * (rows + 1)), [2 * (rows + 1)], "u32");
    const hist = uploadTensor(gpu, Int32Array.from([5, 9, 5, 1, 2, 3]), [rows, 3], "i32");
    const words = uploadTensor(gpu, packWords([[4]], [0]), [4], "u32");
    const got = await withInputs((up, rec) => {
      const a = up(randomF32(rows * V, 8, 20), [rows, V]);
      const b = up(randomF32(rows * V, 9, 20), [rows, V]);
      processLogits(rec, a, lists, { rows, before: true, after: true, penalty: 1.3, seenTotal: 0 });
      processHistory(rec, b, hist, words, {
        repetitionPenalty: 1.5,
        noRepeatNgramSize: 0,
        encoderNoRepeatNgramSize: 0,
        minNewTokens: 0,
        promptLen: 0,
        len: 3,
        words: 1,
        eosCount: 1,
        logSoftmax: true,
      });
      return [a, b];
    });
    for (const t of [lists, hist, words]) t.release();
    return got;
  }, 1e-6)); // a log-softmax's sum moves its output by the sum's relative error, absolutely

Deno.test("attention (masked, causal) and its backward: the same with and without subgroups", () =>
  sameWithSubgroups(async () => {
    const gpu = await getGpu();
    const [B, S, H, D, L] = [2, 3, 2, 16, 37];
    const keyLengths = ints(gpu, [37, 20]);
    const got = await withInputs((up, rec) => {
      const q = up(randomF32(B * S * H * D, 10), [B, S, H * D]);
      const kv = up(randomF32(B * L * 2 * H * D, 11), [B, L, 2 * H * D]);
      const op = (t: Tensor, offset: number, pos: number, n: number) => ({
        t,
        offset,
        posStride: pos,
        rowStride: n * pos,
      });
      const shape = { batch: B, queries: S, heads: H, headDim: D, keys: L, scale: 0.25 };
      const [qo, ko, vo] = [
        op(q, 0, H * D, S),
        op(kv, 0, 2 * H * D, L),
        op(kv, H * D, 2 * H * D, L),
      ];
      const probs = rec.output([B, H, S, L]);
      const masked = attention(rec, { ...shape, q: qo, k: ko, v: vo, keyLengths, probs });
      const causal = attention(rec, { ...shape, q: qo, k: ko, v: vo, causal: { past: 30 } });
      const dQ = rec.output([B, S, H * D]);
      const dKV = rec.output([B, L, 2 * H * D]);
      const dO = up(randomF32(B * S * H * D, 12), [B, S, H * D]);
      attentionBackward(rec, { ...shape, q: qo, k: ko, v: vo, probs, dO, dQ, dKV });
      return [masked, causal, probs, dQ, dKV];
    });
    keyLengths.release();
    return got;
  }, TOL));

Deno.test("soft attention and its backward: the same with and without subgroups", () =>
  sameWithSubgroups(async () => {
    const gpu = await getGpu();
    const [N, P, A, C, R] = [2, 49, 12, 20, 3];
    const rowImage = ints(gpu, [1, 0, 1]);
    const got = await withInputs((up, rec) => {
      const alpha = rec.output([R, P]);
      const z = rec.output([R, C]);
      const args = {
        encAtt: up(randomF32(N * P * A, 13, 2), [N * P, A]),
        decAtt: up(randomF32(R * A, 14, 2), [R, A]),
        wFull: up(randomF32(A, 15, 2), [1, A]),
        enc: up(randomF32(N * P * C, 16, 3), [N, P, C]),
        gate: up(randomF32(R * C, 17), [R, C]),
        rowImage,
        pixels: P,
        alpha: { t: alpha, offset: 0, rowStride: P },
      };
      softAttention(rec, { ...args, z: { t: z, offset: 0, rowStride: C } });
      const dZ = { t: up(randomF32(R * C, 18), [R, C]), offset: 0, rowStride: C };
      const g = softAttentionBackward(rec, {
        ...args,
        dZ,
        dAlpha: up(randomF32(R * P, 19), [R, P]),
      });
      return [alpha, z, g.dGate, g.dDecAtt, g.dWFull, g.dEncAtt];
    });
    rowImage.release();
    return got;
  }, TOL));

Deno.test("conv2d dW and db, batchNorm2d backward: the same with and without subgroups", () =>
  sameWithSubgroups(() =>
    withInputs((up, rec) => {
      const [N, Cin, Hh, Cout] = [2, 3, 9, 4];
      const x = up(randomF32(N * Cin * Hh * Hh, 20), [N, Cin, Hh, Hh]);
      const w = up(randomF32(Cout * Cin * 9, 21), [Cout, Cin, 3, 3]);
      const grads = {
        dW: up(new Float32Array(w.size), w.shape),
        db: up(new Float32Array(Cout), [Cout]),
      };
      const dy = up(randomF32(N * Cout * Hh * Hh, 22), [N, Cout, Hh, Hh]);
      const dx = conv2dBackward(rec, x, w, dy, grads, { padding: 1 })!;
      const bn = {
        weight: up(randomF32(Cin, 23), [Cin]),
        bias: up(randomF32(Cin, 24), [Cin]),
        runningMean: up(randomF32(Cin, 25), [Cin]),
        runningVar: up(randomF32(Cin, 26).map((v) => v + 2), [Cin]),
        eps: 1e-5,
      };
      const bg = {
        dGamma: up(new Float32Array(Cin), [Cin]),
        dBeta: up(new Float32Array(Cin), [Cin]),
      };
      const bdx = batchNorm2dBackward(rec, x, bn, up(randomF32(x.size, 27), x.shape), bg);
      return [dx, grads.dW, grads.db, bdx, bg.dGamma, bg.dBeta];
    }), TOL));

Deno.test("sumSquares and gradCoef (clipping): the same with and without subgroups", () =>
  sameWithSubgroups(() =>
    withInputs((up, rec) => {
      const n = 100_003;
      const g = up(randomF32(n, 28), [n]);
      const slots = sumSquaresGroups(n);
      const partial = rec.output([slots]);
      sumSquares(rec, g, { off: 0, n }, partial, 0);
      const coef = rec.output([3]);
      gradCoef(rec, partial, slots, 0.5, 1, coef);
      return [partial, coef];
    }), TOL));

Deno.test("sampleRows (top-k, top-p, typical): the same draws with and without subgroups", () =>
  sameWithSubgroups(() =>
    withInputs((up, rec) => {
      const [rows, V] = [4, 513];
      const settings = { temperature: 0.8, topK: 0, topP: 1, typicalP: 1, seed: 7, step: 3 };
      const draws = [
        { ...settings, topK: 40 },
        { ...settings, topP: 0.9 },
        { ...settings, typicalP: 0.8 },
      ].map((s, i) => {
        const x = up(randomF32(rows * V, 29 + i, 5), [rows, V]);
        const { ids, values } = sampleRows(rec, x, s);
        return [x, ids, values];
      });
      return draws.flat();
    }), TOL));
