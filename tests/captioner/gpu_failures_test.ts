/**
 * The captioner when the GPU cannot do the work: a cache too large for the device is refused
 * with nothing left allocated, and a lost device fails the caption in flight once with GPU_LOST,
 * with no unhandled rejection, while the next device captions as before.
 */
import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import { WebcapError } from "../../src/errors.ts";
import { fixture, getGpu } from "../util.ts";

const MODELS = ["vit-gpt2", "blip", "clipcap", "show-attend-tell"];

function image(cap: Captioner, seed: number) {
  const { height: H, width: W } = cap.preprocessor;
  const data = Uint8Array.from({ length: W * H * 3 }, (_, i) => (i * seed * 7919) % 256);
  return { width: W, height: H, data };
}

Deno.test("captioner: a cache too large for the device (numBeams 1e6) is refused with nothing left allocated", async () => {
  const gpu = await getGpu();
  for (const name of MODELS) {
    const cap = await Captioner.fromPretrained(fixture(`hf/${name}`), { gpu });
    try {
      const enc = await cap.encode([image(cap, 1)]);
      const before = { live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes };
      await assert.rejects(cap.caption(enc, { numBeams: 1e6, maxNewTokens: 4 }), (e) => {
        assert.ok(e instanceof WebcapError, String(e));
        assert.equal(e.code, "BAD_SHAPE", e.message);
        assert.match(
          e.message,
          /\[1000000,.*(maxBufferSize|maxStorageBufferBindingSize) \(\d+ B\)/,
        );
        assert.match(e.message, /fewer beams or return sequences, or a shorter max length/);
        return true;
      }, name);
      assert.deepEqual(
        { live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes },
        before,
        `${name}: nothing stays allocated`,
      );
      const [ok] = await cap.caption(enc, { numBeams: 2, maxNewTokens: 3 });
      assert.equal(ok.captions.length, 1, `${name} still captions`);
      enc.dispose();
    } finally {
      cap.dispose();
    }
  }
});

Deno.test("captioner: a lost device rejects the caption in flight once with GPU_LOST; the next device captions", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: PromiseRejectionEvent) => {
    unhandled.push(e.reason);
    e.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  try {
    const gpu = await getGpu();
    const cap = await Captioner.fromPretrained(fixture("hf/vit-gpt2"));
    const opts = { numBeams: 3, numReturnSequences: 2, maxNewTokens: 6 };
    const expected = await cap.caption([image(cap, 1), image(cap, 2)], opts);
    const lost = (e: unknown) => e instanceof WebcapError && e.code === "GPU_LOST";

    // lost while the first decoder step is in flight
    const encoded = await cap.encode([image(cap, 1), image(cap, 2)]);
    const decoding = cap.caption(encoded, opts);
    gpu.device.destroy();
    await assert.rejects(decoding, lost);
    // lost before encoding: the images are read, then the GPU work fails
    await assert.rejects(cap.caption([image(cap, 1)], opts), lost);
    encoded.dispose();
    cap.dispose();
    await new Promise((r) => setTimeout(r, 50)); // let stray rejections surface
    assert.deepEqual(unhandled, [], "no unhandled promise rejection");

    const fresh = await getGpu();
    assert.notEqual(fresh.device, gpu.device, "getGpu() acquires a new device");
    assert.equal(fresh.lost, undefined);
    const again = await Captioner.fromPretrained(fixture("hf/vit-gpt2"));
    try {
      assert.equal(again.gpu, fresh);
      assert.deepEqual(await again.caption([image(again, 1), image(again, 2)], opts), expected);
    } finally {
      again.dispose();
    }
    await assert.rejects(Captioner.fromPretrained(fixture("hf/vit-gpt2"), { gpu }), lost);
  } finally {
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
});
