import assert from "node:assert/strict";
import { matmul, matmulPlan, vec4Fits } from "../../src/shaders/matmul.ts";
import { type Tensor, uploadTensor } from "../../src/gpu/tensor.ts";
import {
  ADAPTER_CLASSES,
  asAdapterClass,
  firstNonFinite,
  getGpu,
  poisoned,
  randomF32,
  relL2,
  runAndRead,
} from "../util.ts";
import type { Activation } from "../../src/shaders/activations.ts";
import { actRef, f16BitsToF32, f32ToF16Bits } from "./reference.ts";

function matmulRef(
  a: Float32Array,
  w: Float32Array,
  M: number,
  N: number,
  K: number,
  transposeW: boolean,
  bias?: Float32Array,
  act: Activation = "none",
  res?: Float32Array,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * (transposeW ? w[n * K + k] : w[k * N + n]);
      if (bias) s += bias[n];
      s = actRef(act, s);
      if (res) s += res[m * N + n];
      out[m * N + n] = s;
    }
  }
  return out;
}

// [M, N, K]; K % 4 = 0 with N % 4 = 0 takes the CPU variant's vec4 loads (N % 8 = 4: a last
// vec4 of columns past N; N ≥ 2048: the 16-column decode tile), the others its scalar loads
const cases: [number, number, number][] = [
  [1, 33, 70],
  [3, 130, 65],
  [8, 5, 17],
  [9, 67, 33],
  [70, 100, 40],
  [130, 65, 129],
  [5, 2052, 64],
  [11, 44, 36],
  [17, 2048, 8],
];

Deno.test("matmul: the CPU plan reads vec4 exactly where K and N allow it", async () => {
  const gpu = await getGpu();
  const made: Tensor[] = [];
  const randomWeight = (shape: number[]) => {
    made.push(uploadTensor(gpu, randomF32(shape[0] * shape[1], 1), shape, "f32"));
    return made[made.length - 1];
  };
  assert.equal(vec4Fits(randomWeight([44, 36]), 36, 44, false), true);
  assert.equal(vec4Fits(randomWeight([33, 36]), 36, 33, false), false); // in×out: N % 4 ≠ 0
  assert.equal(vec4Fits(randomWeight([33, 36]), 36, 33, true), true); // out×in: K alone
  assert.equal(vec4Fits(randomWeight([70, 33]), 70, 33, true), false);
  assert.deepEqual(matmulPlan("cpu", 5, 2052, true), { kernel: "regs", tm: 5, tn: 16, vec: true });
  assert.deepEqual(matmulPlan("cpu", 197, 768, true), { kernel: "regs", tm: 8, tn: 8, vec: true });
  assert.deepEqual(matmulPlan("gpu", 197, 768, true), { kernel: "tiled" });
  for (const t of made) t.release();
});

for (const cls of ADAPTER_CLASSES) {
  for (const transposeW of [false, true]) {
    for (const [M, N, K] of cases) {
      Deno.test(`matmul (${cls} kernels) f32 M=${M} N=${N} K=${K} transposeW=${transposeW} with bias, gelu_new, residual`, async () => {
        const gpu = await getGpu();
        const a = randomF32(M * K, M * 7 + K);
        const w = randomF32(N * K, N * 13 + K);
        const bias = randomF32(N, N + 1);
        const res = randomF32(M * N, M + N);
        const ta = uploadTensor(gpu, a, [M, K], "f32");
        const tw = uploadTensor(gpu, w, transposeW ? [N, K] : [K, N], "f32");
        const tb = uploadTensor(gpu, bias, [N], "f32");
        const tr = uploadTensor(gpu, res, [M, N], "f32");
        const out = poisoned(gpu, [M, N]);
        const opts = { transposeW, bias: tb, act: "gelu_new" as const, residual: tr, out };
        const got = await asAdapterClass(
          gpu,
          cls,
          () => runAndRead(gpu, (rec) => matmul(rec, ta, tw, opts)),
        );
        assert.equal(firstNonFinite(got), -1, "every output element written");
        const err = relL2(got, matmulRef(a, w, M, N, K, transposeW, bias, "gelu_new", res));
        assert.ok(err < 1e-5, `rel L2 ${err}`);
        for (const t of [ta, tw, tb, tr, out]) t.release();
      });
    }
  }
}

