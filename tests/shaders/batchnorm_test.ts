import assert from "node:assert/strict";
import { batchNorm2d, type BatchNormHost, foldBatchNorm } from "../../src/shaders/batchnorm.ts";
import { conv2d } from "../../src/shaders/conv2d.ts";
import type { Gpu } from "../../src/gpu/device.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { firstNonFinite, getGpu, poisoned, randomF32, relL2, runAndRead } from "../util.ts";

function randomBn(C: number, seed: number): BatchNormHost {
  const runningVar = randomF32(C, seed + 3).map((v) => v + 1.2); // positive
  return {
    weight: randomF32(C, seed),
    bias: randomF32(C, seed + 1),
    runningMean: randomF32(C, seed + 2),
    runningVar,
    eps: 1e-5,
  };
}

/** Float64 BN (+ residual, optional ReLU) over [N, C, HW]. */
function bnRef(
  x: Float32Array,
  C: number,
  HW: number,
  bn: BatchNormHost,
  relu: boolean,
  res?: Float32Array,
): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = Math.floor(i / HW) % C;
    let v = (x[i] - bn.runningMean[c]) / Math.sqrt(bn.runningVar[c] + bn.eps) * bn.weight[c] +
      bn.bias[c];
    if (res) v += res[i];
    out[i] = relu ? Math.max(v, 0) : v;
  }
  return out;
}

function uploadBn(gpu: Gpu, bn: BatchNormHost) {
  const C = bn.weight.length;
  return {
    weight: uploadTensor(gpu, bn.weight, [C], "f32"),
    bias: uploadTensor(gpu, bn.bias, [C], "f32"),
    runningMean: uploadTensor(gpu, bn.runningMean, [C], "f32"),
    runningVar: uploadTensor(gpu, bn.runningVar, [C], "f32"),
    eps: bn.eps,
  };
}

for (const [relu, residual] of [[false, false], [true, false], [true, true]]) {
  Deno.test(`batchNorm2d relu=${relu} residual=${residual}`, async () => {
    const gpu = await getGpu();
    const [N, C, H, W] = [3, 7, 5, 9];
    const size = N * C * H * W;
    const x = randomF32(size, 1, 3);
    const res = residual ? randomF32(size, 2) : undefined;
    const bn = randomBn(C, 10);
    const tx = uploadTensor(gpu, x, [N, C, H, W], "f32");
    const tr = res && uploadTensor(gpu, res, [N, C, H, W], "f32");
    const tbn = uploadBn(gpu, bn);
    const out = poisoned(gpu, [N, C, H, W]);
    const got = await runAndRead(
      gpu,
      (rec) => batchNorm2d(rec, tx, tbn, { act: relu ? "relu" : "none", residual: tr, out }),
    );
    assert.equal(firstNonFinite(got), -1, "every output element written");
    const err = relL2(got, bnRef(x, C, H * W, bn, relu, res));
    assert.ok(err < 1e-6, `rel L2 ${err}`);
    for (const t of [tx, tr, out, tbn.weight, tbn.bias, tbn.runningMean, tbn.runningVar]) {
      t?.release();
    }
  });
}

Deno.test("foldBatchNorm: conv with the folded weight and bias equals conv then BatchNorm", async () => {
  const gpu = await getGpu();
  const [N, Cin, H, W, Cout] = [2, 4, 8, 7, 6];
  const x = randomF32(N * Cin * H * W, 5);
  const w = randomF32(Cout * Cin * 9, 6);
  const convBias = randomF32(Cout, 7);
  const bn = randomBn(Cout, 20);
  const folded = foldBatchNorm(w, convBias, bn);
  const tx = uploadTensor(gpu, x, [N, Cin, H, W], "f32");
  const tw = uploadTensor(gpu, w, [Cout, Cin, 3, 3], "f32");
  const tcb = uploadTensor(gpu, convBias, [Cout], "f32");
  const tfw = uploadTensor(gpu, folded.weight, [Cout, Cin, 3, 3], "f32");
  const tfb = uploadTensor(gpu, folded.bias, [Cout], "f32");
  const tbn = uploadBn(gpu, bn);
  const unfolded = await runAndRead(gpu, (rec) => {
    const y = conv2d(rec, tx, tw, { padding: 1, bias: tcb });
    const z = batchNorm2d(rec, y, tbn, { act: "relu" });
    y.release();
    return z;
  });
  const fused = await runAndRead(
    gpu,
    (rec) => conv2d(rec, tx, tfw, { padding: 1, bias: tfb, act: "relu" }),
  );
  const err = relL2(fused, unfolded);
  assert.ok(err < 1e-5, `rel L2 ${err}`);
  assert.throws(() => foldBatchNorm(w.subarray(1), convBias, bn), /disagree on Cout/);
  for (const t of [tx, tw, tcb, tfw, tfb, tbn.weight, tbn.bias, tbn.runningMean, tbn.runningVar]) {
    t.release();
  }
});

Deno.test("batchNorm2d refuses statistics of the wrong length", async () => {
  const gpu = await getGpu();
  const tx = uploadTensor(gpu, new Float32Array(2 * 3 * 4), [2, 3, 2, 2], "f32");
  const tbn = uploadBn(gpu, randomBn(4, 1));
  assert.throws(() => batchNorm2d(undefined as never, tx, tbn), /want f32 \[3\]/);
  for (const t of [tx, tbn.weight, tbn.bias, tbn.runningMean, tbn.runningVar]) t.release();
});
