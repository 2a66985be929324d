/**
 * Loading a captioning model from a folder in the layout of a hub repo — local (Deno), at a base
 * URL, or any {@link ModelFiles}: `config.json` names the architecture, the weights come from
 * safetensors (preferred) or a torch pickle.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import type { CaptionModel, DecoderConfig } from "./caption_model.ts";
import { Blip } from "./blip.ts";
import { CLIPCAP_CONFIG, CLIPCAP_VISION_DIR, loadClipCap } from "./clipcap.ts";
import { asModelFiles, fileLocation, localFiles, type ModelFiles } from "../io/model_files.ts";
import { ParamLoader } from "../nn/params.ts";
import { type Preprocessor, preprocessorFromConfig } from "../image/preprocess.ts";
import { Tokenizer } from "../text/tokenizer.ts";
import { SHOW_ATTEND_TELL, ShowAttendTell } from "./show_attend_tell.ts";
import { VisionEncoderDecoder } from "./vision_encoder_decoder.ts";
import { openWeights } from "../io/weights.ts";

type Json = Record<string, unknown>;

/** Parse `text` as a JSON object; BAD_CONFIG naming `where` when it is not one. */
function parseJsonObject(text: string, where: string): Json {
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new Error("not a JSON object");
    }
    return v as Json;
  } catch (e) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where} is not a valid JSON object: ${(e as Error).message}`,
    );
  }
}

/** Read JSON file `name` of a model's files; MISSING_FILE or BAD_CONFIG naming it. */
export async function readModelJson(
  files: ModelFiles,
  name: string,
  optional: true,
): Promise<Json | undefined>;
export async function readModelJson(
  files: ModelFiles,
  name: string,
  optional?: false,
): Promise<Json>;
export async function readModelJson(
  files: ModelFiles,
  name: string,
  optional = false,
): Promise<Json | undefined> {
  const where = fileLocation(files, name);
  const text = await files.text(name);
  if (text !== undefined) return parseJsonObject(text, where);
  if (optional) return undefined;
  throw new WebcapError("MISSING_FILE", `${where} does not exist`);
}

/** Read a local JSON file (Deno); MISSING_FILE or BAD_CONFIG naming it when absent or malformed. */
export function readJson(path: string, optional: true): Promise<Json | undefined>;
export function readJson(path: string, optional?: false): Promise<Json>;
export function readJson(path: string, optional = false): Promise<Json | undefined> {
  return readModelJson(localFiles(""), path, optional as false);
}

/** Options of {@link loadCaptionModel}. */
export interface LoadOptions {
  /** Store matrices in f16 (needs `shader-f16`). Default f32. */
  dtype?: "f32" | "f16";
}

/** The architecture named by a config. */
export function architectureOf(config: Json, where: string): string {
  const archs = config.architectures;
  if (Array.isArray(archs) && typeof archs[0] === "string") return archs[0];
  if (typeof config.architecture === "string") return config.architecture;
  if (config.model_type === "vision-encoder-decoder") return "VisionEncoderDecoderModel";
  throw new WebcapError(
    "UNSUPPORTED_ARCH",
    `${where}: no "architectures" entry; cannot tell which model this is`,
  );
}

const ID_NAMES = {
  decoderStartTokenId: "decoder start token (decoder_start_token_id / bos_token_id)",
  eosTokenId: "end token (eos_token_id)",
  padTokenId: "padding token (pad_token_id)",
} as const;

/**
 * Refuse token ids outside the vocabulary: the decoder would read embeddings out of range.
 * @throws WebcapError BAD_CONFIG naming the id and `where`.
 */
function checkDecoderIds(d: DecoderConfig, where: string, ids: (keyof typeof ID_NAMES)[]): void {
  for (const k of ids) {
    if (!Number.isInteger(d[k]) || d[k] < 0 || d[k] >= d.vocabSize) {
      throw new WebcapError(
        "BAD_CONFIG",
        `${where}: the ${ID_NAMES[k]} ${
          d[k]
        } is not a token id below the vocabulary size ${d.vocabSize}`,
      );
    }
  }
}

/**
 * Load the captioning model in a folder onto `gpu`: a local path, an `http(s)://` base URL, or
 * any {@link ModelFiles}. A folder holding `clipcap-config.json` is a ClipCap model (it has no
 * `config.json`; see ./clipcap.ts); any other folder is named by its `config.json`.
 */
