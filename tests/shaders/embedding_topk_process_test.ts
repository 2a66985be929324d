import assert from "node:assert/strict";
import { embedding } from "../../src/shaders/embedding.ts";
import { gatherValues, topk } from "../../src/shaders/topk.ts";
import { processLogits } from "../../src/shaders/logits_process.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { WebcapError } from "../../src/errors.ts";
import { firstNonFinite, getGpu, poisoned, randomF32, relL2, rng, runAndRead } from "../util.ts";
import { f16BitsToF32, f32ToF16Bits } from "./reference.ts";

for (const f16 of [false, true]) {
  Deno.test(`embedding ${f16 ? "f16" : "f32"} table + positions, windowed table`, async () => {
    const gpu = await getGpu();
    if (f16 && !gpu.hasF16) return console.log("skipped: adapter has no shader-f16");
    const [V, D, P, R] = [1000, 24, 10, 7];
    const table32 = randomF32(V * D, 1);
    const table = f16 ? f16BitsToF32(f32ToF16Bits(table32)) : table32;
    const pos = randomF32(P * D, 2);
    const ids = Int32Array.from([999, 0, 511, 512, 3, 998, 256]);
    const tt = f16
      ? uploadTensor(gpu, f32ToF16Bits(table32), [V, D], "f16")
      : uploadTensor(gpu, table32, [V, D], "f32");
    const tp = uploadTensor(gpu, pos, [P, D], "f32");
    const ti = uploadTensor(gpu, ids, [R], "i32");
    const saved = gpu.maxBinding;
    gpu.maxBinding = 300 * D * 4; // windows of 256 rows
    try {
      const out = poisoned(gpu, [R, D]);
      const got = await runAndRead(
        gpu,
        (rec) => embedding(rec, tt, ti, { pos: { table: tp, start: 2, period: 3 }, out }),
      );
      assert.equal(firstNonFinite(got), -1);
      const ref = new Float64Array(R * D);
      for (let r = 0; r < R; r++) {
        for (let d = 0; d < D; d++) {
          ref[r * D + d] = table[ids[r] * D + d] + pos[(2 + (r % 3)) * D + d];
        }
      }
      assert.ok(relL2(got, ref) < 1e-7);
      out.release();
    } finally {
      gpu.maxBinding = saved;
    }
    for (const t of [tt, tp, ti]) t.release();
  });
}

Deno.test("embedding: windows of fewer than 64 rows (256-byte rows); a row wider than a binding is refused", async () => {
  const gpu = await getGpu();
  const [V, D] = [40, 64]; // 256-byte rows: any row count keeps a window 256-aligned
  const table = randomF32(V * D, 9);
  const ids = Int32Array.from([39, 0, 17, 18, 3, 29, 30]);
  const tt = uploadTensor(gpu, table, [V, D], "f32");
  const ti = uploadTensor(gpu, ids, [ids.length], "i32");
  const saved = gpu.maxBinding;
  try {
    gpu.maxBinding = 10 * D * 4; // windows of 10 rows
    const out = poisoned(gpu, [ids.length, D]);
    const got = await runAndRead(gpu, (rec) => embedding(rec, tt, ti, { out }));
    const ref = Float64Array.from(
      { length: ids.length * D },
      (_, k) => table[ids[Math.floor(k / D)] * D + (k % D)],
    );
    assert.equal(relL2(got, ref), 0);
    out.release();
    gpu.maxBinding = D * 4 - 4;
    const live = gpu.pool.liveBytes;
    assert.throws(
      () => embedding(new Recorder(gpu), tt, ti),
      (e) =>
        e instanceof WebcapError && e.code === "BAD_SHAPE" && /cannot be bound/.test(e.message),
    );
    assert.equal(gpu.pool.liveBytes, live, "no output is left allocated");
  } finally {
    gpu.maxBinding = saved;
  }
  tt.release();
  ti.release();
});

/** Best-first (value desc, id asc) order of a row. */
function rankRef(row: ArrayLike<number>): number[] {
  return Array.from(row, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b);
}

