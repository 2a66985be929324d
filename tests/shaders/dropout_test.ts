/**
 * The dropout kernel: Philox4x32-10 against Random123's known answers, the GPU mask equal to the
 * float64-side reference element for element (residual added), keep rate and scaling, the same
 * key giving the same mask and any other key another, the backward (the same call on dY)
 * against finite differences at a fixed mask, bad rates and keys refused; the attention
 * probabilities' dropout keeps 1 − p of them, scaled by 1/(1 − p).
 */
import assert from "node:assert/strict";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { attention } from "../../src/shaders/attention.ts";
import { dropout, type DropoutKey } from "../../src/shaders/elementwise.ts";
import { assertCode, getGpu, randomF32, runAndRead } from "../util.ts";
import { philox4x32 } from "./reference.ts";

Deno.test("philox4x32-10 gives Random123's known answers", () => {
  const hex = (a: number[]) => a.map((v) => v.toString(16).padStart(8, "0")).join(" ");
  assert.equal(hex(philox4x32([0, 0, 0, 0], [0, 0])), "6627e8d5 e169c58d bc57ac4c 9b00dbd8");
  const ones = 0xffffffff;
  assert.equal(
    hex(philox4x32([ones, ones, ones, ones], [ones, ones])),
    "408f276d 41c83b0e a20bc7c6 6d5451fd",
  );
  assert.equal(
    hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])),
    "d16cfe09 94fdcceb 5001e420 24126ea1",
  );
});

/** y = residual + x · keep / (1 − p), keep as Philox draws it for element i of `key`. */
function dropoutRef(x: Float32Array, p: number, key: DropoutKey, residual?: Float32Array) {
  const below = Math.round(p * 2 ** 32), scale = Math.fround(1 / (1 - p));
  const k = [key.seed % 2 ** 32, Math.floor(key.seed / 2 ** 32)];
  return Array.from(x, (v, i) => {
    const kept = philox4x32([i, key.site, key.step, 0], k)[0] >= below;
    return (residual?.[i] ?? 0) + (kept ? Math.fround(v * scale) : 0);
  });
}

Deno.test("dropout: the GPU mask is Philox's, element for element, with a residual added", async () => {
  const gpu = await getGpu();
  const n = 1000, x = randomF32(n, 1), r = randomF32(n, 2);
  const key = { seed: 2 ** 40 + 7, step: 3, site: 9 };
  const tx = uploadTensor(gpu, x, [n], "f32"), tr = uploadTensor(gpu, r, [n], "f32");
  const got = await runAndRead(gpu, (rec) => dropout(rec, tx, 0.4, key, tr));
  const want = dropoutRef(x, 0.4, key, r);
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-6 * (1 + Math.abs(want[i])), `${i}`));
  tx.release();
  tr.release();
});

Deno.test("dropout: keep rate 1 − p, kept values scaled by 1/(1 − p), dropped ones 0", async () => {
  const gpu = await getGpu();
  const n = 200_003, ones = uploadTensor(gpu, new Float32Array(n).fill(1), [n], "f32");
  for (const p of [0.1, 0.5, 0.9]) {
    const y = await runAndRead(gpu, (rec) => dropout(rec, ones, p, { seed: 5, step: 0, site: 1 }));
    const kept = y.filter((v) => v !== 0);
    assert.ok(kept.every((v) => v === Math.fround(1 / (1 - p))), `p ${p}: scaling`);
    const rate = kept.length / n, sd = Math.sqrt(p * (1 - p) / n);
    assert.ok(Math.abs(rate - (1 - p)) < 5 * sd, `p ${p}: keep rate ${rate}`);
  }
  const all = await runAndRead(gpu, (rec) => dropout(rec, ones, 0, { seed: 5, step: 0, site: 1 }));
  assert.ok(all.every((v) => v === 1), "p 0 keeps everything");
  ones.release();
});

