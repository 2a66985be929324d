import assert from "node:assert/strict";
import { getGpu } from "../../src/gpu/device.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../../src/gpu/tensor.ts";
import type { CaptionModel, DecodeState, EncoderState } from "../../src/arch/caption_model.ts";
import { loadCaptionModel } from "../../src/arch/load.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { fixture, relL2 } from "../util.ts";
import { type RawTensor, writeSafetensors } from "../io/checkpoint_writers.ts";

const dir = fixture("hf/blip");

/** Inputs and outputs of reference.safetensors. */
async function reference() {
  const ref = await openSafetensors(`${dir}/reference.safetensors`);
  const [N, T] = ref.info("input_ids").shape;
  const out = {
    N,
    T,
    ids: Int32Array.from(await ref.readF32("input_ids")), // [N, T]
    pixels: await ref.readF32("pixel_values"),
    pixelShape: ref.info("pixel_values").shape,
    hidden: await ref.readF32("vision_last_hidden_state"),
    logits: await ref.readF32("logits"), // [N, T, vocab]
  };
  ref.close();
  return out;
}

type Ref = Awaited<ReturnType<typeof reference>>;

/** A loaded model with the reference images encoded; `run` records, submits and reads back. */
async function session(weightsDir: string, r: Ref, dtype: "f32" | "f16" = "f32") {
  const gpu = await getGpu();
  const model: CaptionModel = await loadCaptionModel(gpu, weightsDir, { dtype });
  const rec = new Recorder(gpu);
  const pixels = uploadTensor(gpu, r.pixels, r.pixelShape, "f32");
  const enc: EncoderState = model.encode(rec, pixels);
  const hidden = rec.readTensor(enc.hidden);
  rec.releaseAfterSubmit(pixels);
  await rec.submit();
  const states: DecodeState[] = [];
  return {
    model,
    enc,
    hidden: (await hidden) as Float32Array,
    begin(rowImage: number[], maxLength: number): DecodeState {
      const rec = new Recorder(gpu);
      const st = model.beginDecode(rec, enc, Int32Array.from(rowImage), maxLength);
      rec.submit();
      states.push(st);
      return st;
    },
    /** One step of `perRow` tokens per row (after optional reorder); logits `[rows·perRow, vocab]`. */
    async step(
      st: DecodeState,
      ids: number[],
      perRow: number,
      parents?: number[],
    ): Promise<Float32Array> {
      const rec = new Recorder(gpu);
      if (parents) model.reorder(rec, st, Int32Array.from(parents));
      const tokens = uploadTensor(gpu, Int32Array.from(ids), [ids.length], "i32");
      const logits: Tensor = model.step(rec, st, tokens, perRow);
      const out = rec.readTensor(logits);
      rec.releaseAfterSubmit(tokens, logits);
      await rec.submit();
      return (await out) as Float32Array;
    },
    close() {
      for (const st of states) st.dispose();
      enc.dispose();
      model.dispose();
    },
  };
}

/** Rows `[r, t]` of a `[rows, T, V]` array for t in [t0, t1), as `[rows·(t1-t0), V]`. */
function slice(
  a: Float32Array,
  rows: number,
  T: number,
  V: number,
  t0: number,
  t1: number,
): Float32Array {
  const out = new Float32Array(rows * (t1 - t0) * V);
  for (let r = 0; r < rows; r++) {
    out.set(a.subarray((r * T + t0) * V, (r * T + t1) * V), r * (t1 - t0) * V);
  }
  return out;
}

/** Ids of positions [t0, t1) of each row of `ids [rows, T]`. */
function idSlice(ids: Int32Array, rows: number, T: number, t0: number, t1: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) out.push(...ids.subarray(r * T + t0, r * T + t1));
  return out;
}

