/**
 * Decoding on worker threads (`--decode-workers`): the same output lines as decoding on the main
 * thread over a folder and a tar, an undecodable image reported for that item only (code and
 * message as on the main thread), a bad count refused, and a job that ends — finished or failed
 * — leaves no worker keeping its process alive.
 */
import assert from "node:assert/strict";
import { encode as encodeJpeg } from "jpeg-js";
import { WebcapError } from "../../src/errors.ts";
import { decodeImage, type RgbImage } from "../../src/image/decode.ts";
import { DecodePool } from "../../src/jobs/decode_pool.ts";
import { caption } from "../cli/run.ts";
import { rng } from "../util.ts";
import { images, outputLines, quick, samples, tar, writeFiles } from "./data.ts";

/** A noise JPEG of `w`×`h` from `seed` (decoded by the WebAssembly libjpeg-turbo). */
function jpeg(w: number, h: number, seed: number): Uint8Array {
  const r = rng(seed);
  const rgba = Uint8Array.from({ length: w * h * 4 }, () => Math.floor(r() * 256));
  return encodeJpeg({ data: rgba, width: w, height: h }, 85).data;
}

const dir = await Deno.makeTempDir({ prefix: "webcap-workers-" });
const folder = new Map([...images(6)]);
for (let i = 0; i < 5; i++) folder.set(`photo${i}.jpg`, jpeg(24 + 8 * i, 20 + 4 * i, 50 + i));
const whole = folder.get("photo4.jpg")!;
folder.set("cut.jpg", whole.subarray(0, whole.length >> 1)); // undecodable: cut in half
await writeFiles(`${dir}/imgs`, folder);
await Deno.writeFile(`${dir}/a.tar`, tar(samples(images(8))));
const inputs = [`${dir}/imgs`, `${dir}/a.tar`];

/** The item lines of a run over `inputs` with `--decode-workers n`. */
async function run(n: number) {
  const out = `${dir}/w${n}.jsonl`;
  const r = await caption([...inputs, ...quick, "--decode-workers", String(n), "--output", out]);
  assert.equal(r.code, 1, r.stderr); // 1: the cut JPEG failed
  assert.match(r.stderr, /done 19, skipped 0, failed 1 in/);
  return outputLines(out);
}

Deno.test("workers: 2 decode workers write the lines 0 workers write; the cut JPEG fails alone", async () => {
  const [main, workers] = [await run(0), await run(2)];
  assert.equal(workers.length, 20);
  assert.deepEqual(workers, main, "same keys, order, captions, scores and errors");
  const failed = workers.filter((l) => l.error);
  assert.deepEqual(failed.map((l) => l.key), ["cut.jpg"]);
  assert.equal(failed[0].error!.code, "BAD_IMAGE");
  assert.match(failed[0].error!.message, /cut\.jpg: truncated JPEG/);
  assert.ok(workers.filter((l) => !l.error).every((l) => l.captions!.length > 0));
});

Deno.test("workers: --decode-workers must be a whole number from 0 to 64", async () => {
  for (const bad of ["-1", "1.5", "65", "many"]) {
    const r = await caption([`${dir}/imgs`, ...quick, "--decode-workers", bad]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /error BAD_OPTION: --decode-workers must be a (whole )?number/);
  }
});

Deno.test("workers: a job that finishes or fails ends its workers (the process exits)", async () => {
  const script = new URL("./worker_exit.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, `${dir}/imgs`],
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000), // a leaked worker keeps it alive until killed here
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.signal, null, `killed: it did not exit (${stderr})`);
  assert.equal(out.code, 0, stderr);
  const report = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.deepEqual(report, { done: 11, failed: 1, error: "the sink is full" });
});

Deno.test("workers: the pool decodes as decodeImage, in its own buffers, errors with their code", async () => {
  const pool = new DecodePool(2);
  try {
    const names = ["photo0.jpg", "photo3.jpg", "img001.png", "cut.jpg"];
    const got = await Promise.allSettled(names.map((n) => pool.decode(folder.get(n)!, n, 1e6)));
    for (const [i, name] of names.slice(0, 3).entries()) {
      const want = await decodeImage(folder.get(name)!, name);
      const r = got[i] as PromiseFulfilledResult<RgbImage>;
      assert.deepEqual([r.value.width, r.value.height], [want.width, want.height], name);
      assert.deepEqual(r.value.data, want.data, `${name}: the same pixels`);
      assert.equal(r.value.data.buffer.byteLength, r.value.data.length, "a buffer of its own");
    }
    const cut = (got[3] as PromiseRejectedResult).reason;
    const want = await decodeImage(folder.get("cut.jpg")!, "cut.jpg").catch((e) => e);
    assert.ok(cut instanceof WebcapError, String(cut));
    assert.deepEqual([cut.code, cut.message], [want.code, want.message]);
    const big = await pool.decode(folder.get("photo4.jpg")!, "photo4.jpg", 100).catch((e) => e);
    assert.equal(big.code, "IMAGE_TOO_LARGE");
    const inFlight = pool.decode(folder.get("photo2.jpg")!, "photo2.jpg", 1e6);
    pool.close();
    await assert.rejects(inFlight, /the image decoding pool is closed/);
    await assert.rejects(
      pool.decode(whole, "photo4.jpg", 1e6),
      /the image decoding pool is closed/,
    );
  } finally {
    pool.close();
  }
});

Deno.test("workers: cleanup", async () => {
  await Deno.remove(dir, { recursive: true });
});
