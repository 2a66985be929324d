/**
 * Caption speed per fixture model and decoding strategy, one image (eight for the batch row),
 * 20 tokens forced (minNewTokens = maxNewTokens = 20): median wall time, and over one caption
 * call the submits, host waits, dispatches, bind groups, pipelines and buffers created, bytes
 * read back and the pool's peak bytes.
 * @module
 */
import { Captioner, type CaptionOptions } from "../src/captioner/captioner.ts";

/** One row of the caption benchmark. */
export interface CaptionRow {
  model: string;
  strategy: string;
  ms: number;
  tokensPerSec: number;
  submits: number;
  hostWaits: number;
  dispatches: number;
  bindGroups: number;
  pipelines: number;
  buffers: number;
  bytesRead: number;
  peakBytes: number;
}

const TOKENS = 20;
const MODELS = ["vit-gpt2", "blip", "clipcap", "show-attend-tell"];
const STRATEGIES: [string, CaptionOptions, number][] = [
  ["greedy", {}, 1],
  ["beam 3", { numBeams: 3 }, 1],
  ["beam 5", { numBeams: 5 }, 1],
  ["sampling", { doSample: true, seed: 1 }, 1],
  ["greedy + repetition penalty", { repetitionPenalty: 1.3 }, 1],
  ["batch 8 greedy", {}, 8],
];

/** The counters of `gpu` now (bind groups, pipelines and buffers as totals created). */
function snapshot(c: Captioner) {
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

async function benchModel(dir: string, name: string, image: Uint8Array, reps: number) {
  const captioner = await Captioner.fromPretrained(dir);
  const rows: CaptionRow[] = [];
  try {
    for (const [strategy, opts, batch] of STRATEGIES) {
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
        const after = snapshot(captioner);
        counts = Object.fromEntries(
          Object.entries(after).map(([k, v]) => [k, v - before[k as keyof typeof before]]),
        ) as typeof counts;
        peakBytes = captioner.gpu.pool.peakBytes;
      }
      times.sort((a, b) => a - b);
      const ms = times[Math.floor(times.length / 2)];
      rows.push({
        model: name,
        strategy,
        ms,
        tokensPerSec: (batch * TOKENS * 1000) / ms,
        ...counts,
        peakBytes,
      });
    }
  } finally {
    captioner.dispose();
  }
  return rows;
}

/** Run every strategy on every fixture model, `reps` timed calls each (median) after a warm-up. */
export async function benchCaption(reps = 3): Promise<CaptionRow[]> {
  // WEBCAP_FIXTURES points at a copy of shared/fixtures/hf (e.g. on a lent GPU machine)
  const root = Deno.env.get("WEBCAP_FIXTURES") ??
    new URL("../../shared/fixtures/hf", import.meta.url).pathname;
  const image = await Deno.readFile(`${root}/preprocess/pattern.png`);
  const rows: CaptionRow[] = [];
  for (const name of MODELS) rows.push(...await benchModel(`${root}/${name}`, name, image, reps));
  return rows;
}
