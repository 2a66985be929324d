/**
 * conv2d and eval-mode BatchNorm backward against float64 finite differences of the CPU forwards:
 * for a random dY, the gradient of L = Σ dY·f(x, w, b); odd sizes, stride, padding, dilation, groups.
 */
import assert from "node:assert/strict";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { batchNorm2dBackward } from "../../src/shaders/batchnorm.ts";
import { conv2dBackward } from "../../src/shaders/conv2d.ts";
import {
  ADAPTER_CLASSES,
  asAdapterClass,
  assertCode,
  dot,
  getGpu,
  randomF32,
  readAll,
  relL2,
} from "../util.ts";
import { convDwRef, convRef, type ConvRefOptions, fd } from "./reference.ts";

const gpu = await getGpu();
const up = (a: Float32Array, s: number[]) => uploadTensor(gpu, a, s, "f32");

const CASES: { name: string; x: number[]; w: number[]; o: ConvRefOptions }[] = [
  { name: "3×3 pad 1", x: [2, 3, 5, 7], w: [5, 3, 3, 3], o: { padding: 1 } },
  { name: "7×7/2 pad 3 (stem)", x: [1, 3, 9, 11], w: [4, 3, 7, 7], o: { stride: 2, padding: 3 } },
  { name: "1×1 stride 2 (downsample)", x: [2, 5, 7, 5], w: [3, 5, 1, 1], o: { stride: 2 } },
  {
    name: "groups 2, dilation 2, stride [2, 1], pad [2, 1]",
    x: [2, 4, 9, 7],
    w: [6, 2, 3, 2],
    o: { groups: 2, dilation: 2, stride: [2, 1], padding: [2, 1] },
  },
];

for (const cls of ADAPTER_CLASSES) {
  for (const c of CASES) {
    const name =
      `conv2dBackward (${cls} kernels) ${c.name}: dX, dW, db by finite differences; accumulates`;
    Deno.test(name, () =>
      asAdapterClass(gpu, cls, async () => {
        const ref = (x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>) =>
          convRef(Float32Array.from(x), c.x, Float32Array.from(w), c.w, c.o, Float32Array.from(b));
        const x = randomF32(c.x.reduce((a, b) => a * b), 1),
          w = randomF32(c.w.reduce((a, b) => a * b), 2);
        const b = randomF32(c.w[0], 3), yShape = ref(x, w, b).shape;
        const dy = randomF32(yShape.reduce((a, b) => a * b), 4);
        const dW0 = randomF32(w.length, 5),
          db0 = randomF32(b.length, 6),
          r = randomF32(x.length, 7);
        const [tx, tw, tdy, tdW, tdb, tr] = [
          up(x, c.x),
          up(w, c.w),
          up(dy, yShape),
          up(dW0, c.w),
          up(db0, [b.length]),
          up(r, c.x),
        ];
        const rec = new Recorder(gpu);
        const dx = conv2dBackward(rec, tx, tw, tdy, { dW: tdW, db: tdb }, {
          ...c.o,
          residual: tr,
        })!;
        const [gx, gw, gb] = await readAll(rec, [dx, tdW, tdb]);
        // the forward rounds its inputs to f32: step by a power of two that f32 holds exactly
        const L = (xx: ArrayLike<number>, ww: ArrayLike<number>, bb: ArrayLike<number>) =>
          dot(dy, ref(xx, ww, bb).out);
        const h = 2 ** -10;
        const wantX = fd((v) => L(v, w, b), x, h).map((v, i) => v + r[i]);
        const wantW = fd((v) => L(x, v, b), w, h).map((v, i) => v + dW0[i]);
        const wantB = fd((v) => L(x, w, v), b, h).map((v, i) => v + db0[i]);
        assert.ok(relL2(gx, wantX) < 1e-5, `dX ${relL2(gx, wantX)}`);
        assert.ok(relL2(gw, wantW) < 1e-5, `dW ${relL2(gw, wantW)}`);
        assert.ok(relL2(gb, wantB) < 1e-5, `db ${relL2(gb, wantB)}`);
        for (const t of [tx, tw, tdy, tdW, tdb, tr, dx]) t.release();
      }));
  }
}

