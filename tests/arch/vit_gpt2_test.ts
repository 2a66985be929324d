import assert from "node:assert/strict";
import { getGpu } from "../../src/gpu/device.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { loadCaptionModel } from "../../src/arch/load.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { vitConfig } from "../../src/nn/vit.ts";
import { WebcapError } from "../../src/errors.ts";
import { fixture, relL2 } from "../util.ts";

const dir = fixture("hf/vit-gpt2");

/** Encoder states and teacher-forced logits of reference.safetensors' inputs. */
async function forward(weightsDir: string, dtype: "f32" | "f16" = "f32") {
  const gpu = await getGpu();
  const model = await loadCaptionModel(gpu, weightsDir, { dtype });
  const ref = await openSafetensors(`${dir}/reference.safetensors`);
  const ids = Int32Array.from(await ref.readF32("decoder_input_ids"));
  const [N, T] = ref.info("decoder_input_ids").shape;
  const rec = new Recorder(gpu);
  const pixels = uploadTensor(
    gpu,
    await ref.readF32("pixel_values"),
    ref.info("pixel_values").shape,
    "f32",
  );
  const enc = model.encode(rec, pixels);
  const st = model.beginDecode(rec, enc, Int32Array.from({ length: N }, (_, i) => i), T);
  const tokens = uploadTensor(gpu, ids, [N * T], "i32");
  const logits = model.step(rec, st, tokens, T);
  const ph = rec.readTensor(enc.hidden), pl = rec.readTensor(logits);
  rec.releaseAfterSubmit(pixels, tokens, logits);
  await rec.submit();
  const out = {
    hidden: relL2(await ph, await ref.readF32("encoder_last_hidden_state")),
    logits: relL2(await pl, await ref.readF32("logits")),
  };
  st.dispose();
  enc.dispose();
  model.dispose();
  ref.close();
  return out;
}

Deno.test("vit-gpt2: encoder states and teacher-forced logits match transformers (rel L2 < 1e-4)", async () => {
  const e = await forward(dir);
  console.log(
    `  encoder_last_hidden_state rel L2 ${e.hidden.toExponential(2)}, logits ${
      e.logits.toExponential(2)
    }`,
  );
  assert.ok(e.hidden < 1e-4 && e.logits < 1e-4, JSON.stringify(e));
});

Deno.test("vit-gpt2: the pickle checkpoints give the same logits as safetensors", async () => {
  for (const file of ["pytorch_model.bin", "pytorch_model-legacy.bin"]) {
    const tmp = await Deno.makeTempDir();
    for (const f of ["config.json", "generation_config.json"]) {
      await Deno.copyFile(`${dir}/${f}`, `${tmp}/${f}`);
    }
    await Deno.symlink(`${dir}/${file}`, `${tmp}/pytorch_model.bin`);
    const e = await forward(tmp);
    assert.ok(e.hidden < 1e-4 && e.logits < 1e-4, `${file}: ${JSON.stringify(e)}`);
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("vit-gpt2: F16 and BF16 weight files load, agree with F32 to 1e-2, and run", async () => {
  const f32 = await openSafetensors(`${dir}/model.safetensors`);
  // bf16 keeps 8 mantissa bits to f16's 11: its outputs through this random-weight network are
  // held to 8× the f16 bound.
  for (
    const [file, bound] of [["model-f16.safetensors", 1e-2], [
      "model-bf16.safetensors",
      8e-2,
    ]] as const
  ) {
    const half = await openSafetensors(`${dir}/${file}`);
    let worst = 0;
    for (const name of half.names()) {
      const legacy = f32.has(name) ? name : undefined;
      if (legacy) {
        worst = Math.max(worst, relL2(await half.readF32(name), await f32.readF32(legacy)));
      }
    }
    assert.ok(worst < 1e-2, `${file}: worst tensor rel L2 ${worst}`);
    half.close();
    const tmp = await Deno.makeTempDir();
    for (const f of ["config.json", "generation_config.json"]) {
      await Deno.copyFile(`${dir}/${f}`, `${tmp}/${f}`);
    }
    await Deno.symlink(`${dir}/${file}`, `${tmp}/model.safetensors`);
    const e = await forward(tmp);
    console.log(
      `  ${file}: worst tensor ${worst.toExponential(2)}; hidden ${
        e.hidden.toExponential(2)
      }, logits ${e.logits.toExponential(2)}`,
    );
    assert.ok(e.hidden < bound && e.logits < bound, `${file}: ${JSON.stringify(e)}`);
    await Deno.remove(tmp, { recursive: true });
  }
  f32.close();
  const gpu = await getGpu();
  if (!gpu.hasF16) return console.log("  f16 storage skipped: adapter has no shader-f16");
  const e = await forward(dir, "f16");
  console.log(
    `  f16 GPU storage: hidden ${e.hidden.toExponential(2)}, logits ${e.logits.toExponential(2)}`,
  );
  assert.ok(e.hidden < 1e-2 && e.logits < 1e-2, JSON.stringify(e));
});

Deno.test("memory: loading and disposing the model 20 times returns pooled and owned bytes to baseline", async () => {
  const gpu = await getGpu();
  await forward(dir); // warm the pool
  const base = { live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes, free: gpu.pool.freeBytes };
  for (let i = 0; i < 20; i++) await forward(dir);
  assert.equal(gpu.pool.liveBytes, base.live, "live pooled bytes");
  assert.equal(gpu.pool.ownedBytes, base.owned, "owned (weights, caches) bytes");
  assert.equal(gpu.pool.freeBytes, base.free, "the pool reuses buffers instead of growing");
});

Deno.test("bad model folders give errors naming the file", async () => {
  const gpu = await getGpu();
  const tmp = await Deno.makeTempDir();
  await assert.rejects(loadCaptionModel(gpu, tmp), /config\.json does not exist/);
  await Deno.writeTextFile(
    `${tmp}/config.json`,
    JSON.stringify({ architectures: ["T5ForConditionalGeneration"] }),
  );
  await assert.rejects(
    loadCaptionModel(gpu, tmp),
    (e: Error) => /T5ForConditionalGeneration.*not supported/.test(e.message),
  );
  await Deno.copyFile(`${dir}/config.json`, `${tmp}/config.json`);
  await assert.rejects(
    loadCaptionModel(gpu, tmp),
    (e: Error & { code?: string }) => e.code === "MISSING_FILE",
  );
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  cfg.decoder.n_embd = 48;
  cfg.decoder.n_head = 4;
  await Deno.writeTextFile(`${tmp}/config.json`, JSON.stringify(cfg));
  await Deno.symlink(`${dir}/model.safetensors`, `${tmp}/model.safetensors`);
  await assert.rejects(loadCaptionModel(gpu, tmp), /has shape \[.*\] but the config implies/);
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("vit: a config without attention heads is BAD_CONFIG", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  assert.throws(
    () => vitConfig({ ...config.encoder, num_attention_heads: 0 }, "config.json encoder"),
    (e) =>
      e instanceof WebcapError && e.code === "BAD_CONFIG" &&
      /num_attention_heads 0/.test(e.message),
  );
});