export async function loadCaptionModel(
  gpu: Gpu,
  dir: string | ModelFiles,
  opts: LoadOptions = {},
): Promise<CaptionModel> {
  if (opts.dtype === "f16" && !gpu.hasF16) {
    throw new WebcapError(
      "NO_FEATURE",
      `dtype f16 needs the WebGPU feature shader-f16, which ${gpu.adapterName} lacks; use dtype f32`,
    );
  }
  const dtype = opts.dtype ?? "f32";
  const files = asModelFiles(dir);
  const clipcap = await readModelJson(files, CLIPCAP_CONFIG, true);
  if (clipcap) {
    const vision = await readModelJson(files, `${CLIPCAP_VISION_DIR}/config.json`);
    const model = await loadClipCap(gpu, files, clipcap, vision, dtype);
    try {
      // its start id is the reserved "last prefix vector" id vocab_size
      checkDecoderIds(model.decoder, fileLocation(files, CLIPCAP_CONFIG), [
        "eosTokenId",
        "padTokenId",
      ]);
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  }
  const configPath = fileLocation(files, "config.json");
  const config = await readModelJson(files, "config.json");
  const generation = await readModelJson(files, "generation_config.json", true);
  const arch = architectureOf(config, configPath);
  if (
    arch === "VisionEncoderDecoderModel" || arch === "BlipForConditionalGeneration" ||
    arch === SHOW_ATTEND_TELL
  ) {
    const store = await openWeights(files);
    const p = new ParamLoader(gpu, store, dtype);
    try {
      const model = arch === "BlipForConditionalGeneration"
        ? await Blip.load(p, config, configPath)
        : arch === SHOW_ATTEND_TELL
        ? await ShowAttendTell.load(p, config, configPath)
        : await VisionEncoderDecoder.load(p, config, generation, configPath);
      checkDecoderIds(
        model.decoder,
        configPath,
        Object.keys(ID_NAMES) as (keyof typeof ID_NAMES)[],
      );
      return model;
    } catch (e) {
      p.dispose();
      throw e;
    } finally {
      store.close();
    }
  }
  throw new WebcapError(
    "UNSUPPORTED_ARCH",
    `${configPath}: architecture "${arch}" is not supported (supported: VisionEncoderDecoderModel, BlipForConditionalGeneration, ${SHOW_ATTEND_TELL})`,
  );
}

/** ImageNet statistics, which Show-Attend-Tell's reference training code normalizes with. */
const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

/**
 * The image processor of a model folder (a path, a URL or {@link ModelFiles}):
 * `preprocessor_config.json`, ClipCap's `clip-vision/preprocessor_config.json`, or for
 * Show-Attend-Tell (whose checkpoints ship none) a bilinear resize to `image_size` with ImageNet
 * mean/std, as its reference code feeds it.
 */
export async function loadPreprocessor(dir: string | ModelFiles): Promise<Preprocessor> {
  const files = asModelFiles(dir);
  for (
    const name of ["preprocessor_config.json", `${CLIPCAP_VISION_DIR}/preprocessor_config.json`]
  ) {
    const config = await readModelJson(files, name, true);
    if (config) return preprocessorFromConfig(config, fileLocation(files, name));
  }
  const config = await readModelJson(files, "config.json", true);
  if (config && config.architecture === SHOW_ATTEND_TELL && typeof config.image_size === "number") {
    const size = config.image_size;
    return preprocessorFromConfig({
      image_processor_type: "ViTImageProcessor",
      size: { height: size, width: size },
      resample: 2,
      image_mean: IMAGENET_MEAN,
      image_std: IMAGENET_STD,
    }, `${fileLocation(files, "config.json")} (Show-Attend-Tell defaults)`);
  }
  throw new WebcapError(
    "MISSING_FILE",
    `${files.source}: no preprocessor_config.json (the image processor settings); add the one of the model's hub repo`,
  );
}

/**
 * The tokenizer of a model folder (a path, a URL or {@link ModelFiles}): `tokenizer.json`, else a
 * `word_map.json` (word → id), else — for checkpoints shipped without a vocabulary — token ids
 * written as numbers (`kind` "ids").
 */
export async function loadTokenizer(dir: string | ModelFiles): Promise<Tokenizer> {
  const files = asModelFiles(dir);
  for (const name of ["tokenizer.json", "word_map.json"]) {
    const tokenizer = await Tokenizer.fromModelFiles(files, name);
    if (tokenizer) return tokenizer;
  }
  const config = await readModelJson(files, "config.json", true);
  const vocab = config?.vocab_size;
  if (config?.architecture === SHOW_ATTEND_TELL && typeof vocab === "number") {
    const special = [config.start_token_id, config.end_token_id, config.pad_token_id ?? 0]
      .filter((id): id is number => typeof id === "number");
    return Tokenizer.fromIds(
      vocab,
      special,
      `${files.source} (no tokenizer.json or word_map.json)`,
    );
  }
  throw new WebcapError(
    "MISSING_FILE",
    `${files.source}: no tokenizer.json or word_map.json; captions cannot be turned into text without one`,
  );
}
