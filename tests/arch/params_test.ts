/**
 * Every model lists the checkpoint's tensors by Hugging Face name and shape, each once, and each
 * entry's elements (`tensor` from `offset`) are the stored values.
 */
import assert from "node:assert/strict";
import { getGpu } from "../../src/gpu/device.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { numel, type Tensor, uploadTensor } from "../../src/gpu/tensor.ts";
import { binary } from "../../src/shaders/elementwise.ts";
import { loadCaptionModel } from "../../src/arch/load.ts";
import { localFiles, subFolder } from "../../src/io/model_files.ts";
import { openWeightFile, openWeights, type WeightStore } from "../../src/io/weights.ts";
import type { Param } from "../../src/nn/params.ts";
import { fixture } from "../util.ts";

const HF = fixture("hf");

/** Model folders among the fixtures: those with a config.json or a clipcap-config.json. */
function modelFolders(): string[] {
  return [...Deno.readDirSync(HF)]
    .filter((e) => e.isDirectory)
    .map((e) => `${HF}/${e.name}`)
    .filter((d) =>
      ["config.json", "clipcap-config.json"].some((f) => {
        try {
          return Deno.statSync(`${d}/${f}`).isFile;
        } catch {
          return false;
        }
      })
    )
    .sort();
}

/** The checkpoints a folder's model is loaded from (ClipCap: its CLIP folder and clipcap.safetensors). */
async function checkpoints(dir: string): Promise<WeightStore[]> {
  const files = localFiles(dir);
  if (!(await files.text("clipcap-config.json"))) return [await openWeights(files)];
  return [
    await openWeights(subFolder(files, "clip-vision")),
    (await openWeightFile(files, "clipcap.safetensors"))!,
  ];
}

/**
 * Stored tensors a model does not hold as themselves, by design: ViT's pooler (captioning reads
 * the last hidden state), Show-Attend-Tell's `full_att.bias` (it cancels in the softmax), and a
 * folded BatchNorm's weight and running statistics (folded into the conv; its bias holds the
 * folded bias). Returns why, or undefined for a parameter.
 */
function notHeld(name: string, store: WeightStore): string | undefined {
  if (name.includes(".pooler.")) return "ViT pooler";
  if (name.endsWith("full_att.bias")) return "cancels in the softmax";
  const bn = name.replace(/\.(weight|running_mean|running_var)$/, "");
  if (bn !== name && store.has(`${bn}.running_var`)) return "folded BatchNorm";
  return undefined;
}

async function readAll(tensors: Tensor[]): Promise<Map<Tensor, Float32Array>> {
  const gpu = await getGpu();
  const rec = new Recorder(gpu);
  // one kernel first: a recorder that only reads fails its submit on a device that has run none
  const one = uploadTensor(gpu, Float32Array.of(1), [1], "f32");
  rec.releaseAfterSubmit(one, binary(rec, one, one, "add"));
  const reads = tensors.map((t) => rec.readTensor(t));
  await rec.submit();
  const out = new Map<Tensor, Float32Array>();
  for (const [i, t] of tensors.entries()) out.set(t, (await reads[i]) as Float32Array);
  return out;
}

for (const dir of modelFolders()) {
  const name = dir.slice(dir.lastIndexOf("/") + 1);
  Deno.test(`params: ${name} lists every checkpoint tensor by name and shape, tied ones once, with their values`, async () => {
    const model = await loadCaptionModel(await getGpu(), dir);
    const stores = await checkpoints(dir);
    try {
      const want = new Map<string, number[]>();
      for (const s of stores) {
        for (const n of s.names()) if (!notHeld(n, s)) want.set(n, s.info(n).shape);
      }
      const got = new Map<string, Param>();
      for (const p of model.params) {
        assert.ok(!got.has(p.name), `${p.name} listed twice`);
        got.set(p.name, p);
      }
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
      for (const [n, shape] of want) assert.deepEqual([...got.get(n)!.shape], shape, n);
      const values = await readAll([...new Set(model.params.map((p) => p.tensor))]);
      for (const p of model.params.filter((p) => p.trainable)) {
        const store = stores.find((s) => s.has(p.name))!;
        const stored = await store.readF32(p.name);
        const held = values.get(p.tensor)!.subarray(p.offset, p.offset + numel(p.shape));
        assert.deepEqual(held, stored, `${p.name} at offset ${p.offset}`);
      }
    } finally {
      for (const s of stores) s.close();
      model.dispose();
    }
  });
}

Deno.test("params: vit-gpt2's tied lm_head is wte, listed once under wte's name", async () => {
  const model = await loadCaptionModel(await getGpu(), `${HF}/vit-gpt2`);
  const names = model.params.map((p) => p.name);
  assert.ok(names.includes("decoder.transformer.wte.weight"));
  assert.ok(!names.some((n) => n.includes("lm_head")));
  model.dispose();
});
