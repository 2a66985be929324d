/**
 * Real-size caption timing: one image (eight for the batch row), 20 tokens forced, on a model
 * folder or on temporary folders of ViT-GPT2 ({@link REAL}, 239M parameters) and BLIP-base
 * ({@link BLIP_BASE}) with seeded random weights. Greedy only by default (one real-size caption
 * takes ~10–60 s on a CPU adapter); with `all`, the strategies of `bench --caption` but the
 * repetition penalty (greedy, beam 3, beam 5, sampling, batch 8 greedy). Each row has the keys of
 * a `bench --caption` row (the counters over one call, encoder included; `ms` is the wall time)
 * and the wall time of the caption call, the encoder's share (encode, then wait for the queue),
 * ms per token of the rest, the buffer pool's peak, the process's peak resident memory (Linux
 * `VmHWM`: with a CPU adapter the GPU buffers live there) and the first caption's tokens.
 *
 * ```sh
 * deno run -A bench/real_caption.ts [MODEL_DIR] [--reps N] [--all]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { Captioner, type CaptionOptions } from "../src/captioner/captioner.ts";
import { type CaptionRow, countsSince, gpuMsOf, snapshot, STRATEGIES, TOKENS } from "./caption.ts";
import { BLIP_BASE, type RandomArch, REAL, type Sizes, tempRandomModel } from "./random_model.ts";

/** One timed real-size caption row (the fastest of the repetitions). */
export interface RealCaptionRow extends CaptionRow {
  adapter: string;
  wallMs: number;
  encoderMs: number;
  msPerToken: number;
  peakPoolMiB: number;
  peakRssMiB: number;
  tokens: string;
}

/** The random real-size models: architecture, sizes, row label. */
const MODELS: [RandomArch, Sizes, string][] = [
  ["vit-gpt2", REAL, "vit-gpt2 (real sizes, random)"],
  ["blip", BLIP_BASE, "blip-base (real sizes, random)"],
];

/** The strategies timed at real size: greedy only, or all of `bench --caption` but the penalty. */
function strategies(all: boolean) {
  return STRATEGIES.filter(([s]) => all ? !s.includes("penalty") : s === "greedy");
}

/** The process's peak resident memory in MiB (Linux), or NaN where `/proc` is absent. */
function peakRssMiB(): number {
  try {
    const m = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** One caption call split into the encoder and the decoding: wall times in ms and counters. */
async function timeOnce(c: Captioner, images: Uint8Array[], opts: CaptionOptions) {
  const before = snapshot(c);
  const t0 = performance.now();
  const enc = await c.encode(images);
  await c.gpu.device.queue.onSubmittedWorkDone();
  const t1 = performance.now();
  try {
    const [r] = await c.caption(enc, { maxNewTokens: TOKENS, minNewTokens: TOKENS, ...opts });
    const t2 = performance.now();
    const counts = countsSince(c, before);
    return { wall: t2 - t0, encoder: t1 - t0, tokens: r.captions[0].tokens, counts };
  } finally {
    enc.dispose();
  }
}

/**
 * Time each of `strategies` on the model in `dir` (labelled `model`): `reps` calls after one
 * warm-up; the fastest is reported.
 */
export async function benchRealCaption(
  dir: string,
  model: string,
  image: Uint8Array,
  reps: number,
  all = false,
): Promise<RealCaptionRow[]> {
  const c = await Captioner.fromPretrained(dir);
  const rows: RealCaptionRow[] = [];
  try {
    for (const [strategy, opts, batch] of strategies(all)) {
      const images = Array.from({ length: batch }, () => image);
      await timeOnce(c, images, opts); // warm-up: pipelines and pool buckets
      c.gpu.pool.resetPeak();
      let best = await timeOnce(c, images, opts);
      for (let i = 1; i < reps; i++) {
        const t = await timeOnce(c, images, opts);
        if (t.wall < best.wall) best = t;
      }
      const peakBytes = c.gpu.pool.peakBytes;
      rows.push({
        model,
        dtype: "f32",
        strategy,
        ms: best.wall,
        tokensPerSec: (batch * TOKENS * 1000) / best.wall,
        gpuMs: await gpuMsOf(c, () => timeOnce(c, images, opts)),
        ...best.counts,
        peakBytes,
        adapter: c.gpu.adapterName,
        wallMs: best.wall,
        encoderMs: best.encoder,
        msPerToken: (best.wall - best.encoder) / TOKENS,
        peakPoolMiB: peakBytes / 2 ** 20,
        peakRssMiB: peakRssMiB(),
        tokens: best.tokens.join(" "),
      });
    }
  } finally {
    await c.dispose();
  }
  return rows;
}

/** {@link benchRealCaption} on each random real-size model, written to a temporary folder. */
export async function benchRealModels(
  image: Uint8Array,
  reps: number,
  all = false,
): Promise<RealCaptionRow[]> {
  const rows: RealCaptionRow[] = [];
  for (const [arch, sizes, model] of MODELS) {
    const dir = await tempRandomModel(sizes, `webcap-bench-real-${arch}-`, arch);
    try {
      rows.push(...await benchRealCaption(dir, model, image, reps, all));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  return rows;
}

/** The fixture image every caption benchmark uses. */
export async function benchImage(): Promise<Uint8Array> {
  const root = Deno.env.get("WEBCAP_FIXTURES") ??
    new URL("../../shared/fixtures/hf", import.meta.url).pathname;
  return await Deno.readFile(`${root}/preprocess/pattern.png`);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { reps: { type: "string", default: "1" }, all: { type: "boolean" } },
    allowPositionals: true,
  });
  const [image, reps, all] = [await benchImage(), Number(values.reps), values.all ?? false];
  const dir = positionals[0];
  const rows = dir
    ? await benchRealCaption(dir, dir, image, reps, all)
    : await benchRealModels(image, reps, all);
  console.log(JSON.stringify(rows, null, 2));
}
