/**
 * The KV cache's reorder by parents on the GPU: every layer's rows gathered by the parents into
 * the spare buffers, which then swap with the caches (two buffers per layer however many
 * reorders); wrong parents are refused before any work.
 */
import assert from "node:assert/strict";
import { beginKvCache, disposeKvCache, reorderKvCache } from "../../src/nn/kv_cache.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor, writeTensor } from "../../src/gpu/tensor.ts";
import { assertCode, getGpu, readAll } from "../util.ts";

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
