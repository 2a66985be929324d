import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import { WebcapError } from "../../src/errors.ts";
import { fixture, getGpu } from "../util.ts";

Deno.test("captioner: a batch whose tensors exceed one storage binding is refused and its pixels freed", async () => {
  const gpu = await getGpu();
  const cap = await Captioner.fromPretrained(fixture("hf/vit-gpt2"), { gpu });
  const { height: H, width: W } = cap.preprocessor;
  const image = { width: W, height: H, data: new Uint8Array(W * H * 3).fill(128) };
  const saved = gpu.maxBinding;
  try {
    gpu.maxBinding = 4 * 3 * H * W * 4; // the pixels of 4 images
    const [one] = await cap.caption(image, { maxNewTokens: 2 });
    assert.equal(one.error, undefined);
    assert.equal(one.captions.length, 1);
    const owned = gpu.pool.ownedBytes;
    await assert.rejects(
      cap.caption(Array(8).fill(image), { maxNewTokens: 2 }),
      (e) => e instanceof WebcapError && e.code === "BAD_SHAPE" && /fewer images/.test(e.message),
    );
    assert.equal(gpu.pool.ownedBytes, owned, "the uploaded pixels are freed");
  } finally {
    gpu.maxBinding = saved;
    cap.dispose();
  }
});

Deno.test("captioner: bad options are refused before any image is read or encoded", async () => {
  const gpu = await getGpu();
  const cap = await Captioner.fromPretrained(fixture("hf/vit-gpt2"), { gpu });
  try {
    const before = { live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes };
    // the image does not exist: reading it first would report MISSING_FILE in the result instead
    for (
      const bad of [{ topP: 0, doSample: true }, { numBeams: 2, numReturnSequences: 3 }, {
        badWordsIds: [[1e6]],
      }]
    ) {
      await assert.rejects(
        cap.caption("/nonexistent/picture.png", bad),
        (e) => e instanceof WebcapError && e.code === "BAD_OPTION",
      );
    }
    assert.deepEqual({ live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes }, before);
  } finally {
    cap.dispose();
  }
});

Deno.test("captioner: concurrent caption calls give the same results as sequential ones", async () => {
  const gpu = await getGpu();
  const cap = await Captioner.fromPretrained(fixture("hf/vit-gpt2"), { gpu });
  try {
    const { height: H, width: W } = cap.preprocessor;
    const image = (seed: number) => ({
      width: W,
      height: H,
      data: Uint8Array.from({ length: W * H * 3 }, (_, i) => (i * seed * 7919) % 256),
    });
    const jobs = [
      () => cap.caption([image(1), image(2)], { maxNewTokens: 6 }),
      () => cap.caption(image(3), { numBeams: 3, numReturnSequences: 2, maxNewTokens: 6 }),
      () =>
        cap.caption(image(4), { doSample: true, seed: 5, numReturnSequences: 2, maxNewTokens: 6 }),
      () => cap.caption(image(5), { repetitionPenalty: 1.3, minNewTokens: 4, maxNewTokens: 6 }),
    ];
    const sequential = [];
    for (const job of jobs) sequential.push(await job());
    const concurrent = await Promise.all(jobs.map((job) => job()));
    assert.deepEqual(concurrent, sequential);
  } finally {
    cap.dispose();
  }
});

Deno.test("captioner: use after dispose is a DISPOSED error, not garbage", async () => {
  const gpu = await getGpu();
  const cap = await Captioner.fromPretrained(fixture("hf/vit-gpt2"), { gpu });
  const { height: H, width: W } = cap.preprocessor;
  const image = { width: W, height: H, data: new Uint8Array(W * H * 3).fill(7) };
  const encoded = await cap.encode([image]);
  encoded.dispose();
  await assert.rejects(
    cap.caption(encoded, { maxNewTokens: 2 }),
    (e) => e instanceof WebcapError && e.code === "DISPOSED",
  );
  cap.dispose();
  await assert.rejects(
    cap.caption(image, { maxNewTokens: 2 }),
    (e) => e instanceof WebcapError && e.code === "DISPOSED" && /disposed/.test(e.message),
  );
});
