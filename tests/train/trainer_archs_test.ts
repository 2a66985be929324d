/**
 * The Trainer over every architecture's fixture: ten steps on a fixed batch lower the loss, and
 * the checkpoint it saves (in the architecture's own layout: ClipCap's `clipcap-config.json`,
 * `clipcap.safetensors` and `clip-vision/`) loads in `Captioner.fromPretrained` holding exactly
 * the trained weights, and in a resumed Trainer at the step it was saved.
 */
import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import type { RgbImage } from "../../src/image/decode.ts";
import { Trainer } from "../../src/train/trainer.ts";
import { fixture, getGpu } from "../util.ts";
import { readParams } from "./synthetic.ts";

const WORDS = ["a red square", "blue sky", "green grass", "two dogs"];
const CASES = [
  { name: "vit-gpt2", captions: WORDS, files: ["config.json", "model.safetensors"] },
  { name: "blip", captions: WORDS, files: ["config.json", "model.safetensors"] },
  {
    name: "clipcap",
    captions: WORDS,
    files: ["clipcap-config.json", "clipcap.safetensors", "clip-vision/model.safetensors"],
  },
  // Show-Attend-Tell's fixture has no vocabulary: captions are token ids.
  { name: "show-attend-tell", captions: ["5 9 12", "7 3", "40 41 42 43", "8"], files: [] },
];

/** A distinct 40×40 picture per index. */
function picture(i: number): RgbImage {
  const data = new Uint8Array(40 * 40 * 3);
  for (let p = 0; p < 40 * 40; p++) {
    const x = p % 40, y = Math.floor(p / 40);
    data.set([(i * 37 + x * 6) % 256, (i * 91 + y * 6) % 256, i % 2 ? 255 : 0], p * 3);
  }
  return { width: 40, height: 40, data };
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

for (const c of CASES) {
  Deno.test(`${c.name}: ten steps lower the loss; the checkpoint loads with the trained weights`, async () => {
    const gpu = await getGpu(), dir = fixture(`hf/${c.name}`);
    const t = await Trainer.fromPretrained(dir, {
      optimizer: { kind: "adamw", lr: 1e-2, weightDecay: 0 },
      gpu,
    });
    const images = c.captions.map((_, i) => picture(i));
    const batch = { images, keys: c.captions, labels: t.labels(c.captions) };
    const losses = (await t.fit(Array.from({ length: 10 }, () => batch))).map((r) => r.loss);
    assert.equal(losses.length, 10);
    assert.ok(losses[9] < losses[0] * 0.8, `loss ${losses[0]} → ${losses[9]}`);
    const trained = await readParams(gpu, t.params);
    const tmp = await Deno.makeTempDir({ prefix: "webcap-archs-" });
    await t.save(`${tmp}/ckpt`);
    t.dispose();
    for (const f of c.files) assert.ok((await Deno.stat(`${tmp}/ckpt/${f}`)).isFile, f);

    const captioner = await Captioner.fromPretrained(`${tmp}/ckpt`, { gpu });
    const held = captioner.model.params.filter((p) => trained.has(p.name));
    assert.equal(held.length, trained.size, "every trained parameter is held");
    const loaded = await readParams(gpu, held);
    for (const [name, want] of trained) assert.deepEqual(bits(loaded.get(name)!), bits(want), name);
    const [out] = await captioner.caption(images.slice(0, 1));
    assert.ok(out.captions[0].tokens.length > 0);
    captioner.dispose();

    const resumed = await Trainer.fromPretrained(`${tmp}/ckpt`, {
      optimizer: { kind: "adamw", lr: 1e-2, weightDecay: 0 },
      resume: true,
      gpu,
    });
    assert.equal(resumed.optimizer.steps, 10);
    resumed.dispose();
    await Deno.remove(tmp, { recursive: true });
  });
}
