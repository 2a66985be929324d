/**
 * A ViT-GPT2 model folder with seeded random weights, made by the project so real-size numbers
 * can be reproduced anywhere without a download: `REAL` is `nlpconnect/vit-gpt2-image-captioning`
 * (ViT-B/16 at 224 + GPT-2 small with cross-attention, 239M parameters). The configs, the
 * generation config and the tokenizer come from the fixture ViT-GPT2 with the sizes replaced; the
 * tokenizer's vocabulary is extended with one word per id (`Ġw<id>`) up to the model's, so every
 * generated id decodes. Used by `bench --train --train-real`, `bench --caption --real` and
 * `scripts/make_random_model.ts`.
 * @module
 */
import { type TensorToWrite, writeSafetensors } from "../src/io/safetensors_write.ts";

/** The fixture ViT-GPT2 whose configs and tokenizer the random model takes. */
export const FIXTURE = new URL("../../shared/fixtures/hf/vit-gpt2", import.meta.url).pathname;

/** Sizes of a ViT-GPT2 made with random weights. */
export interface Sizes {
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
export const REAL: Sizes = {
  hidden: 768,
  heads: 12,
  layers: 12,
  vitInner: 3072,
  image: 224,
  patch: 16,
  vocab: 50257,
  positions: 1024,
};

/**
 * Every tensor of a ViT-GPT2 checkpoint of sizes `s`: weights uniform with std 0.02 from a
 * linear congruential generator seeded per tensor (the same bits on every machine), norms 1 and 0,
 * biases 0.
 */
export function randomTensors(s: Sizes): TensorToWrite[] {
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

/** The fixture's byte-level BPE tokenizer with one word `Ġw<id>` per id up to `vocab`. */
async function tokenizerJson(vocab: number): Promise<string> {
  const t = JSON.parse(await Deno.readTextFile(`${FIXTURE}/tokenizer.json`));
  const ids: Record<string, number> = t.model.vocab;
  for (let id = Object.keys(ids).length; id < vocab; id++) ids[`Ġw${id}`] = id;
  return JSON.stringify(t);
}

/** Write a model folder of sizes `s` with random weights into `dir` (created if missing). */
export async function writeRandomModel(dir: string, s: Sizes): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
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
  const generation = await Deno.readTextFile(`${FIXTURE}/generation_config.json`);
  await Deno.writeTextFile(`${dir}/generation_config.json`, generation);
  await Deno.writeTextFile(`${dir}/tokenizer.json`, await tokenizerJson(s.vocab));
  await writeSafetensors(`${dir}/model.safetensors`, randomTensors(s), { format: "pt" });
}

/** A temporary model folder of sizes `s` with random weights; the caller removes it. */
export async function tempRandomModel(s: Sizes, prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  await writeRandomModel(dir, s);
  return dir;
}
