/**
 * Caption speed per fixture model and decoding strategy, one image (eight for the batch row),
 * 20 tokens forced (minNewTokens = maxNewTokens = 20): median wall time, tokens/s (new tokens ×
 * images / wall s), GPU ms (the sum of the caption's submissions' pass times from timestamp
 * queries, measured on one extra call so the queries' readbacks do not slow the timed ones; `null`
 * where the adapter has no `timestamp-query`), and over one caption call the submits, host waits,
 * dispatches, bind groups, pipelines and buffers created, bytes read back and the pool's peak
 * bytes. Greedy (one image and eight) also with the weights in q8 and q4 (group size 32, or the
 * largest of 16 and 8 that divides every quantized matrix's input dimension: the Show-Attend-Tell
 * and ClipCap fixtures have dimensions 48 and 24).
 * @module
 */
import { Captioner, type CaptionOptions } from "../src/captioner/captioner.ts";
import { WebcapError } from "../src/errors.ts";

/** One row of the caption benchmark. */
export interface CaptionRow {
  model: string;
  /** How the weights are held: f32, q8, or q4 with its group size (`q4/32`). */
  dtype: string;
  strategy: string;
  ms: number;
  /** New tokens × images per wall second. */
  tokensPerSec: number;
  /** GPU time of one caption call from timestamp queries; `null` without `timestamp-query`. */
  gpuMs: number | null;
  submits: number;
  hostWaits: number;
  dispatches: number;
  bindGroups: number;
  pipelines: number;
  buffers: number;
  bytesRead: number;
  peakBytes: number;
}

/** New tokens per caption (forced). */
export const TOKENS = 20;
const MODELS = ["vit-gpt2", "blip", "clipcap", "show-attend-tell"];
/** Each strategy's name, options and number of images. */
export const STRATEGIES: [string, CaptionOptions, number][] = [
  ["greedy", {}, 1],
  ["beam 3", { numBeams: 3 }, 1],
  ["beam 5", { numBeams: 5 }, 1],
  ["sampling", { doSample: true, seed: 1 }, 1],
  ["greedy + repetition penalty", { repetitionPenalty: 1.3 }, 1],
  ["batch 8 greedy", {}, 8],
];

/** The counters of `c.gpu` now (bind groups, pipelines and buffers as totals created). */
export function snapshot(c: Captioner) {
  const g = c.gpu;
  return {
    submits: g.counters.submits,
    hostWaits: g.counters.hostWaits,
    dispatches: g.counters.dispatches,
    bindGroups: g.bindGroups.created,
    pipelines: g.pipelines.size,
    buffers: g.pool.created + g.counters.stagingCreated,
    bytesRead: g.counters.bytesRead,
  };
}

/** Counter differences over one call, as {@link snapshot} names them. */
export type Counts = ReturnType<typeof snapshot>;

/** The counters of `c.gpu` since `before` (a {@link snapshot}). */
export function countsSince(c: Captioner, before: Counts): Counts {
  const after = snapshot(c);
  return Object.fromEntries(
    Object.entries(after).map(([k, v]) => [k, v - before[k as keyof Counts]]),
  ) as Counts;
}

/**
 * GPU ms of one more `run()`: the sum of its submissions' pass times from timestamp queries, or
 * `null` where the adapter has no `timestamp-query`.
 */
export async function gpuMsOf(c: Captioner, run: () => Promise<unknown>): Promise<number | null> {
  const counters = c.gpu.counters;
  if (!c.gpu.hasTimestamps) return null;
  const before = counters.gpuMs;
  counters.timeSubmits = true;
  try {
    await run();
  } finally {
    counters.timeSubmits = false;
  }
  return counters.gpuMs - before;
}

/** The quantized rows: greedy at batch 1 and 8. */
const QUANT_STRATEGIES = STRATEGIES.filter(([s]) => s.endsWith("greedy"));

/** `dir` loaded as `dtype`; q4 with the first group size of 32, 16, 8 that divides. */
async function load(dir: string, dtype: string): Promise<[Captioner, string]> {
  if (dtype !== "q4") {
    return [await Captioner.fromPretrained(dir, { dtype: dtype as "f32" }), dtype];
  }
  for (const groupSize of [32, 16]) {
    try {
      return [await Captioner.fromPretrained(dir, { dtype, groupSize }), `q4/${groupSize}`];
    } catch (e) {
      if (!(e instanceof WebcapError && e.code === "BAD_OPTION")) throw e;
    }
  }
  return [await Captioner.fromPretrained(dir, { dtype, groupSize: 8 }), "q4/8"];
}

async function benchModel(
  dir: string,
  name: string,
  image: Uint8Array,
  reps: number,
  weights: string,
) {
  const [captioner, dtype] = await load(dir, weights);
  const rows: CaptionRow[] = [];
  try {
    for (const [strategy, opts, batch] of weights === "f32" ? STRATEGIES : QUANT_STRATEGIES) {
      const o: CaptionOptions = { maxNewTokens: TOKENS, minNewTokens: TOKENS, ...opts };
      const images = Array.from({ length: batch }, () => image);
      await captioner.caption(images, o); // warm-up: pipelines and pool buckets
      const times: number[] = [];
      let counts = snapshot(captioner), peakBytes = 0;
      for (let i = 0; i < reps; i++) {
        const before = snapshot(captioner);
        captioner.gpu.pool.resetPeak();
        const t0 = performance.now();
        await captioner.caption(images, o);
        times.push(performance.now() - t0);
        counts = countsSince(captioner, before);
        peakBytes = captioner.gpu.pool.peakBytes;
      }
      const gpuMs = await gpuMsOf(captioner, () => captioner.caption(images, o));
      times.sort((a, b) => a - b);
      const ms = times[Math.floor(times.length / 2)];
      rows.push({
        model: name,
        dtype,
        strategy,
        ms,
        tokensPerSec: (batch * TOKENS * 1000) / ms,
        gpuMs,
        ...counts,
        peakBytes,
      });
    }
  } finally {
    captioner.dispose();
  }
  return rows;
}

/**
 * Run every strategy on every fixture model of `models` (default all four), and greedy in q8 and
 * q4 where `dtypes` has them, `reps` timed calls each (median) after a warm-up.
 */
export async function benchCaption(
  reps = 3,
  models = MODELS,
  dtypes = ["f32", "q8", "q4"],
): Promise<CaptionRow[]> {
  // WEBCAP_FIXTURES points at a copy of shared/fixtures/hf (e.g. on a lent GPU machine)
  const root = Deno.env.get("WEBCAP_FIXTURES") ??
    new URL("../../shared/fixtures/hf", import.meta.url).pathname;
  const image = await Deno.readFile(`${root}/preprocess/pattern.png`);
  const rows: CaptionRow[] = [];
  for (const name of models) {
    for (const dtype of dtypes) {
      rows.push(...await benchModel(`${root}/${name}`, name, image, reps, dtype));
    }
  }
  return rows;
}
