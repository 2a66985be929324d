import assert from "node:assert/strict";
import {
  captionAttention,
  imageGrid,
  tokenAttention,
  tokenWord,
} from "../../src/captioner/caption_attention.ts";
import { Captioner } from "../../src/captioner/captioner.ts";
import { WebcapError } from "../../src/errors.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import type { CaptionModel, EncoderState } from "../../src/arch/caption_model.ts";
import { loadCaptionModel } from "../../src/arch/load.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { fixture, getGpu, relL2 } from "../util.ts";

const HF = fixture("hf");
const PATTERN = `${HF}/preprocess/pattern.png`;

/** Load `dir`'s model, encode `reference.safetensors`' `key` pixels, call `fn`, free everything. */
async function withEncoded<T>(
  dir: string,
  key: string,
  fn: (m: CaptionModel, enc: EncoderState) => Promise<T>,
): Promise<T> {
  const gpu = await getGpu();
  const ref = await openSafetensors(`${dir}/reference.safetensors`);
  const pixels = uploadTensor(gpu, await ref.readF32(key), ref.info(key).shape, "f32");
  ref.close();
  const model = await loadCaptionModel(gpu, dir);
  const rec = new Recorder(gpu);
  const enc = model.encode(rec, pixels);
  rec.releaseAfterSubmit(pixels);
  await rec.submit();
  try {
    return await fn(model, enc);
  } finally {
    enc.dispose();
    model.dispose();
  }
}

function sum(a: Float32Array): number {
  return a.reduce((x, y) => x + y, 0);
}

Deno.test("caption attention: Show-Attend-Tell maps are the reference alphas of the greedy tokens", async () => {
  const dir = `${HF}/show-attend-tell`;
  const ref = await openSafetensors(`${dir}/reference.safetensors`);
  const alphas = await ref.readF32("alphas");
  const [N, steps, P] = ref.info("alphas").shape;
  ref.close();
  const greedy: number[][] =
    JSON.parse(await Deno.readTextFile(`${dir}/generate.json`)).greedy.tokens;
  await withEncoded(dir, "images", async (m, enc) => {
    for (let n = 0; n < N; n++) {
      const tokens = greedy[n].slice(0, steps);
      const { grid, maps } = await tokenAttention(
        m,
        enc,
        n,
        [m.decoder.decoderStartTokenId],
        tokens,
      );
      assert.equal(grid[0] * grid[1], P);
      assert.equal(grid[0], grid[1], "Show-Attend-Tell pools to a square grid");
      assert.equal(maps.length, tokens.length);
      const got = new Float32Array(maps.length * P);
      maps.forEach((map, i) => got.set(map, i * P));
      const want = alphas.subarray(n * steps * P, n * steps * P + maps.length * P);
      const err = relL2(got, want);
      assert.ok(err < 1e-4, `image ${n}: maps vs alphas rel L2 ${err}`);
      for (const map of maps) assert.ok(Math.abs(sum(map) - 1) < 1e-5);
    }
    const layer0 = await tokenAttention(
      m,
      enc,
      0,
      [m.decoder.decoderStartTokenId],
      greedy[0].slice(0, 3),
      {
        layer: 0,
      },
    );
    const mean = await tokenAttention(
      m,
      enc,
      0,
      [m.decoder.decoderStartTokenId],
      greedy[0].slice(0, 3),
    );
    assert.ok(relL2(layer0.maps[2], mean.maps[2]) < 1e-6, "one layer: layer 0 is the mean");
    await assert.rejects(
      tokenAttention(m, enc, 0, [m.decoder.decoderStartTokenId], [5], { layer: 1 }),
      (e) =>
        e instanceof WebcapError && e.code === "BAD_OPTION" &&
        /1 cross-attention layer/.test(e.message),
    );
  });
});

/**
 * Independent path: feed `inputs` one token per step and return, per step, its cross-attention
 * `[layers, 1, 1, 1 + side²]` with CLS dropped and renormalised: the mean of layers and the last.
 */
