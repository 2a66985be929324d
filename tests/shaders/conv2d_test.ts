import assert from "node:assert/strict";
import { conv2d, type Conv2dOptions, conv2dPlan } from "../../src/shaders/conv2d.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
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
import { convRef, type ConvRefOptions, f16BitsToF32, f32ToF16Bits } from "./reference.ts";

interface Case extends ConvRefOptions {
  name: string;
  x: [number, number, number, number];
  w: [number, number, number, number];
  bias?: boolean;
  residual?: boolean;
}

const cases: Case[] = [
  {
    name: "7×7/2 stem pad 3, bias, relu",
    x: [2, 3, 19, 21],
    w: [10, 3, 7, 7],
    stride: 2,
    padding: 3,
    bias: true,
    act: "relu",
  },
  {
    name: "3×3 pad 1, Cout 70 > tile, residual + relu",
    x: [2, 5, 9, 11],
    w: [70, 5, 3, 3],
    padding: 1,
    residual: true,
    act: "relu",
  },
  { name: "1×1 stride 2 (downsample)", x: [3, 17, 7, 9], w: [20, 17, 1, 1], stride: 2 },
  {
    name: "patch embedding kernel = stride = 8, bias",
    x: [2, 3, 32, 24],
    w: [40, 3, 8, 8],
    stride: 8,
    bias: true,
  },
  {
    name: "groups 2, dilation 2, stride [2,1], pad [2,1], gelu",
    x: [2, 6, 10, 9],
    w: [8, 3, 3, 2],
    groups: 2,
    dilation: 2,
    stride: [2, 1],
    padding: [2, 1],
    bias: true,
    act: "gelu",
  },
  { name: "depthwise 3×3", x: [2, 5, 6, 7], w: [5, 1, 3, 3], groups: 5, padding: 1 },
  {
    name: "1,229 output pixels (several pixel blocks, the last partial), Cout 9, bias",
    x: [1, 3, 40, 31],
    w: [9, 3, 3, 3],
    padding: 1,
    bias: true,
  },
];

for (const [cls, c] of ADAPTER_CLASSES.flatMap((k) => cases.map((c) => [k, c] as const))) {
  Deno.test(`conv2d f32 (${cls} kernels: ${conv2dPlan(cls)}) ${c.name}`, async () => {
    const gpu = await getGpu();
    const xs = c.x, ws = c.w;
    const x = randomF32(xs.reduce((a, b) => a * b), 11);
    const w = randomF32(ws.reduce((a, b) => a * b), 12);
    const bias = c.bias ? randomF32(ws[0], 13) : undefined;
    const ref0 = convRef(x, xs, w, ws, c, bias);
    const res = c.residual ? randomF32(ref0.out.length, 14) : undefined;
    const ref = res ? convRef(x, xs, w, ws, c, bias, res) : ref0;
    const tx = uploadTensor(gpu, x, xs, "f32");
    const tw = uploadTensor(gpu, w, ws, "f32");
    const tb = bias && uploadTensor(gpu, bias, [ws[0]], "f32");
    const tr = res && uploadTensor(gpu, res, ref.shape, "f32");
    const out = poisoned(gpu, ref.shape);
    const opts: Conv2dOptions = {
      stride: c.stride,
      padding: c.padding,
      dilation: c.dilation,
      groups: c.groups,
      bias: tb,
      residual: tr,
      act: c.act,
      out,
    };
    const got = await asAdapterClass(
      gpu,
      cls,
      () => runAndRead(gpu, (rec) => conv2d(rec, tx, tw, opts)),
    );
    assert.equal(firstNonFinite(got), -1, "every output element written");
    const err = relL2(got, ref.out);
    assert.ok(err < 1e-5, `rel L2 ${err}`);
    for (const t of [tx, tw, tb, tr, out]) t?.release();
  });
}

for (const cls of ADAPTER_CLASSES) {
  Deno.test(`conv2d (${cls} kernels) with f16 weights (shader-f16) against the f16-rounded f32 reference`, async () => {
    const gpu = await getGpu();
    if (!gpu.hasF16) {
      console.log("skipped: adapter has no shader-f16");
      return;
    }
    const c: Case = {
      name: "f16",
      x: [2, 4, 10, 9],
      w: [66, 4, 3, 3],
      stride: 2,
      padding: 1,
      bias: true,
      act: "relu",
    };
    const x = randomF32(2 * 4 * 10 * 9, 21);
    const w16 = f32ToF16Bits(randomF32(66 * 4 * 9, 22));
    const bias = randomF32(66, 23);
    const ref = convRef(x, c.x, f16BitsToF32(w16), c.w, c, bias);
    const tx = uploadTensor(gpu, x, c.x, "f32");
    const tw = uploadTensor(gpu, w16, c.w, "f16");
    const tb = uploadTensor(gpu, bias, [66], "f32");
    const out = poisoned(gpu, ref.shape);
    const got = await asAdapterClass(gpu, cls, () =>
      runAndRead(
        gpu,
        (rec) => conv2d(rec, tx, tw, { stride: 2, padding: 1, bias: tb, act: "relu", out }),
      ));
    assert.equal(firstNonFinite(got), -1);
    const err = relL2(got, ref.out);
    assert.ok(err < 1e-5, `rel L2 ${err}`);
    for (const t of [tx, tw, tb, out]) t.release();
  });
}

Deno.test("conv2d refuses mismatched channels and kernels larger than the input", async () => {
  const gpu = await getGpu();
  const tx = uploadTensor(gpu, new Float32Array(2 * 4 * 5 * 5), [2, 4, 5, 5], "f32");
  const tw = uploadTensor(gpu, new Float32Array(8 * 3 * 3 * 3), [8, 3, 3, 3], "f32");
  const tw7 = uploadTensor(gpu, new Float32Array(8 * 4 * 7 * 7), [8, 4, 7, 7], "f32");
  assert.throws(() => conv2d(undefined as never, tx, tw), /does not fit x/);
  assert.throws(() => conv2d(undefined as never, tx, tw7), /does not fit the padded/);
  for (const t of [tx, tw, tw7]) t.release();
});
