/**
 * Real-size caption timing: one image, 20 tokens forced, greedy, on a model folder (by default a
 * temporary ViT-GPT2 of real sizes with random weights, {@link REAL}). Reports the wall time of
 * the caption call, the encoder's share (encode, then wait for the queue), ms per token of the
 * rest, the buffer pool's peak, the process's peak resident memory (Linux `VmHWM`: with a CPU
 * adapter the GPU buffers live there) and the tokens. Uses only `Captioner` API that older
 * commits have too, so the file can be copied into an old checkout for a before/after run:
 *
 * ```sh
 * deno run -A bench/real_caption.ts [MODEL_DIR] [--reps N]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { Captioner } from "../src/captioner/captioner.ts";
import { REAL, tempRandomModel } from "./random_model.ts";

/** One timed real-size caption (the fastest of the repetitions). */
export interface RealCaptionRow {
  model: string;
  adapter: string;
  wallMs: number;
  encoderMs: number;
  msPerToken: number;
  peakPoolMiB: number;
  peakRssMiB: number;
  tokens: string;
}

const TOKENS = 20;

/** The process's peak resident memory in MiB (Linux), or NaN where `/proc` is absent. */
function peakRssMiB(): number {
  try {
    const m = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** One caption call split into the encoder and the decoding, with wall times in ms. */
async function timeOnce(c: Captioner, image: Uint8Array) {
  const t0 = performance.now();
  const enc = await c.encode([image]);
  await c.gpu.device.queue.onSubmittedWorkDone();
  const t1 = performance.now();
  try {
    const [r] = await c.caption(enc, { maxNewTokens: TOKENS, minNewTokens: TOKENS });
    const t2 = performance.now();
    return { wall: t2 - t0, encoder: t1 - t0, tokens: r.captions[0].tokens };
  } finally {
    enc.dispose();
  }
}

/** Time `reps` real-size captions of `image` after one warm-up; the fastest run is reported. */
export async function benchRealCaption(
  dir: string | undefined,
  image: Uint8Array,
  reps: number,
): Promise<RealCaptionRow> {
  const folder = dir ?? await tempRandomModel(REAL, "webcap-bench-real-");
  try {
    const c = await Captioner.fromPretrained(folder);
    try {
      await timeOnce(c, image); // warm-up: pipelines and pool buckets
      c.gpu.pool.resetPeak();
      let best = { wall: Infinity, encoder: 0, tokens: [] as number[] };
      for (let i = 0; i < reps; i++) {
        const t = await timeOnce(c, image);
        if (t.wall < best.wall) best = t;
      }
      return {
        model: dir ?? "vit-gpt2 (real sizes, random)",
        adapter: c.gpu.adapterName,
        wallMs: best.wall,
        encoderMs: best.encoder,
        msPerToken: (best.wall - best.encoder) / TOKENS,
        peakPoolMiB: c.gpu.pool.peakBytes / 2 ** 20,
        peakRssMiB: peakRssMiB(),
        tokens: best.tokens.join(" "),
      };
    } finally {
      await c.dispose();
    }
  } finally {
    if (!dir) await Deno.remove(folder, { recursive: true });
  }
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
    options: { reps: { type: "string", default: "1" } },
    allowPositionals: true,
  });
  const row = await benchRealCaption(positionals[0], await benchImage(), Number(values.reps));
  console.log(JSON.stringify(row, null, 2));
}
