/**
 * `--init random` (Deno): a complete Hugging Face model folder with fresh weights for the
 * architecture a folder's `config.json` describes — a VisionEncoderDecoder of ViT and GPT-2 —
 * initialised as transformers' `_init_weights` does:
 * - ViT (`ViTPreTrainedModel`): Linear and Conv2d weights truncated normal(0, initializer_range)
 *   (cut at ±2, torch's `trunc_normal_` default), biases zero, LayerNorm weight 1 and bias 0,
 *   `cls_token` and `position_embeddings` truncated normal(0, initializer_range);
 * - GPT-2 (`GPT2PreTrainedModel`): Conv1D and Embedding weights normal(0, initializer_range),
 *   biases zero, LayerNorm 1 / 0, and every `c_proj.weight` (attention, cross-attention, MLP)
 *   normal(0, initializer_range / √(2·n_layer)); the LM head is tied to `wte` (not stored).
 *
 * Values come from one seeded stream (`Rng`, Box–Muller), so a seed gives the same folder. When
 * the source has no `tokenizer.json`, a word-level one is trained on the given (training)
 * captions and `vocab_size` and the special-token ids of `config.json` and
 * `generation_config.json` follow it. `preprocessor_config.json` is the source's when its size
 * matches the ViT's `image_size`, else a ViTImageProcessor of that size.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { readJson } from "../arch/model_json.ts";
import { Rng } from "../decode/rng.ts";
import { writeSafetensors } from "../io/safetensors_write.ts";
import { trainWordLevel, type WordLevelIds } from "../text/word_level.ts";

type Json = Record<string, unknown>;

/** Options of {@link initRandom}. */
export interface InitRandomOptions {
  /** Seed of the weights (default 0). */
  seed?: number;
  /** Training captions for the word-level tokenizer (needed when the source has none). */
  captions?: readonly string[];
}

/** What {@link initRandom} wrote. */
export interface InitRandomResult {
  /** The folder written. */
  dir: string;
  /** The tokenizer's special-token ids and vocabulary size, trained or the config's. */
  ids: TokenIds;
  /** Whether the tokenizer was trained on the captions (else the source's). */
  trainedTokenizer: boolean;
}

/** Special-token ids and the vocabulary size. */
export type TokenIds = Omit<WordLevelIds, "unk">;

/** One tensor to initialise: its name, shape and fill. */
interface Init {
  name: string;
  shape: number[];
  /** "normal" / "trunc" with std, or a constant. */
  fill: { normal: number; trunc?: boolean } | { constant: number };
}

const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

function bad(message: string): never {
  throw new WebcapError("BAD_OPTION", message);
}

function count(cfg: Json, key: string, where: string): number {
  const v = cfg[key];
  if (!(Number.isInteger(v) && (v as number) > 0)) {
    throw new WebcapError("BAD_CONFIG", `${where}: ${key} must be a positive integer, got ${v}`);
  }
  return v as number;
}

function rate(cfg: Json, key: string, where: string): number {
  const v = cfg[key] ?? 0.02;
  if (!(typeof v === "number" && v > 0)) {
    throw new WebcapError("BAD_CONFIG", `${where}: ${key} must be a number > 0, got ${v}`);
  }
  return v;
}

/** The ViT and GPT-2 configs of a VisionEncoderDecoder `config.json`, else a BAD_OPTION. */
function parts(config: Json, where: string): { vit: Json; gpt2: Json } {
  const enc = config.encoder as Json | undefined, dec = config.decoder as Json | undefined;
  if (
    config.model_type !== "vision-encoder-decoder" || enc?.model_type !== "vit" ||
    dec?.model_type !== "gpt2"
  ) {
    const kind = [config.model_type, enc?.model_type, dec?.model_type].filter(Boolean).join("/");
    bad(
      `--init random builds a VisionEncoderDecoder of ViT and GPT-2; ${where} is ${
        kind || "unknown"
      }`,
    );
  }
  const h = count(enc, "hidden_size", where), n = count(dec, "n_embd", where);
  if (h !== n) bad(`--init random: ${where} has ViT hidden ${h} ≠ GPT-2 n_embd ${n}`);
  return { vit: enc, gpt2: dec };
}

const ZERO = { constant: 0 }, ONE = { constant: 1 };

function layerNorm(name: string, d: number): Init[] {
  return [
    { name: `${name}.weight`, shape: [d], fill: ONE },
    { name: `${name}.bias`, shape: [d], fill: ZERO },
  ];
}

