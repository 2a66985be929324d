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
import { type TensorToWrite, writeSafetensors } from "../src/io/safetensors_write.ts";
import { type TrainBatch, Trainer } from "../src/train/trainer.ts";

const FIXTURE = new URL("../../shared/fixtures/hf/vit-gpt2", import.meta.url).pathname;

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

/** Sizes of a ViT-GPT2 made with random weights. */
interface Sizes {
  hidden: number;
  heads: number;
  layers: number;
  vitInner: number;
  image: number;
  patch: number;
  vocab: number;
  positions: number;
}

/** ViT-B/16 at 224 and GPT-2 small (`nlpconnect/vit-gpt2-image-captioning`). */
const REAL: Sizes = {
  hidden: 768,
  heads: 12,
  layers: 12,
  vitInner: 3072,
  image: 224,
  patch: 16,
  vocab: 50257,
  positions: 1024,
};

/** Every tensor of a ViT-GPT2 checkpoint of sizes `s`, random N(0, 0.02) weights, unit norms. */
function tensors(s: Sizes): TensorToWrite[] {
  const h = s.hidden, out: TensorToWrite[] = [];
  let seed = 1;
  const add = (name: string, shape: number[], fill?: number) => {
    const k = seed++;
    out.push({
      name,
      dtype: "F32",
      shape,
      read: () => {
        const n = shape.reduce((a, b) => a * b, 1), a = new Float32Array(n);
        let x = k * 2654435761 >>> 0;
        for (let i = 0; i < n; i++) {
          x = (x * 1664525 + 1013904223) >>> 0;
          a[i] = fill ?? (x / 2 ** 32 - 0.5) * 0.07; // uniform, std 0.02
        }
        return new Uint8Array(a.buffer);
      },
    });
  };
  const norm = (name: string) => (add(`${name}.weight`, [h], 1), add(`${name}.bias`, [h], 0));
  const lin = (
    name: string,
    shape: number[],
  ) => (add(`${name}.weight`, shape),
    add(`${name}.bias`, [name.startsWith("decoder") ? shape[1] : shape[0]], 0)); // Conv1D: [in, out]
  const P = (s.image / s.patch) ** 2;
  add("encoder.embeddings.cls_token", [1, 1, h]);
  lin("encoder.embeddings.patch_embeddings.projection", [h, 3, s.patch, s.patch]);
  add("encoder.embeddings.position_embeddings", [1, P + 1, h]);
  for (let l = 0; l < s.layers; l++) {
    const e = `encoder.encoder.layer.${l}`;
    for (const q of ["query", "key", "value"]) lin(`${e}.attention.attention.${q}`, [h, h]);
    lin(`${e}.attention.output.dense`, [h, h]);
    lin(`${e}.intermediate.dense`, [s.vitInner, h]);
    lin(`${e}.output.dense`, [h, s.vitInner]);
    norm(`${e}.layernorm_before`);
    norm(`${e}.layernorm_after`);
    const d = `decoder.transformer.h.${l}`;
    lin(`${d}.attn.c_attn`, [h, 3 * h]);
    lin(`${d}.attn.c_proj`, [h, h]);
    lin(`${d}.crossattention.q_attn`, [h, h]);
    lin(`${d}.crossattention.c_attn`, [h, 2 * h]);
    lin(`${d}.crossattention.c_proj`, [h, h]);
    lin(`${d}.mlp.c_fc`, [h, 4 * h]);
    add(`${d}.mlp.c_proj.weight`, [4 * h, h]);
    add(`${d}.mlp.c_proj.bias`, [h], 0);
    for (const n of ["ln_1", "ln_2", "ln_cross_attn"]) norm(`${d}.${n}`);
  }
  norm("encoder.layernorm");
  norm("decoder.transformer.ln_f");
  add("decoder.transformer.wte.weight", [s.vocab, h]);
  add("decoder.transformer.wpe.weight", [s.positions, h]);
  return out;
}

/** A model folder of sizes `s` with random weights, configs from the fixture's. */
async function randomModel(s: Sizes): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webcap-bench-train-" });
  const config = JSON.parse(await Deno.readTextFile(`${FIXTURE}/config.json`));
  Object.assign(config.encoder, {
    hidden_size: s.hidden,
    num_attention_heads: s.heads,
    num_hidden_layers: s.layers,
    intermediate_size: s.vitInner,
    image_size: s.image,
    patch_size: s.patch,
  });
  Object.assign(config.decoder, {
    n_embd: s.hidden,
    n_head: s.heads,
    n_layer: s.layers,
    vocab_size: s.vocab,
    n_positions: s.positions,
  });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  const prep = JSON.parse(await Deno.readTextFile(`${FIXTURE}/preprocessor_config.json`));
  prep.size = { height: s.image, width: s.image };
  await Deno.writeTextFile(`${dir}/preprocessor_config.json`, JSON.stringify(prep));
  for (const f of ["generation_config.json", "tokenizer.json"]) {
    await Deno.copyFile(`${FIXTURE}/${f}`, `${dir}/${f}`);
  }
  await writeSafetensors(`${dir}/model.safetensors`, tensors(s), { format: "pt" });
  return dir;
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
  const dir = real ? await randomModel(REAL) : FIXTURE;
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
