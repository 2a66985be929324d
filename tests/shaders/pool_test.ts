import assert from "node:assert/strict";
import {
  adaptiveAvgPool2d,
  adaptiveAvgPool2dBackward,
  maxPool2d,
  type MaxPoolOptions,
  pooledSize,
} from "../../src/shaders/pool.ts";
import { pair } from "../../src/shaders/conv2d.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { firstNonFinite, getGpu, poisoned, randomF32, relL2, runAndRead } from "../util.ts";

/** Float64 max pool by enumerating the padded window (padding is -Infinity). */
function maxRef(
  x: Float32Array,
  [N, C, H, W]: number[],
  o: MaxPoolOptions,
): { out: Float64Array; shape: number[] } {
  const [kh, kw] = pair(o.kernel), [sh, sw] = pair(o.stride ?? o.kernel);
  const [ph, pw] = pair(o.padding ?? 0), [dh, dw] = pair(o.dilation ?? 1);
  const Ho = pooledSize(H, kh, sh, ph, dh, !!o.ceilMode),
    Wo = pooledSize(W, kw, sw, pw, dw, !!o.ceilMode);
  const out = new Float64Array(N * C * Ho * Wo);
  for (let pl = 0; pl < N * C; pl++) {
    for (let oy = 0; oy < Ho; oy++) {
      for (let ox = 0; ox < Wo; ox++) {
        let m = -Infinity;
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const iy = oy * sh - ph + ky * dh, ix = ox * sw - pw + kx * dw;
            const v = iy >= 0 && iy < H && ix >= 0 && ix < W
              ? x[(pl * H + iy) * W + ix]
              : -Infinity;
            m = Math.max(m, v);
          }
        }
        out[(pl * Ho + oy) * Wo + ox] = m;
      }
    }
  }
  return { out, shape: [N, C, Ho, Wo] };
}

const maxCases: [string, number[], MaxPoolOptions, number[]][] = [
  // [name, input shape, options, PyTorch's output shape]
  ["3×3/2 pad 1 (ResNet stem)", [2, 3, 11, 10], { kernel: 3, stride: 2, padding: 1 }, [2, 3, 6, 5]],
  ["2×2 no padding, odd input", [1, 2, 7, 5], { kernel: 2 }, [1, 2, 3, 2]],
  ["3×3/2 ceil mode", [1, 2, 6, 6], { kernel: 3, stride: 2, ceilMode: true }, [1, 2, 3, 3]],
  ["3×2, stride [1,2], pad [1,0], dilation 2", [2, 2, 8, 9], {
    kernel: [3, 2],
    stride: [1, 2],
    padding: [1, 0],
    dilation: 2,
  }, [2, 2, 6, 4]],
];

for (const [name, shape, opts, want] of maxCases) {
  Deno.test(`maxPool2d ${name}`, async () => {
    const gpu = await getGpu();
    const x = randomF32(shape.reduce((a, b) => a * b), 3);
    const ref = maxRef(x, shape, opts);
    assert.deepEqual(ref.shape, want, "output size follows PyTorch");
    const tx = uploadTensor(gpu, x, shape, "f32");
    const out = poisoned(gpu, ref.shape);
    const got = await runAndRead(gpu, (rec) => maxPool2d(rec, tx, { ...opts, out }));
    assert.equal(firstNonFinite(got), -1, "every output element written");
    assert.equal(relL2(got, ref.out), 0);
    tx.release();
    out.release();
  });
}

Deno.test("maxPool2d of an all-negative input keeps the values (padding is -inf, not 0)", async () => {
  const gpu = await getGpu();
  const x = randomF32(2 * 4 * 4, 9).map((v) => v - 2);
  const tx = uploadTensor(gpu, x, [1, 2, 4, 4], "f32");
  const got = await runAndRead(
    gpu,
    (rec) => maxPool2d(rec, tx, { kernel: 3, stride: 2, padding: 1 }),
  );
  assert.ok(got.every((v) => v < -1));
  assert.equal(relL2(got, maxRef(x, [1, 2, 4, 4], { kernel: 3, stride: 2, padding: 1 }).out), 0);
  tx.release();
});

