import assert from "node:assert/strict";
import { getGpu } from "../../src/gpu/device.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../../src/gpu/tensor.ts";
import type { CaptionModel, DecodeState } from "../../src/arch/caption_model.ts";
import { clipVisionEncode } from "../../src/nn/clip_vision.ts";
import { ClipCap, type ClipCapEncoderState } from "../../src/arch/clipcap.ts";
import { loadCaptionModel } from "../../src/arch/load.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { fixture, relL2 } from "../util.ts";

const dir = fixture("hf/clipcap");
const ref = await openSafetensors(`${dir}/reference.safetensors`);
const pixelsData = await ref.readF32("pixel_values");
const pixelsShape = ref.info("pixel_values").shape;
const N = pixelsShape[0];
const identity = Int32Array.from({ length: N }, (_, i) => i);
const greedyCase = JSON.parse(await Deno.readTextFile(`${dir}/generate.json`)).greedy as {
  max_new_tokens: number;
  eos: number;
  tokens: number[][];
};

async function load(folder = dir, dtype: "f32" | "f16" = "f32"): Promise<ClipCap> {
  const model = await loadCaptionModel(await getGpu(), folder, { dtype });
  assert.ok(
    model instanceof ClipCap,
    `${folder} should load as ClipCap, got ${model.architecture}`,
  );
  return model;
}

/** Encode the reference pixels; returns the state (on the GPU) and the recorder holding the work. */
async function encode(model: CaptionModel): Promise<{ rec: Recorder; enc: ClipCapEncoderState }> {
  const gpu = await getGpu();
  const rec = new Recorder(gpu);
  const pixels = uploadTensor(gpu, pixelsData, pixelsShape, "f32");
  const enc = model.encode(rec, pixels) as ClipCapEncoderState;
  rec.releaseAfterSubmit(pixels);
  return { rec, enc };
}

/** Relative L2 errors of image_embeds and prefix_embeds against the reference. */
async function embedErrors(model: ClipCap): Promise<{ imageEmbeds: number; prefix: number }> {
  const { rec, enc } = await encode(model);
  const pi = rec.readTensor(enc.imageEmbeds), pp = rec.readTensor(enc.hidden);
  await rec.submit();
  const out = {
    imageEmbeds: relL2(await pi, await ref.readF32("image_embeds")),
    prefix: relL2(await pp, await ref.readF32("prefix_embeds")),
  };
  enc.dispose();
  return out;
}

/** Run one step and read its logits back (submitting `rec`). */
async function stepRead(
  model: CaptionModel,
  rec: Recorder,
  st: DecodeState,
  tokens: Int32Array,
  perRow = 1,
): Promise<Float32Array> {
  const ids = uploadTensor(rec.gpu, tokens, [tokens.length], "i32");
  const logits: Tensor = model.step(rec, st, ids, perRow);
  const p = rec.readTensor(logits);
  rec.releaseAfterSubmit(ids, logits);
  await rec.submit();
  return (await p) as Float32Array;
}

/** Greedy decoding over the CaptionModel interface: tokens per image and each step's logits. */
async function greedy(model: CaptionModel, maxNew: number, eos: number) {
  const gpu = await getGpu();
  const { rec, enc } = await encode(model);
  const st = model.beginDecode(rec, enc, identity, maxNew);
  const V = model.decoder.vocabSize;
  const seqs: number[][] = Array.from({ length: N }, () => []);
  const stepLogits: Float32Array[] = [];
  let tokens = new Int32Array(N).fill(model.decoder.decoderStartTokenId);
  let r0: Recorder = rec;
  for (let t = 0; t < maxNew && seqs.some((s) => s.at(-1) !== eos); t++) {
    const l = await stepRead(model, r0, st, tokens);
    stepLogits.push(l);
    tokens = Int32Array.from(seqs, (s, r) => {
      if (s.at(-1) === eos) return eos;
      let best = 0;
      for (let v = 1; v < V; v++) if (l[r * V + v] > l[r * V + best]) best = v;
      s.push(best);
      return best;
    });
    r0 = new Recorder(gpu);
  }
  st.dispose();
  enc.dispose();
  return { seqs, stepLogits };
}

function expectedTokens(): number[][] {
  return greedyCase.tokens.map((row) => {
    const end = row.indexOf(greedyCase.eos);
    return end < 0 ? row : row.slice(0, end + 1);
  });
}

