/**
 * The training loop on the vit-gpt2 fixture, llm.c-style: ten steps on a fixed batch lower the
 * loss; the tiny model overfits 8 image–caption pairs until greedy decoding of the saved
 * checkpoint returns exactly their captions; frozen parameters stay identical bit for bit while
 * trainable ones change; accumulation equals one big batch; resuming from a checkpoint gives the
 * same next step (loss, norm, weights) as not stopping; a NaN loss stops naming the step with
 * nothing overwritten; bad input is refused; attention-probability dropout alone is seeded.
 */
import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import { writeTensor } from "../../src/gpu/tensor.ts";
import type { RgbImage } from "../../src/image/decode.ts";
import { linearSchedule } from "../../src/train/schedule.ts";
import { type StepReport, type TrainBatch, Trainer } from "../../src/train/trainer.ts";
import { assertCode, fixture, getGpu, relL2 } from "../util.ts";
import { readParams } from "./synthetic.ts";

const DIR = fixture("hf/vit-gpt2");
const CAPTIONS = [
  "a red square",
  "blue sky",
  "green grass",
  "two dogs",
  "a cat",
  "one tree",
  "the sea",
  "old car",
];

/** A distinct 32×32 picture per index: gradients in red and green, blue by parity. */
function picture(i: number): RgbImage {
  const data = new Uint8Array(32 * 32 * 3);
  for (let p = 0; p < 32 * 32; p++) {
    const x = p % 32, y = Math.floor(p / 32);
    data.set([(i * 37 + x * 8) % 256, (i * 91 + y * 8) % 256, i % 2 ? 255 : 0], p * 3);
  }
  return { width: 32, height: 32, data };
}

const IMAGES = CAPTIONS.map((_, i) => picture(i));

async function trainer(opts: Partial<Parameters<typeof Trainer.fromPretrained>[1]> = {}) {
  return await Trainer.fromPretrained(DIR, {
    optimizer: { kind: "adamw", lr: 1e-2, weightDecay: 0 },
    frozen: ["encoder."],
    gpu: await getGpu(),
    ...opts,
  });
}

