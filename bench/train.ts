/**
 * `deno task bench --train`: training step time, samples/s and peak GPU bytes (the buffer pool's
 * high-water mark: owned + live + free) of ViT-GPT2, whole model and frozen encoder (cached),
 * AdamW. The fixture model by default; with `--train-real` the real sizes (ViT-B/16 224 +
 * GPT-2 small with cross-attention, 239M parameters) with random weights written to a temporary
 * folder — for GPU machines only.
 * @module
 */
import { getGpu, type Gpu } from "../src/gpu/device.ts";
import type { RgbImage } from "../src/image/decode.ts";
import { type TrainBatch, Trainer } from "../src/train/trainer.ts";
import { FIXTURE, REAL, tempRandomModel } from "./random_model.ts";

/** One row of the table. */
export interface TrainRow {
  model: string;
  encoder: "trained" | "frozen";
  batch: number;
  tokens: number;
  params: number;
  stepMs: number;
  samplesPerS: number;
  peakGpuMiB: number;
}

/** A batch of `n` random images and captions of `T` random tokens (the last one the end token). */
function randomBatch(n: number, T: number, image: number, vocab: number, eos: number): TrainBatch {
  let x = 12345;
  const next = () => (x = (x * 1664525 + 1013904223) >>> 0);
  const images: RgbImage[] = Array.from({ length: n }, () => ({
    width: image,
    height: image,
    data: Uint8Array.from({ length: image * image * 3 }, () => next() & 255),
  }));
  const labels = Int32Array.from(
    { length: n * T },
    (_, i) => (i % T === T - 1 ? eos : next() % vocab),
  );
  return { images, keys: images.map((_, i) => `image-${i}`), labels };
}

async function timeTrainer(
  gpu: Gpu,
  dir: string,
  name: string,
  frozen: boolean,
  opts: { batch: number; tokens: number; image: number; vocab: number; eos: number; reps: number },
): Promise<TrainRow> {
  const t = await Trainer.fromPretrained(dir, {
    optimizer: { kind: "adamw", lr: 1e-5, maxGradNorm: 1 },
    frozen: frozen ? ["encoder."] : [],
    gpu,
  });
  const b = randomBatch(opts.batch, opts.tokens, opts.image, opts.vocab, opts.eos);
  await t.step(b); // warm-up: pipelines, pool, encoder cache
  const times: number[] = [];
  for (let i = 0; i < opts.reps; i++) {
    const t0 = performance.now();
    await t.step(b);
    times.push(performance.now() - t0);
  }
  const params = t.params.reduce((n, p) => n + p.shape.reduce((a, c) => a * c, 1), 0);
  const pool = gpu.pool, peak = pool.ownedBytes + pool.liveBytes + pool.freeBytes;
  t.dispose();
  const stepMs = times.sort((a, c) => a - c)[Math.floor(times.length / 2)];
  return {
    model: name,
    encoder: frozen ? "frozen" : "trained",
    batch: opts.batch,
    tokens: opts.tokens,
    params,
    stepMs,
    samplesPerS: opts.batch / (stepMs / 1000),
    peakGpuMiB: peak / 2 ** 20,
  };
}

/** Time training steps of the fixture model, or (`real`) of ViT-GPT2 at its real sizes. */
export async function benchTrain(real: boolean, reps: number): Promise<TrainRow[]> {
  const gpu = await getGpu();
  const dir = real ? await tempRandomModel(REAL, "webcap-bench-train-") : FIXTURE;
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const opts = {
    batch: 8,
    tokens: real ? 24 : 10,
    image: config.encoder.image_size,
    vocab: config.decoder.vocab_size,
    eos: config.eos_token_id,
    reps,
  };
  const name = real ? "vit-gpt2 (real sizes, random)" : "vit-gpt2 fixture";
  const rows: TrainRow[] = [];
  try {
    for (const frozen of [false, true]) {
      gpu.pool.trim();
      rows.push(await timeTrainer(gpu, dir, name, frozen, opts));
    }
  } finally {
    if (real) await Deno.remove(dir, { recursive: true });
  }
  return rows;
}
