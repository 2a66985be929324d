/**
 * `deno run -A bench/decode_workers.ts [--images N] [--workers N] [--reps N]`
 * Decode-only throughput of a job's images: N generated 640×480 JPEGs (a gradient with noise,
 * quality 85) decoded on the main thread (as `--decode-workers 0`) and on a `DecodePool` of
 * `--workers` threads, every image in flight at once as the job's prefetch puts them; median
 * items/s of `--reps` runs after one warm-up (the pool's start is timed on its own). The main
 * thread's longest stall (the largest gap of a 1 ms timer) shows what the GPU loop would wait.
 * @module
 */
import { parseArgs } from "node:util";
import { encode as encodeJpeg } from "jpeg-js";
import { decodeImage } from "../src/image/decode.ts";
import { DecodePool } from "../src/jobs/decode_pool.ts";

const { values } = parseArgs({
  options: {
    images: { type: "string", default: "30" },
    workers: { type: "string", default: "2" },
    reps: { type: "string", default: "3" },
  },
});
const [count, workers, reps] = [values.images, values.workers, values.reps].map(Number);

/** A 640×480 JPEG: a colour gradient with ±24 of noise, varied by `seed`. */
function photo(seed: number): Uint8Array {
  const [w, h] = [640, 480];
  const rgba = new Uint8Array(w * h * 4);
  let s = seed * 2654435761 >>> 0;
  for (let i = 0; i < w * h; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    const n = (s >>> 24) % 49 - 24;
    const [x, y] = [i % w, Math.floor(i / w)];
    rgba.set([(x * 255 / w + n) & 255, (y * 255 / h + n) & 255, (seed * 40 + n) & 255, 255], i * 4);
  }
  return encodeJpeg({ data: rgba, width: w, height: h }, 85).data;
}

/** Seconds of `run`, and the longest gap (ms) between ticks of a 1 ms timer meanwhile. */
async function timed(run: () => Promise<unknown>): Promise<[seconds: number, stallMs: number]> {
  let last = performance.now();
  let stall = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    stall = Math.max(stall, now - last);
    last = now;
  }, 1);
  const t0 = performance.now();
  await run();
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(tick);
  return [seconds, Math.max(stall, performance.now() - last)];
}

const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[xs.length >> 1];

type Decode = (bytes: Uint8Array, name: string) => Promise<unknown>;

/** Median items/s and main-thread stall of each way, runs interleaved (the load drifts). */
async function compare(ways: Record<string, Decode>, files: Uint8Array[]) {
  const all = (d: Decode) => () => Promise.all(files.map((b, i) => d(b, `photo${i}.jpg`)));
  for (const d of Object.values(ways)) await all(d)(); // warm-up: WebAssembly compiled
  const runs = new Map(Object.keys(ways).map((k) => [k, [] as [number, number][]]));
  for (let r = 0; r < reps; r++) {
    for (const [k, d] of Object.entries(ways)) runs.get(k)!.push(await timed(all(d)));
  }
  return [...runs].map(([way, rs]) => ({
    way,
    "items/s": median(rs.map(([s]) => count / s)),
    "max main-thread stall ms": median(rs.map(([, stall]) => stall)),
  }));
}

const files = Array.from({ length: count }, (_, i) => photo(i));
const kb = files.reduce((a, f) => a + f.length, 0) / count / 1024;
console.log(
  `${count} JPEGs 640×480, ${kb.toFixed(0)} KiB each; ${navigator.hardwareConcurrency} CPU threads`,
);
let pool: DecodePool | undefined;
const [startS] = await timed(() => {
  pool = new DecodePool(workers);
  return Promise.all(files.slice(0, workers).map((b, i) => pool!.decode(b, `w${i}.jpg`, 1e8)));
});
console.log(`pool of ${workers} started, first decodes done, in ${(startS * 1000).toFixed(0)} ms`);
try {
  console.table(
    await compare({
      "decode-workers 0": (b, n) => decodeImage(b, n),
      [`decode-workers ${workers}`]: (b, n) => pool!.decode(b, n, 1e8),
    }, files),
  );
} finally {
  pool!.close();
}