Deno.test("clipcap: image_embeds and prefix_embeds match transformers (rel L2 < 1e-4)", async () => {
  const model = await load();
  const e = await embedErrors(model);
  console.log(
    `  image_embeds rel L2 ${e.imageEmbeds.toExponential(2)}, prefix_embeds ${
      e.prefix.toExponential(2)
    }`,
  );
  assert.ok(e.imageEmbeds < 1e-4 && e.prefix < 1e-4, JSON.stringify(e));
  if (ref.has("vision_last_hidden_state")) {
    const rec = new Recorder(await getGpu());
    const pixels = uploadTensor(rec.gpu, pixelsData, pixelsShape, "f32");
    const out = clipVisionEncode(rec, model.vision, pixels);
    const p = rec.readTensor(out.hidden);
    rec.releaseAfterSubmit(pixels, out.hidden, out.imageEmbeds);
    await rec.submit();
    const err = relL2(await p, await ref.readF32("vision_last_hidden_state"));
    console.log(`  vision_last_hidden_state rel L2 ${err.toExponential(2)}`);
    assert.ok(err < 1e-4, `vision_last_hidden_state rel L2 ${err}`);
  }
  model.dispose();
});

Deno.test("clipcap: greedy generation equals generate.json; a teacher-forced first step agrees", async () => {
  const model = await load();
  assert.equal(model.decoder.eosTokenId, greedyCase.eos);
  assert.equal(model.decoder.decoderStartTokenId, model.decoder.vocabSize);
  const { seqs, stepLogits } = await greedy(model, greedyCase.max_new_tokens, greedyCase.eos);
  assert.deepEqual(seqs, expectedTokens());
  // One step of S positions: [start, g0, …, g(S-2)] per row gives the greedy steps' logits.
  const S = Math.min(4, stepLogits.length), V = model.decoder.vocabSize;
  const { rec, enc } = await encode(model);
  const st = model.beginDecode(rec, enc, identity, S);
  const tf = Int32Array.from({ length: N * S }, (_, i) => {
    const r = Math.floor(i / S), j = i % S;
    return j === 0 ? model.decoder.decoderStartTokenId : seqs[r][j - 1] ?? greedyCase.eos;
  });
  const logits = await stepRead(model, rec, st, tf, S);
  const want = new Float32Array(N * S * V);
  for (let r = 0; r < N; r++) {
    for (let j = 0; j < S; j++) {
      want.set(stepLogits[j].subarray(r * V, (r + 1) * V), (r * S + j) * V);
    }
  }
  const err = relL2(logits, want);
  console.log(
    `  tokens ${JSON.stringify(seqs)}; teacher-forced vs stepwise logits rel L2 ${
      err.toExponential(2)
    }`,
  );
  assert.ok(err < 1e-5, `teacher-forced logits differ from stepwise: ${err}`);
  st.dispose();
  enc.dispose();
  model.dispose();
});

