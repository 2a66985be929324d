/**
 * The KV cache's reorder by parents on the GPU: every layer's rows gathered by the parents into
 * the spare buffers, which then swap with the caches (two buffers per layer however many
 * reorders); wrong parents are refused before any work. Decode steps of GPT-2 and the BERT
 * decoder: the fused attention where `decodeAttentionPlan` takes it (GPUs) gives the logits,
 * caches and cross probabilities of the separate path, in fewer dispatches.
 */
import assert from "node:assert/strict";
import { loadBlipTowers } from "../../src/arch/blip.ts";
import type { AdapterClass, Gpu } from "../../src/gpu/device.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { type Tensor, uploadTensor, writeTensor } from "../../src/gpu/tensor.ts";
import { openWeights } from "../../src/io/weights.ts";
import { bertBeginDecode, bertForward } from "../../src/nn/bert_decoder.ts";
import { gpt2BeginDecode, gpt2Config, gpt2Forward, loadGpt2 } from "../../src/nn/gpt2.ts";
import {
  beginKvCache,
  disposeKvCache,
  type KvCache,
  reorderKvCache,
} from "../../src/nn/kv_cache.ts";
import { ParamLoader } from "../../src/nn/params.ts";
import { layerNormPlan } from "../../src/shaders/layernorm.ts";
import {
  asAdapterClass,
  assertCode,
  firstNonFinite,
  fixture,
  getGpu,
  poisoned,
  randomF32,
  readAll,
  relL2,
} from "../util.ts";

Deno.test("kv cache: reorders by GPU parents gather rows into a ping-pong pair", async () => {
  const gpu = await getGpu();
  const shape = { layers: 2, hidden: 2, maxLength: 3 };
  const rows = 4, width = shape.maxLength * 2 * shape.hidden;
  const st = beginKvCache(new Recorder(gpu), shape, Int32Array.from([0, 0, 1, 1]));
  const layer = (i: number) => Float32Array.from({ length: rows * width }, (_, j) => i * 1000 + j);
  st.kv.forEach((t, i) => writeTensor(t, layer(i)));
  const buffers = new Set(st.kv.map((t) => t.buffer));
  const steps = [[1, 1, 3, 2], [0, 0, 2, 3], [1, 0, 2, 2]];
  let want = [0, 1].map(layer);
  for (const parents of steps) {
    const ids = uploadTensor(gpu, Int32Array.from(parents), [rows], "i32", "parents");
    const rec = new Recorder(gpu);
    reorderKvCache(rec, st, ids);
    const got = await readAll(rec, st.kv);
    want = want.map((w) =>
      Float32Array.from({ length: rows * width }, (_, j) => {
        const r = Math.floor(j / width);
        return w[parents[r] * width + (j % width)];
      })
    );
    assert.deepEqual(got, want);
    ids.release();
    for (const t of st.kv) buffers.add(t.buffer);
  }
  assert.equal(buffers.size, 2 * shape.layers); // the caches and their spares, nothing more
  assert.deepEqual([...st.rowImage], [0, 0, 1, 1]);
  const short = uploadTensor(gpu, Int32Array.from([0, 1]), [2], "i32", "parents");
  assertCode(() => reorderKvCache(new Recorder(gpu), st, short), "BAD_SHAPE", "i32 \\[4\\]");
  short.release();
  disposeKvCache(st);
});

/** A decoder over a {@link KvCache}, as the decode-step tests drive it. */
interface Decoder {
  layers: number;
  heads: number;
  /** Encoder states `[2 images, encSeq, encHidden]`. */
  enc: Tensor;
  begin(rec: Recorder, rowImage: Int32Array): KvCache;
  forward(rec: Recorder, st: KvCache, ids: Tensor, S: number, probs?: Tensor[]): Tensor;
  /** Saved dispatches per layer of a fused decode step: (separate − 1) for each attention. */
  saved: number;
  dispose(): void;
}

/**
 * The ViT-GPT2 fixture's GPT-2 (with cross-attention): self (LN) + matmul + copy + attention → 1,
 * cross (LN) + matmul + attention → 1; the LayerNorm is its own dispatch on CPU adapters only
 * where matmul does not read it in its prologue (`matmulPlan`'s `fuseNorm`).
 */
