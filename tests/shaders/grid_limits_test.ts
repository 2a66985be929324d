/**
 * Kernels that launch a workgroup per row (or per 256 elements) with more than 65,535 of them:
 * the grid is folded within WebGPU's per-dimension limit, and every row is computed.
 */
import assert from "node:assert/strict";
import { Recorder } from "../../src/gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../../src/gpu/tensor.ts";
import { attention } from "../../src/shaders/attention.ts";
import { unary } from "../../src/shaders/elementwise.ts";
import { embedding } from "../../src/shaders/embedding.ts";
import { layerNorm } from "../../src/shaders/layernorm.ts";
import { softmax } from "../../src/shaders/softmax.ts";
import { argmax } from "../../src/shaders/topk.ts";
import { actRef } from "./reference.ts";
import { getGpu, poisoned, randomF32, relL2 } from "../util.ts";

const ROWS = 65537; // one more workgroup than a grid dimension holds

/**
 * Record `fn`, submit, read every tensor it returns (as f32 views: view an i32 output's buffer
 * as Int32Array), release them and `inputs`.
 */
async function run(
  fn: (rec: Recorder) => Tensor[],
  ...inputs: Tensor[]
): Promise<Float32Array[]> {
  const gpu = await getGpu();
  const rec = new Recorder(gpu);
  const outs = fn(rec);
  const reads = outs.map((t) => rec.readTensor(t));
  rec.releaseAfterSubmit(...outs, ...inputs);
  await rec.submit();
  return (await Promise.all(reads)).map((a) => new Float32Array(a.buffer, a.byteOffset, a.length));
}

function softmaxRef(x: Float32Array, D: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / D; r++) {
    const row = x.subarray(r * D, (r + 1) * D);
    const m = Math.max(...row);
    const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
    row.forEach((v, i) => y[r * D + i] = Math.exp(v - m) / s);
  }
  return y;
}

Deno.test(`softmax, layerNorm and argmax over ${ROWS} rows`, async () => {
  const gpu = await getGpu();
  const D = 3;
  const xs = randomF32(ROWS * D, 1, 4);
  const x = uploadTensor(gpu, xs, [ROWS, D], "f32");
  const g = uploadTensor(gpu, Float32Array.of(1, 2, -1), [D], "f32");
  const b = uploadTensor(gpu, Float32Array.of(0, 0.5, 1), [D], "f32");
  const [sm, ln, top] = await run(
    (rec) => [
      softmax(rec, x, { out: poisoned(gpu, [ROWS, D]) }),
      layerNorm(rec, x, g, b, 1e-5, poisoned(gpu, [ROWS, D])),
      argmax(rec, x),
    ],
    x,
    g,
    b,
  );
  assert.ok(relL2(sm, softmaxRef(xs, D)) < 1e-6);
  const ref = new Float64Array(ROWS * D);
  const ids = new Int32Array(ROWS);
  for (let r = 0; r < ROWS; r++) {
    const row = [...xs.subarray(r * D, (r + 1) * D)];
    const mean = row.reduce((a, v) => a + v) / D;
    const inv = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mean) ** 2, 0) / D + 1e-5);
    row.forEach((v, i) => ref[r * D + i] = (v - mean) * inv * [1, 2, -1][i] + [0, 0.5, 1][i]);
    ids[r] = row.indexOf(Math.max(...row));
  }
  assert.ok(relL2(ln, ref) < 1e-5);
  assert.deepEqual(new Int32Array(top.buffer), ids);
});

Deno.test(`attention with ${ROWS} query rows (one query, one head each)`, async () => {
  const gpu = await getGpu();
  const [L, D] = [3, 2];
  const qs = randomF32(ROWS * D, 2),
    ks = randomF32(ROWS * L * D, 3),
    vs = randomF32(ROWS * L * D, 4);
  const q = uploadTensor(gpu, qs, [ROWS, 1, D], "f32");
  const k = uploadTensor(gpu, ks, [ROWS, L, D], "f32");
  const v = uploadTensor(gpu, vs, [ROWS, L, D], "f32");
  const op = (t: Tensor, rowStride: number) => ({ t, offset: 0, posStride: D, rowStride });
  const [got] = await run(
    (rec) => [attention(rec, {
      q: op(q, D),
      k: op(k, L * D),
      v: op(v, L * D),
      batch: ROWS,
      queries: 1,
      heads: 1,
      headDim: D,
      keys: L,
      scale: 0.7,
      out: poisoned(gpu, [ROWS, 1, D]),
    })],
    q,
    k,
    v,
  );
  const ref = new Float64Array(ROWS * D);
  for (let b = 0; b < ROWS; b++) {
    const s = Array.from(
      { length: L },
      (_, j) => 0.7 * (qs[b * D] * ks[(b * L + j) * D] + qs[b * D + 1] * ks[(b * L + j) * D + 1]),
    );
    const p = softmaxRef(Float32Array.from(s), L);
    for (let d = 0; d < D; d++) {
      for (let j = 0; j < L; j++) ref[b * D + d] += p[j] * vs[(b * L + j) * D + d];
    }
  }
  assert.ok(relL2(got, ref) < 1e-6);
});

Deno.test(`embedding of ${ROWS} ids, and unary over more than 65,535 workgroups of 256 elements`, async () => {
  const gpu = await getGpu();
  const V = 5;
  const ids = Int32Array.from({ length: ROWS }, (_, r) => (r * 7) % V);
  const ti = uploadTensor(gpu, ids, [ROWS], "i32");
  const table = randomF32(V * 2, 6);
  const tt = uploadTensor(gpu, table, [V, 2], "f32");
  const n = ROWS * 256;
  const xs = randomF32(n, 7, 3);
  const x = uploadTensor(gpu, xs, [n], "f32");
  const [emb, act] = await run(
    (rec) => [
      embedding(rec, tt, ti, { out: poisoned(gpu, [ROWS, 2]) }),
      unary(rec, x, "relu", poisoned(gpu, [n])),
    ],
    ti,
    tt,
    x,
  );
  const embRef = Float64Array.from(
    { length: ROWS * 2 },
    (_, i) => table[ids[i >> 1] * 2 + (i & 1)],
  );
  assert.equal(relL2(emb, embRef), 0);
  const bad = act.findIndex((v, i) => v !== actRef("relu", xs[i]));
  assert.equal(bad, -1, `element ${bad}`);
});
