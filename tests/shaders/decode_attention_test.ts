/**
 * The fused decode-step attention against what it replaces (layernorm + matmul + copy2d +
 * attention, each tested against float64 references), on both adapter classes: self- and
 * cross-attention, 1 to 24 rows, several heads and head sizes (5 and 6: not multiples of 4),
 * images shared by rows, in×out and out×in, f32, f16 and q8 weights; the cache after the step
 * equals the separate path's. Bad shapes are refused before anything is recorded.
 */
import assert from "node:assert/strict";
import { Recorder } from "../../src/gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../../src/gpu/tensor.ts";
import { quantize, uploadQuant } from "../../src/nn/quant.ts";
import { attention } from "../../src/shaders/attention.ts";
import {
  DECODE_MAX_ROWS,
  decodeAttention,
  type DecodeAttentionArgs,
  decodeAttentionPlan,
} from "../../src/shaders/attention/decode.ts";
import { copy2d } from "../../src/shaders/copy.ts";
import { layerNorm } from "../../src/shaders/layernorm.ts";
import { matmul } from "../../src/shaders/matmul.ts";
import type { Weight } from "../../src/shaders/quant/qmatrix.ts";
import {
  ADAPTER_CLASSES,
  asAdapterClass,
  assertCode,
  firstNonFinite,
  getGpu,
  randomF32,
  readAll,
  relL2,
} from "../util.ts";
import { f32ToF16Bits } from "./reference.ts";

/** The separate path: layernorm, matmul, (copy of k, v into the cache), attention. */
function separate(rec: Recorder, a: DecodeAttentionArgs): Tensor {
  const [R, h] = a.x.shape, H = a.heads, [, L] = a.kv.shape;
  const xn = a.norm ? layerNorm(rec, a.x, a.norm.w, a.norm.b, a.norm.eps) : a.x;
  const y = matmul(rec, xn, a.proj.w, { transposeW: !a.proj.inOut, bias: a.proj.b });
  const kv = (offset: number) => ({ t: a.kv, offset, posStride: 2 * h, rowStride: L * 2 * h });
  const common = { k: kv(0), v: kv(h), batch: R, queries: 1, heads: H, headDim: h / H };
  if (a.past === undefined) {
    const q = { t: y, offset: 0, posStride: h, rowStride: h };
    return attention(rec, {
      ...common,
      q,
      keys: L,
      kvIndex: a.kvIndex,
      scale: a.scale,
      probs: a.probs,
    })
      .view([R, h]);
  }
  copy2d(rec, y, a.kv, {
    n: R,
    width: 2 * h,
    srcOff: h,
    srcStride: 3 * h,
    group: 1,
    dstOff: a.past * 2 * h,
    dstOuter: L * 2 * h,
    dstInner: 2 * h,
  });
  const q = { t: y, offset: 0, posStride: 3 * h, rowStride: 3 * h };
  return attention(rec, {
    ...common,
    q,
    keys: a.past + 1,
    causal: { past: a.past },
    scale: a.scale,
  })
    .view([R, h]);
}

interface Case {
  R: number;
  H: number;
  D: number;
  /** Self-attention: the step's position; else cross over images of `L` positions. */
  past?: number;
  L: number;
  /** Cross: each row's image. */
  idx?: number[];
  norm: boolean;
  inOut: boolean;
  dtype: "f32" | "f16" | "q8" | "q4";
  probs?: boolean;
}

const CASES: Case[] = [
  { R: 1, H: 2, D: 8, past: 0, L: 8, norm: true, inOut: true, dtype: "f32" },
  { R: 3, H: 3, D: 6, past: 5, L: 12, norm: true, inOut: false, dtype: "f32" },
  { R: 8, H: 4, D: 16, past: 37, L: 40, norm: false, inOut: true, dtype: "f16" },
  { R: 24, H: 3, D: 30, past: 5, L: 8, norm: true, inOut: false, dtype: "q8" }, // 2 chunks of x
  { R: 3, H: 1, D: 72, past: 37, L: 38, norm: true, inOut: true, dtype: "f32" },
  // the most rows (32): x staged in two chunks of 64; q4 weights in groups of 16
  { R: 32, H: 2, D: 40, past: 3, L: 6, norm: true, inOut: false, dtype: "q4" },
  // GPT-2 small's attention (768 wide, 12 heads of 64): 9 chunks of x at 5 rows, 3 column groups
  { R: 5, H: 12, D: 64, past: 19, L: 24, norm: true, inOut: true, dtype: "f16" },
  { R: 5, H: 12, D: 64, L: 50, idx: [0, 0, 1, 1, 2], norm: true, inOut: true, dtype: "f32" },
  { R: 1, H: 2, D: 8, L: 7, idx: [0], norm: true, inOut: true, dtype: "f32", probs: true },
  { R: 3, H: 3, D: 6, L: 20, idx: [1, 1, 0], norm: false, inOut: false, dtype: "f32" },
  {
    R: 8,
    H: 4,
    D: 16,
    L: 37,
    idx: [2, 0, 0, 1, 2, 2, 1, 0],
    norm: true,
    inOut: true,
    dtype: "f16",
    probs: true,
  },
  {
    R: 24,
    H: 2,
    D: 5,
    L: 5,
    idx: Array.from({ length: 24 }, (_, i) => i % 3 === 0 ? 1 : 0),
    norm: false,
    inOut: false,
    dtype: "q8",
    probs: true,
  },
];

