import assert from "node:assert/strict";
import { layerNorm, layerNormPlan } from "../../src/shaders/layernorm.ts";
import { softmax } from "../../src/shaders/softmax.ts";
import { binary, unary } from "../../src/shaders/elementwise.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import type { Activation } from "../../src/shaders/activations.ts";
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
import { actRef } from "./reference.ts";

// D % 4 = 0 and D ≥ 256 take the CPU adapter's row-per-invocation kernel (rows over one workgroup of 64
// too); D = 12 and 7 the workgroup kernel on both classes
const normCases = [[1, 7], [5, 300], [197, 768], [70, 256], [70, 12]];
for (
  const [cls, [rows, D]] of ADAPTER_CLASSES.flatMap((c) => normCases.map((n) => [c, n] as const))
) {
  Deno.test(`layerNorm (${cls} kernels: ${layerNormPlan(cls, D)}) rows=${rows} D=${D}`, async () => {
    const gpu = await getGpu();
    const x = randomF32(rows * D, rows + D, 3);
    for (let i = 0; i < x.length; i++) x[i] += 5; // an offset mean tests the two-pass variance
    const g = randomF32(D, 2), b = randomF32(D, 3);
    const [tx, tg, tb] = [
      uploadTensor(gpu, x, [rows, D], "f32"),
      uploadTensor(gpu, g, [D], "f32"),
      uploadTensor(gpu, b, [D], "f32"),
    ];
    const out = poisoned(gpu, [rows, D]);
    const got = await asAdapterClass(
      gpu,
      cls,
      () => runAndRead(gpu, (rec) => layerNorm(rec, tx, tg, tb, 1e-5, out)),
    );
    assert.equal(firstNonFinite(got), -1);
    const ref = new Float64Array(rows * D);
    for (let r = 0; r < rows; r++) {
      let m = 0, v = 0;
      for (let i = 0; i < D; i++) m += x[r * D + i];
      m /= D;
      for (let i = 0; i < D; i++) v += (x[r * D + i] - m) ** 2;
      const inv = 1 / Math.sqrt(v / D + 1e-5);
      for (let i = 0; i < D; i++) ref[r * D + i] = (x[r * D + i] - m) * inv * g[i] + b[i];
    }
    assert.ok(relL2(got, ref) < 1e-5, `rel L2 ${relL2(got, ref)}`);
    for (const t of [tx, tg, tb, out]) t.release();
  });
}

for (const log of [false, true]) {
  Deno.test(`softmax log=${log} rows=3 D=1001 with large values`, async () => {
    const gpu = await getGpu();
    const [rows, D] = [3, 1001];
    const x = randomF32(rows * D, 9, 40);
    const tx = uploadTensor(gpu, x, [rows, D], "f32");
    const out = poisoned(gpu, [rows, D]);
    const got = await runAndRead(gpu, (rec) => softmax(rec, tx, { log, out }));
    assert.equal(firstNonFinite(got), -1);
    const ref = new Float64Array(rows * D);
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * D, (r + 1) * D);
      const m = Math.max(...row);
      const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
      for (let i = 0; i < D; i++) {
        ref[r * D + i] = log ? row[i] - m - Math.log(s) : Math.exp(row[i] - m) / s;
      }
    }
    assert.ok(relL2(got, ref) < 1e-5, `rel L2 ${relL2(got, ref)}`);
    tx.release();
    out.release();
  });
}

const acts: Activation[] = ["gelu", "gelu_new", "quick_gelu", "relu", "tanh", "sigmoid"];
for (const act of acts) {
  Deno.test(`unary ${act} over [-12, 12) incl. 70000 elements (2-D grid)`, async () => {
    const gpu = await getGpu();
    const n = 70_001;
    const x = randomF32(n, 4, 12);
    const tx = uploadTensor(gpu, x, [n], "f32");
    const out = poisoned(gpu, [n]);
    const got = await runAndRead(gpu, (rec) => unary(rec, tx, act, out));
    assert.equal(firstNonFinite(got), -1);
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i] - actRef(act, x[i])));
    assert.ok(worst < 2e-6 * 12, `${act}: max abs error ${worst}`);
    tx.release();
    out.release();
  });
}

Deno.test("binary add/mul with a repeating operand (position table over a batch)", async () => {
  const gpu = await getGpu();
  const [B, S, D] = [3, 5, 7];
  const a = randomF32(B * S * D, 1), b = randomF32(S * D, 2);
  const ta = uploadTensor(gpu, a, [B, S, D], "f32"), tb = uploadTensor(gpu, b, [S, D], "f32");
  for (const op of ["add", "mul"] as const) {
    const out = poisoned(gpu, [B, S, D]);
    const got = await runAndRead(gpu, (rec) => binary(rec, ta, tb, op, out));
    const ref = Array.from(a, (v, i) => op === "add" ? v + b[i % (S * D)] : v * b[i % (S * D)]);
    assert.ok(relL2(got, ref) < 1e-7);
    out.release();
  }
  assert.throws(() => binary(undefined as never, tb, ta, "add"), /does not repeat/);
  ta.release();
  tb.release();
});
