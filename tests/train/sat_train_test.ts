import assert from "node:assert/strict";
import { uploadTensor, writeTensor } from "../../src/gpu/tensor.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import {
  loadSatTrain,
  satBatch,
  satFeatures,
  satLossAndGrads,
} from "../../src/train/show_attend_tell.ts";
import { assertCode, fixture, getGpu, relL2, rng, runAndRead } from "../util.ts";
import { directional, sgdLosses } from "./gradcheck.ts";
import { readParams } from "./synthetic.ts";

const DIR = fixture("hf/show-attend-tell");
const gpu = await getGpu();
const ref = await openSafetensors(`${DIR}/reference.safetensors`);
const shape = ref.info("images").shape;
const pixels = uploadTensor(gpu, await ref.readF32("images"), shape, "f32");
ref.close();
const N = shape[0];
// captions (words, then the end token 2) of different lengths, −100 after the end
const LABELS = Int32Array.from([5, 77, 123, 299, 2, 41, 8, 2, -100, -100, 9, 2, -100, -100, -100]);

async function setup() {
  const m = await loadSatTrain(gpu, DIR);
  const features = await satFeatures(gpu, m, pixels);
  const batch = satBatch(LABELS.slice(0, N * 5), N, m);
  const input = { states: features, N };
  const f = () => satLossAndGrads(gpu, m, input, batch);
  return {
    m,
    features,
    input,
    batch,
    f,
    [Symbol.dispose]: () => (features.release(), m.dispose()),
  };
}

Deno.test("Show-Attend-Tell training: whole-model gradient check along random directions (1e-2)", async () => {
  using s = await setup();
  const r = await s.f();
  assert.ok(r.ce > 0 && r.attention > 0, `ce ${r.ce}, attention ${r.attention}`);
  assert.ok(Math.abs(r.loss - r.ce - r.attention) < 1e-6);
  for (const p of s.m.params) assert.ok(r.grads.has(p.name), p.name);
  for (const p of s.m.frozen) assert.ok(!r.grads.has(p.name), `${p.name} is frozen`);
  const check = async (groups: [string, (n: string) => boolean, number][], seed: number) => {
    for (const [i, [what, which, step]] of groups.entries()) {
      const { analytic, numeric } = await directional(gpu, s.m.params, s.f, which, step, seed + i);
      const rel = Math.abs(analytic - numeric) / Math.abs(numeric);
      assert.ok(rel < 1e-2, `${what}: analytic ${analytic} vs finite differences ${numeric}`);
    }
  };
  await check([
    ["LSTM cell", (n) => n.includes(".decode_step."), 1e-3],
    ["init_h, init_c, f_beta", (n) => /init_|f_beta/.test(n), 1e-3],
    ["embedding, fc", (n) => /embedding|\.fc\./.test(n), 1e-3],
  ], 20);
  // both attention biases add to the same pre-ReLU sum: equal gradients
  const [eb, db] = ["encoder_att.bias", "decoder_att.bias"].map((n) =>
    r.grads.get(`decoder.attention.${n}`)!
  );
  assert.ok(relL2(eb, db) < 1e-4, `attention biases: rel L2 ${relL2(eb, db)}`);
  // At the fixture's weights the attention is near uniform and its gradients (~1e-4) sink in the
  // f32 rounding of the loss: full_att ×30 sharpens α so they stand out, and encoder_att.bias + 4
  // puts every pre-ReLU sum above 0 (no kink between the probes; the shift cancels in the softmax).
  // decoder_att then adds the same to every pixel and has no effect: its gradient is checked by
  // the equal biases above, the kernel's finite differences and the init_h path.
  const set = async (name: string, f: (v: number) => number) => {
    const p = s.m.params.find((q) => q.name === `decoder.attention.${name}`)!;
    const at = (await readParams(gpu, [p])).get(p.name)!;
    writeTensor(p.tensor, at.map(f), p.offset);
  };
  await set("full_att.weight", (v) => 30 * v);
  await set("encoder_att.bias", (v) => v + 4);
  await check([
    ["encoder_att", (n) => n.includes("encoder_att"), 1e-3],
    ["full_att", (n) => n.includes("full_att"), 1e-1],
  ], 30);
});

Deno.test("Show-Attend-Tell training: the features' gradient (context, encoder_att, the mean starting the LSTM) by finite differences", async () => {
  using s = await setup();
  const base = await runAndRead(gpu, () => s.features);
  const lossAt = async (x: Float32Array) => {
    writeTensor(s.features, x);
    return (await s.f()).loss;
  };
  const { dFeatures } = await satLossAndGrads(gpu, s.m, s.input, s.batch, undefined, true);
  assert.equal(dFeatures!.length, base.length);
  const r = rng(50), step = 1e-2;
  const d = Float32Array.from(base, () => (r() < 0.5 ? -step : step));
  const analytic = d.reduce((a, v, i) => a + v * dFeatures![i], 0);
  const at = (k: number) => lossAt(base.map((v, i) => v + k * d[i]));
  const [p1, m1, p2, m2] = [await at(1), await at(-1), await at(2), await at(-2)];
  writeTensor(s.features, base);
  const numeric = (8 * (p1 - m1) - (p2 - m2)) / 12;
  const rel = Math.abs(analytic - numeric) / Math.abs(numeric);
  assert.ok(rel < 1e-2, `analytic ${analytic} vs finite differences ${numeric}`);
});

Deno.test("Show-Attend-Tell training with dropout (0.5) before fc at a fixed mask: gradient check", async () => {
  using s = await setup();
  assert.equal(s.m.dropout, 0.5, "DecoderWithAttention's default");
  const key = { seed: 4, step: 2 };
  const f = () => satLossAndGrads(gpu, s.m, s.input, s.batch, key);
  const [on, off] = [(await f()).loss, (await s.f()).loss];
  assert.notEqual(on, off, "the mask changes the loss");
  assert.equal((await f()).loss, on, "the same key, the same loss");
  const which = (n: string) => /\.fc\.|decode_step|init_h/.test(n);
  const { analytic, numeric } = await directional(gpu, s.m.params, f, which, 1e-3, 40);
  const rel = Math.abs(analytic - numeric) / Math.abs(numeric);
  assert.ok(rel < 1e-2, `analytic ${analytic} vs finite differences ${numeric}`);
});

Deno.test("Show-Attend-Tell training: SGD steps lower the loss", async () => {
  using s = await setup();
  const losses = await sgdLosses(gpu, s.m.params, s.f, 0.5, 3);
  for (let i = 1; i < losses.length; i++) assert.ok(losses[i] < losses[i - 1], `${losses}`);
});

Deno.test("Show-Attend-Tell training: labels outside the vocabulary, empty captions, disagreeing sizes", async () => {
  using s = await setup();
  assertCode(() => satBatch(Int32Array.from([3, 300, 1, 2]), 2, s.m), "BAD_OPTION", "300");
  assertCode(
    () => satBatch(Int32Array.from([3, 2, -100, -100]), 2, s.m),
    "BAD_OPTION",
    "caption 1 is empty",
  );
  const three = satBatch(Int32Array.from([3, 2, 4, 2, 5, 2]), 3, s.m);
  await assert.rejects(
    () => satLossAndGrads(gpu, s.m, s.input, three),
    (e: Error) => /disagree/.test(e.message),
  );
});