function batch(t: Trainer, n = 8, keyed = true): TrainBatch {
  const captions = CAPTIONS.slice(0, n);
  return {
    images: IMAGES.slice(0, n),
    keys: keyed ? captions : undefined,
    labels: t.labels(captions),
  };
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

Deno.test("ten steps on a fixed batch lower the loss (whole model trained); onStep sees loss, lr, norm", async () => {
  const seen: StepReport[] = [];
  const t = await trainer({
    frozen: [],
    optimizer: { kind: "adamw", lr: 1e-2, schedule: linearSchedule(2, 20), maxGradNorm: 5 },
    onStep: (r) => seen.push(r),
  });
  const b = batch(t, 4, false);
  const reports = await t.fit(Array.from({ length: 10 }, () => b));
  t.dispose();
  assert.deepEqual(seen, reports);
  assert.deepEqual(reports.map((r) => r.step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const factor = linearSchedule(2, 20);
  reports.forEach((r, i) => assert.ok(Math.abs(r.lr - 1e-2 * factor.factor(i)) < 1e-12));
  assert.ok(reports.every((r) => r.gradNorm > 0 && Number.isFinite(r.gradNorm)));
  const losses = reports.map((r) => r.loss);
  assert.ok(losses[9] < losses[0] / 2, `loss ${losses[0]} → ${losses[9]}`);
});

Deno.test("overfit: 8 image–caption pairs until greedy decoding of the saved checkpoint returns them exactly", async () => {
  const t = await trainer({
    optimizer: { kind: "adamw", lr: 2e-2, weightDecay: 0 },
    dropout: false,
  });
  const b = batch(t);
  const reports = await t.fit(Array.from({ length: 25 }, () => b));
  const tmp = await Deno.makeTempDir({ prefix: "webcap-train-" });
  await t.save(`${tmp}/ckpt`);
  t.dispose();
  assert.ok(reports.at(-1)!.loss < 0.2, `final loss ${reports.at(-1)!.loss}`);
  const captioner = await Captioner.fromPretrained(`${tmp}/ckpt`, { gpu: await getGpu() });
  const results = await captioner.caption(IMAGES);
  const T = b.labels.length / 8;
  results.forEach((r, i) => {
    const want = [...b.labels.subarray(i * T, (i + 1) * T)].filter((x) => x >= 0);
    assert.deepEqual(r.captions[0].tokens, want, `caption ${i}`);
    assert.ok(r.captions[0].text.startsWith(CAPTIONS[i]), r.captions[0].text);
  });
  captioner.dispose();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("frozen parameters stay identical bit for bit through the real backward; trainable ones change", async () => {
  const gpu = await getGpu();
  const t = await trainer({ frozen: ["encoder.", "decoder.transformer.wpe."] });
  const before = await readParams(gpu, t.params);
  await t.fit([batch(t, 4, false), batch(t, 4, false)]);
  const after = await readParams(gpu, t.params);
  assert.ok(t.groups.frozen.some((p) => p.name === "decoder.transformer.wpe.weight"));
  for (const p of t.groups.frozen) {
    assert.deepEqual(bits(after.get(p.name)!), bits(before.get(p.name)!), p.name);
  }
  for (const p of t.groups.trainable) {
    const a = after.get(p.name)!, b = before.get(p.name)!;
    assert.ok(a.some((x, i) => x !== b[i]), `${p.name} did not change`);
  }
  t.dispose();
});

Deno.test("accumulation: two micro-batches make the step of the batch they split (equal token counts)", async () => {
  const gpu = await getGpu();
  const captions = ["a cat", "the sea", "a cat", "the sea"];
  const make = async (accumulate: number) => {
    // Without dropout: a micro-batch's masks are not the big batch's.
    const t = await trainer({ optimizer: { kind: "sgd", lr: 0.1, accumulate }, dropout: false });
    const labels = t.labels(captions);
    const whole = { images: IMAGES.slice(0, 4), labels };
    const half = (k: number) => ({
      images: [IMAGES[2 * k], IMAGES[2 * k + 1]],
      labels: labels.slice(k * labels.length / 2, (k + 1) * labels.length / 2),
    });
    const reports = await t.fit(accumulate === 1 ? [whole] : [half(0), half(1)]);
    const params = await readParams(gpu, t.groups.trainable);
    t.dispose();
    return { reports, params };
  };
  const one = await make(1), two = await make(2);
  assert.equal(two.reports.length, 1);
  assert.ok(Math.abs(two.reports[0].loss - one.reports[0].loss) < 1e-5 * one.reports[0].loss);
  assert.ok(Math.abs(two.reports[0].gradNorm - one.reports[0].gradNorm) < 1e-4);
  for (const [name, w] of one.params) assert.ok(relL2(two.params.get(name)!, w) < 1e-6, name);
});

Deno.test("dropout (GPT-2's 0.1 rates): the same seed gives the same losses bit for bit, another seed others", async () => {
  const run = async (opts: { seed?: number; dropout?: boolean }) => {
    const t = await trainer({ frozen: [], optimizer: { kind: "sgd", lr: 0.1 }, ...opts });
    const b = batch(t, 4, false);
    const losses = (await t.fit([b, b, b])).map((r) => r.loss);
    t.dispose();
    return new Float32Array(losses);
  };
  const a = await run({ seed: 1 }), again = await run({ seed: 1 });
  assert.deepEqual(bits(again), bits(a));
  const other = await run({ seed: 2 }), off = await run({ dropout: false });
  assert.ok(other.every((v, i) => v !== a[i]), `seed 2 gives ${other}, seed 1 ${a}`);
  assert.ok(off.every((v, i) => v !== a[i] && v !== other[i]), "dropout: false is another loss");
  assert.deepEqual(bits(await run({ dropout: false })), bits(off), "no dropout: deterministic");
  await assert.rejects(() => trainer({ seed: -1 }), /seed must be an integer/);
});

Deno.test("attention dropout alone (attn_pdrop 0.3, the other rates 0): same seed, same losses bit for bit; another seed others", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-attndrop-" });
  for await (const e of Deno.readDir(DIR)) {
    if (e.name !== "config.json") await Deno.symlink(`${DIR}/${e.name}`, `${tmp}/${e.name}`);
  }
  const config = JSON.parse(await Deno.readTextFile(`${DIR}/config.json`));
  Object.assign(config.decoder, { attn_pdrop: 0.3, resid_pdrop: 0, embd_pdrop: 0 });
  await Deno.writeTextFile(`${tmp}/config.json`, JSON.stringify(config));
  const run = async (opts: { seed?: number; dropout?: boolean }) => {
    const t = await Trainer.fromPretrained(tmp, {
      optimizer: { kind: "sgd", lr: 0.1 },
      gpu: await getGpu(),
      ...opts,
    });
    const b = batch(t, 4, false);
    const losses = (await t.fit([b, b])).map((r) => r.loss);
    t.dispose();
    return new Float32Array(losses);
  };
  const a = await run({ seed: 1 }), again = await run({ seed: 1 });
  assert.deepEqual(bits(again), bits(a));
  const other = await run({ seed: 2 }), off = await run({ dropout: false });
  assert.ok(other.every((v, i) => v !== a[i]), `seed 2 gives ${other}, seed 1 ${a}`);
  assert.ok(off.every((v, i) => v !== a[i] && v !== other[i]), "dropout: false is another loss");
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("resume: the step after loading a checkpoint equals the step of a run that did not stop", async () => {
  const gpu = await getGpu();
  const tmp = await Deno.makeTempDir({ prefix: "webcap-train-" });
  const a = await trainer({ optimizer: { kind: "adamw", lr: 1e-2, maxGradNorm: 1 } });
  const b1 = batch(a, 4), b2 = batch(a, 8);
  await a.fit([b1], { saveTo: `${tmp}/ckpt` });
  const [want] = await a.fit([b2]);
  const wantParams = await readParams(gpu, a.params);
  a.dispose();
  const resumed = await Trainer.fromPretrained(`${tmp}/ckpt`, {
    optimizer: { kind: "adamw", lr: 1e-2, maxGradNorm: 1 },
    frozen: ["encoder."],
    resume: true,
    gpu,
  });
  assert.equal(resumed.optimizer.steps, 1);
  const [got] = await resumed.fit([b2]);
  assert.deepEqual(got, want, "same loss (the loaded weights give the same logits), norm, lr");
  const gotParams = await readParams(gpu, resumed.params);
  for (const [name, w] of wantParams) assert.deepEqual(bits(gotParams.get(name)!), bits(w), name);
  resumed.dispose();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("a NaN loss stops naming the step; weights, optimizer state and the checkpoint stay as they were", async () => {
  const gpu = await getGpu();
  const tmp = await Deno.makeTempDir({ prefix: "webcap-train-" });
  const t = await trainer();
  const b = batch(t, 4);
  await t.fit([b], { saveTo: `${tmp}/ckpt`, saveEvery: 1 });
  const saved = await Deno.readFile(`${tmp}/ckpt/model.safetensors`);
  const lnF = t.params.find((p) => p.name === "decoder.transformer.ln_f.weight")!;
  const good = (await readParams(gpu, [lnF])).get(lnF.name)!;
  writeTensor(lnF.tensor, new Float32Array(good.length).fill(NaN), lnF.offset);
  const weights = await readParams(gpu, t.params);
  const state = await t.optimizer.readState();
  await assert.rejects(
    t.fit([b, b], { saveTo: `${tmp}/ckpt`, saveEvery: 1 }),
    (e: unknown) => {
      assertCode(
        () => {
          throw e;
        },
        "NON_FINITE_LOSS",
        "step 2: the loss is NaN.*not applied.*holds step 1",
      );
      return true;
    },
  );
  const after = await readParams(gpu, t.params);
  for (const [name, w] of weights) assert.deepEqual(bits(after.get(name)!), bits(w), name);
  for (const [name, s] of await t.optimizer.readState()) {
    assert.deepEqual(bits(s.data), bits(state.get(name)!.data), name);
  }
  assert.equal(t.optimizer.steps, 1);
  assert.deepEqual(await Deno.readFile(`${tmp}/ckpt/model.safetensors`), saved);
  const trainerState = JSON.parse(await Deno.readTextFile(`${tmp}/ckpt/trainer_state.json`));
  assert.equal(trainerState.global_step, 1);
  // nothing corrupted: with the weight restored, training goes on from step 2
  writeTensor(lnF.tensor, good, lnF.offset);
  const [next] = await t.fit([b]);
  assert.equal(next.step, 2);
  assert.ok(Number.isFinite(next.loss));
  t.dispose();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("bad training input: labels, disagreeing sizes, empty captions, learning rates, options", async () => {
  const t = await trainer();
  const b = batch(t, 2);
  const bad: [TrainBatch, string, string][] = [
    [{ ...b, labels: b.labels.map((x) => (x === 92 ? 300 : x)) }, "BAD_OPTION", "300, outside"],
    [{ ...b, labels: b.labels.map(() => -100) }, "BAD_OPTION", "caption 0 is empty"],
    [{ ...b, keys: undefined, images: IMAGES.slice(0, 3) }, "BAD_SHAPE", "do not split into 3"],
    [{ ...b, keys: ["a"] }, "BAD_SHAPE", "1 keys for 2 images"],
    [{ ...b, images: [] }, "BAD_OPTION", "at least one image"],
  ];
  for (const [x, code, msg] of bad) {
    await assert.rejects(t.step(x), (e: unknown) => {
      assertCode(
        () => {
          throw e;
        },
        code,
        msg,
      );
      return true;
    });
  }
  assertCode(() => t.labels(["a cat", ""]), "BAD_OPTION", 'caption 1 is empty: ""');
  await assert.rejects(t.fit([b], { saveEvery: 0 }), /saveEvery \(0\) must be/);
  assert.equal(t.optimizer.steps, 0, "refused batches change nothing");
  assert.ok((await t.step(b))!.step === 1);
  t.dispose();
  for (const lr of [0, -1, NaN]) {
    await assert.rejects(trainer({ optimizer: { kind: "adamw", lr } }), /lr \(learning rate\)/);
  }
  await assert.rejects(trainer({ labelSmoothing: 1 }), /labelSmoothing/);
  await assert.rejects(trainer({ frozen: ["encodr."] }), /no parameter name starts with/);
});
