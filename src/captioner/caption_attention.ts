/**
 * Where a captioner looked for each word: one teacher-forced decoder step over the prompt and
 * the caption's tokens with cross-attention recorded, read back and reshaped to the image grid.
 *
 * Token i of a caption was predicted by the position whose input was the token before it (the
 * last prompt token for i = 0), so its map is that position's attention: for transformer
 * decoders the cross-attention probabilities averaged over heads (then over layers, or one
 * layer), for Show-Attend-Tell the α of that step. ViT-based encoders (ViT-GPT2, BLIP) put a
 * CLS token before the patch grid: its entry is dropped and the patch weights are renormalised
 * to sum to 1, so a map shows how attention was shared among image regions.
 * @module
 */
import type { Captioner, ImageInput } from "./captioner.ts";
import { WebcapError } from "../errors.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { CaptionModel, EncoderState } from "../arch/caption_model.ts";
import { findArchitecture } from "../arch/registry.ts";
import { folderArchitecture } from "../arch/load.ts";
import type { ModelFiles } from "../io/model_files.ts";
import type { Tokenizer } from "../text/tokenizer.ts";

/** Options of {@link captionAttention} and {@link tokenAttention}. */
export interface AttentionOptions {
  /** Decoder layer whose cross-attention is shown (0-based), or "mean" over layers (default). */
  layer?: number | "mean";
}

/** Attention of each generated token over the image grid. */
export interface TokenAttention {
  /** Rows and columns of the image grid (ViT: patches; Show-Attend-Tell: encoded pixels). */
  grid: [number, number];
  /** Per generated token, `grid[0]·grid[1]` weights row-major, summing to 1. */
  maps: Float32Array[];
}

/** {@link TokenAttention} with the text of each token. */
export interface CaptionAttention extends TokenAttention {
  /** Per generated token, its text (BPE space markers stripped, special tokens by name). */
  words: string[];
}

/** Whether `model` has cross-attention to draw as attention maps (ClipCap, a prefix model, has none). */
export function hasAttentionMaps(model: CaptionModel): boolean {
  return findArchitecture(model.architecture)?.attentionMaps !== undefined;
}

/**
 * The architecture a model folder names and whether it has cross-attention to draw, read from
 * its config alone: no weights loaded, no GPU work.
 */
export async function folderAttentionMaps(
  files: ModelFiles,
): Promise<{ architecture: string; attentionMaps: boolean }> {
  const { arch } = await folderArchitecture(files);
  return { architecture: arch.name, attentionMaps: arch.attentionMaps !== undefined };
}

/**
 * Encoder positions before the image grid (ViT-based encoders put their CLS token first), as
 * the registry says; BAD_OPTION for a model without cross-attention.
 */
function leadingPositions(model: CaptionModel): number {
  const maps = findArchitecture(model.architecture)?.attentionMaps;
  if (!maps) {
    throw new WebcapError(
      "BAD_OPTION",
      `${model.architecture} has no cross-attention: attention maps are not available`,
    );
  }
  return maps.leadingPositions;
}

/**
 * The rows × columns factorisation of `positions` whose shape is closest to the model input's
 * `aspect` (height / width): ViT patch grids follow the input's shape, Show-Attend-Tell's pooled
 * grid is square. Ties go to the wider grid.
 */
export function imageGrid(positions: number, aspect: number): [number, number] {
  let best: [number, number] = [1, positions];
  const cost = ([h, w]: [number, number]) => Math.abs(Math.log(h / w / aspect));
  for (let h = 1; h <= positions; h++) {
    if (positions % h === 0 && cost([h, positions / h]) < cost(best) - 1e-9) {
      best = [h, positions / h];
    }
  }
  return best;
}

function checkLayer(layer: number | "mean", layers: number): void {
  if (layer !== "mean" && !(Number.isInteger(layer) && layer >= 0 && layer < layers)) {
    throw new WebcapError(
      "BAD_OPTION",
      `attention layer ${layer} does not exist: the decoder has ${layers} cross-attention ` +
        `layer(s); pass 0…${layers - 1} or "mean"`,
    );
  }
}

/**
 * One map from the read-back attention `[layers, 1, S, L]`: row `q`, the chosen layer or the
 * mean over layers, the first `lead` entries dropped, renormalised to sum to 1.
 */
function positionMap(
  att: Float32Array,
  [layers, S, L]: [number, number, number],
  q: number,
  lead: number,
  layer: number | "mean",
): Float32Array {
  const picked = layer === "mean" ? [...Array(layers).keys()] : [layer];
  const map = new Float32Array(L - lead);
  for (const l of picked) {
    const row = (l * S + q) * L + lead;
    for (let p = 0; p < map.length; p++) map[p] += att[row + p];
  }
  const sum = map.reduce((a, b) => a + b, 0);
  if (!(sum > 0)) {
    throw new WebcapError(
      "GPU_ERROR",
      `attention of position ${q} sums to ${sum} over the image; the decoder wrote no valid probabilities`,
    );
  }
  for (let p = 0; p < map.length; p++) map[p] /= sum;
  return map;
}