async function gpt2Decoder(gpu: Gpu): Promise<Decoder> {
  const dir = fixture("hf/vit-gpt2");
  const cfg = gpt2Config(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)).decoder, "t");
  const file = await openWeights(dir);
  const p = new ParamLoader(gpu, file);
  const w = await loadGpt2(p, cfg, "decoder.transformer.", "test");
  file.close();
  const ln = layerNormPlan("cpu", cfg.n_embd) === "workgroup" ? 0 : 1; // fused : separate
  const enc = uploadTensor(gpu, randomF32(2 * 5 * cfg.n_embd, 3), [2, 5, cfg.n_embd], "f32");
  return {
    layers: cfg.n_layer,
    heads: cfg.n_head,
    enc,
    begin: (rec, rowImage) => gpt2BeginDecode(rec, w, enc, rowImage, 8),
    forward: (rec, st, ids, S, probs) => gpt2Forward(rec, w, st, { ids }, S, probs),
    saved: (3 + ln - 1) + (2 + ln - 1),
    dispose: () => (enc.release(), p.dispose()),
  };
}

/** The BLIP fixture's BERT decoder (post-LN): self matmul + copy + attention → 1, cross matmul + attention → 1. */
async function bertDecoder(gpu: Gpu): Promise<Decoder> {
  const dir = fixture("hf/blip");
  const file = await openWeights(dir);
  const p = new ParamLoader(gpu, file);
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const { vit, text } = await loadBlipTowers(p, config, "test");
  file.close();
  const eh = text.config.encoder_hidden_size, c = text.config;
  const enc = uploadTensor(gpu, randomF32(2 * 7 * eh, 4), [2, 7, eh], "f32");
  assert.ok(vit.params.length > 0);
  return {
    layers: c.num_hidden_layers,
    heads: c.num_attention_heads,
    enc,
    begin: (rec, rowImage) => bertBeginDecode(rec, text, enc, rowImage, 8),
    forward: (rec, st, ids, S, probs) => bertForward(rec, text, st, ids, S, probs),
    saved: (3 - 1) + (2 - 1),
    dispose: () => (enc.release(), p.dispose()),
  };
}

/**
 * Two positions per row (teacher forcing), then two decode steps (cross probabilities asked for
 * on the last) of 3 rows over 2 images, with the kernels of `cls`: the logits of each step, the
 * caches and probabilities after them, and the dispatches each step recorded.
 */
async function decodeSteps(gpu: Gpu, d: Decoder, cls: AdapterClass) {
  return await asAdapterClass(gpu, cls, async () => {
    const rowImage = Int32Array.of(1, 0, 1), R = 3;
    const rec = new Recorder(gpu);
    const st = d.begin(rec, rowImage);
    await rec.submit();
    const probs = Array.from({ length: d.layers }, () => poisoned(gpu, [R, d.heads, 1, st.encSeq]));
    const logits: Float32Array[] = [], dispatches: number[] = [];
    for (const [S, first] of [[2, 5], [1, 9], [1, 3]]) {
      const rec = new Recorder(gpu);
      const ids = rec.upload(
        Int32Array.from({ length: R * S }, (_, i) => first + i),
        [R * S],
        "i32",
      );
      const last = st.length === 2 + 1;
      const out = d.forward(rec, st, ids, S, last ? probs : undefined);
      dispatches.push(rec.dispatches);
      rec.releaseAfterSubmit(out);
      logits.push((await readAll(rec, [out]))[0]);
    }
    const after = await readAll(new Recorder(gpu), [...st.kv, ...probs]);
    disposeKvCache(st);
    probs.forEach((t) => t.release());
    return { logits, caches: after.slice(0, d.layers), probs: after.slice(d.layers), dispatches };
  });
}

for (const [name, load] of [["GPT-2", gpt2Decoder], ["BERT decoder", bertDecoder]] as const) {
  Deno.test(`kv cache: ${name} decode steps take the fused attention on GPUs, equal to the separate path`, async () => {
    const gpu = await getGpu();
    const d = await load(gpu);
    const fused = await decodeSteps(gpu, d, "gpu");
    const separate = await decodeSteps(gpu, d, "cpu"); // decodeAttentionPlan: separate on CPU adapters
    d.dispose();
    fused.logits.forEach((l, i) => {
      assert.equal(firstNonFinite(l), -1);
      assert.ok(
        relL2(l, separate.logits[i]) < 1e-5,
        `step ${i} logits ${relL2(l, separate.logits[i])}`,
      );
    });
    fused.caches.forEach((c, i) => assert.ok(relL2(c, separate.caches[i]) < 1e-5, `cache ${i}`));
    fused.probs.forEach((p, i) => {
      assert.equal(firstNonFinite(p), -1);
      assert.ok(relL2(p, separate.probs[i]) < 1e-5, `cross probabilities ${i}`);
    });
    // the teacher-forced step is the same either way; each decode step saves `saved` per layer
    assert.equal(fused.dispatches[0], separate.dispatches[0]);
    for (const s of [1, 2]) {
      assert.equal(separate.dispatches[s] - fused.dispatches[s], d.layers * d.saved);
    }
  });
}
