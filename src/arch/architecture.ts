/**
 * What the registry (./registry.ts) knows of an architecture: how to load it, how to prove it
 * against transformers' reference outputs (parity), whether it draws attention maps, and the
 * image processor and tokenizer of folders that ship none. Each architecture file exports one
 * {@link Architecture}; nothing outside the registry switches on architecture names.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { WeightDtype } from "../nn/params.ts";
import type { Preprocessor } from "../image/preprocess.ts";
import type { ModelFiles } from "../io/model_files.ts";
import { openWeights, type WeightStore } from "../io/weights.ts";
import { ParamLoader } from "../nn/params.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import type { CaptionModel, EncoderState } from "./caption_model.ts";

type Json = Record<string, unknown>;

/** What a loader gets: the folder, the parsed config that named the architecture, the dtype. */
export interface LoadContext {
  gpu: Gpu;
  files: ModelFiles;
  /** Storage type of matrices (q8 / q4: the weights of matmuls and embeddings quantized). */
  dtype: WeightDtype;
  /** q4: elements of the input dimension per scale (default 32). */
  groupSize?: number;
  /** `config.json` (or the architecture's marker file), parsed. */
  config: Json;
  /** Where `config` came from, for messages. */
  where: string;
  /** `generation_config.json`, when the folder has one. */
  generation?: Json;
}

/** One generate case of a parity fixture. */
export interface CaseCheck {
  /** Name of the case in `generate.json`. */
  name: string;
  /** "pass"/"fail" against the reference; "no-reference" where the fixture records none (property checks only). */
  status: "pass" | "fail" | "no-reference";
  /** What was compared, or the first mismatch. */
  detail: string;
}

/** The tools a parity procedure runs with (given by `src/captioner/parity.ts`). */
export interface ParityContext {
  readonly model: CaptionModel;
  /** `reference.safetensors`: inputs and transformers' outputs. */
  readonly ref: WeightStore;
  /** `generate.json`. */
  readonly cases: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** Upload reference tensor `pixelsName` and encode it. */
  encode(pixelsName: string): Promise<EncoderState>;
  /** Read GPU tensors back as f32. */
  read(tensors: Tensor[]): Promise<Float32Array[]>;
  /** Compare `got` with the reference `want` under `name`. */
  check(name: string, got: Float32Array, want: Float32Array): void;
  /** Reference tensor `name` `[N, T]` of token ids, as rows. */
  ids(name: string): Promise<number[][]>;
  /** Teacher-forced logits (and attention) of `ids [N, T]`, one row per image. */
  teacherForced(
    enc: EncoderState,
    ids: number[][],
    attention?: boolean,
  ): Promise<{ logits: Float32Array; attention?: Float32Array }>;
  /** Every case of `generate.json` as transformers' `generate` kwargs. */
  generateCases(enc: EncoderState): Promise<CaseCheck[]>;
  /** The `greedy` case as token lists (`tokens`, `max_new_tokens`). */
  greedyCase(enc: EncoderState): Promise<CaseCheck>;
}

/** An architecture as the registry holds it. */
export interface Architecture {
  /** The name `config.json` gives (`architectures[0]` or `architecture`), and the model's. */
  readonly name: string;
  /** A file that marks this architecture's folders, which have no `config.json` naming it. */
  readonly marker?: string;
  /** Load a model (`ctx.config` is `config.json`, or the marker file). */
  load(ctx: LoadContext): Promise<CaptionModel>;
  /** Compare the model with a fixture's reference outputs; returns the generate cases. */
  parity(ctx: ParityContext): Promise<CaseCheck[]>;
  /** The decoder's start id lies past the vocabulary by design (ClipCap's last prefix vector). */
  readonly startIdPastVocab?: boolean;
  /** Attention maps: encoder positions before the image grid; absent: no cross-attention. */
  readonly attentionMaps?: { leadingPositions: number };
  /** The image processor of a folder without `preprocessor_config.json`. */
  defaultPreprocessor?(config: Json, where: string): Preprocessor | undefined;
  /** The tokenizer of a folder without `tokenizer.json` or `word_map.json`. */
  defaultTokenizer?(config: Json, source: string): Tokenizer | undefined;
}

/**
 * Open the folder's weights and run `load` with one {@link ParamLoader}: the store is closed
 * after, the loaded tensors freed when `load` fails.
 */
export async function loadWithParams<T>(
  ctx: LoadContext,
  load: (p: ParamLoader) => Promise<T>,
): Promise<T> {
  const store = await openWeights(ctx.files);
  const p = new ParamLoader(ctx.gpu, store, ctx.dtype, ctx.groupSize);
  try {
    return await load(p);
  } catch (e) {
    p.dispose();
    throw e;
  } finally {
    store.close();
  }
}

/**
 * Parity of a transformer encoder-decoder (ViT-GPT2, BLIP): the encoder's last hidden state,
 * teacher-forced logits, then every generate case.
 */
export async function transformerParity(ctx: ParityContext): Promise<CaseCheck[]> {
  const enc = await ctx.encode("pixel_values");
  try {
    const ref = ctx.ref;
    const hiddenName = ref.has("encoder_last_hidden_state")
      ? "encoder_last_hidden_state"
      : "vision_last_hidden_state";
    const [hidden] = await ctx.read([enc.hidden]);
    ctx.check(hiddenName, hidden, await ref.readF32(hiddenName));
    const ids = await ctx.ids(ref.has("decoder_input_ids") ? "decoder_input_ids" : "input_ids");
    ctx.check("logits", (await ctx.teacherForced(enc, ids)).logits, await ref.readF32("logits"));
    return await ctx.generateCases(enc);
  } finally {
    enc.dispose();
  }
}
