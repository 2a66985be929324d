import assert from "node:assert/strict";
import {
  loadResNet,
  type LoadResNetOptions,
  resNetConfig,
  resnetEncode,
} from "../../src/nn/resnet.ts";
import { ParamLoader } from "../../src/nn/params.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { firstNonFinite, getGpu, relL2, runAndRead } from "../util.ts";

const dir = new URL("../../../shared/fixtures/hf/show-attend-tell/", import.meta.url).pathname;

async function encodeFixture(
  opts: LoadResNetOptions,
  dtype: "f32" | "f16" = "f32",
): Promise<{ got: Float32Array; want: Float32Array; shape: number[] }> {
  const gpu = await getGpu();
  const config = resNetConfig(
    JSON.parse(await Deno.readTextFile(`${dir}config.json`)),
    `${dir}config.json`,
  );
  const model = await openSafetensors(`${dir}model.safetensors`);
  const ref = await openSafetensors(`${dir}reference.safetensors`);
  try {
    const p = new ParamLoader(gpu, model, dtype);
    const weights = await loadResNet(p, "encoder.resnet", config, opts);
    const images = uploadTensor(gpu, await ref.readF32("images"), ref.info("images").shape, "f32");
    let shape: number[] = [];
    const got = await runAndRead(gpu, (rec) => {
      const out = resnetEncode(rec, weights, images);
      shape = [...out.shape];
      rec.releaseAfterSubmit(out);
      return out;
    });
    images.release();
    p.dispose();
    assert.deepEqual(shape, ref.info("encoder_out").shape);
    return { got, want: await ref.readF32("encoder_out"), shape };
  } finally {
    model.close();
    ref.close();
  }
}

for (const foldBatchNorm of [true, false]) {
  Deno.test(`ResNet encoder matches encoder_out of the Show-Attend-Tell fixture (foldBatchNorm=${foldBatchNorm})`, async () => {
    const { got, want } = await encodeFixture({ foldBatchNorm });
    assert.equal(firstNonFinite(got), -1);
    const err = relL2(got, want);
    assert.ok(err < 1e-4, `rel L2 ${err}`);
  });
}

Deno.test("ResNet encoder with f16 conv weights stays within 1e-2 of encoder_out", async () => {
  const gpu = await getGpu();
  if (!gpu.hasF16) {
    console.log("skipped: adapter has no shader-f16");
    return;
  }
  const { got, want } = await encodeFixture({}, "f16");
  const err = relL2(got, want);
  assert.ok(err < 1e-2, `rel L2 ${err}`);
});

Deno.test("resNetConfig refuses an encoder_dim that disagrees with the planes", () => {
  assert.throws(
    () =>
      resNetConfig({
        resnet_layers: [1, 1],
        resnet_planes: [4, 8],
        resnet_strides: [1, 2],
        encoded_image_size: 2,
        encoder_dim: 64,
      }, "cfg"),
    /encoder_dim 64 is not 4 × the last resnet_planes \(32\)/,
  );
  assert.throws(
    () => resNetConfig({ resnet_layers: [1], resnet_planes: [4, 8], encoded_image_size: 2 }, "cfg"),
    /one entry per stage/,
  );
});

Deno.test("loadResNet names a missing tensor", async () => {
  const gpu = await getGpu();
  const config = resNetConfig(
    JSON.parse(await Deno.readTextFile(`${dir}config.json`)),
    "config.json",
  );
  const model = await openSafetensors(`${dir}model.safetensors`);
  try {
    await assert.rejects(
      () => loadResNet(new ParamLoader(gpu, model), "encoder.cnn", config),
      /tensor "encoder\.cnn\.0\.weight" is missing/,
    );
    const deeper = {
      ...config,
      layers: [...config.layers.slice(0, -1), config.layers.at(-1)! + 1],
    };
    await assert.rejects(
      () => loadResNet(new ParamLoader(gpu, model), "encoder.resnet", deeper),
      /encoder\.resnet\.7\.1\.conv1\.weight/,
    );
  } finally {
    model.close();
  }
});