/** The projection weight of a case (out N = 3h self, h cross), on the GPU. */
function caseWeight(gpu: Awaited<ReturnType<typeof getGpu>>, c: Case, h: number, N: number) {
  const values = randomF32(N * h, 11, 0.5);
  if (c.dtype === "q8" || c.dtype === "q4") {
    const groupSize = c.dtype === "q4" ? 16 : 0; // h is a multiple of 16 in the q4 cases
    return uploadQuant(gpu, quantize(values, [N, h], c.dtype, groupSize, "w"), "w");
  }
  const shape = c.inOut ? [h, N] : [N, h];
  if (c.dtype === "f16") return uploadTensor(gpu, f32ToF16Bits(values), shape, "f16");
  return uploadTensor(gpu, values, shape, "f32");
}

function caseName(c: Case): string {
  const kind = c.past === undefined
    ? `cross over ${c.L} keys, images [${c.idx!.slice(0, 8)}${c.R > 8 ? "…" : ""}]`
    : `self past ${c.past}`;
  const opts = [c.norm ? "layernorm" : "", c.inOut ? "in×out" : "out×in", c.dtype];
  return `R=${c.R} H=${c.H} D=${c.D} ${kind}, ${opts.filter(Boolean).join(", ")}${
    c.probs ? ", probs" : ""
  }`;
}

for (const cls of ADAPTER_CLASSES) {
  for (const c of CASES) {
    Deno.test(`decodeAttention (${cls} kernels) ${caseName(c)} equals the separate path`, async () => {
      const gpu = await getGpu();
      if (c.dtype === "f16" && !gpu.hasF16) return console.log("skipped: no shader-f16");
      const { R, H, D, L } = c, h = H * D, self = c.past !== undefined;
      const N = self ? 3 * h : h;
      const kvRows = self ? R : Math.max(...c.idx!) + 1;
      const kvInit = randomF32(kvRows * L * 2 * h, 3);
      const up = (data: Float32Array, shape: number[]) => uploadTensor(gpu, data, shape, "f32");
      const caches = [0, 1].map(() => up(kvInit, [kvRows, L, 2 * h]));
      const base = {
        x: up(randomF32(R * h, 1, 2), [R, h]),
        norm: c.norm
          ? { w: up(randomF32(h, 4), [h]), b: up(randomF32(h, 5), [h]), eps: 1e-5 }
          : undefined,
        proj: {
          w: caseWeight(gpu, c, h, N) as Weight,
          inOut: c.inOut,
          b: up(randomF32(N, 6), [N]),
        },
        past: c.past,
        kvIndex: c.idx && uploadTensor(gpu, Int32Array.from(c.idx), [R], "i32"),
        heads: H,
        scale: 1 / Math.sqrt(D),
      };
      const probs = c.probs ? [0, 1].map(() => up(new Float32Array(R * H * L), [R, H, 1, L])) : [];
      const rec = new Recorder(gpu);
      const [fused, sep] = await asAdapterClass(gpu, cls, () =>
        Promise.resolve([
          decodeAttention(rec, { ...base, kv: caches[0], probs: probs[0] }),
          separate(rec, { ...base, kv: caches[1], probs: probs[1] }),
        ]));
      const [got, want, cacheGot, cacheWant, ...pr] = await readAll(rec, [
        fused,
        sep,
        ...caches,
        ...probs,
      ]);
      assert.equal(firstNonFinite(got), -1);
      assert.ok(relL2(got, want) < 1e-5, `out rel L2 ${relL2(got, want)}`);
      if (pr.length) assert.ok(relL2(pr[0], pr[1]) < 1e-5, `probs rel L2 ${relL2(pr[0], pr[1])}`);
      // the cache: the step's keys and values as the separate path wrote them, the rest untouched
      const at = (i: number) => self && Math.floor(i / (2 * h)) % L === c.past;
      const mine = (a: Float32Array) => a.filter((_, i) => at(i));
      const rest = (a: Float32Array) => a.filter((_, i) => !at(i));
      assert.deepEqual(rest(cacheGot), rest(kvInit));
      if (self) assert.ok(relL2(mine(cacheGot), mine(cacheWant)) < 1e-5, "k, v at past");
      if (self) assert.notDeepEqual(mine(cacheGot), mine(kvInit));
    });
  }
}

