/**
 * Save and resume on the vit-gpt2 and blip fixtures: a trained model saved in the Hugging Face
 * layout loads back (Captioner.fromPretrained) with the same logits; frozen and untouched stored
 * tensors are copied as stored, the tied LM head stays out; resuming from the saved optimizer
 * state gives the same next step as not stopping; bad save folders and f16 models are refused.
 */
import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import { loadCaptionModel } from "../../src/arch/load.ts";
import type { CaptionModel } from "../../src/arch/caption_model.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { loadOptimizerState, saveCheckpoint } from "../../src/train/checkpoint.ts";
import { Optimizer, type OptimizerOptions } from "../../src/train/optim.ts";
import { paramGroups } from "../../src/train/param_groups.ts";
import { WebcapError } from "../../src/errors.ts";
import { fixture, getGpu } from "../util.ts";
import { readParams, syntheticGrads, writeGrads } from "./synthetic.ts";

const MODELS = [
  { dir: fixture("hf/vit-gpt2"), ids: "decoder_input_ids", frozen: "encoder.embeddings." },
  { dir: fixture("hf/blip"), ids: "input_ids", frozen: "vision_model." },
];

/** Teacher-forced logits of the fixture's reference inputs. */
async function logits(model: CaptionModel, dir: string, ids: string): Promise<Float32Array> {
  const gpu = await getGpu();
  const ref = await openSafetensors(`${dir}/reference.safetensors`);
  const [N, T] = ref.info(ids).shape;
  const rec = new Recorder(gpu);
  const pixels = rec.upload(
    await ref.readF32("pixel_values"),
    ref.info("pixel_values").shape,
    "f32",
  );
  const enc = model.encode(rec, pixels);
  const st = model.beginDecode(rec, enc, Int32Array.from({ length: N }, (_, i) => i), T);
  const tokens = rec.upload(Int32Array.from(await ref.readF32(ids)), [N * T], "i32");
  const out = model.step(rec, st, tokens, T);
  const read = rec.readTensor(out);
  rec.releaseAfterSubmit(out);
  await rec.submit();
  st.dispose();
  enc.dispose();
  ref.close();
  return (await read) as Float32Array;
}

/** One optimizer step with seeded synthetic gradients. */
async function step(opt: Optimizer, seed: number): Promise<void> {
  writeGrads(opt.grads, syntheticGrads(opt.groups.trainable, seed, 0.1));
  const rec = new Recorder(opt.grads.gpu);
  assert.ok(opt.step(rec));
  await rec.submit();
}

const ADAMW: OptimizerOptions = { kind: "adamw", lr: 0.01, maxGradNorm: 1 };

async function tmpDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "webcap-ckpt-" });
}

for (const m of MODELS) {
  const name = m.dir.split("/").at(-1);
  Deno.test(`${name}: a trained model saved as a checkpoint loads back with the same logits`, async () => {
    const gpu = await getGpu();
    const model = await loadCaptionModel(gpu, m.dir);
    const before = await logits(model, m.dir, m.ids);
    const groups = paramGroups(model.params, { frozen: [m.frozen] });
    const opt = new Optimizer(groups, ADAMW);
    await step(opt, 1);
    const trained = await logits(model, m.dir, m.ids);
    assert.notDeepEqual(trained, before, "the step changed the model");
    const tmp = await tmpDir();
    await saveCheckpoint(`${tmp}/ckpt`, model, { source: m.dir, optimizer: opt });
    const captioner = await Captioner.fromPretrained(`${tmp}/ckpt`, { gpu });
    assert.deepEqual(await logits(captioner.model, m.dir, m.ids), trained);
    captioner.dispose();

    const saved = await openSafetensors(`${tmp}/ckpt/model.safetensors`);
    const source = await openSafetensors(`${m.dir}/model.safetensors`);
    assert.deepEqual(saved.names().sort(), source.names().sort(), "every stored tensor, once");
    for (const p of groups.frozen) {
      assert.deepEqual(await saved.read(p.name), await source.read(p.name), `${p.name} copied`);
    }
    saved.close();
    source.close();
    for (
      const f of [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
      ]
    ) {
      assert.equal(
        await Deno.readTextFile(`${tmp}/ckpt/${f}`),
        await Deno.readTextFile(`${m.dir}/${f}`),
      );
    }
    opt.dispose();
    model.dispose();
    await Deno.remove(tmp, { recursive: true });
  });
}

