import assert from "node:assert/strict";
import { getGpu } from "../../src/gpu/device.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { type Tensor, uploadTemp, uploadTensor } from "../../src/gpu/tensor.ts";
import type { CaptionModel, DecodeState, EncoderState } from "../../src/arch/caption_model.ts";
import { loadCaptionModel } from "../../src/arch/load.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { fixture, relL2 } from "../util.ts";

const dir = fixture("hf/show-attend-tell");

interface Reference {
  images: Float32Array;
  imageShape: number[];
  encoderOut: Float32Array;
  firstStepLogits: Float32Array;
  /** `[N, steps, pixels]` along the greedy decode. */
  alphas: Float32Array;
  alphaShape: number[];
  /** generate.json's greedy tokens per image, the start token not included. */
  greedy: number[][];
  maxNewTokens: number;
}

async function reference(): Promise<Reference> {
  const ref = await openSafetensors(`${dir}/reference.safetensors`);
  const gen = JSON.parse(await Deno.readTextFile(`${dir}/generate.json`)).greedy;
  const out: Reference = {
    images: await ref.readF32("images"),
    imageShape: ref.info("images").shape,
    encoderOut: await ref.readF32("encoder_out"),
    firstStepLogits: await ref.readF32("first_step_logits"),
    alphas: await ref.readF32("alphas"),
    alphaShape: ref.info("alphas").shape,
    greedy: gen.tokens,
    maxNewTokens: gen.max_new_tokens,
  };
  ref.close();
  return out;
}

function argmax(a: Float32Array, row: number, V: number): number {
  let best = 0;
  for (let v = 1; v < V; v++) if (a[row * V + v] > a[row * V + best]) best = v;
  return best;
}

/** Rows `[r·S + s]` of `x [rows·S, W]` for s = `s` (one step of a teacher-forced run). */
function stepRows(x: Float32Array, rows: number, S: number, s: number, W: number): Float32Array {
  const out = new Float32Array(rows * W);
  for (let r = 0; r < rows; r++) out.set(x.subarray((r * S + s) * W, (r * S + s + 1) * W), r * W);
  return out;
}

/** Load the model of `modelDir`, encode the reference images, call `fn`, free everything. */
async function withModel<T>(
  modelDir: string,
  fn: (m: CaptionModel, enc: EncoderState, ref: Reference) => Promise<T>,
): Promise<T> {
  const gpu = await getGpu();
  const ref = await reference();
  const model = await loadCaptionModel(gpu, modelDir);
  const pixels = uploadTensor(gpu, ref.images, ref.imageShape, "f32");
  const rec = new Recorder(gpu);
  const enc = model.encode(rec, pixels);
  rec.releaseAfterSubmit(pixels);
  await rec.submit();
  try {
    return await fn(model, enc, ref);
  } finally {
    enc.dispose();
    model.dispose();
  }
}

/** One recorded step; returns logits and (optionally) α read back. */
async function step(
  m: CaptionModel,
  st: DecodeState,
  tokens: Int32Array,
  S: number,
  attention = false,
): Promise<{ logits: Float32Array; alpha?: Float32Array }> {
  const gpu = await getGpu();
  const rec = new Recorder(gpu);
  const t = uploadTensor(gpu, tokens, [tokens.length], "i32");
  const logits = m.step(rec, st, t, S, { attention });
  const pl = rec.readTensor(logits);
  const pa = attention ? rec.readTensor(st.attention as Tensor) : undefined;
  rec.releaseAfterSubmit(t, logits);
  await rec.submit();
  return { logits: (await pl) as Float32Array, alpha: pa && (await pa) as Float32Array };
}

async function begin(
  m: CaptionModel,
  enc: EncoderState,
  rowImage: number[],
  maxLength: number,
): Promise<DecodeState> {
  const rec = new Recorder(await getGpu());
  const st = m.beginDecode(rec, enc, Int32Array.from(rowImage), maxLength);
  await rec.submit();
  return st;
}

/** Teacher-forced run over the reference's greedy inputs ([start, g0, …]): every step in one call. */
function teacherForced(modelDir: string) {
  return withModel(modelDir, async (m, enc, ref) => {
    const [N, steps, P] = ref.alphaShape;
    const V = m.decoder.vocabSize;
    const inputs = ref.greedy.flatMap((
      g,
    ) => [m.decoder.decoderStartTokenId, ...g.slice(0, steps - 1)]);
    const st = await begin(m, enc, [...Array(N).keys()], steps);
    const { logits, alpha } = await step(m, st, Int32Array.from(inputs), steps, true);
    const rec = new Recorder(await getGpu());
    const pe = rec.readTensor(enc.hidden);
    await rec.submit();
    const encoderOut = (await pe) as Float32Array;
    assert.deepEqual(st.attention!.shape, [1, N, steps, P]);
    st.dispose();
    const argmaxes = ref.greedy.map((_, r) =>
      Array.from({ length: steps }, (_, s) => argmax(logits, r * steps + s, V))
    );
    return {
      ref,
      alpha: alpha!,
      argmaxes,
      err: {
        encoderOut: relL2(encoderOut, ref.encoderOut),
        firstStepLogits: relL2(stepRows(logits, N, steps, 0, V), ref.firstStepLogits),
        alphas: relL2(alpha!, ref.alphas),
      },
    };
  });
}