Deno.test("decodeAttention: bad shapes are refused with BAD_SHAPE before recording", async () => {
  const gpu = await getGpu();
  const h = 8, R = 2;
  const up = (shape: number[], dtype: "f32" | "i32" = "f32") =>
    uploadTensor(
      gpu,
      new (dtype === "f32" ? Float32Array : Int32Array)(shape.reduce((a, b) => a * b)),
      shape,
      dtype,
    );
  const good: DecodeAttentionArgs = {
    x: up([R, h]),
    proj: { w: up([h, 3 * h]), inOut: true },
    kv: up([R, 4, 2 * h]),
    past: 1,
    heads: 2,
    scale: 1,
  };
  const cross = {
    ...good,
    past: undefined,
    proj: { w: up([h, h]), inOut: true },
    kvIndex: up([R], "i32"),
  };
  const rec = new Recorder(gpu);
  const bad: [Partial<DecodeAttentionArgs>, string][] = [
    [{ x: up([R, 1, h]) }, "x \\[2,1,8\\]"],
    [{ x: up([33, h]), kv: up([33, 4, 2 * h]) }, "33 rows"],
    [{ heads: 3 }, "not divisible by 3 heads"],
    [{ kvIndex: up([R], "i32") }, "exactly one of past"],
    [{ proj: { w: up([h, 2 * h]), inOut: true } }, "weight \\[8,16\\] is not \\[8,24\\]"],
    [{ proj: { w: up([h, 3 * h]), inOut: true, b: up([h]) } }, "bias \\[8\\] is not \\[24\\]"],
    [{ norm: { w: up([4]), b: up([h]), eps: 1e-5 } }, "norm is not \\[8\\]"],
    [{ kv: up([R, 4, h]) }, "kv \\[2,4,8\\]"],
    [{ kv: up([3, 4, 2 * h]) }, "3 rows for 2"],
    [{ past: 4 }, "past 4"],
    [{ probs: up([R, 2, 1, 4]) }, "cross-attention only"],
  ];
  for (const [change, msg] of bad) {
    assertCode(
      () => decodeAttention(rec, { ...good, ...change }),
      "BAD_SHAPE",
      "decodeAttention",
      msg,
    );
  }
  assertCode(
    () => decodeAttention(rec, { ...cross, kvIndex: up([3], "i32") }),
    "BAD_SHAPE",
    "kvIndex must be i32 \\[2\\]",
  );
  assertCode(
    () => decodeAttention(rec, { ...cross, probs: up([R, 2, 1, 3]) }),
    "BAD_SHAPE",
    "probs \\[2,2,1,3\\]",
  );
  const q = uploadQuant(gpu, quantize(randomF32(3 * h * h, 1), [3 * h, h], "q8", 0, "w"), "w");
  assertCode(
    () => decodeAttention(rec, { ...good, proj: { w: q, inOut: true } }),
    "BAD_SHAPE",
    "out×in",
  );
  assert.equal(rec.dispatches, 0);
  await rec.submit();
});

Deno.test("decodeAttentionPlan: fused up to 32 rows on GPUs, separate past them and on CPU adapters", async () => {
  const gpu = await getGpu();
  const w = uploadTensor(gpu, new Float32Array(8 * 24), [8, 24], "f32");
  await asAdapterClass(gpu, "gpu", () => {
    assert.equal(decodeAttentionPlan(gpu, DECODE_MAX_ROWS, w), "fused");
    assert.equal(decodeAttentionPlan(gpu, DECODE_MAX_ROWS + 1, w), "separate");
    const saved = gpu.maxBinding;
    gpu.maxBinding = w.size * 4 - 4;
    try {
      assert.equal(decodeAttentionPlan(gpu, 1, w), "separate");
    } finally {
      gpu.maxBinding = saved;
    }
    return Promise.resolve();
  });
  await asAdapterClass(gpu, "cpu", () => {
    assert.equal(decodeAttentionPlan(gpu, 1, w), "separate");
    return Promise.resolve();
  });
  w.release();
});
