import assert from "node:assert/strict";
import { matmul, matmulPlan, vec4Fits } from "../../src/shaders/matmul.ts";
import { type Tensor, uploadTensor } from "../../src/gpu/tensor.ts";
import type { AdapterClass } from "../../src/gpu/device.ts";
import {
  ADAPTER_CLASSES,
  asAdapterClass,
  assertCode,
  firstNonFinite,
  getGpu,
  poisoned,
  randomF32,
  relL2,
  runAndRead,
} from "../util.ts";
import type { Activation } from "../../src/shaders/activations.ts";
import { actRef, f16BitsToF32, f32ToF16Bits } from "./reference.ts";
import { layerNorm, layerNormPlan } from "../../src/shaders/layernorm.ts";
import { dequantize, quantize, uploadQuant } from "../../src/nn/quant.ts";
import type { QuantScheme, Weight } from "../../src/shaders/quant/qmatrix.ts";

function matmulRef(
  a: ArrayLike<number>,
  w: ArrayLike<number>,
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
  assert.deepEqual(matmulPlan("cpu", 5, 2052, true, 768), {
    kernel: "regs",
    tm: 5,
    tn: 16,
    vec: true,
    fuseNorm: false,
  });
  assert.deepEqual(matmulPlan("gpu", 197, 768, true, 768), { kernel: "tiled", fuseNorm: true });
  // a norm is fused on CPU adapters where layerNorm would take its workgroup kernel
  for (const [M, K] of [[1, 32], [197, 128], [5, 770], [197, 768], [1, 256]]) {
    const want = layerNormPlan("cpu", K) === "workgroup";
    assert.equal(matmulPlan("cpu", M, 768, true, K).fuseNorm, want, `M=${M} K=${K}`);
    assert.equal(matmulPlan("gpu", M, 768, true, K).fuseNorm, true);
  }
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

/** Float64 LayerNorm of the rows of `a [M, K]`: two passes, as `layerNorm` and PyTorch. */
function layerNormRef(
  a: Float32Array,
  M: number,
  K: number,
  g: Float32Array,
  b: Float32Array,
  eps: number,
): Float64Array {
  const y = new Float64Array(M * K);
  for (let m = 0; m < M; m++) {
    const row = a.subarray(m * K, (m + 1) * K);
    const mean = row.reduce((s, x) => s + x, 0) / K;
    const v = row.reduce((s, x) => s + (x - mean) ** 2, 0) / K;
    row.forEach((x, k) => y[m * K + k] = (x - mean) / Math.sqrt(v + eps) * g[k] + b[k]);
  }
  return y;
}

/** A `[M, K]` with an offset per row (so the mean matters) and γ, β of a LayerNorm over K. */
function normInputs(M: number, K: number) {
  const a = randomF32(M * K, M * 3 + K).map((x, i) => 2 * x + (Math.floor(i / K) % 7) - 3);
  return { a, g: randomF32(K, K + 5), b: randomF32(K, K + 6), eps: 1e-5 };
}

/**
 * matmul's `norm` (the LayerNorm of `a [M, K]` from {@link normInputs}) times `w` with bias,
 * gelu_new and residual, against `layerNorm` then `matmul` on the same adapter class and against
 * the float64 reference (`wf`: w's values).
 */
async function checkNorm(
  cls: AdapterClass,
  M: number,
  N: number,
  K: number,
  w: Weight,
  wf: ArrayLike<number>,
  transposeW: boolean,
): Promise<void> {
  const gpu = await getGpu();
  const { a, g, b, eps } = normInputs(M, K);
  const bias = randomF32(N, N + 1), res = randomF32(M * N, M + N);
  const ta = uploadTensor(gpu, a, [M, K], "f32");
  const [tg, tb, tbias] = [g, b, bias].map((x) => uploadTensor(gpu, x, [x.length], "f32"));
  const tr = uploadTensor(gpu, res, [M, N], "f32");
  const opts = { transposeW, bias: tbias, act: "gelu_new" as const, residual: tr };
  const norm = { w: tg, b: tb, eps };
  try {
    const [fused, separate] = await asAdapterClass(gpu, cls, async () => [
      await runAndRead(gpu, (rec) => matmul(rec, ta, w, { ...opts, norm })),
      await runAndRead(gpu, (rec) => matmul(rec, layerNorm(rec, ta, tg, tb, eps), w, opts)),
    ]);
    assert.equal(firstNonFinite(fused), -1, "every output element written");
    const ref = matmulRef(
      layerNormRef(a, M, K, g, b, eps),
      wf,
      M,
      N,
      K,
      transposeW,
      bias,
      "gelu_new",
      res,
    );
    assert.ok(relL2(fused, ref) < 1e-5, `fused against float64: rel L2 ${relL2(fused, ref)}`);
    assert.ok(
      relL2(fused, separate) < 1e-5,
      `fused against layerNorm + matmul: rel L2 ${relL2(fused, separate)}`,
    );
  } finally {
    for (const t of [ta, tg, tb, tbias, tr]) t.release();
  }
}

// M: decode rows (GEMV up to 32 on GPUs, the CPU kernel's M-row tile up to 8) and prefill rows
// (64×64 tiles, 8×8 register tiles); K = 70 reads A with scalar loads, 36 with vec4 ones
for (const cls of ADAPTER_CLASSES) {
  for (const transposeW of [false, true]) {
    for (const M of [1, 5, 8, 9, 24, 32, 33, 197]) {
      const K = M % 2 ? 70 : 36, N = M === 5 ? 2052 : 44;
      Deno.test(`matmul norm (${cls} kernels) M=${M} N=${N} K=${K} transposeW=${transposeW}: the fused LayerNorm equals layerNorm then matmul`, async () => {
        const gpu = await getGpu();
        assert.ok(matmulPlan(cls, M, N, false, K).fuseNorm, "the kernel's prologue norms A");
        const wf = randomF32(N * K, N * 13 + K);
        const w = uploadTensor(gpu, wf, transposeW ? [N, K] : [K, N], "f32");
        try {
          await checkNorm(cls, M, N, K, w, wf, transposeW);
        } finally {
          w.release();
        }
      });
    }
  }
}

// GPT-2 small's width on GPUs (the CPU class does not fuse at K = 768): the GEMV's row statistics
// over many workgroups of columns, and the tiled kernel's over several K tiles
for (const M of [1, 24, 40]) {
  Deno.test(`matmul norm (gpu kernels) M=${M} N=2304 K=768: the fused LayerNorm equals layerNorm then matmul`, async () => {
    const gpu = await getGpu(), N = 2304, K = 768;
    assert.ok(matmulPlan("gpu", M, N, false, K).fuseNorm);
    const wf = randomF32(N * K, M + 7);
    const w = uploadTensor(gpu, wf, [K, N], "f32");
    try {
      await checkNorm("gpu", M, N, K, w, wf, false);
    } finally {
      w.release();
    }
  });
}

Deno.test("matmul norm (cpu kernels) K=256: a layerNorm dispatch first, where the plan does not fuse", async () => {
  const gpu = await getGpu();
  const [M, N, K] = [3, 20, 256];
  assert.equal(matmulPlan("cpu", M, N, true, K).fuseNorm, false);
  const wf = randomF32(N * K, 9);
  const w = uploadTensor(gpu, wf, [N, K], "f32");
  await checkNorm("cpu", M, N, K, w, wf, true).finally(() => w.release());
});

Deno.test("matmul norm with f16 and quantized (q8, q4) weights", async (t) => {
  const gpu = await getGpu();
  for (const cls of ADAPTER_CLASSES) {
    for (const [M, N, K] of [[3, 40, 64], [24, 36, 64], [40, 20, 64]]) {
      if (gpu.hasF16) {
        for (const transposeW of [false, true]) {
          await t.step(`${cls} f16 M=${M} N=${N} K=${K} transposeW=${transposeW}`, async () => {
            const w16 = f32ToF16Bits(randomF32(N * K, 6));
            const w = uploadTensor(gpu, w16, transposeW ? [N, K] : [K, N], "f16");
            await checkNorm(cls, M, N, K, w, f16BitsToF32(w16), transposeW).finally(() =>
              w.release()
            );
          });
        }
      }
      for (const [scheme, G] of [["q8", 0], ["q4", 32]] as [QuantScheme, number][]) {
        await t.step(`${cls} ${scheme} M=${M} N=${N} K=${K}`, async () => {
          const h = quantize(randomF32(N * K, N), [N, K], scheme, G, "w");
          const q = uploadQuant(gpu, h, "w");
          await checkNorm(cls, M, N, K, q, dequantize(h), true).finally(() => {
            q.data.release();
            q.scales.release();
          });
        });
      }
    }
  }
});

Deno.test("matmul norm: γ or β not of A's row length is refused", async () => {
  const gpu = await getGpu();
  const ta = uploadTensor(gpu, new Float32Array(6), [2, 3], "f32");
  const tw = uploadTensor(gpu, new Float32Array(12), [3, 4], "f32");
  const g = uploadTensor(gpu, new Float32Array(4), [4], "f32");
  const norm = { w: g, b: g, eps: 1e-5 };
  assertCode(() => matmul(undefined as never, ta, tw, { norm }), "BAD_SHAPE", "norm", "[4]", "[3]");
  for (const t of [ta, tw, g]) t.release();
});

Deno.test("matmul (gpu kernels): the GEMV of 24 and 32 rows equals those rows of the 64×64 tiles", async () => {
  const gpu = await getGpu();
  const [N, K, T] = [100, 70, 40]; // T rows take the tiled kernel
  assert.equal(matmulPlan("gpu", T, N, false, K).kernel, "tiled");
  const { a, g, b, eps } = normInputs(T, K);
  const [tg, tb] = [g, b].map((x) => uploadTensor(gpu, x, [K], "f32"));
  const all = uploadTensor(gpu, a, [T, K], "f32");
  for (const transposeW of [false, true]) {
    const tw = uploadTensor(gpu, randomF32(N * K, 3), transposeW ? [N, K] : [K, N], "f32");
    for (const M of [24, 32]) {
      assert.equal(matmulPlan("gpu", M, N, false, K).kernel, "gemv");
      const rows = uploadTensor(gpu, a.subarray(0, M * K), [M, K], "f32");
      for (const norm of [undefined, { w: tg, b: tb, eps }]) {
        const opts = { transposeW, norm };
        const [gemv, tiled] = await asAdapterClass(gpu, "gpu", async () => [
          await runAndRead(gpu, (rec) => matmul(rec, rows, tw, opts)),
          await runAndRead(gpu, (rec) => matmul(rec, all, tw, opts)),
        ]);
        const err = relL2(gemv, tiled.subarray(0, M * N));
        assert.ok(err < 1e-6, `M=${M} transposeW=${transposeW} norm=${!!norm}: rel L2 ${err}`);
      }
      rows.release();
    }
    tw.release();
  }
  for (const t of [tg, tb, all]) t.release();
});