Deno.test("topk over 50257-wide rows with ties, k = 1 and 10", async () => {
  const gpu = await getGpu();
  const [rows, V] = [3, 50257];
  const x = randomF32(rows * V, 5, 10);
  for (let r = 0; r < rows; r++) { // exact ties at the top
    x[r * V + 7] = 20;
    x[r * V + 40000] = 20;
    x[r * V + 3] = 20;
  }
  const tx = uploadTensor(gpu, x, [rows, V], "f32");
  for (const k of [1, 10]) {
    const rec = new Recorder(gpu);
    const { values, ids } = topk(rec, tx, k);
    const pv = rec.readTensor(values), pi = rec.readTensor(ids);
    await rec.submit();
    const [gv, gi] = [await pv, await pi];
    for (let r = 0; r < rows; r++) {
      const want = rankRef(x.subarray(r * V, (r + 1) * V)).slice(0, k);
      assert.deepEqual(Array.from(gi.subarray(r * k, (r + 1) * k)), want);
      for (let j = 0; j < k; j++) assert.equal(gv[r * k + j], x[r * V + want[j]]);
    }
    values.release();
    ids.release();
  }
  tx.release();
});

Deno.test("gatherValues returns x[row, id] per pair", async () => {
  const gpu = await getGpu();
  const [rows, V] = [4, 33];
  const x = randomF32(rows * V, 3);
  const pairs = Uint32Array.from([0, 5, 3, 32, 2, 0, 3, 1]);
  const tx = uploadTensor(gpu, x, [rows, V], "f32");
  const tp = uploadTensor(gpu, pairs, [4, 2], "u32");
  const got = await runAndRead(gpu, (rec) => gatherValues(rec, tx, tp));
  assert.deepEqual(Array.from(got), [x[5], x[3 * V + 32], x[2 * V], x[3 * V + 1]]);
  tx.release();
  tp.release();
});

Deno.test("processLogits: log-softmax, repetition penalty, bans, log-softmax against float64", async () => {
  const gpu = await getGpu();
  const [rows, V] = [3, 777];
  const r = rng(11);
  const x = randomF32(rows * V, 8, 6);
  const seen = [[1, 5, 700], [], [0, 776]];
  const banned = [[2], [3, 4, 5], []];
  for (const [before, after] of [[true, false], [false, true], [false, false]]) {
    const penalty = 1.3 + r();
    const packed = [0];
    for (const s of seen) packed.push(packed.at(-1)! + s.length);
    packed.push(0);
    for (const b of banned) packed.push(packed.at(-1)! + b.length);
    packed.push(...seen.flat(), ...banned.flat());
    const tx = uploadTensor(gpu, x.slice(), [rows, V], "f32");
    const tl = uploadTensor(gpu, Uint32Array.from(packed), [packed.length], "u32");
    const got = await runAndRead(gpu, (rec) => {
      processLogits(rec, tx, tl, { rows, before, after, penalty, seenTotal: seen.flat().length });
      return tx;
    });
    const ref = new Float64Array(rows * V);
    for (let row = 0; row < rows; row++) {
      let v = Array.from(x.subarray(row * V, (row + 1) * V));
      const lsm = (a: number[]) => {
        const m = Math.max(...a);
        const l = m + Math.log(a.reduce((s, y) => s + Math.exp(y - m), 0));
        return a.map((y) => y - l);
      };
      if (before) v = lsm(v);
      for (const t of seen[row]) v[t] = v[t] < 0 ? v[t] * penalty : v[t] / penalty;
      for (const t of banned[row]) v[t] = -Infinity;
      if (after) v = lsm(v);
      ref.set(v, row * V);
    }
    for (let i = 0; i < ref.length; i++) {
      if (ref[i] === -Infinity) assert.equal(got[i], -Infinity, `banned ${i}`);
      else {assert.ok(
          Math.abs(got[i] - ref[i]) < 1e-5 * Math.max(1, Math.abs(ref[i])),
          `element ${i}: ${got[i]} vs ${ref[i]}`,
        );}
    }
    tx.release();
    tl.release();
  }
});
