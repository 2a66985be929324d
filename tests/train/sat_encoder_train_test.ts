/**
 * Show-Attend-Tell with its ResNet's stages 2–4 training (sgrvinod's `fine_tune_encoder`): the
 * whole model's loss along a random direction over layer2–4 against finite differences, the
 * frozen stem and layer1 unchanged bit for bit by a Trainer step while layer2–4 change, the loss
 * falling, and the encoder frozen by default.
 */
import assert from "node:assert/strict";
import type { RgbImage } from "../../src/image/decode.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import {
  loadSatTrain,
  satBatch,
  satFeatures,
  satLossAndGrads,
} from "../../src/train/show_attend_tell.ts";
import { Trainer } from "../../src/train/trainer.ts";
import { fixture, getGpu } from "../util.ts";
import { directional, sgdLosses } from "./gradcheck.ts";
import { readParams } from "./synthetic.ts";

const DIR = fixture("hf/show-attend-tell");
const gpu = await getGpu();
const ref = await openSafetensors(`${DIR}/reference.safetensors`);
// the top-left 64×64 of the fixture's first image: the losses are quicker (layer4 is 2×2,
// adaptively pooled to 3×3 as PyTorch does)
const [, , H, W] = ref.info("images").shape, S = 64;
const all = await ref.readF32("images");
const crop = Float32Array.from({ length: 3 * S * S }, (_, i) => {
  const [c, y, x] = [Math.floor(i / (S * S)), Math.floor(i / S) % S, i % S];
  return all[(c * H + y) * W + x];
});
const pixels = uploadTensor(gpu, crop, [1, 3, S, S], "f32");
ref.close();
const N = 1;
const LABELS = Int32Array.from([5, 77, 123, 299, 2]);

async function setup() {
  const m = await loadSatTrain(gpu, DIR, { trainEncoder: true });
  const batch = satBatch(LABELS, N, m);
  const f = () => satLossAndGrads(gpu, m, { pixels }, batch);
  return { m, batch, f, [Symbol.dispose]: () => m.dispose() };
}

Deno.test("Show-Attend-Tell with the encoder training: the whole model's loss along a direction over layer2–4 by finite differences (1e-2)", async () => {
  using s = await setup();
  const names = s.m.params.map((p) => p.name);
  for (const n of ["encoder.resnet.5.0.conv2.weight", "encoder.resnet.7.0.bn3.bias"]) {
    assert.ok(names.includes(n), n);
  }
  assert.ok(!names.some((n) => /^encoder\.resnet\.[0-4]\.|running/.test(n)), "stem, layer1 frozen");
  const r = await s.f();
  for (const p of s.m.params) assert.ok(r.grads.has(p.name), p.name);
  // The loss along a direction over the encoder (layer2–4; the decoder's directions are checked
  // in sat_train_test.ts). Its gradients are small: along a random direction their sum sinks in
  // the f32 rounding of the loss at steps small enough that the ResNet's ReLUs do not flip between
  // the probes (1e-3 flips some, a few % off), so the direction leans 3:1 to the gradient's signs.
  // Each stage's gradient alone is checked against a float64 forward in tests/nn/resnet_train_test.ts
  const encoder = (n: string) => n.startsWith("encoder.");
  const { analytic, numeric } = await directional(gpu, s.m.params, s.f, encoder, 3e-5, 70, 0.75);
  const rel = Math.abs(analytic - numeric) / Math.abs(numeric);
  assert.ok(rel < 1e-2, `analytic ${analytic} vs finite differences ${numeric}`);
});

Deno.test("Show-Attend-Tell with the encoder training: the decoder's gradients equal those over the encoder's features", async () => {
  using s = await setup();
  const features = await satFeatures(gpu, s.m, pixels);
  const overPixels = await s.f();
  const overFeatures = await satLossAndGrads(gpu, s.m, { states: features, N }, s.batch);
  features.release();
  assert.equal(overPixels.loss, overFeatures.loss);
  for (const [name, g] of overFeatures.grads) {
    if (name.startsWith("decoder.")) assert.deepEqual(overPixels.grads.get(name), g, name);
  }
});

Deno.test("Show-Attend-Tell with the encoder training: SGD steps lower the loss", async () => {
  using s = await setup();
  const encoder = s.m.params.filter((p) => p.name.startsWith("encoder."));
  const losses = await sgdLosses(gpu, encoder, s.f, 0.5, 3);
  for (let i = 1; i < losses.length; i++) assert.ok(losses[i] < losses[i - 1], `${losses}`);
});

Deno.test("Show-Attend-Tell: pixels to a frozen ResNet are refused", async () => {
  const m = await loadSatTrain(gpu, DIR);
  try {
    assert.ok(!m.params.some((p) => p.name.startsWith("encoder.")), "frozen by default");
    const batch = satBatch(LABELS, N, m);
    await assert.rejects(
      () => satLossAndGrads(gpu, m, { pixels }, batch),
      (e: Error) => /frozen/.test(e.message) && (e as { code?: string }).code === "BAD_OPTION",
    );
  } finally {
    m.dispose();
  }
});

/** A distinct picture per index. */
function picture(i: number): RgbImage {
  const data = new Uint8Array(40 * 40 * 3);
  for (let p = 0; p < 40 * 40; p++) {
    data.set([(i * 37 + p * 7) % 256, (i * 91 + p) % 256, 9], p * 3);
  }
  return { width: 40, height: 40, data };
}

Deno.test("Show-Attend-Tell Trainer: frozen by default; with frozen given, a step changes layer2–4 and leaves the stem and layer1 bit for bit", async () => {
  const captions = ["5 9 12", "7 3"], images = captions.map((_, i) => picture(i));
  const optimizer = { kind: "adamw" as const, lr: 1e-3, weightDecay: 0 };
  const frozenByDefault = await Trainer.fromPretrained(DIR, { optimizer, gpu });
  assert.ok(frozenByDefault.encoderFrozen);
  assert.ok(!frozenByDefault.groups.trainable.some((p) => p.name.startsWith("encoder.")));
  frozenByDefault.dispose();

  const t = await Trainer.fromPretrained(DIR, {
    optimizer,
    frozen: ["decoder."],
    dropout: false,
    gpu,
  });
  try {
    assert.ok(!t.encoderFrozen);
    const before = await readParams(gpu, t.params);
    const losses = [];
    for (let i = 0; i < 3; i++) {
      losses.push((await t.step({ images, labels: t.labels(captions) }))!.loss);
    }
    assert.ok(losses[2] < losses[0], `the encoder alone lowers the loss: ${losses}`);
    const after = await readParams(gpu, t.params);
    let frozen = 0, trained = 0;
    for (const p of t.params) {
      const [a, b] = [before.get(p.name)!, after.get(p.name)!];
      if (/^encoder\.resnet\.[567]\./.test(p.name) && !p.name.includes("running")) {
        assert.notDeepEqual(a, b, `${p.name} trains`);
        trained++;
      } else {
        assert.deepEqual(
          new Uint32Array(a.buffer),
          new Uint32Array(b.buffer),
          `${p.name} is frozen`,
        );
        frozen++;
      }
    }
    assert.ok(trained > 0 && frozen > 0);
    assert.ok(t.params.some((p) => /^encoder\.resnet\.[04]\./.test(p.name)), "stem, layer1 listed");
  } finally {
    t.dispose();
  }
});
