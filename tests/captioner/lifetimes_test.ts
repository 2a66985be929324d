/**
 * Recorder-scoped lifetimes over whole captions: every intermediate goes back to the pool after
 * its submit and every cache is freed, so repeating a caption takes no new GPU memory.
 */
import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import { captionAttention } from "../../src/captioner/caption_attention.ts";
import type { CaptionOptions } from "../../src/captioner/captioner.ts";
import { fixture, getGpu } from "../util.ts";

const CASES: [string, CaptionOptions][] = [
  ["greedy", { maxNewTokens: 4 }],
  ["beam search", { numBeams: 3, numReturnSequences: 2, maxNewTokens: 4 }],
];

for (const name of ["vit-gpt2", "blip", "clipcap", "show-attend-tell"]) {
  Deno.test(`lifetimes: ${name}: a caption leaves nothing behind; repeating it takes no new buffers`, async () => {
    const gpu = await getGpu();
    const cap = await Captioner.fromPretrained(fixture(`hf/${name}`), { gpu });
    try {
      const { height: H, width: W } = cap.preprocessor;
      const data = Uint8Array.from({ length: W * H * 3 }, (_, i) => (i * 7919) % 256);
      const image = { width: W, height: H, data };
      const pool = gpu.pool;
      const stats = () => ({ live: pool.liveBytes, owned: pool.ownedBytes });
      for (const [what, opts] of CASES) {
        const before = stats();
        const [first] = await cap.caption(image, opts);
        assert.deepEqual(stats(), before, `${what}: every temporary and cache was freed`);
        const held = pool.liveBytes + pool.freeBytes;
        for (let i = 0; i < 2; i++) {
          const [again] = await cap.caption(image, opts);
          assert.deepEqual(again, first);
        }
        assert.deepEqual(stats(), before, `${what}: nothing accumulates over captions`);
        assert.equal(pool.liveBytes + pool.freeBytes, held, `${what}: the pool grew`);
      }
      if (name !== "clipcap") { // ClipCap has no cross-attention
        const before = stats();
        await captionAttention(cap, image, { tokens: [1, 2, 3] }, cap.promptIds(undefined));
        assert.deepEqual(stats(), before, "attention maps: every temporary and cache was freed");
      }
    } finally {
      cap.dispose();
    }
  });
}
