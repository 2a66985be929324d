import assert from "node:assert/strict";
import { Recorder } from "../../src/gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../../src/gpu/tensor.ts";
import {
  gpt2BeginDecode,
  gpt2Config,
  gpt2Forward,
  type Gpt2Weights,
  loadGpt2,
} from "../../src/nn/gpt2.ts";
import * as kv from "../../src/nn/kv_cache.ts";
import { linear, norm } from "../../src/nn/modules.ts";
import { ParamLoader } from "../../src/nn/params.ts";
import { openWeights } from "../../src/io/weights.ts";
import { embedding } from "../../src/shaders/embedding.ts";
import { matmul } from "../../src/shaders/matmul.ts";
import { ADAPTER_CLASSES, asAdapterClass, fixture, getGpu, randomF32, relL2 } from "../util.ts";

const dir = fixture("hf/vit-gpt2");

/**
 * GPT-2's forward as it was recorded before the LayerNorms were fused: each pre-LN projection
 * reads a separate `norm` dispatch's output.
 */
function separateNormForward(
  rec: Recorder,
  w: Gpt2Weights,
  st: kv.KvCache,
  ids: Tensor,
  S: number,
): Tensor {
  const c = w.config, H = c.n_head;
  kv.checkRoom(st, S);
  const logits = rec.scope(() => {
    let x = embedding(rec, w.wte, ids, { pos: { table: w.wpe, start: st.length, period: S } });
    w.layers.forEach((l, i) => {
      const scale = (c.scale_attn_weights ? 1 / Math.sqrt(c.n_embd / H) : 1) /
        (c.scale_attn_by_inverse_layer_idx ? i + 1 : 1);
      const qkv = linear(rec, norm(rec, x, l.ln1), l.attn);
      x = linear(rec, kv.cachedSelfAttention(rec, st, i, qkv, S, H, scale), l.attnProj, {
        residual: x,
      });
      if (l.cross) {
        const q = linear(rec, norm(rec, x, l.cross.ln), l.cross.q);
        const ca = kv.imageCrossAttention(rec, st, i, q, S, H, scale);
        x = linear(rec, ca, l.cross.proj, { residual: x });
      }
      const f = linear(rec, norm(rec, x, l.ln2), l.fc, { act: w.act });
      x = linear(rec, f, l.proj, { residual: x });
    });
    return matmul(rec, norm(rec, x, w.lnF), w.lmHead, { transposeW: true });
  });
  st.length += S;
  return logits;
}

for (const cls of ADAPTER_CLASSES) {
  Deno.test(`gpt2 (${cls} kernels): a decode step reads its LayerNorms in the projections' prologues: the same logits, one dispatch fewer per norm`, async () => {
    const gpu = await getGpu();
    const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    const cfg = gpt2Config(config.decoder, "config.json decoder");
    const file = await openWeights(dir);
    const p = new ParamLoader(gpu, file);
    const w = await loadGpt2(p, cfg, "decoder.transformer.", "test");
    file.close();
    const h = cfg.n_embd, R = 2;
    const enc = uploadTensor(gpu, randomF32(R * 5 * h, 3), [R, 5, h], "f32");
    const prompt = uploadTensor(gpu, Int32Array.of(1, 2, 3, 4, 5, 6), [R * 3], "i32");
    const next = uploadTensor(gpu, Int32Array.of(7, 8), [R], "i32");
    const rows = Int32Array.of(0, 1);
    // each forward: a 3-token prompt, then one decode step whose dispatches are counted
    const run = (forward: (rec: Recorder, st: kv.KvCache, ids: Tensor, S: number) => Tensor) =>
      asAdapterClass(gpu, cls, async () => {
        const rec = new Recorder(gpu);
        const st = gpt2BeginDecode(rec, w, enc, rows, 4);
        rec.releaseAfterSubmit(forward(rec, st, prompt, 3));
        const before = gpu.counters.dispatches;
        const logits = forward(rec, st, next, 1);
        const dispatches = gpu.counters.dispatches - before;
        const read = rec.readTensor(logits);
        rec.releaseAfterSubmit(logits);
        await rec.submit();
        kv.disposeKvCache(st);
        return { logits: (await read) as Float32Array, dispatches };
      });
    try {
      const fused = await run((rec, st, ids, S) => gpt2Forward(rec, w, st, { ids }, S));
      const separate = await run((rec, st, ids, S) => separateNormForward(rec, w, st, ids, S));
      const err = relL2(fused.logits, separate.logits);
      assert.ok(err < 1e-5, `rel L2 ${err}`);
      // ln_1, ln_2 and ln_cross_attn of each layer, and ln_f
      const norms = w.layers.reduce((n, l) => n + (l.cross ? 3 : 2), 1);
      assert.ok(
        fused.dispatches <= separate.dispatches - norms,
        `${fused.dispatches} dispatches, ${separate.dispatches} with ${norms} separate norms`,
      );
    } finally {
      for (const t of [enc, prompt, next]) t.release();
      p.dispose();
    }
  });
}