/** A Linear `[out, in]` (ViT: truncated normal) or a Conv1D `[in, out]` (GPT-2) and its bias. */
function dense(name: string, shape: number[], bias: number, std: number, trunc = false): Init[] {
  return [
    { name: `${name}.weight`, shape, fill: { normal: std, trunc } },
    { name: `${name}.bias`, shape: [bias], fill: ZERO },
  ];
}

/** ViT's tensors under `encoder.` (with the pooler transformers' ViTModel holds). */
function vitInits(c: Json, where: string): Init[] {
  const h = count(c, "hidden_size", where), I = count(c, "intermediate_size", where);
  const p = count(c, "patch_size", where), C = count(c, "num_channels", where);
  const P = (count(c, "image_size", where) / p) ** 2, std = rate(c, "initializer_range", where);
  if (!Number.isInteger(P)) bad(`${where}: image_size is not a multiple of patch_size`);
  const lin = (name: string, out: number, inp: number) => dense(name, [out, inp], out, std, true);
  const out: Init[] = [
    { name: "embeddings.cls_token", shape: [1, 1, h], fill: { normal: std, trunc: true } },
    {
      name: "embeddings.position_embeddings",
      shape: [1, P + 1, h],
      fill: { normal: std, trunc: true },
    },
    ...dense("embeddings.patch_embeddings.projection", [h, C, p, p], h, std, true),
  ];
  for (let i = 0; i < count(c, "num_hidden_layers", where); i++) {
    const l = `encoder.layer.${i}.`;
    for (const q of ["query", "key", "value"]) {
      const w = lin(`${l}attention.attention.${q}`, h, h);
      out.push(...(c.qkv_bias === false ? w.slice(0, 1) : w));
    }
    out.push(
      ...lin(`${l}attention.output.dense`, h, h),
      ...lin(`${l}intermediate.dense`, I, h),
      ...lin(`${l}output.dense`, h, I),
      ...layerNorm(`${l}layernorm_before`, h),
      ...layerNorm(`${l}layernorm_after`, h),
    );
  }
  const pool = typeof c.pooler_output_size === "number" ? c.pooler_output_size : h;
  out.push(...layerNorm("layernorm", h), ...lin("pooler.dense", pool, h));
  return out.map((t) => ({ ...t, name: `encoder.${t.name}` }));
}

/** GPT-2's tensors (with cross-attention) under `decoder.transformer.`. */
function gpt2Inits(c: Json, where: string): Init[] {
  const n = count(c, "n_embd", where), L = count(c, "n_layer", where);
  const inner = c.n_inner == null ? 4 * n : count(c, "n_inner", where);
  const std = rate(c, "initializer_range", where), proj = std / Math.sqrt(2 * L);
  const out: Init[] = [
    { name: "wte.weight", shape: [count(c, "vocab_size", where), n], fill: { normal: std } },
    { name: "wpe.weight", shape: [count(c, "n_positions", where), n], fill: { normal: std } },
  ];
  for (let i = 0; i < L; i++) {
    const l = `h.${i}.`;
    out.push(
      ...layerNorm(`${l}ln_1`, n),
      ...dense(`${l}attn.c_attn`, [n, 3 * n], 3 * n, std),
      ...dense(`${l}attn.c_proj`, [n, n], n, proj),
      ...layerNorm(`${l}ln_cross_attn`, n),
      ...dense(`${l}crossattention.c_attn`, [n, 2 * n], 2 * n, std),
      ...dense(`${l}crossattention.q_attn`, [n, n], n, std),
      ...dense(`${l}crossattention.c_proj`, [n, n], n, proj),
      ...layerNorm(`${l}ln_2`, n),
      ...dense(`${l}mlp.c_fc`, [n, inner], inner, std),
      ...dense(`${l}mlp.c_proj`, [inner, n], n, proj),
    );
  }
  out.push(...layerNorm("ln_f", n));
  return out.map((t) => ({ ...t, name: `decoder.transformer.${t.name}` }));
}

