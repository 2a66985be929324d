/**
 * A ViT-GPT2 or BLIP model folder with seeded random weights, made by the project so real-size
 * numbers can be reproduced anywhere without a download: `REAL` is
 * `nlpconnect/vit-gpt2-image-captioning` (ViT-B/16 at 224 + GPT-2 small with cross-attention,
 * 239M parameters), `BLIP_BASE` is `Salesforce/blip-image-captioning-base` (ViT-B/16 at 384 + a
 * BERT-base decoder with cross-attention). The configs, the generation config and the tokenizer
 * come from the architecture's fixture with the sizes replaced; the tokenizer's vocabulary is
 * extended with one word per id (`Ġw<id>`, `w<id>`) up to the model's, so every generated id
 * decodes. Used by `bench --train --train-real`, `bench --caption --real` and
 * `scripts/make_random_model.ts`.
 * @module
 */
import { type TensorToWrite, writeSafetensors } from "../src/io/safetensors_write.ts";

/** The fixture ViT-GPT2 whose configs and tokenizer the random model takes. */
export const FIXTURE = new URL("../../shared/fixtures/hf/vit-gpt2", import.meta.url).pathname;

/** Sizes of a model made with random weights (encoder and decoder alike). */
export interface Sizes {
  hidden: number;
  heads: number;
  layers: number;
  /** The MLP's inner size: ViT's, and BLIP's text decoder's (GPT-2's is 4 × hidden). */
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

/** ViT-B/16 at 384 and BERT-base with cross-attention (`Salesforce/blip-image-captioning-base`). */
export const BLIP_BASE: Sizes = {
  hidden: 768,
  heads: 12,
  layers: 12,
  vitInner: 3072,
  image: 384,
  patch: 16,
  vocab: 30524,
  positions: 512,
};

/**
 * A list of random tensors and the helpers that add to it: weights uniform with std 0.02 from a
 * linear congruential generator seeded per tensor in order of addition (the same bits on every
 * machine), norms 1 and 0, biases 0.
 */
function tensorList(h: number) {
  const out: TensorToWrite[] = [];
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
  return { out, add, norm, lin };
}

/** Every tensor of a ViT-GPT2 checkpoint of sizes `s` (see {@link tensorList}). */
export function randomTensors(s: Sizes): TensorToWrite[] {
  const h = s.hidden, { out, add, norm, lin } = tensorList(h);
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

/**
 * Every tensor of a BLIP captioning checkpoint of sizes `s` (ViT with fused qkv, BERT decoder with
 * cross-attention and tied word embeddings; see {@link tensorList}).
 */
export function randomBlipTensors(s: Sizes): TensorToWrite[] {
  const h = s.hidden, { out, add, norm, lin } = tensorList(h);
  const v = "vision_model", t = "text_decoder";
  add(`${v}.embeddings.class_embedding`, [1, 1, h]);
  lin(`${v}.embeddings.patch_embedding`, [h, 3, s.patch, s.patch]);
  add(`${v}.embeddings.position_embedding`, [1, (s.image / s.patch) ** 2 + 1, h]);
  for (let l = 0; l < s.layers; l++) {
    const e = `${v}.encoder.layers.${l}`;
    lin(`${e}.self_attn.qkv`, [3 * h, h]);
    lin(`${e}.self_attn.projection`, [h, h]);
    lin(`${e}.mlp.fc1`, [s.vitInner, h]);
    lin(`${e}.mlp.fc2`, [h, s.vitInner]);
    norm(`${e}.layer_norm1`);
    norm(`${e}.layer_norm2`);
    const d = `${t}.bert.encoder.layer.${l}`;
    for (const a of ["attention", "crossattention"]) {
      for (const q of ["query", "key", "value"]) lin(`${d}.${a}.self.${q}`, [h, h]);
      lin(`${d}.${a}.output.dense`, [h, h]);
      norm(`${d}.${a}.output.LayerNorm`);
    }
    lin(`${d}.intermediate.dense`, [s.vitInner, h]);
    lin(`${d}.output.dense`, [h, s.vitInner]);
    norm(`${d}.output.LayerNorm`);
  }
  norm(`${v}.post_layernorm`);
  add(`${t}.bert.embeddings.word_embeddings.weight`, [s.vocab, h]);
  add(`${t}.bert.embeddings.position_embeddings.weight`, [s.positions, h]);
  norm(`${t}.bert.embeddings.LayerNorm`);
  lin(`${t}.cls.predictions.transform.dense`, [h, h]);
  norm(`${t}.cls.predictions.transform.LayerNorm`);
  add(`${t}.cls.predictions.bias`, [s.vocab], 0);
  return out;
}

/** The architectures a random model can have. */
export type RandomArch = "vit-gpt2" | "blip";

type Config = Record<string, Record<string, unknown>>;

/** Per architecture: the fixture whose configs and tokenizer it takes, its tensors, its sizes. */
const LAYOUTS: Record<RandomArch, {
  fixture: string;
  tensors: (s: Sizes) => TensorToWrite[];
  config: (c: Config, s: Sizes) => void;
  /** How a word is spelled in the tokenizer's vocabulary (`Ġ` marks a leading space in BPE). */
  word: string;
}> = {
  "vit-gpt2": {
    fixture: FIXTURE,
    tensors: randomTensors,
    config: (c, s) => {
      Object.assign(c.encoder, vitSizes(s));
      Object.assign(c.decoder, {
        n_embd: s.hidden,
        n_head: s.heads,
        n_layer: s.layers,
        vocab_size: s.vocab,
        n_positions: s.positions,
      });
    },
    word: "Ġw",
  },
  "blip": {
    fixture: new URL("../../shared/fixtures/hf/blip", import.meta.url).pathname,
    tensors: randomBlipTensors,
    config: (c, s) => {
      Object.assign(c.vision_config, vitSizes(s));
      Object.assign(c.text_config, {
        hidden_size: s.hidden,
        num_attention_heads: s.heads,
        num_hidden_layers: s.layers,
        intermediate_size: s.vitInner,
        vocab_size: s.vocab,
        max_position_embeddings: s.positions,
        encoder_hidden_size: s.hidden,
      });
    },
    word: "w",
  },
};

/** A ViT config's sizes (Hugging Face keys). */
function vitSizes(s: Sizes) {
  return {
    hidden_size: s.hidden,
    num_attention_heads: s.heads,
    num_hidden_layers: s.layers,
    intermediate_size: s.vitInner,
    image_size: s.image,
    patch_size: s.patch,
  };
}

/** `fixture`'s tokenizer with one word `<word><id>` per id up to `vocab`. */
async function tokenizerJson(fixture: string, word: string, vocab: number): Promise<string> {
  const t = JSON.parse(await Deno.readTextFile(`${fixture}/tokenizer.json`));
  const ids: Record<string, number> = t.model.vocab;
  for (let id = Object.keys(ids).length; id < vocab; id++) ids[`${word}${id}`] = id;
  return JSON.stringify(t);
}

/**
 * Write a model folder of architecture `arch` (default ViT-GPT2) and sizes `s` with random
 * weights into `dir` (created if missing).
 */
export async function writeRandomModel(
  dir: string,
  s: Sizes,
  arch: RandomArch = "vit-gpt2",
): Promise<void> {
  const { fixture, tensors, config, word } = LAYOUTS[arch];
  await Deno.mkdir(dir, { recursive: true });
  const cfg = JSON.parse(await Deno.readTextFile(`${fixture}/config.json`));
  config(cfg, s);
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg));
  const prep = JSON.parse(await Deno.readTextFile(`${fixture}/preprocessor_config.json`));
  prep.size = { height: s.image, width: s.image };
  await Deno.writeTextFile(`${dir}/preprocessor_config.json`, JSON.stringify(prep));
  const generation = await Deno.readTextFile(`${fixture}/generation_config.json`);
  await Deno.writeTextFile(`${dir}/generation_config.json`, generation);
  await Deno.writeTextFile(`${dir}/tokenizer.json`, await tokenizerJson(fixture, word, s.vocab));
  await writeSafetensors(`${dir}/model.safetensors`, tensors(s), { format: "pt" });
}

/** A temporary model folder of `arch` and sizes `s` with random weights; the caller removes it. */
export async function tempRandomModel(
  s: Sizes,
  prefix: string,
  arch: RandomArch = "vit-gpt2",
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  await writeRandomModel(dir, s, arch);
  return dir;
}