/** Teacher-forced step over `inputs` for image `image` of `enc`; returns `[layers, 1, S, L]` read back. */
async function recordAttention(
  model: CaptionModel,
  enc: EncoderState,
  image: number,
  inputs: number[],
): Promise<{ att: Float32Array; shape: number[] }> {
  const gpu = enc.hidden.gpu;
  const rec = new Recorder(gpu);
  const st = model.beginDecode(rec, enc, Int32Array.of(image), inputs.length);
  let submitted = false;
  try {
    rec.scope(() => {
      const ids = rec.upload(Int32Array.from(inputs), [inputs.length], "i32");
      model.step(rec, st, ids, inputs.length, { attention: true }); // only the maps are wanted
    });
    const t = st.attention;
    if (!t || t.dtype !== "f32") {
      throw new WebcapError(
        "GPU_ERROR",
        `${model.architecture}: step({attention: true}) gave no f32 attention tensor`,
      );
    }
    const read = rec.readTensor(t);
    submitted = true;
    await rec.submit();
    return { att: (await read) as Float32Array, shape: [...t.shape] };
  } finally {
    if (!submitted) await rec.submit(); // runs what was recorded so its temporaries are freed
    st.dispose();
  }
}

/**
 * Attention maps of `tokens` (generated after `promptIds`) for image `image` of `enc`, without a
 * tokenizer: one decoder step over `promptIds ++ tokens[0 … n-2]`. `opts.aspect` is the model
 * input's height / width (default 1), which shapes the grid (see {@link imageGrid}). No tokens:
 * no maps and a `[0, 0]` grid.
 * @throws WebcapError BAD_OPTION for an empty prompt, a layer the decoder lacks, or a model
 *   without cross-attention (ClipCap).
 */
export async function tokenAttention(
  model: CaptionModel,
  enc: EncoderState,
  image: number,
  promptIds: readonly number[],
  tokens: readonly number[],
  opts: AttentionOptions & { aspect?: number } = {},
): Promise<TokenAttention> {
  if (promptIds.length === 0) {
    throw new WebcapError(
      "BAD_OPTION",
      "attention maps need at least the decoder start token in promptIds",
    );
  }
  if (tokens.length === 0) return { grid: [0, 0], maps: [] };
  const lead = leadingPositions(model);
  const inputs = [...promptIds, ...tokens.slice(0, -1)];
  const { att, shape } = await recordAttention(model, enc, image, inputs);
  const [layers, , S, L] = shape;
  const layer = opts.layer ?? "mean";
  checkLayer(layer, layers);
  if (L <= lead) {
    throw new WebcapError(
      "BAD_SHAPE",
      `${model.architecture}: attention over ${L} positions has no image grid`,
    );
  }
  const first = promptIds.length - 1;
  const maps = tokens.map((_, i) => positionMap(att, [layers, S, L], first + i, lead, layer));
  return { grid: imageGrid(L - lead, opts.aspect ?? 1), maps };
}

/** Text shown for one token: its decoded text trimmed (BPE space markers go), else its name. */
export function tokenWord(tokenizer: Tokenizer, id: number): string {
  const text = tokenizer.decode([id], {
    skipSpecialTokens: false,
    cleanUpTokenizationSpaces: false,
  });
  return text.trim() || tokenizer.idToToken(id) || `#${id}`;
}

/**
 * Attention maps of a caption of `image`: encodes the image, runs one teacher-forced step over
 * `promptIds` (as {@link Captioner.promptIds} gives) and the caption's tokens, and returns one
 * map per token with the token's text.
 * @throws the image's WebcapError when it cannot be loaded; as {@link tokenAttention}.
 */
export async function captionAttention(
  captioner: Captioner,
  image: ImageInput,
  caption: { tokens: readonly number[] },
  promptIds: readonly number[],
  opts: AttentionOptions = {},
): Promise<CaptionAttention> {
  const enc = await captioner.encode([image]);
  try {
    const { error } = enc.inputs[0];
    if (error) throw error;
    const { height, width } = captioner.preprocessor;
    const att = await tokenAttention(captioner.model, enc.state!, 0, promptIds, caption.tokens, {
      ...opts,
      aspect: height / width,
    });
    return { ...att, words: caption.tokens.map((id) => tokenWord(captioner.tokenizer, id)) };
  } finally {
    enc.dispose();
  }
}