/** A standard normal draw (Box–Muller) from `rng`. */
function gaussian(rng: Rng): number {
  const u = 1 - rng.nextFloat(), v = rng.nextFloat();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** The values of `t`; truncated draws outside ±2 (absolute, torch's default) are redrawn. */
function values(t: Init, rng: Rng): Float32Array {
  const x = new Float32Array(t.shape.reduce((a, b) => a * b, 1));
  const f = t.fill;
  if ("constant" in f) return x.fill(f.constant);
  for (let i = 0; i < x.length; i++) {
    let v = gaussian(rng) * f.normal;
    while (f.trunc && Math.abs(v) > 2) v = gaussian(rng) * f.normal;
    x[i] = v;
  }
  return x;
}

async function writeWeights(path: string, inits: readonly Init[], seed: number): Promise<void> {
  const rng = new Rng(seed);
  const data = inits.map((t) => values(t, rng));
  await writeSafetensors(
    path,
    inits.map((t, i) => ({
      name: t.name,
      dtype: "F32",
      shape: t.shape,
      read: () => new Uint8Array(data[i].buffer),
    })),
    { format: "pt" },
  );
}

/** The tokenizer of the new folder: one trained on `captions`, else the source's files. */
async function tokenizer(
  src: string,
  out: string,
  config: Json,
  captions: readonly string[] | undefined,
): Promise<{ ids: TokenIds; trained: boolean }> {
  if (captions) {
    return { ids: await trainWordLevel(captions, out), trained: true };
  }
  for (const name of TOKENIZER_FILES) {
    await Deno.copyFile(`${src}/${name}`, `${out}/${name}`).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
  const dec = config.decoder as Json, id = (k: string) => Number(dec[k] ?? config[k]);
  const ids = { pad: id("pad_token_id"), bos: id("bos_token_id"), eos: id("eos_token_id") };
  return { ids: { ...ids, vocabSize: Number(dec.vocab_size) }, trained: false };
}

/** `config.json` with the tokenizer's vocabulary size and special-token ids. */
function withIds(config: Json, ids: TokenIds): Json {
  const tokens = { bos_token_id: ids.bos, eos_token_id: ids.eos, pad_token_id: ids.pad };
  return {
    ...config,
    ...tokens,
    decoder_start_token_id: ids.bos,
    decoder: {
      ...(config.decoder as Json),
      ...tokens,
      decoder_start_token_id: ids.bos,
      vocab_size: ids.vocabSize,
    },
  };
}

/** The source's preprocessor config when its size is the ViT's, else a ViTImageProcessor. */
async function preprocessor(src: string, size: number): Promise<Json> {
  const own = await readJson(`${src}/preprocessor_config.json`, true);
  const s = own?.size as Json | undefined;
  if (own && s?.height === size && s?.width === size) return own;
  return {
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.5, 0.5, 0.5],
    image_processor_type: "ViTImageProcessor",
    image_std: [0.5, 0.5, 0.5],
    resample: 2,
    rescale_factor: 1 / 255,
    size: { height: size, width: size },
  };
}

async function writeJson(path: string, json: unknown): Promise<void> {
  await Deno.writeTextFile(path, JSON.stringify(json, null, 2) + "\n");
}

async function checkEmpty(dir: string): Promise<void> {
  try {
    for await (const _ of Deno.readDir(dir)) {
      bad(`--init random writes a new folder; ${dir} exists and is not empty`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Write a model folder `out` for `modelDir`'s `config.json` with fresh weights (see the module
 * notes): `config.json`, `generation_config.json`, `preprocessor_config.json`, the tokenizer and
 * `model.safetensors`.
 * @throws WebcapError BAD_OPTION when the config is not ViT + GPT-2, `out` is not empty, or a
 *   tokenizer is needed and no captions are given; BAD_CONFIG for a malformed config.
 */
export async function initRandom(
  modelDir: string,
  out: string,
  opts: InitRandomOptions = {},
): Promise<InitRandomResult> {
  const where = `${modelDir}/config.json`;
  const source = await readJson(where);
  const { vit } = parts(source, where);
  const own = await Deno.stat(`${modelDir}/tokenizer.json`).then(() => true, () => false);
  if (!own && !opts.captions?.length) {
    bad(`--init random: ${modelDir} has no tokenizer.json and no training captions to train one`);
  }
  await checkEmpty(out);
  await Deno.mkdir(out, { recursive: true });
  const tok = await tokenizer(modelDir, out, source, own ? undefined : opts.captions);
  const config = withIds(source, tok.ids);
  const inits = [...vitInits(vit, where), ...gpt2Inits(config.decoder as Json, where)];
  await writeWeights(`${out}/model.safetensors`, inits, opts.seed ?? 0);
  await writeJson(`${out}/config.json`, config);
  await writeJson(`${out}/generation_config.json`, {
    bos_token_id: tok.ids.bos,
    decoder_start_token_id: tok.ids.bos,
    eos_token_id: tok.ids.eos,
    pad_token_id: tok.ids.pad,
  });
  await writeJson(
    `${out}/preprocessor_config.json`,
    await preprocessor(modelDir, count(vit, "image_size", where)),
  );
  return { dir: out, ids: tok.ids, trainedTokenizer: tok.trained };
}
