/**
 * Quantized models end to end: parity of q8 / q4 against the dequantized-weights floor, a folder
 * written by `deno task quantize` read as stored, and the refusals (a layout that does not fit,
 * a group size that does not divide, another dtype, training).
 */
import assert from "node:assert/strict";
import { getGpu } from "../../src/gpu/device.ts";
import { loadCaptionModel } from "../../src/arch/load.ts";
import { runParity } from "../../src/captioner/parity.ts";
import { embedding } from "../../src/shaders/embedding.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { openSafetensors, parseSafetensorsHeader } from "../../src/io/safetensors.ts";
import { writeSafetensors } from "../../src/io/safetensors_write.ts";
import { paramGroups } from "../../src/train/param_groups.ts";
import type { CaptionModel } from "../../src/arch/caption_model.ts";
import type { LoadOptions } from "../../src/arch/load.ts";
import { fixture, runAndRead } from "../util.ts";

for (const model of ["vit-gpt2", "blip"]) {
  for (const dtype of ["q8", "q4"] as const) {
    Deno.test(`parity: ${model} in ${dtype} is held to the dequantized-weights floor`, async () => {
      const r = await runParity(await getGpu(), fixture(`hf/${model}`), { dtype });
      assert.ok(r.tensors.length > 0);
      for (const t of r.tensors) {
        console.log(`  ${t.name}: rel L2 ${t.relL2.toExponential(2)} floor ${t.floor}`);
        assert.ok(t.floor! > 1e-3, `${t.name}: the floor is quantization, not float32`);
        assert.ok(t.pass, `${t.name}: ${t.relL2} above ${t.floor} + ${t.bound}`);
      }
    });
  }
}

/** `deno task quantize` of fixture `model` into a new folder; returns its path. */
async function quantizeFixture(model: string, dtype: string): Promise<string> {
  const out = await Deno.makeTempDir({ prefix: "webcap-quant-" });
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "examples/quantize.ts",
      fixture(`hf/${model}`),
      "--dtype",
      dtype,
      "--out",
      out,
    ],
    stdout: "piped",
    stderr: "piped",
  });
  const r = await cmd.output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  return out;
}

/** Every row of GPT-2's `wte` as the model holds it (dequantized on the GPU). */
async function wteRows(m: CaptionModel): Promise<Float32Array> {
  const gpu = await getGpu();
  const p = m.params.find((p) => p.name.endsWith("wte.weight"))!;
  const V = p.shape[0];
  const ids = uploadTensor(gpu, Int32Array.from({ length: V }, (_, i) => i), [V], "i32");
  try {
    return await runAndRead(gpu, (rec) => embedding(rec, p.quant!, ids));
  } finally {
    ids.release();
  }
}

async function load(dir: string, opts: LoadOptions): Promise<CaptionModel> {
  return await loadCaptionModel(await getGpu(), dir, opts);
}

Deno.test("quantize: the folder holds the documented layout and loads as stored", async () => {
  const out = await quantizeFixture("vit-gpt2", "q4");
  try {
    const bytes = await Deno.readFile(`${out}/model.safetensors`);
    const header = parseSafetensorsHeader(bytes, "q4");
    assert.equal(header.metadata["webcap.quantization"], "q4");
    assert.equal(header.metadata["webcap.group_size"], "32");
    assert.equal(header.metadata["webcap.original_dtype"], "F32");
    const wte = header.tensors.get("decoder.transformer.wte.weight")!;
    assert.equal(wte.dtype, "U8");
    assert.equal(header.tensors.get("decoder.transformer.wte.weight.qoffset")?.dtype, "F16");
    assert.equal(header.tensors.get("decoder.transformer.ln_f.weight")?.dtype, "F16");
    assert.equal(header.metadata["webcap.quant_version"], "2");
    const patch = "encoder.embeddings.patch_embeddings.projection.weight";
    assert.equal(header.tensors.get(patch)?.dtype, "U8", "the patch projection is quantized");
    const float = (await Deno.stat(fixture("hf/vit-gpt2/model.safetensors"))).size;
    assert.ok(bytes.length < 0.5 * float, `${bytes.length} B of ${float} B`);
    assert.ok((await Deno.stat(`${out}/tokenizer.json`)).isFile, "other files copied");

    const [stored, atLoad] = [
      await load(out, { dtype: "q4" }),
      await load(fixture("hf/vit-gpt2"), { dtype: "q4" }),
    ];
    try {
      assert.deepEqual(await wteRows(stored), await wteRows(atLoad));
    } finally {
      stored.dispose();
      atLoad.dispose();
    }
    await assert.rejects(
      () => load(out, { dtype: "q8" }),
      /stored as q4, but the model is loaded as q8/,
    );
    await assert.rejects(
      () => load(out, { dtype: "f32" }),
      /stored quantized; load the model with the dtype/,
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("quantize: a stored scale that does not fit the layout is BAD_WEIGHTS naming it", async () => {
  const out = await quantizeFixture("vit-gpt2", "q8");
  try {
    const store = await openSafetensors(`${out}/model.safetensors`);
    const name = "decoder.transformer.h.0.mlp.c_fc.weight.qscale";
    const tensors = await Promise.all(
      store.names().map(async (n) => {
        const { dtype, shape } = store.info(n);
        const data = await store.read(n);
        if (n !== name) return { name: n, dtype, shape, read: () => data };
        return { name: n, dtype, shape: [shape[0] - 1], read: () => data.slice(2) };
      }),
    );
    store.close();
    await writeSafetensors(`${out}/model.safetensors`, tensors);
    await assert.rejects(
      () => load(out, { dtype: "q8" }),
      (e: Error & { code?: string }) =>
        e.code === "BAD_WEIGHTS" && e.message.includes(name) && /wants F16 \[\d+\]/.test(e.message),
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("q4: a group size that does not divide the input dimension is refused", async () => {
  await assert.rejects(
    () => load(fixture("hf/vit-gpt2"), { dtype: "q4", groupSize: 24 }),
    (e: Error & { code?: string }) =>
      e.code === "BAD_OPTION" &&
      /group size 24 does not divide the input dimension 32/.test(e.message),
  );
});

Deno.test("training a quantized model is refused, naming quantization", async () => {
  const m = await load(fixture("hf/vit-gpt2"), { dtype: "q8" });
  try {
    assert.throws(
      () => paramGroups(m.params),
      (e: Error & { code?: string }) =>
        e.code === "BAD_DTYPE" && /it is quantized to q8.*dtype f32/.test(e.message),
    );
  } finally {
    m.dispose();
  }
});
