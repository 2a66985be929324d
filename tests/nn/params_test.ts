/**
 * Loading refuses what would compute garbage: NaN or ±Inf in a weight (and, in f16 storage, a
 * value past the f16 range) is BAD_WEIGHTS naming the tensor, with nothing left allocated;
 * fractional counts in a config are BAD_CONFIG naming the key.
 */
import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { getGpu } from "../../src/gpu/device.ts";
import { loadCaptionModel } from "../../src/arch/load.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { bertDecoderConfig } from "../../src/nn/bert_decoder.ts";
import { clipVisionConfig } from "../../src/nn/clip_vision.ts";
import { gpt2Config } from "../../src/nn/gpt2.ts";
import { vitConfig } from "../../src/nn/vit.ts";
import { type RawTensor, writeSafetensors } from "../io/checkpoint_writers.ts";
import { fixture } from "../util.ts";

/**
 * A copy of fixture model folder `model` whose `model.safetensors` holds `value` at element 1 of
 * tensor `name` (every other file linked as is).
 */
async function withValue(model: string, name: string, value: number): Promise<string> {
  const dir = fixture(`hf/${model}`);
  const tmp = await Deno.makeTempDir();
  for (const e of Deno.readDirSync(dir)) {
    if (e.isFile && !/\.(safetensors|bin|pth\.tar)$/.test(e.name)) {
      await Deno.symlink(`${dir}/${e.name}`, `${tmp}/${e.name}`);
    }
  }
  const store = await openSafetensors(`${dir}/model.safetensors`);
  const tensors = new Map<string, RawTensor>();
  for (const n of store.names()) {
    const data = Float32Array.from(await store.readF32(n));
    if (n === name) data[1] = value;
    tensors.set(n, {
      dtype: "F32",
      shape: store.info(n).shape,
      bytes: new Uint8Array(data.buffer),
    });
  }
  store.close();
  await Deno.writeFile(`${tmp}/model.safetensors`, writeSafetensors(tensors));
  return tmp;
}

const cases: [string, string, number, "f32" | "f16"][] = [
  ["vit-gpt2", "decoder.transformer.h.0.attn.c_attn.weight", NaN, "f32"], // a Conv1D matrix
  ["blip", "text_decoder.bert.encoder.layer.0.attention.self.key.weight", Infinity, "f32"], // stacked q, k, v
  ["blip", "vision_model.encoder.layers.0.layer_norm1.bias", NaN, "f32"], // an f32 vector
  ["show-attend-tell", "encoder.resnet.4.0.bn2.running_var", -Infinity, "f32"], // folded into a conv
  ["vit-gpt2", "decoder.transformer.wte.weight", NaN, "f16"],
  ["vit-gpt2", "decoder.transformer.wte.weight", 1e6, "f16"], // finite, but Inf in f16
];

for (const [model, name, value, dtype] of cases) {
  Deno.test(`params: ${value} in ${model}'s ${name} (${dtype}) is BAD_WEIGHTS naming it, nothing kept`, async () => {
    const gpu = await getGpu();
    if (dtype === "f16" && !gpu.hasF16) return console.log("  skipped: no shader-f16");
    const dir = await withValue(model, name, value);
    const owned = gpu.pool.ownedBytes;
    try {
      await assert.rejects(loadCaptionModel(gpu, dir, { dtype }), (e) => {
        assert.ok(e instanceof WebcapError && e.code === "BAD_WEIGHTS", String(e));
        assert.ok(e.message.includes(`"${name}"`), e.message);
        assert.ok(e.message.includes(`${value} at element 1`), e.message);
        return true;
      });
      assert.equal(gpu.pool.ownedBytes, owned, "tensors loaded before the bad one are freed");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

/** `read(config)` throws BAD_CONFIG naming `key`. */
function refusesCount(read: () => unknown, key: string): void {
  assert.throws(read, (e) => {
    assert.ok(e instanceof WebcapError && e.code === "BAD_CONFIG", String(e));
    assert.ok(e.message.includes(`"${key}"`), e.message);
    return true;
  });
}

Deno.test("config: fractional layer, head and size counts are BAD_CONFIG naming the key", async () => {
  const vg = JSON.parse(await Deno.readTextFile(fixture("hf/vit-gpt2/config.json")));
  const blip = JSON.parse(await Deno.readTextFile(fixture("hf/blip/config.json")));
  const clip = JSON.parse(await Deno.readTextFile(fixture("hf/clipcap/clip-vision/config.json")));
  for (const key of ["num_hidden_layers", "num_attention_heads", "patch_size", "image_size"]) {
    refusesCount(() => vitConfig({ ...vg.encoder, [key]: vg.encoder[key] + 0.5 }, "enc"), key);
  }
  for (const key of ["n_layer", "n_head", "n_embd", "n_positions", "vocab_size"]) {
    refusesCount(() => gpt2Config({ ...vg.decoder, [key]: vg.decoder[key] + 0.5 }, "dec"), key);
  }
  const text = blip.text_config;
  for (const key of ["num_hidden_layers", "intermediate_size", "max_position_embeddings"]) {
    refusesCount(() => bertDecoderConfig({ ...text, [key]: text[key] + 0.5 }, "text"), key);
  }
  refusesCount(() => clipVisionConfig({ ...clip, projection_dim: 24.5 }, "clip"), "projection_dim");
  assert.equal(vitConfig(vg.encoder, "enc").num_hidden_layers, vg.encoder.num_hidden_layers);
});