/** Float64 adaptive average pool with PyTorch's windows, NCHW output. */
function adaptiveRef(
  x: Float32Array,
  [N, C, H, W]: number[],
  Ho: number,
  Wo: number,
): Float64Array {
  const out = new Float64Array(N * C * Ho * Wo);
  for (let pl = 0; pl < N * C; pl++) {
    for (let oy = 0; oy < Ho; oy++) {
      const y0 = Math.floor(oy * H / Ho), y1 = Math.ceil((oy + 1) * H / Ho);
      for (let ox = 0; ox < Wo; ox++) {
        const x0 = Math.floor(ox * W / Wo), x1 = Math.ceil((ox + 1) * W / Wo);
        let s = 0;
        for (let y = y0; y < y1; y++) {
          for (let xx = x0; xx < x1; xx++) s += x[(pl * H + y) * W + xx];
        }
        out[(pl * Ho + oy) * Wo + ox] = s / ((y1 - y0) * (x1 - x0));
      }
    }
  }
  return out;
}

const adaptiveCases: [number[], number, number][] = [
  [[2, 5, 4, 4], 3, 3],
  [[1, 3, 7, 10], 3, 4],
  [[2, 4, 6, 6], 6, 6],
  [[3, 2, 5, 3], 1, 1],
  [[1, 2, 2, 3], 4, 5],
];

for (const [shape, Ho, Wo] of adaptiveCases) {
  for (const channelsLast of [false, true]) {
    Deno.test(`adaptiveAvgPool2d [${shape}] → ${Ho}×${Wo} channelsLast=${channelsLast}`, async () => {
      const gpu = await getGpu();
      const [N, C] = shape;
      const x = randomF32(shape.reduce((a, b) => a * b), 4);
      const nchw = adaptiveRef(x, shape, Ho, Wo);
      let ref = nchw;
      if (channelsLast) {
        ref = new Float64Array(nchw.length);
        for (let n = 0; n < N; n++) {
          for (let c = 0; c < C; c++) {
            for (let q = 0; q < Ho * Wo; q++) {
              ref[(n * Ho * Wo + q) * C + c] = nchw[(n * C + c) * Ho * Wo + q];
            }
          }
        }
      }
      const tx = uploadTensor(gpu, x, shape, "f32");
      const out = poisoned(gpu, channelsLast ? [N, Ho * Wo, C] : [N, C, Ho, Wo]);
      const got = await runAndRead(
        gpu,
        (rec) => adaptiveAvgPool2d(rec, tx, [Ho, Wo], { channelsLast, out }),
      );
      assert.equal(firstNonFinite(got), -1, "every output element written");
      const err = relL2(got, ref);
      assert.ok(err < 1e-6, `rel L2 ${err}`);
      tx.release();
      out.release();
    });
  }
}

Deno.test("pool ops refuse bad options", async () => {
  const gpu = await getGpu();
  const tx = uploadTensor(gpu, new Float32Array(16), [1, 1, 4, 4], "f32");
  assert.throws(() => maxPool2d(undefined as never, tx, { kernel: 3, padding: 2 }), /at most half/);
  assert.throws(() => adaptiveAvgPool2d(undefined as never, tx, 0), /positive integers/);
  tx.release();
});

Deno.test("adaptiveAvgPool2dBackward is the transpose of the pool (overlapping windows, both layouts)", async () => {
  const gpu = await getGpu();
  for (const [shape, Ho, Wo] of adaptiveCases) {
    for (const channelsLast of [false, true]) {
      const [N, C] = shape;
      const outShape = channelsLast ? [N, Ho * Wo, C] : [N, C, Ho, Wo];
      const x = randomF32(shape.reduce((a, b) => a * b), 5);
      const dy = randomF32(N * C * Ho * Wo, 6);
      // <pool(x), dy> = <x, dX> for a linear map: dX by the reference, one basis vector at a time
      const ref = new Float64Array(x.length);
      for (let j = 0; j < x.length; j++) {
        const e = new Float32Array(x.length);
        e[j] = 1;
        const nchw = adaptiveRef(e, shape, Ho, Wo);
        for (let n = 0; n < N; n++) {
          for (let c = 0; c < C; c++) {
            for (let q = 0; q < Ho * Wo; q++) {
              const o = channelsLast ? (n * Ho * Wo + q) * C + c : (n * C + c) * Ho * Wo + q;
              ref[j] += nchw[(n * C + c) * Ho * Wo + q] * dy[o];
            }
          }
        }
      }
      const tdy = uploadTensor(gpu, dy, outShape, "f32");
      const got = await runAndRead(
        gpu,
        (rec) => adaptiveAvgPool2dBackward(rec, tdy, shape, [Ho, Wo], { channelsLast }),
      );
      const err = relL2(got, ref);
      assert.ok(err < 1e-6, `[${shape}] → ${Ho}×${Wo} channelsLast=${channelsLast}: rel L2 ${err}`);
      tdy.release();
    }
  }
});
