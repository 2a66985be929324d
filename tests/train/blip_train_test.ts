import assert from "node:assert/strict";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { teacherForcing } from "../../src/train/batch.ts";
import { blipCaptionBatch, loadBlipTrain } from "../../src/train/blip.ts";
import { lossAndGrads } from "../../src/train/vision_text.ts";
import { directional } from "./gradcheck.ts";
import { runTrainParity } from "../../src/train/parity_train.ts";
import { WebcapError } from "../../src/errors.ts";
import { assertCode, fixture, getGpu } from "../util.ts";

const DIR = fixture("hf/blip");

Deno.test("parity --train: BLIP CE (shifted, smoothed, padded) and SCST gradients equal PyTorch's", async () => {
  const gpu = await getGpu();
  const r = await runTrainParity(gpu, DIR);
  const ref = await openSafetensors(`${DIR}/train-reference.safetensors`);
  const grads = ref.names().filter((n) => n.includes(".grad."));
  ref.close();
  for (const n of grads) assert.ok(r.tensors.some((t) => t.name === n), `${n} compared`);
  for (const n of ["ce.logits", "scst.token_logprobs"]) {
    assert.ok(r.tensors.some((t) => t.name === n), `${n} compared`);
  }
  const bad = r.tensors.filter((t) => !t.pass).map((t) => `${t.name} ${t.relL2}`);
  assert.deepEqual(bad, []);
  assert.ok(r.losses.ce.pass && r.losses.scst.pass, JSON.stringify(r.losses));
});

Deno.test("BLIP caption batch: position t predicts label t + 1; padding masked by key lengths", () => {
  const m = { startId: 5, padId: 0, vocab: 10 };
  const ids = Int32Array.from([5, 7, 8, 3, 5, 9, 0, 0]);
  const labels = Int32Array.from([5, 7, 8, 3, 5, 9, -100, -100]);
  const b = blipCaptionBatch(ids, labels, [1, 1, 1, 1, 1, 1, 0, 0], 2, m);
  assert.deepEqual([...b.ids], [...ids]);
  assert.deepEqual([...b.targets], [7, 8, 3, -100, 9, -100, -100, -100]);
  assert.deepEqual([...b.weights].map((w) => Math.round(w * 4)), [1, 1, 1, 0, 1, 0, 0, 0]);
  assert.deepEqual([...b.keyLengths!], [4, 2]);
});

Deno.test("BLIP caption batch refuses left padding, empty rows and disagreeing sizes", () => {
  const m = { startId: 5, padId: 0, vocab: 10 };
  const ids = Int32Array.from([5, 7, 8, 5, 9, 0]);
  const labels = Int32Array.from([5, 7, 8, 5, 9, -100]);
  assertCode(
    () => blipCaptionBatch(ids, labels, [0, 1, 1, 1, 1, 0], 2, m),
    "BAD_OPTION",
    "attention mask row 0",
    "right padding",
  );
  assertCode(
    () => blipCaptionBatch(ids, labels, [1, 1, 1, 1, 0, 1], 2, m),
    "BAD_OPTION",
    "row 1",
  );
  assertCode(
    () =>
      blipCaptionBatch(ids, Int32Array.from([5, 7, 8, 5, -100, -100]), [1, 1, 1, 1, 0, 0], 2, m),
    "BAD_OPTION",
    "caption 1 is empty",
  );
  assertCode(() => blipCaptionBatch(ids, labels, [1, 1, 1], 2, m), "BAD_SHAPE", "disagree");
  assertCode(
    () => blipCaptionBatch(Int32Array.from([5, 12]), Int32Array.from([5, 12]), [1, 1], 1, m),
    "BAD_OPTION",
    "12",
    "vocabulary",
  );
});

Deno.test("BLIP training reads text_config.label_smoothing and refuses one outside [0, 1]", async () => {
  const gpu = await getGpu();
  const config = JSON.parse(await Deno.readTextFile(`${DIR}/config.json`));
  const m = await loadBlipTrain(gpu, DIR);
  m.dispose();
  assert.equal(m.labelSmoothing, config.text_config.label_smoothing);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.symlink(`${DIR}/model.safetensors`, `${dir}/model.safetensors`);
    config.text_config.label_smoothing = 1.5;
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    await assert.rejects(() => loadBlipTrain(gpu, dir), (e: unknown) => {
      assert.ok(e instanceof WebcapError && e.code === "BAD_CONFIG", String(e));
      assert.match(e.message, /label_smoothing 1\.5/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("BLIP with ViT and BERT hidden and attention dropout (0.2) at a fixed mask: gradient check along random directions", async () => {
  const gpu = await getGpu();
  const m = await loadBlipTrain(gpu, DIR);
  for (const c of [m.vit.config, m.text.config]) { // the fixture's are 0
    c.hidden_dropout_prob = 0.2;
    c.attention_probs_dropout_prob = 0.2;
  }
  const ref = await openSafetensors(`${DIR}/reference.safetensors`);
  const [N, ...chw] = ref.info("pixel_values").shape;
  const pixels = uploadTensor(gpu, await ref.readF32("pixel_values"), [N, ...chw], "f32");
  ref.close();
  const labels = Int32Array.from({ length: N * 4 }, (_, i) => i % 4 === 3 ? m.eosId : 10 + 7 * i);
  const batch = teacherForcing(labels, N, m);
  const key = { seed: 9, step: 1 };
  const f = () => lossAndGrads(gpu, m, pixels, batch, 0, key);
  const [on, off] = [(await f()).loss, (await lossAndGrads(gpu, m, pixels, batch)).loss];
  assert.notEqual(on, off, "the masks change the loss");
  const groups: [string, (n: string) => boolean][] = [
    ["ViT", (n) => n.startsWith("vision_model.")],
    ["BERT decoder", (n) => n.startsWith("text_decoder.")],
  ];
  for (const [i, [what, which]] of groups.entries()) {
    // ±3e-5 per parameter: at 1e-3 the whole-model step leaves the linear regime (also without
    // dropout), and with both dropouts already at 1e-4 (hidden or attention alone stay linear there)
    const { analytic, numeric } = await directional(gpu, m.params, f, which, 3e-5, 50 + i);
    const rel = Math.abs(analytic - numeric) / Math.abs(numeric);
    assert.ok(rel < 1e-2, `${what}: analytic ${analytic} vs finite differences ${numeric}`);
  }
  pixels.release();
  m.dispose();
});
