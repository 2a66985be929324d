import assert from "node:assert/strict";
import { matmul } from "../../src/shaders/matmul.ts";
import { embedding } from "../../src/shaders/embedding.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { f16ToF32 } from "../../src/io/dtype.ts";
import { dequantize, quantize, uploadQuant } from "../../src/nn/quant.ts";
import type { QuantScheme } from "../../src/shaders/quant/qmatrix.ts";
import {
  ADAPTER_CLASSES,
  asAdapterClass,
  assertCode,
  getGpu,
  poisoned,
  randomF32,
  relL2,
  runAndRead,
} from "../util.ts";

const SCHEMES: [QuantScheme, number][] = [["q8", 0], ["q4", 32], ["q4", 8]];

Deno.test("quantize: every element within half a step of its group's scale", () => {
  const [N, K] = [5, 64];
  const w = randomF32(N * K, 3, 2);
  w[7] = 0; // a zero and a constant row do not divide by a zero scale
  w.fill(0.25, K, 2 * K);
  for (const [scheme, G] of SCHEMES) {
    const h = quantize(w, [N, K], scheme, G, "w");
    const back = dequantize(h);
    const scale = f16ToF32(h.scale);
    for (let i = 0; i < w.length; i++) {
      const s = scale[Math.floor(i / h.groupSize)];
      const err = Math.abs(back[i] - w[i]);
      assert.ok(err <= 0.51 * s + 1e-3, `${scheme}/${G} element ${i}: ${w[i]} → ${back[i]}`);
    }
    assert.equal(h.q.length, scheme === "q8" ? N * K : (N * K) / 2);
    assert.equal(h.scale.length, scheme === "q8" ? N : (N * K) / G);
  }
});

Deno.test("quantize: a q4 group size that does not divide K into even groups is refused", () => {
  const w = randomF32(2 * 48, 1);
  assertCode(() => quantize(w, [2, 48], "q4", 32, "dec.fc"), "BAD_OPTION", "32", "48", "dec.fc");
  assertCode(() => quantize(w, [2, 48], "q4", 3, "dec.fc"), "BAD_OPTION", "3");
});

function ref(a: Float32Array, w: Float32Array, M: number, N: number, K: number): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * w[n * K + k];
      out[m * N + n] = s;
    }
  }
  return out;
}

const QUANT_CASES = [[1, 300, 64, false], [3, 700, 96, true], [20, 600, 384, true]] as const;
for (const [scheme, G] of SCHEMES) {
  for (
    const [cls, [M, N, K, windowed]] of ADAPTER_CLASSES.flatMap((c) =>
      QUANT_CASES.map((x) => [c, x] as const)
    )
  ) {
    Deno.test(`matmul (${cls} kernels) ${scheme}${G ? `/${G}` : ""} M=${M} N=${N} K=${K}${windowed ? " in windows" : ""} equals f32 on the dequantized weights`, async () => {
      const gpu = await getGpu();
      const h = quantize(randomF32(+N * +K, +N), [+N, +K], scheme, G, "w");
      const a = randomF32(+M * +K, +M);
      const ta = uploadTensor(gpu, a, [+M, +K], "f32");
      const q = uploadQuant(gpu, h, "w");
      const out = poisoned(gpu, [+M, +N]);
      const saved = gpu.maxBinding;
      // windows of 512 columns: the packed bytes of 512 columns fill one binding
      if (windowed) gpu.maxBinding = (512 * +K * (scheme === "q8" ? 8 : 4)) / 8;
      try {
        const got = await asAdapterClass(
          gpu,
          cls,
          () => runAndRead(gpu, (rec) => matmul(rec, ta, q, { transposeW: true, out })),
        );
        const err = relL2(got, ref(a, dequantize(h), +M, +N, +K));
        assert.ok(err < 1e-5, `rel L2 ${err}`);
      } finally {
        gpu.maxBinding = saved;
        for (const t of [ta, q.data, q.scales, out]) t.release();
      }
    });
  }
}

Deno.test("matmul: a quantized W in×out is refused", async () => {
  const gpu = await getGpu();
  const q = uploadQuant(gpu, quantize(randomF32(64, 1), [2, 32], "q8", 0, "w"), "w");
  const a = uploadTensor(gpu, randomF32(32, 2), [1, 32], "f32");
  try {
    await assert.rejects(
      () => runAndRead(gpu, (rec) => matmul(rec, a, q)),
      (e: Error & { code?: string }) => e.code === "BAD_SHAPE" && /quantized/.test(e.message),
    );
  } finally {
    for (const t of [a, q.data, q.scales]) t.release();
  }
});

for (const [scheme, G] of SCHEMES) {
  Deno.test(`embedding ${scheme}${G ? `/${G}` : ""}: rows of a quantized table, also in windows`, async () => {
    const gpu = await getGpu();
    const [V, D] = [700, 32];
    const h = quantize(randomF32(V * D, 9), [V, D], scheme, G, "wte");
    const table = dequantize(h);
    const q = uploadQuant(gpu, h, "wte");
    const idList = [0, 699, 256, 5, 511, 512];
    const ids = uploadTensor(gpu, Int32Array.from(idList), [idList.length], "i32");
    const want = new Float32Array(idList.flatMap((i) => [...table.subarray(i * D, (i + 1) * D)]));
    const saved = gpu.maxBinding;
    try {
      for (const maxBinding of [saved, 300 * D]) {
        gpu.maxBinding = maxBinding;
        const got = await runAndRead(gpu, (rec) => embedding(rec, q, ids));
        assert.deepEqual([...got], [...want], `maxBinding ${maxBinding}`);
      }
    } finally {
      gpu.maxBinding = saved;
      for (const t of [ids, q.data, q.scales]) t.release();
    }
  });
}