Deno.test("show-attend-tell: encoder_out, first_step_logits and alphas match the reference (rel L2 < 1e-4)", async () => {
  const { err, alpha, argmaxes, ref } = await teacherForced(dir);
  console.log(
    `  encoder_out ${err.encoderOut.toExponential(2)}, first_step_logits ${
      err.firstStepLogits.toExponential(2)
    }, ` +
      `alphas ${err.alphas.toExponential(2)}`,
  );
  assert.ok(
    err.encoderOut < 1e-4 && err.firstStepLogits < 1e-4 && err.alphas < 1e-4,
    JSON.stringify(err),
  );
  const [, steps, P] = ref.alphaShape;
  for (let row = 0; row < alpha.length / P; row++) {
    const sum = alpha.subarray(row * P, (row + 1) * P).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-5, `α row ${row} sums to ${sum}`);
  }
  assert.deepEqual(
    argmaxes,
    ref.greedy.map((g) => g.slice(0, steps)),
    "teacher-forced argmax follows the greedy tokens",
  );
});

Deno.test("show-attend-tell: a step-by-step greedy loop reproduces generate.json and the reference alphas", async () => {
  await withModel(dir, async (m, enc, ref) => {
    const [N, steps, P] = ref.alphaShape;
    const st = await begin(m, enc, [...Array(N).keys()], ref.maxNewTokens);
    const seqs: number[][] = ref.greedy.map(() => []);
    const alphas = new Float32Array(N * steps * P);
    let prev = new Int32Array(N).fill(m.decoder.decoderStartTokenId);
    const done = new Array(N).fill(false);
    for (let s = 0; s < ref.maxNewTokens && !done.every(Boolean); s++) {
      const { logits, alpha } = await step(m, st, prev, 1, true);
      assert.deepEqual(st.attention!.shape, [1, N, 1, P]);
      prev = Int32Array.from({ length: N }, (_, r) => argmax(logits, r, m.decoder.vocabSize));
      for (let r = 0; r < N; r++) {
        if (s < steps) alphas.set(alpha!.subarray(r * P, (r + 1) * P), (r * steps + s) * P);
        if (done[r]) continue;
        seqs[r].push(prev[r]);
        done[r] = prev[r] === m.decoder.eosTokenId;
      }
    }
    st.dispose();
    assert.deepEqual(seqs, ref.greedy);
    const err = relL2(alphas, ref.alphas);
    console.log(`  greedy tokens equal; alphas of the one-token steps ${err.toExponential(2)}`);
    assert.ok(err < 1e-4, `alphas rel L2 ${err}`);
  });
});

Deno.test("show-attend-tell: reorder gathers h and c — logits follow permuted and dropped rows; states free their buffers", async () => {
  await withModel(dir, async (m, enc) => {
    const V = m.decoder.vocabSize;
    const rowImage = [0, 1, 1, 0];
    const first = [m.decoder.decoderStartTokenId, 7, m.decoder.decoderStartTokenId, 42];
    const second = [5, 9, 13, 21, 34, 55];
    const pool = (await getGpu()).pool;
    const base = { owned: pool.ownedBytes, live: pool.liveBytes };
    for (const parents of [[3, 0, 2, 1], [2, 2, 0]]) {
      const a = await begin(m, enc, rowImage, 3);
      await step(m, a, Int32Array.from(first.flatMap((t) => [t, t + 1])), 2);
      const rec = new Recorder(await getGpu());
      m.reorder(rec, a, Int32Array.from(parents));
      await rec.submit();
      assert.deepEqual([...a.rowImage], parents.map((p) => rowImage[p]));
      const got = (await step(m, a, Int32Array.from(second.slice(0, parents.length)), 1)).logits;
      a.dispose();
      const b = await begin(m, enc, parents.map((p) => rowImage[p]), 3);
      await step(m, b, Int32Array.from(parents.flatMap((p) => [first[p], first[p] + 1])), 2);
      const want = (await step(m, b, Int32Array.from(second.slice(0, parents.length)), 1)).logits;
      b.dispose();
      assert.equal(got.length, parents.length * V);
      const err = relL2(got, want);
      assert.ok(err < 1e-6, `parents ${parents}: rel L2 ${err}`);
    }
    assert.deepEqual(
      { owned: pool.ownedBytes, live: pool.liveBytes },
      base,
      "disposed states free their buffers",
    );
  });
});