Deno.test("dropout: the same key gives the same mask; another seed, step or site another", async () => {
  const gpu = await getGpu();
  const n = 4096, x = uploadTensor(gpu, randomF32(n, 3), [n], "f32");
  const run = (key: DropoutKey) => runAndRead(gpu, (rec) => dropout(rec, x, 0.5, key));
  const base = { seed: 1, step: 2, site: 3 };
  const a = await run(base);
  assert.deepEqual(await run({ ...base }), a);
  for (const other of [{ seed: 2 }, { step: 3 }, { site: 4 }]) {
    const b = await run({ ...base, ...other });
    assert.ok(b.some((v, i) => (v === 0) !== (a[i] === 0)), JSON.stringify(other));
  }
  x.release();
});

Deno.test("dropout backward (the same call on dY) matches finite differences at a fixed mask", async () => {
  const gpu = await getGpu();
  const n = 257, x = randomF32(n, 4), c = randomF32(n, 5), key = { seed: 11, step: 1, site: 2 };
  const loss = async (v: Float32Array) => {
    const t = uploadTensor(gpu, v, [n], "f32");
    const y = await runAndRead(gpu, (rec) => dropout(rec, t, 0.3, key));
    t.release();
    return y.reduce((s, yi, i) => s + yi * c[i], 0); // Σ c · dropout(x)
  };
  const tc = uploadTensor(gpu, c, [n], "f32");
  const dx = await runAndRead(gpu, (rec) => dropout(rec, tc, 0.3, key));
  tc.release();
  for (const j of [0, 1, 100, 256]) {
    const h = 1e-2, up = x.slice(), down = x.slice();
    up[j] += h;
    down[j] -= h;
    const fd = (await loss(up) - await loss(down)) / (2 * h);
    assert.ok(Math.abs(fd - dx[j]) < 1e-3 * (1 + Math.abs(dx[j])), `${j}: ${fd} vs ${dx[j]}`);
  }
});

Deno.test("dropout: a rate outside [0, 1) or a bad key is refused by name", async () => {
  const gpu = await getGpu();
  const x = uploadTensor(gpu, new Float32Array(4), [4], "f32");
  const key = { seed: 0, step: 0, site: 0 };
  assertCode(() => dropout(undefined as never, x, 1, key), "BAD_OPTION", "p 1");
  assertCode(() => dropout(undefined as never, x, NaN, key), "BAD_OPTION", "p NaN");
  assertCode(() => dropout(undefined as never, x, 0.1, { ...key, seed: -1 }), "BAD_OPTION", "seed");
  assertCode(() => dropout(undefined as never, x, 0.1, { ...key, step: 2 ** 32 }), "BAD_OPTION");
  x.release();
});

Deno.test("attention-probability dropout: keep rate 1 − p, kept probabilities scaled by 1/(1 − p)", async () => {
  const gpu = await getGpu();
  // q = 0: every probability is 1/L; v_j = e_j (D = L): output d of a query is its kept P_d.
  const [B, S, L] = [4, 64, 64], n = B * S * L;
  const q = uploadTensor(gpu, new Float32Array(B * S * L), [B * S * L], "f32");
  const eye = Float32Array.from(
    { length: B * L * L },
    (_, i) => +(i % L === Math.floor(i / L) % L),
  );
  const v = uploadTensor(gpu, eye, [B * L * L], "f32");
  const op = (t: typeof q) => ({ t, offset: 0, posStride: L, rowStride: L * L });
  const dims = { batch: B, queries: S, heads: 1, headDim: L, keys: L, scale: 1 };
  const key = { seed: 9, step: 4, site: 1 };
  for (const p of [0, 0.2, 0.7]) {
    const y = await runAndRead(
      gpu,
      (rec) => attention(rec, { q: op(q), k: op(v), v: op(v), ...dims, dropout: { p, key } }),
    );
    const kept = y.filter((x) => x !== 0), want = Math.fround(1 / (1 - p)) / L;
    assert.ok(kept.every((x) => Math.abs(x - want) <= 1e-6 * want), `p ${p}: scaling`);
    const rate = kept.length / n, sd = Math.sqrt(p * (1 - p) / n);
    assert.ok(p ? Math.abs(rate - (1 - p)) < 5 * sd : rate === 1, `p ${p}: keep rate ${rate}`);
  }
  q.release();
  v.release();
});
