import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import {
  gpt2BeginDecode,
  type Gpt2Config,
  gpt2Config,
  gpt2Forward,
  loadGpt2,
} from "../../src/nn/gpt2.ts";
import { disposeKvCache } from "../../src/nn/kv_cache.ts";
import { ParamLoader } from "../../src/nn/params.ts";
import { openWeights, type WeightStore } from "../../src/io/weights.ts";
import { fixture, getGpu, randomF32, relL2 } from "../util.ts";

const dir = fixture("hf/vit-gpt2");
const PREFIX = "decoder.transformer.";

async function decoderConfig(patch: Record<string, unknown> = {}): Promise<Gpt2Config> {
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  return gpt2Config({ ...config.decoder, ...patch }, "config.json decoder");
}

/** `store` with every layer i's query projections (self and cross, weight and bias) times 1/(i+1). */
function queriesScaled(store: WeightStore, layers: number, h: number): WeightStore {
  return {
    ...store,
    async readF32(name: string) {
      const x = Float32Array.from(await store.readF32(name));
      for (let i = 0; i < layers; i++) {
        const l = `${PREFIX}h.${i}.`, f = 1 / (i + 1);
        if (name.startsWith(`${l}crossattention.q_attn.`)) x.forEach((v, k) => x[k] = v * f);
        if (name === `${l}attn.c_attn.weight`) { // Conv1D [h, 3h]: the first h columns are q
          for (let r = 0; r < h; r++) for (let c = 0; c < h; c++) x[r * 3 * h + c] *= f;
        }
        if (name === `${l}attn.c_attn.bias`) { for (let c = 0; c < h; c++) x[c] *= f; }
      }
      return x;
    },
  };
}

/** `store` plus a stored `decoder.lm_head.weight` equal to 2 × wte. */
function withDoubledHead(store: WeightStore): WeightStore {
  const head = "decoder.lm_head.weight", wte = `${PREFIX}wte.weight`;
  return {
    ...store,
    has: (name: string) => name === head || store.has(name),
    info: (name: string) => name === head ? { ...store.info(wte), name } : store.info(name),
    readF32: async (name: string) =>
      name === head ? (await store.readF32(wte)).map((v) => 2 * v) : store.readF32(name),
  };
}

/** Teacher-forced logits of 3 tokens on each of 2 rows, over random encoder states. */
async function logits(
  cfg: Gpt2Config,
  scaleQueries: boolean,
  doubledHead = false,
): Promise<Float32Array> {
  const gpu = await getGpu();
  const h = cfg.n_embd;
  const file = await openWeights(dir);
  let store = scaleQueries ? queriesScaled(file, cfg.n_layer, h) : file;
  if (doubledHead) store = withDoubledHead(store);
  const p = new ParamLoader(gpu, store);
  const w = await loadGpt2(p, cfg, PREFIX, "test", "decoder.lm_head.weight");
  file.close();
  const rec = new Recorder(gpu);
  const enc = uploadTensor(gpu, randomF32(2 * 5 * h, 3), [2, 5, h], "f32");
  const st = gpt2BeginDecode(rec, w, enc, Int32Array.of(0, 1), 3);
  const ids = uploadTensor(gpu, Int32Array.of(1, 2, 3, 4, 5, 6), [6], "i32");
  const out = gpt2Forward(rec, w, st, { ids }, 3);
  const read = rec.readTensor(out);
  rec.releaseAfterSubmit(enc, ids, out);
  await rec.submit();
  disposeKvCache(st);
  p.dispose();
  return (await read) as Float32Array;
}

Deno.test("gpt2: scale_attn_by_inverse_layer_idx divides self- and cross-attention scores of block i by i + 1", async () => {
  const cfg = await decoderConfig();
  assert.ok(cfg.n_layer >= 2 && cfg.add_cross_attention);
  const byLayer = await logits({ ...cfg, scale_attn_by_inverse_layer_idx: true }, false);
  const plain = await logits(cfg, false);
  const queriesDivided = await logits(cfg, true);
  assert.ok(relL2(byLayer, plain) > 1e-3, "the flag changes the logits");
  const err = relL2(byLayer, queriesDivided);
  assert.ok(err < 1e-5, `rel L2 ${err} against queries divided by i + 1`);
});

Deno.test("gpt2: beginDecode checks rows and encoder states before allocating caches", async () => {
  const gpu = await getGpu();
  const cfg = await decoderConfig();
  const file = await openWeights(dir);
  const p = new ParamLoader(gpu, file);
  const w = await loadGpt2(p, cfg, PREFIX, "test");
  file.close();
  const h = cfg.n_embd;
  const enc = uploadTensor(gpu, randomF32(2 * 5 * h, 4), [2, 5, h], "f32");
  const narrow = uploadTensor(gpu, randomF32(2 * 5 * 8, 5), [2, 5, 8], "f32");
  const owned = gpu.pool.ownedBytes;
  const rec = new Recorder(gpu);
  const refused = (code: string, msg: RegExp) => (e: unknown) =>
    e instanceof WebcapError && e.code === code && msg.test(e.message);
  assert.throws(
    () => gpt2BeginDecode(rec, w, enc, Int32Array.of(0, 2), 4),
    refused("BAD_OPTION", /rowImage must index the 2 encoded images/),
  );
  assert.throws(
    () => gpt2BeginDecode(rec, w, narrow, Int32Array.of(0, 1), 4),
    refused("BAD_SHAPE", /encoder hidden 8/),
  );
  assert.throws(
    () => gpt2BeginDecode(rec, w, undefined, Int32Array.of(0), 4),
    refused("BAD_OPTION", /needs encoder states/),
  );
  assert.equal(gpu.pool.ownedBytes, owned, "no cache is left behind");
  await rec.submit();
  enc.release();
  narrow.release();
  p.dispose();
});

Deno.test("gpt2: configs without heads or with a non-numeric n_inner are BAD_CONFIG", async () => {
  for (const patch of [{ n_head: 0 }, { n_inner: "wide" }]) {
    await assert.rejects(
      decoderConfig(patch),
      (e) =>
        e instanceof WebcapError && e.code === "BAD_CONFIG" &&
        /config.json decoder/.test(e.message),
      JSON.stringify(patch),
    );
  }
  assert.equal((await decoderConfig()).n_inner, 4 * (await decoderConfig()).n_embd);
});

Deno.test("gpt2: an untied stored lm_head is used; a tied config ignores it", async () => {
  const cfg = await decoderConfig();
  const tied = await logits(cfg, false);
  const untied = await logits({ ...cfg, tie_word_embeddings: false }, false, true);
  assert.ok(relL2(untied, tied.map((v) => 2 * v)) < 1e-6, "logits come from the stored head");
  const tiedWithHead = await logits(cfg, false, true);
  assert.ok(relL2(tiedWithHead, tied) < 1e-7, "tied: the stored head is not read");
});