Deno.test("show-attend-tell: the pickle checkpoint (decoder.fc.* in float16) gives the same outputs", async () => {
  const tmp = await Deno.makeTempDir();
  await Deno.copyFile(`${dir}/config.json`, `${tmp}/config.json`);
  await Deno.symlink(`${dir}/checkpoint.pth.tar`, `${tmp}/checkpoint.pth.tar`);
  try {
    const { err, argmaxes, ref } = await teacherForced(tmp);
    console.log(
      `  pickle: encoder_out ${err.encoderOut.toExponential(2)}, first_step_logits ` +
        `${err.firstStepLogits.toExponential(2)}, alphas ${err.alphas.toExponential(2)}`,
    );
    // α and h do not depend on fc under teacher forcing; logits carry fc's float16 rounding.
    assert.ok(
      err.encoderOut < 1e-4 && err.alphas < 1e-4 && err.firstStepLogits < 1e-3,
      JSON.stringify(err),
    );
    assert.deepEqual(argmaxes, ref.greedy.map((g) => g.slice(0, ref.alphaShape[1])));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("show-attend-tell: bad configs and options give named errors", async () => {
  const gpu = await getGpu();
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const tmp = await Deno.makeTempDir();
  await Deno.symlink(`${dir}/model.safetensors`, `${tmp}/model.safetensors`);
  try {
    for (
      const [patch, pattern] of [
        [{ encoder: "vgg16" }, /encoder "vgg16" is not supported/],
        [
          { decoder_dim: 64 },
          /decoder\.attention\.decoder_att\.weight" has shape \[32,48\] but the config implies \[32,64\]/,
        ],
        [{ end_token_id: cfg.vocab_size }, /endTokenId .* is not below vocab_size/],
      ] as const
    ) {
      await Deno.writeTextFile(`${tmp}/config.json`, JSON.stringify({ ...cfg, ...patch }));
      await assert.rejects(loadCaptionModel(gpu, tmp), pattern);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  await withModel(dir, async (m, enc) => {
    const rec = new Recorder(gpu);
    assert.throws(
      () => m.beginDecode(rec, enc, Int32Array.of(0, 2), 4),
      /rowImage must index the 2 encoded images/,
    );
    assert.throws(
      () => m.beginDecode(rec, enc, Int32Array.of(0), m.decoder.maxPositions + 1),
      /exceeds/,
    );
    const st = m.beginDecode(rec, enc, Int32Array.of(1), 1);
    await rec.submit();
    await assert.rejects(step(m, st, Int32Array.of(1, 2), 2), /begun for 1 positions; 2 requested/);
    const r2 = new Recorder(gpu);
    assert.throws(
      () => m.reorder(r2, st, Int32Array.of(1)),
      /parents must index the 1 current rows/,
    );
    await r2.submit();
    st.dispose();
  });
});

Deno.test("show-attend-tell: a second attention step in the same recorder keeps the first α until the submit", async () => {
  await withModel(dir, async (m, enc) => {
    const gpu = await getGpu();
    const base = { owned: gpu.pool.ownedBytes, live: gpu.pool.liveBytes };
    const start = m.decoder.decoderStartTokenId;
    const st = await begin(m, enc, [0, 1], 2);
    const rec = new Recorder(gpu);
    const t1 = uploadTensor(gpu, Int32Array.of(start, start), [2], "i32");
    const t2 = uploadTensor(gpu, Int32Array.of(5, 9), [2], "i32");
    const l1 = m.step(rec, st, t1, 1, { attention: true });
    const first = st.attention!;
    const pa = rec.readTensor(first);
    const l2 = m.step(rec, st, t2, 1, { attention: true });
    // an upload recorded now lands before the submitted work runs: it must not get a buffer
    // that the first step still writes
    const probe = uploadTemp(gpu, new Float32Array(first.size).fill(7), [first.size], "f32");
    const pp = rec.readTensor(probe);
    rec.releaseAfterSubmit(t1, t2, l1, l2, probe);
    await rec.submit();
    assert.ok(((await pp) as Float32Array).every((v) => v === 7), "the upload survives");
    const alpha = (await pa) as Float32Array, P = first.shape[3];
    for (let r = 0; r < 2; r++) {
      const sum = alpha.subarray(r * P, (r + 1) * P).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-5, `row ${r}: α sums to ${sum}`);
    }
    st.dispose();
    assert.deepEqual({ owned: gpu.pool.ownedBytes, live: gpu.pool.liveBytes }, base);
  });
});