Deno.test("clipcap: clipcap.pt (bare pickle state dict) gives the same outputs", async () => {
  const tmp = await Deno.makeTempDir();
  await Deno.copyFile(`${dir}/clipcap-config.json`, `${tmp}/clipcap-config.json`);
  await Deno.symlink(`${dir}/clip-vision`, `${tmp}/clip-vision`);
  await Deno.symlink(`${dir}/clipcap.pt`, `${tmp}/clipcap.pt`);
  const model = await load(tmp);
  const e = await embedErrors(model);
  assert.ok(e.imageEmbeds < 1e-4 && e.prefix < 1e-4, JSON.stringify(e));
  const { seqs } = await greedy(model, greedyCase.max_new_tokens, greedyCase.eos);
  assert.deepEqual(seqs, expectedTokens());
  model.dispose();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("clipcap: reorder before the start step and mid-decoding equals decoding the reordered rows", async () => {
  const model = await load();
  const gpu = await getGpu();
  const start = model.decoder.decoderStartTokenId;
  /** Decode `rows`, optionally reordering to `parents` before step `at`; logits of the last step. */
  const run = async (
    rows: number[],
    steps: Int32Array[],
    reorder?: { at: number; parents: number[] },
  ) => {
    const { rec, enc } = await encode(model);
    const st = model.beginDecode(rec, enc, Int32Array.from(rows), steps.length + 1);
    let r = rec, last: Float32Array = new Float32Array(0);
    for (let t = 0; t < steps.length; t++) {
      if (reorder?.at === t) model.reorder(r, st, Int32Array.from(reorder.parents));
      last = await stepRead(model, r, st, steps[t]);
      r = new Recorder(gpu);
    }
    const rowImage = Array.from(st.rowImage);
    st.dispose();
    enc.dispose();
    return { last, rowImage };
  };
  const [a, b, c, d, e] = [7, 42, 199, 3, 250];
  // Reorder before the start step: the start step must use the reordered rows' images.
  const r1 = await run([0, 1], [Int32Array.of(start, start, start), Int32Array.of(a, b, c)], {
    at: 0,
    parents: [1, 0, 1],
  });
  const f1 = await run([1, 0, 1], [Int32Array.of(start, start, start), Int32Array.of(a, b, c)]);
  assert.deepEqual(r1.rowImage, [1, 0, 1]);
  // Reorder after two steps: caches follow their parents.
  const r2 = await run([0, 1], [
    Int32Array.of(start, start),
    Int32Array.of(a, b),
    Int32Array.of(c, d, e),
  ], {
    at: 2,
    parents: [1, 1, 0],
  });
  const f2 = await run([1, 1, 0], [
    Int32Array.of(start, start, start),
    Int32Array.of(b, b, a),
    Int32Array.of(c, d, e),
  ]);
  const errs = [relL2(r1.last, f1.last), relL2(r2.last, f2.last)];
  console.log(
    `  reordered vs fresh logits rel L2 ${errs.map((x) => x.toExponential(2)).join(", ")}`,
  );
  assert.ok(errs.every((x) => x < 1e-6), JSON.stringify(errs));
  model.dispose();
});

Deno.test("clipcap: the folder is complete for captioning and bad folders give errors naming the file", async () => {
  const proc = JSON.parse(await Deno.readTextFile(`${dir}/clip-vision/preprocessor_config.json`));
  const vision = JSON.parse(await Deno.readTextFile(`${dir}/clip-vision/config.json`));
  assert.equal(proc.image_processor_type, "CLIPImageProcessor");
  assert.equal(proc.crop_size.height, vision.image_size);
  const gpu = await getGpu();
  const tmp = await Deno.makeTempDir();
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/clipcap-config.json`));
  await Deno.writeTextFile(`${tmp}/clipcap-config.json`, JSON.stringify(cfg));
  await assert.rejects(loadCaptionModel(gpu, tmp), /clip-vision\/config\.json does not exist/);
  await Deno.symlink(`${dir}/clip-vision`, `${tmp}/clip-vision`);
  await assert.rejects(
    loadCaptionModel(gpu, tmp),
    /no ClipCap weights: looked for clipcap\.safetensors/,
  );
  await Deno.writeTextFile(
    `${tmp}/clipcap-config.json`,
    JSON.stringify({ ...cfg, prefix_size: cfg.prefix_size + 1 }),
  );
  await assert.rejects(
    loadCaptionModel(gpu, tmp),
    /prefix_size .* differs from the CLIP projection_dim/,
  );
  await Deno.writeTextFile(
    `${tmp}/clipcap-config.json`,
    JSON.stringify({ ...cfg, prefix_length: cfg.prefix_length + 1 }),
  );
  await Deno.symlink(`${dir}/clipcap.safetensors`, `${tmp}/clipcap.safetensors`);
  await assert.rejects(
    loadCaptionModel(gpu, tmp),
    /clip_project\.model\.2\.weight" has shape \[.*\] but the config implies/,
  );
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("clipcap: f16 weights stay within 1e-2, and repeated decoding returns GPU memory to baseline", async () => {
  const gpu = await getGpu();
  if (gpu.hasF16) {
    const model = await load(dir, "f16");
    const e = await embedErrors(model);
    console.log(
      `  f16 storage: image_embeds ${e.imageEmbeds.toExponential(2)}, prefix_embeds ${
        e.prefix.toExponential(2)
      }`,
    );
    assert.ok(e.imageEmbeds < 1e-2 && e.prefix < 1e-2, JSON.stringify(e));
    model.dispose();
  } else console.log("  f16 storage skipped: adapter has no shader-f16");
  const once = async () => {
    const model = await load();
    await greedy(model, 3, greedyCase.eos);
    model.dispose();
  };
  await once();
  const base = { live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes, free: gpu.pool.freeBytes };
  for (let i = 0; i < 3; i++) await once();
  assert.deepEqual({
    live: gpu.pool.liveBytes,
    owned: gpu.pool.ownedBytes,
    free: gpu.pool.freeBytes,
  }, base);
});