async function stepByStep(
  captioner: Captioner,
  inputs: number[],
  layers: number,
  side: number,
): Promise<{ mean: Float32Array[]; last: Float32Array[] }> {
  const enc = await captioner.encode([PATTERN]);
  const gpu = captioner.gpu, m = captioner.model, L = side * side + 1;
  let rec = new Recorder(gpu);
  const st = m.beginDecode(rec, enc.state!, Int32Array.of(0), inputs.length);
  const out = { mean: [] as Float32Array[], last: [] as Float32Array[] };
  for (const id of inputs) {
    const ids = uploadTensor(gpu, Int32Array.of(id), [1], "i32");
    const logits = m.step(rec, st, ids, 1, { attention: true });
    assert.deepEqual(st.attention!.shape, [layers, 1, 1, L]);
    const read = rec.readTensor(st.attention!);
    rec.releaseAfterSubmit(ids, logits);
    await rec.submit();
    const att = (await read) as Float32Array;
    const mean = new Float32Array(L - 1), last = att.slice((layers - 1) * L + 1, layers * L);
    for (let l = 0; l < layers; l++) for (let p = 1; p < L; p++) mean[p - 1] += att[l * L + p];
    out.mean.push(mean.map((v) => v / sum(mean)));
    out.last.push(last.map((v) => v / sum(last)));
    rec = new Recorder(gpu);
  }
  await rec.submit();
  st.dispose();
  enc.dispose();
  return out;
}

/** captionAttention (mean and last layer) against {@link stepByStep} for `tokens` after `prompt`. */
async function checkAgainstSteps(
  dir: string,
  prompt: string | undefined,
  tokens: number[],
  grid: { layers: number; side: number },
): Promise<void> {
  const { layers, side } = grid;
  const captioner = await Captioner.fromPretrained(dir, { offline: true });
  try {
    const ids = captioner.promptIds(prompt);
    const got = await captionAttention(captioner, PATTERN, { tokens }, ids);
    const lastLayer = await captionAttention(captioner, PATTERN, { tokens }, ids, {
      layer: layers - 1,
    });
    assert.deepEqual(got.grid, [side, side]);
    assert.deepEqual(got.words, tokens.map((t) => tokenWord(captioner.tokenizer, t)));
    for (const map of [...got.maps, ...lastLayer.maps]) {
      assert.equal(map.length, side * side);
      assert.ok(Math.abs(sum(map) - 1) < 1e-5, `map sums to ${sum(map)}`);
    }
    const want = await stepByStep(captioner, [...ids, ...tokens.slice(0, -1)], layers, side);
    const first = ids.length - 1; // token i was predicted at the step fed input first + i
    got.maps.forEach((map, i) => {
      assert.ok(relL2(map, want.mean[first + i]) < 1e-5, `token ${i} (mean of layers)`);
    });
    lastLayer.maps.forEach((map, i) => {
      assert.ok(relL2(map, want.last[first + i]) < 1e-5, `token ${i} (last layer)`);
    });
    assert.ok(relL2(got.maps[1], lastLayer.maps[1]) > 1e-3, "one layer differs from the mean");
  } finally {
    captioner.dispose();
  }
}

Deno.test("caption attention: ViT-GPT2 maps equal step-by-step cross-attention without CLS, on the patch grid", async () => {
  const dir = `${HF}/vit-gpt2`;
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const gen = JSON.parse(await Deno.readTextFile(`${dir}/generate.json`));
  await checkAgainstSteps(dir, undefined, gen.greedy.sequences[1].slice(1, 8), {
    layers: config.decoder.n_layer,
    side: config.encoder.image_size / config.encoder.patch_size,
  });
});

Deno.test("caption attention: BLIP with a text prompt maps the tokens after the prompt", async () => {
  const dir = `${HF}/blip`;
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const gen = JSON.parse(await Deno.readTextFile(`${dir}/generate.json`));
  await checkAgainstSteps(dir, "a picture of", gen.greedy.sequences[1].slice(1, 6), {
    layers: config.text_config.num_hidden_layers,
    side: config.vision_config.image_size / config.vision_config.patch_size,
  });
});

Deno.test("caption attention: ClipCap has no cross-attention and refuses with BAD_OPTION", async () => {
  await withEncoded(`${HF}/clipcap`, "pixel_values", async (m, enc) => {
    await assert.rejects(
      tokenAttention(m, enc, 0, [m.decoder.decoderStartTokenId], [5, 6]),
      (e) =>
        e instanceof WebcapError && e.code === "BAD_OPTION" && /cross-attention/.test(e.message),
    );
  });
});

Deno.test("caption attention: imageGrid factors positions to the input's aspect", () => {
  assert.deepEqual(imageGrid(196, 1), [14, 14]);
  assert.deepEqual(imageGrid(9, 1), [3, 3]);
  assert.deepEqual(imageGrid(12 * 16, 384 / 512), [12, 16]);
  assert.deepEqual(imageGrid(7, 1), [1, 7]);
});