Deno.test("matmul f16 weights (shader-f16) against the f16-rounded f32 reference", async (t) => {
  const gpu = await getGpu();
  if (!gpu.hasF16) {
    console.log("skipped: adapter has no shader-f16");
    return;
  }
  const cases = [
    [2, 77, 96, true],
    [65, 40, 50, false],
    [9, 21, 19, true],
    [3, 2060, 32, false],
    [7, 36, 44, true],
  ] as const;
  for (
    const [cls, [M, N, K, transposeW]] of ADAPTER_CLASSES.flatMap((c) =>
      cases.map((x) => [c, x] as const)
    )
  ) {
    await t.step(`${cls} kernels M=${M} N=${N} K=${K} transposeW=${transposeW}`, async () => {
      const a = randomF32(M * K, 5);
      const w16 = f32ToF16Bits(randomF32(N * K, 6));
      const ta = uploadTensor(gpu, a, [M, K], "f32");
      const tw = uploadTensor(gpu, w16, transposeW ? [N, K] : [K, N], "f16");
      const out = poisoned(gpu, [M, N]);
      const got = await asAdapterClass(
        gpu,
        cls,
        () => runAndRead(gpu, (rec) => matmul(rec, ta, tw, { transposeW, out })),
      );
      assert.equal(firstNonFinite(got), -1);
      const err = relL2(got, matmulRef(a, f16BitsToF32(w16), M, N, K, transposeW));
      assert.ok(err < 1e-5, `rel L2 ${err}`);
      for (const x of [ta, tw, out]) x.release();
    });
  }
});

Deno.test("matmul with an out×in weight larger than one storage binding (windowed)", async () => {
  const gpu = await getGpu();
  const saved = gpu.maxBinding;
  const [M, N, K] = [2, 1000, 64];
  gpu.maxBinding = 300 * K * 4; // forces windows of 256 columns
  try {
    const a = randomF32(M * K, 1);
    const w = randomF32(N * K, 2);
    const bias = randomF32(N, 3);
    const ta = uploadTensor(gpu, a, [M, K], "f32");
    const tw = uploadTensor(gpu, w, [N, K], "f32");
    const tb = uploadTensor(gpu, bias, [N], "f32");
    const out = poisoned(gpu, [M, N]);
    const got = await runAndRead(
      gpu,
      (rec) => matmul(rec, ta, tw, { transposeW: true, bias: tb, out }),
    );
    assert.equal(firstNonFinite(got), -1);
    assert.ok(relL2(got, matmulRef(a, w, M, N, K, true, bias)) < 1e-5);
    for (const x of [ta, tw, tb, out]) x.release();
  } finally {
    gpu.maxBinding = saved;
  }
});

Deno.test("matmul refuses mismatched shapes with a clear error", async () => {
  const gpu = await getGpu();
  const ta = uploadTensor(gpu, new Float32Array(6), [2, 3], "f32");
  const tw = uploadTensor(gpu, new Float32Array(8), [4, 2], "f32");
  assert.throws(() => matmul(undefined as never, ta, tw), /disagree on K/);
  ta.release();
  tw.release();
});

Deno.test("matmul: a GPT-2 LM head of 154 MB f32 (over a 128 MiB binding) and its embedding gather", async () => {
  const gpu = await getGpu();
  const [V, K] = [50257, 768];
  const w = randomF32(V * K, 77, 0.05);
  const a = randomF32(K, 78);
  const ta = uploadTensor(gpu, a, [1, K], "f32");
  const tw = uploadTensor(gpu, w, [V, K], "f32");
  console.log(
    `  weight ${(tw.byteSize / 2 ** 20).toFixed(0)} MiB, binding limit ${
      (gpu.maxBinding / 2 ** 20).toFixed(0)
    } MiB`,
  );
  const out = poisoned(gpu, [1, V]);
  const got = await runAndRead(gpu, (rec) => matmul(rec, ta, tw, { transposeW: true, out }));
  assert.equal(firstNonFinite(got), -1);
  assert.ok(relL2(got, matmulRef(a, w, 1, V, K, true)) < 1e-5);
  const { embedding } = await import("../../src/shaders/embedding.ts");
  const ids = Int32Array.from([0, 43690, 50256]); // rows on both sides of the 128 MiB line
  const ti = uploadTensor(gpu, ids, [3], "i32");
  const rows = await runAndRead(gpu, (rec) => embedding(rec, tw, ti));
  for (let r = 0; r < 3; r++) {
    assert.deepEqual(
      Array.from(rows.subarray(r * K, (r + 1) * K)),
      Array.from(w.subarray(ids[r] * K, (ids[r] + 1) * K)),
    );
  }
  for (const t of [ta, tw, out, ti]) t.release();
});