Deno.test("blip: vision states and teacher-forced logits match transformers (rel L2 < 1e-4)", async () => {
  const r = await reference();
  const s = await session(dir, r);
  const st = s.begin([...Array(r.N).keys()], r.T);
  const logits = await s.step(st, [...r.ids], r.T);
  const e = { hidden: relL2(s.hidden, r.hidden), logits: relL2(logits, r.logits) };
  console.log(
    `  vision_last_hidden_state rel L2 ${e.hidden.toExponential(2)}, logits ${
      e.logits.toExponential(2)
    }`,
  );
  assert.equal(s.model.architecture, "BlipForConditionalGeneration");
  assert.ok(e.hidden < 1e-4 && e.logits < 1e-4, JSON.stringify(e));
  s.close();
});

Deno.test("blip: a multi-token prompt then single-token steps give the teacher-forced logits", async () => {
  const r = await reference();
  const V = r.logits.length / (r.N * r.T);
  const s = await session(dir, r);
  const st = s.begin([...Array(r.N).keys()], r.T);
  const P = Math.min(3, r.T - 1); // prompt length
  let worst = relL2(
    await s.step(st, idSlice(r.ids, r.N, r.T, 0, P), P),
    slice(r.logits, r.N, r.T, V, 0, P),
  );
  for (let t = P; t < r.T; t++) {
    const got = await s.step(st, idSlice(r.ids, r.N, r.T, t, t + 1), 1);
    worst = Math.max(worst, relL2(got, slice(r.logits, r.N, r.T, V, t, t + 1)));
  }
  console.log(`  prompt of ${P} + ${r.T - P} cached steps: worst rel L2 ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-4, `${worst}`);
  assert.equal(st.length, r.T);
  s.close();
});

Deno.test("blip: reorder makes rows continue their parents' caches", async () => {
  const r = await reference();
  const s = await session(dir, r);
  const V = r.logits.length / (r.N * r.T);
  const P = Math.min(3, r.T);
  // four distinct prompts, rows tied to images 0, 1, 1, 0
  const rowImage = [0, 1, 1, 0];
  const prompts = rowImage.map((img, row) => {
    const p = idSlice(r.ids, r.N, r.T, 0, P).slice(img * P, img * P + P);
    p[P - 1] = (p[P - 1] + 7 * row) % V;
    return p;
  });
  const parents = [2, 0, 2];
  const next = [11, 12, 13].map((t) => t % V);
  const st = s.begin(rowImage, P + 1);
  await s.step(st, prompts.flat(), P);
  const reordered = await s.step(st, next, 1, parents);
  assert.deepEqual([...st.rowImage], parents.map((p) => rowImage[p]));
  assert.equal(st.rows, parents.length);
  const fresh = s.begin(parents.map((p) => rowImage[p]), P + 1);
  await s.step(fresh, parents.flatMap((p) => prompts[p]), P);
  const direct = await s.step(fresh, next, 1);
  const err = relL2(reordered, direct);
  // a reorder that dropped nothing would differ: rows 0 and 1 have other parents
  const unordered = s.begin(rowImage.slice(0, 3), P + 1);
  await s.step(unordered, prompts.slice(0, 3).flat(), P);
  const wrong = relL2(await s.step(unordered, next, 1), direct);
  console.log(
    `  reordered vs direct rel L2 ${err.toExponential(2)} (unreordered ${wrong.toExponential(2)})`,
  );
  assert.ok(err < 1e-6, `${err}`);
  assert.ok(wrong > 1e-2, `${wrong}`);
  s.close();
});

Deno.test("blip: cross-attention maps are probabilities over the image tokens", async () => {
  const r = await reference();
  const gpu = await getGpu();
  const s = await session(dir, r);
  const st = s.begin([0, 1], 4);
  const rec = new Recorder(gpu);
  const tokens = uploadTensor(gpu, Int32Array.from(idSlice(r.ids, r.N, r.T, 0, 2)), [4], "i32");
  const logits = s.model.step(rec, st, tokens, 2, { attention: true });
  const maps = rec.readTensor(st.attention!);
  rec.releaseAfterSubmit(tokens, logits);
  await rec.submit();
  const [layers, rows, S, L] = st.attention!.shape;
  const text = JSON.parse(await Deno.readTextFile(`${dir}/config.json`)).text_config;
  assert.deepEqual([layers, rows, S, L], [text.num_hidden_layers, 2, 2, s.enc.hidden.shape[1]]);
  const a = (await maps) as Float32Array;
  for (let i = 0; i < layers * rows * S; i++) {
    const sum = a.subarray(i * L, (i + 1) * L).reduce((x, y) => x + y, 0);
    assert.ok(Math.abs(sum - 1) < 1e-5, `row ${i} sums to ${sum}`);
  }
  s.close();
});

Deno.test("blip: a stored (untied) LM head matrix and decoder.bias are used", async () => {
  const r = await reference();
  const src = await openSafetensors(`${dir}/model.safetensors`);
  const tensors = new Map<string, RawTensor>();
  const f32 = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const double = (a: Float32Array) => f32(a.map((x) => 2 * x));
  for (const name of src.names()) {
    const info = src.info(name);
    const data = await src.readF32(name);
    if (name === "text_decoder.cls.predictions.bias") {
      tensors.set("text_decoder.cls.predictions.decoder.bias", {
        dtype: "F32",
        shape: info.shape,
        bytes: double(data),
      });
      continue;
    }
    tensors.set(name, { dtype: "F32", shape: info.shape, bytes: f32(data.slice()) });
    if (name === "text_decoder.bert.embeddings.word_embeddings.weight") {
      tensors.set("text_decoder.cls.predictions.decoder.weight", {
        dtype: "F32",
        shape: info.shape,
        bytes: double(data),
      });
    }
  }
  src.close();
  const tmp = await Deno.makeTempDir();
  await Deno.copyFile(`${dir}/config.json`, `${tmp}/config.json`);
  await Deno.writeFile(`${tmp}/model.safetensors`, writeSafetensors(tensors));
  const s = await session(tmp, r);
  const st = s.begin([...Array(r.N).keys()], r.T);
  const logits = await s.step(st, [...r.ids], r.T);
  const err = relL2(logits, r.logits.map((x) => 2 * x));
  assert.ok(err < 1e-4, `logits vs 2 × reference: ${err}`);
  s.close();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("blip: f16 weight storage stays within 1e-2", async () => {
  const gpu = await getGpu();
  if (!gpu.hasF16) return console.log("  f16 storage skipped: adapter has no shader-f16");
  const r = await reference();
  const s = await session(dir, r, "f16");
  const st = s.begin([...Array(r.N).keys()], r.T);
  const e = {
    hidden: relL2(s.hidden, r.hidden),
    logits: relL2(await s.step(st, [...r.ids], r.T), r.logits),
  };
  console.log(`  f16: hidden ${e.hidden.toExponential(2)}, logits ${e.logits.toExponential(2)}`);
  assert.ok(e.hidden < 1e-2 && e.logits < 1e-2, JSON.stringify(e));
  s.close();
});

Deno.test("blip: decoder ids come from text_config as BLIP's generate uses them", async () => {
  const gpu = await getGpu();
  const model = await loadCaptionModel(gpu, dir);
  const text = JSON.parse(await Deno.readTextFile(`${dir}/config.json`)).text_config;
  assert.deepEqual(model.decoder, {
    decoderStartTokenId: text.bos_token_id,
    eosTokenId: text.sep_token_id,
    padTokenId: text.pad_token_id,
    vocabSize: text.vocab_size,
    maxPositions: text.max_position_embeddings,
  });
  model.dispose();
});

Deno.test("blip: bad configs, weights and options give named errors", async () => {
  const gpu = await getGpu();
  const base = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const tmp = await Deno.makeTempDir();
  await Deno.symlink(`${dir}/model.safetensors`, `${tmp}/model.safetensors`);
  const attempt = async (edit: (c: typeof base) => void, code: string, message: RegExp) => {
    const c = structuredClone(base);
    edit(c);
    await Deno.writeTextFile(`${tmp}/config.json`, JSON.stringify(c));
    await assert.rejects(loadCaptionModel(gpu, tmp), (e: Error & { code?: string }) => {
      assert.equal(e.code, code, e.message);
      assert.match(e.message, message);
      return true;
    });
  };
  await attempt(
    (c) => (c.text_config.hidden_size = "big"),
    "BAD_CONFIG",
    /text_config: "hidden_size" must be/,
  );
  const { text_config: text, vision_config: vision } = base;
  const heads = text.hidden_size + 1,
    encHidden = vision.hidden_size + 16,
    inter = text.intermediate_size + 16;
  await attempt(
    (c) => (c.text_config.num_attention_heads = heads),
    "BAD_CONFIG",
    new RegExp(`not divisible by num_attention_heads ${heads}`),
  );
  await attempt(
    (c) => (c.text_config.encoder_hidden_size = encHidden),
    "BAD_CONFIG",
    new RegExp(`encoder_hidden_size ${encHidden} differs`),
  );
  await attempt((c) => (c.text_config.is_decoder = false), "BAD_CONFIG", /is_decoder/);
  await attempt(
    (c) => (c.text_config.sep_token_id = -1),
    "BAD_CONFIG",
    /text_config\.sep_token_id/,
  );
  await attempt((c) => (c.vision_config = 3), "BAD_CONFIG", /"vision_config" must be an object/);
  await attempt(
    (c) => (c.text_config.intermediate_size = inter),
    "BAD_WEIGHTS",
    new RegExp(
      `"text_decoder\\.bert\\.encoder\\.layer\\.0\\.intermediate\\.dense\\.weight" has shape \\[${text.intermediate_size},${text.hidden_size}\\] but the config implies \\[${inter},${text.hidden_size}\\]`,
    ),
  );
  const layers = text.num_hidden_layers;
  await attempt(
    (c) => (c.text_config.num_hidden_layers = layers + 1),
    "BAD_WEIGHTS",
    new RegExp(`text_decoder\\.bert\\.encoder\\.layer\\.${layers}\\..*missing`),
  );
  await attempt(
    (c) => (c.vision_config.hidden_act = "swish7"),
    "BAD_CONFIG",
    /unsupported activation "swish7"/,
  );
  await Deno.remove(tmp, { recursive: true });

  const model = await loadCaptionModel(gpu, dir);
  const rec = new Recorder(gpu);
  const C = vision.num_channels ?? 3, I = vision.image_size;
  const pixels = uploadTensor(gpu, new Float32Array(C * I * I), [1, C, I, I], "f32");
  const enc = model.encode(rec, pixels);
  assert.throws(
    () => model.beginDecode(rec, enc, Int32Array.of(0), text.max_position_embeddings + 1),
    /max_position_embeddings/,
  );
  assert.throws(
    () => model.beginDecode(rec, enc, Int32Array.of(1), 4),
    /rowImage must index the 1 encoded images/,
  );
  const st = model.beginDecode(rec, enc, Int32Array.of(0), 2);
  const tokens = uploadTensor(gpu, Int32Array.of(5, 6, 7), [3], "i32");
  assert.throws(() => model.step(rec, st, tokens, 3), /cache holds 2 positions; 3 requested/);
  assert.throws(() => model.step(rec, st, tokens, 2), /3 token ids for 1 rows × 2 tokens/);
  rec.releaseAfterSubmit(pixels, tokens);
  await rec.submit();
  st.dispose();
  enc.dispose();
  model.dispose();
});

Deno.test("blip: load, encode, decode with reorder and dispose return GPU memory to baseline", async () => {
  const gpu = await getGpu();
  const r = await reference();
  const cycle = async () => {
    const s = await session(dir, r);
    const st = s.begin([0, 1, 0], 3);
    await s.step(st, [...r.ids.subarray(0, 3)], 1);
    await s.step(st, [...r.ids.subarray(0, 2)], 1, [2, 0]);
    s.close();
  };
  await cycle(); // warm the pool
  const base = { live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes, free: gpu.pool.freeBytes };
  for (let i = 0; i < 5; i++) await cycle();
  assert.deepEqual(
    { live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes, free: gpu.pool.freeBytes },
    base,
  );
});