Deno.test("resume: the step after loading a checkpoint equals the step of an uninterrupted run", async () => {
  const gpu = await getGpu();
  const { dir, frozen } = MODELS[0];
  const tmp = await tmpDir();
  // uninterrupted: steps 1, 2 (saved after 1), 3
  const a = await loadCaptionModel(gpu, dir);
  const oa = new Optimizer(paramGroups(a.params, { frozen: [frozen] }), ADAMW);
  await step(oa, 1);
  await saveCheckpoint(`${tmp}/ckpt`, a, { source: dir, optimizer: oa, state: { epoch: 0 } });
  await step(oa, 2);
  await step(oa, 3);
  const want = await readParams(gpu, oa.groups.trainable);
  // resumed from the checkpoint
  const b = await loadCaptionModel(gpu, `${tmp}/ckpt`);
  const ob = new Optimizer(paramGroups(b.params, { frozen: [frozen] }), ADAMW);
  const state = await loadOptimizerState(`${tmp}/ckpt`, ob);
  assert.equal(state.global_step, 1);
  assert.equal(state.epoch, 0);
  assert.equal(ob.steps, 1);
  await step(ob, 2);
  await step(ob, 3);
  const got = await readParams(gpu, ob.groups.trainable);
  for (const [name, w] of want) assert.deepEqual(got.get(name), w, name);
  // a save that fails half-way leaves the checkpoint as it was and no temporary behind
  const before = await Deno.readFile(`${tmp}/ckpt/model.safetensors`);
  await assert.rejects(
    saveCheckpoint(`${tmp}/ckpt`, b, { source: dir, optimizer: ob, state: { bad: 1n } }),
    TypeError,
  );
  assert.deepEqual(await Deno.readFile(`${tmp}/ckpt/model.safetensors`), before);
  // a second save replaces the checkpoint in place
  await saveCheckpoint(`${tmp}/ckpt`, b, { source: `${tmp}/ckpt`, optimizer: ob });
  const again = JSON.parse(await Deno.readTextFile(`${tmp}/ckpt/trainer_state.json`));
  assert.equal(again.global_step, 3);
  assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), ["ckpt"], "no temporary left");
  const sgd = new Optimizer(ob.groups, { kind: "sgd", momentum: 0.9 });
  await assert.rejects(
    loadOptimizerState(`${tmp}/ckpt`, sgd),
    /holds adamw state; this optimizer is sgd/,
  );
  for (const o of [oa, ob, sgd]) o.dispose();
  a.dispose();
  b.dispose();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("save: a folder that exists and is not a checkpoint is refused, nothing written", async () => {
  const gpu = await getGpu();
  const { dir } = MODELS[0];
  const model = await loadCaptionModel(gpu, dir);
  const tmp = await tmpDir();
  await Deno.writeTextFile(`${tmp}/notes.txt`, "mine");
  const refused = async (target: string) =>
    await assert.rejects(
      saveCheckpoint(target, model, { source: dir }),
      (e: unknown) =>
        e instanceof WebcapError && e.code === "BAD_OPTION" &&
        /is not a webcap checkpoint/.test(e.message),
    );
  await refused(tmp);
  await refused(`${tmp}/notes.txt`);
  assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), ["notes.txt"]);
  assert.equal(await Deno.readTextFile(`${tmp}/notes.txt`), "mine");
  // an optimizer half-way through accumulating is refused too
  const opt = new Optimizer(paramGroups(model.params), { kind: "sgd", accumulate: 2 });
  const rec = new Recorder(gpu);
  opt.step(rec);
  await rec.submit();
  await assert.rejects(
    saveCheckpoint(`${tmp}/ckpt`, model, { source: dir, optimizer: opt }),
    /accumulated but not applied/,
  );
  opt.dispose();
  model.dispose();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("training a model loaded with f16 matrices is refused; its f32 parts may train", async () => {
  const gpu = await getGpu();
  if (!gpu.hasF16) return;
  const model = await loadCaptionModel(gpu, MODELS[0].dir, { dtype: "f16" });
  assert.throws(
    () => paramGroups(model.params),
    (e: unknown) =>
      e instanceof WebcapError && e.code === "BAD_DTYPE" && /stored in f16/.test(e.message),
  );
  const f16 = [...new Set(model.params.filter((p) => p.tensor.dtype === "f16").map((p) => p.name))];
  const onlyF32 = paramGroups(model.params, { frozen: f16 });
  assert.ok(onlyF32.trainable.every((p) => p.tensor.dtype === "f32"));
  model.dispose();
});