Deno.test("conv2dBackward is deterministic, skips frozen gradients, and refuses a misshaped dY", async () => {
  const x = up(randomF32(2 * 3 * 6 * 5, 8), [2, 3, 6, 5]),
    w = up(randomF32(4 * 27, 9), [4, 3, 3, 3]);
  const dy = up(randomF32(2 * 4 * 6 * 5, 10), [2, 4, 6, 5]);
  const run = async () => {
    const dW = up(new Float32Array(4 * 27), [4, 3, 3, 3]);
    const rec = new Recorder(gpu);
    const dx = conv2dBackward(rec, x, w, dy, { dW }, { padding: 1 })!;
    const out = await readAll(rec, [dx, dW]);
    dx.release(), dW.release();
    return out;
  };
  const [a, b] = [await run(), await run()];
  assert.deepEqual(a, b, "the same bits");
  const rec = new Recorder(gpu);
  assert.equal(conv2dBackward(rec, x, w, dy, {}, { padding: 1, noDx: true }), undefined);
  await rec.submit();
  assertCode(() => conv2dBackward(rec, x, w, dy, {}), "BAD_SHAPE", "dy is f32");
  x.release(), w.release(), dy.release();
});

for (const cls of ADAPTER_CLASSES) {
  const name =
    `conv2dBackward (${cls} kernels) dW at out 64, in 32, 3×3 (18,432 weights): the float64 reference, the same bits twice`;
  Deno.test(name, () =>
    asAdapterClass(gpu, cls, async () => {
      const xs = [2, 32, 9, 7],
        ws = [64, 32, 3, 3],
        o = { padding: 1, stride: [2, 1] as [number, number] };
      const x = randomF32(2 * 32 * 9 * 7, 19), dy = randomF32(2 * 64 * 5 * 7, 20);
      const dW0 = randomF32(64 * 32 * 9, 21);
      const [tx, tw, tdy] = [up(x, xs), up(randomF32(dW0.length, 22), ws), up(dy, [2, 64, 5, 7])];
      const run = async () => {
        const dW = up(dW0, ws), rec = new Recorder(gpu);
        conv2dBackward(rec, tx, tw, tdy, { dW }, { ...o, noDx: true });
        const [out] = await readAll(rec, [dW]);
        dW.release();
        return out;
      };
      const [a, b] = [await run(), await run()];
      const want = convDwRef(x, xs, dy, ws, o).map((v, i) => v + dW0[i]);
      assert.ok(relL2(a, want) < 1e-6, `dW ${relL2(a, want)}`);
      assert.deepEqual(a, b, "the same bits");
      for (const t of [tx, tw, tdy]) t.release();
    }));
}

Deno.test("batchNorm2dBackward (eval mode): dX, dγ, dβ by finite differences; accumulates", async () => {
  const [N, C, H, W] = [3, 5, 3, 7], size = N * C * H * W, eps = 1e-5;
  const x = randomF32(size, 11), dy = randomF32(size, 12), gamma = randomF32(C, 13);
  const beta = randomF32(C, 14), mean = randomF32(C, 15);
  const variance = randomF32(C, 16).map((v) => v * v + 0.5);
  const dg0 = randomF32(C, 17), db0 = randomF32(C, 18);
  const ref = (xx: ArrayLike<number>, g: ArrayLike<number>, b: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < size; i++) {
      const c = Math.floor(i / (H * W)) % C;
      s += dy[i] * ((xx[i] - mean[c]) / Math.sqrt(variance[c] + eps) * g[c] + b[c]);
    }
    return s;
  };
  const bn = {
    weight: up(gamma, [C]),
    bias: up(beta, [C]),
    runningMean: up(mean, [C]),
    runningVar: up(variance, [C]),
    eps,
  };
  const [tx, tdy, tdg, tdb] = [
    up(x, [N, C, H, W]),
    up(dy, [N, C, H, W]),
    up(dg0, [C]),
    up(db0, [C]),
  ];
  const rec = new Recorder(gpu);
  const dx = batchNorm2dBackward(rec, tx, bn, tdy, { dGamma: tdg, dBeta: tdb });
  const [gx, gg, gb] = await readAll(rec, [dx, tdg, tdb]);
  const wantG = fd((v) => ref(x, v, beta), gamma).map((v, i) => v + dg0[i]);
  const wantB = fd((v) => ref(x, gamma, v), beta).map((v, i) => v + db0[i]);
  assert.ok(relL2(gx, fd((v) => ref(v, gamma, beta), x)) < 1e-5, "dX");
  assert.ok(relL2(gg, wantG) < 1e-5, `dγ ${relL2(gg, wantG)}`);
  assert.ok(relL2(gb, wantB) < 1e-5, `dβ ${relL2(gb, wantB)}`);
  assertCode(
    () => batchNorm2dBackward(rec, tx, bn, tdg, {}),
    "BAD_SHAPE",
    "dy is f32",
  );
  for (const t of [tx, tdy, tdg, tdb, dx, bn.weight, bn.bias, bn.runningMean, bn.runningVar]) {
    t.release();
  }
});
