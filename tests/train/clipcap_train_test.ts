import assert from "node:assert/strict";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import {
  clipCapBatch,
  clipCapImageEmbeds,
  clipCapLossAndGrads,
  loadClipCapTrain,
} from "../../src/train/clipcap.ts";
import { assertCode, fixture, getGpu } from "../util.ts";
import { directional, sgdLosses } from "./gradcheck.ts";

const DIR = fixture("hf/clipcap");
const gpu = await getGpu();
const ref = await openSafetensors(`${DIR}/reference.safetensors`);
const pixelShape = ref.info("pixel_values").shape;
const pixels = uploadTensor(gpu, await ref.readF32("pixel_values"), pixelShape, "f32");
ref.close();
const N = pixelShape[0];
// two captions of different lengths (−100 padding), ids spread over the vocabulary
const LABELS = Int32Array.from([5, 77, 123, 299, 0, 41, 8, -100, -100, -100]);

async function setup() {
  const m = await loadClipCapTrain(gpu, DIR);
  const embeds = await clipCapImageEmbeds(gpu, m, pixels);
  const batch = clipCapBatch(LABELS.slice(0, N * 5), N, m);
  const f = () => clipCapLossAndGrads(gpu, m, embeds, batch);
  return { m, embeds, batch, f, [Symbol.dispose]: () => (embeds.release(), m.dispose()) };
}

Deno.test("ClipCap batch: prefix positions ignored, the last prefix vector predicts token 0", async () => {
  using s = await setup();
  const L = s.m.config.prefixLength, S = L - 1 + 5;
  assert.equal(s.batch.T, S);
  assert.deepEqual([...s.batch.ids.slice(0, S)], [-1, -1, -1, -1, 5, 77, 123, 299]);
  assert.deepEqual([...s.batch.targets.slice(0, S)], [-100, -100, -100, 5, 77, 123, 299, 0]);
  assert.deepEqual([...s.batch.weights.slice(S, 2 * S)].map((w) => Math.round(w * 7)), [
    0,
    0,
    0,
    1,
    1,
    0,
    0,
    0,
  ]);
});

Deno.test("ClipCap training: whole-model gradient check along random directions (1e-2)", async () => {
  using s = await setup();
  const { loss, grads } = await s.f();
  assert.ok(Number.isFinite(loss) && loss > 0, `loss ${loss}`);
  for (const p of s.m.params) assert.ok(grads.has(p.name), p.name);
  for (const p of s.m.frozen) assert.ok(!grads.has(p.name), `${p.name} is frozen`);
  const groups: [string, (n: string) => boolean][] = [
    ["mapping network", (n) => n.startsWith("clip_project.")],
    ["wte (tied head and embedding)", (n) => n.endsWith("wte.weight")],
    ["GPT-2 blocks, wpe, ln_f", (n) => n.startsWith("gpt.") && !n.endsWith("wte.weight")],
  ];
  for (const [i, [what, which]] of groups.entries()) {
    const { analytic, numeric } = await directional(gpu, s.m.params, s.f, which, 1e-3, 10 + i);
    const rel = Math.abs(analytic - numeric) / Math.abs(numeric);
    assert.ok(rel < 1e-2, `${what}: analytic ${analytic} vs finite differences ${numeric}`);
  }
});

Deno.test("ClipCap training with GPT-2's dropout (0.1) at a fixed mask: gradient check along random directions", async () => {
  using s = await setup();
  const c = s.m.gpt2.config;
  assert.ok(c.resid_pdrop > 0 && c.embd_pdrop > 0 && c.attn_pdrop > 0);
  const key = { seed: 3, step: 0 };
  const f = () => clipCapLossAndGrads(gpu, s.m, s.embeds, s.batch, key);
  const [on, off] = [(await f()).loss, (await s.f()).loss];
  assert.notEqual(on, off, "the masks change the loss");
  assert.equal((await f()).loss, on, "the same key, the same loss");
  const which = (n: string) => n.startsWith("gpt.") || n.startsWith("clip_project.");
  const { analytic, numeric } = await directional(gpu, s.m.params, f, which, 1e-3, 30);
  const rel = Math.abs(analytic - numeric) / Math.abs(numeric);
  assert.ok(rel < 1e-2, `analytic ${analytic} vs finite differences ${numeric}`);
});

Deno.test("ClipCap training: SGD steps lower the loss", async () => {
  using s = await setup();
  const losses = await sgdLosses(gpu, s.m.params, s.f, 0.1, 3);
  for (let i = 1; i < losses.length; i++) assert.ok(losses[i] < losses[i - 1], `${losses}`);
});

Deno.test("ClipCap training: labels outside the vocabulary, empty captions, disagreeing sizes", async () => {
  using s = await setup();
  assertCode(() => clipCapBatch(Int32Array.from([3, 300, 1, 2]), 2, s.m), "BAD_OPTION", "300");
  assertCode(
    () => clipCapBatch(Int32Array.from([3, 4, -100, -100]), 2, s.m),
    "BAD_OPTION",
    "caption 1 is empty",
  );
  const one = clipCapBatch(Int32Array.from([3, 4]), 1, s.m);
  await assert.rejects(
    () => clipCapLossAndGrads(gpu, s.m, s.embeds, one),
    (e: Error) => /disagree/.test(e.message),
  );
});
