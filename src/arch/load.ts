/**
 * Loading a captioning model from a folder in the layout of a hub repo — local (Deno), at a base
 * URL, or any {@link ModelFiles}: `config.json` names the architecture, looked up in the
 * registry (./registry.ts); the weights come from safetensors (preferred) or a torch pickle.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { type Preprocessor, preprocessorFromConfig } from "../image/preprocess.ts";
import { asModelFiles, fileLocation, type ModelFiles } from "../io/model_files.ts";
import { Tokenizer } from "../text/tokenizer.ts";
import type { WeightDtype } from "../nn/params.ts";
import type { Architecture, LoadContext } from "./architecture.ts";
import type { CaptionModel, DecoderConfig } from "./caption_model.ts";
import { CLIPCAP_VISION_DIR } from "./clipcap.ts";
import { readModelJson } from "./model_json.ts";
import { ARCHITECTURES, findArchitecture } from "./registry.ts";

type Json = Record<string, unknown>;

export { readJson, readModelJson } from "./model_json.ts";

/** Options of {@link loadCaptionModel}. */
export interface LoadOptions {
  /**
   * Store matrices in f16 (needs `shader-f16`), or quantize the weights of matmuls and
   * embeddings to q8 (per output channel) or q4 (groups along the input). Default f32.
   */
  dtype?: WeightDtype;
  /** q4: elements of the input dimension per scale and offset (default 32; must divide it). */
  groupSize?: number;
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
 * `arch.startIdPastVocab` (ClipCap: its start id is the reserved "last prefix vector" id
 * `vocab_size`) leaves the start id out.
 * @throws WebcapError BAD_CONFIG naming the id and `where`.
 */
function checkDecoderIds(d: DecoderConfig, where: string, arch: Architecture): void {
  const ids = (Object.keys(ID_NAMES) as (keyof typeof ID_NAMES)[])
    .filter((k) => !(arch.startIdPastVocab && k === "decoderStartTokenId"));
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

/** `arch.load(ctx)`, its decoder ids checked; the model is disposed when they are refused. */
async function loadChecked(arch: Architecture, ctx: LoadContext): Promise<CaptionModel> {
  const model = await arch.load(ctx);
  try {
    checkDecoderIds(model.decoder, ctx.where, arch);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/** The registered architecture a `config.json` names, if any (no error when it names none). */
function configArchitecture(config: Json | undefined): Architecture | undefined {
  const archs = config?.architectures;
  const name = Array.isArray(archs) ? archs[0] : config?.architecture;
  return typeof name === "string" ? findArchitecture(name) : undefined;
}

/**
 * Load the captioning model in a folder onto `gpu`: a local path, an `http(s)://` base URL, or
 * any {@link ModelFiles}. A folder holding an architecture's marker file (ClipCap's
 * `clipcap-config.json`; it has no `config.json`) is that architecture; any other folder is named
 * by its `config.json`.
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
  const files = asModelFiles(dir);
  const { arch, ...ctx } = await folderArchitecture(files);
  return await loadChecked(arch, {
    gpu,
    files,
    dtype: opts.dtype ?? "f32",
    groupSize: opts.groupSize,
    ...ctx,
  });
}

/**
 * The registered architecture of a model folder and the config that names it: a folder holding
 * an architecture's marker file (ClipCap's `clipcap-config.json`; it has no `config.json`) is
 * that architecture; any other folder is named by its `config.json`.
 * @throws WebcapError UNSUPPORTED_ARCH when the name is not registered.
 */
export async function folderArchitecture(
  files: ModelFiles,
): Promise<{ arch: Architecture; config: Json; where: string; generation?: Json }> {
  for (const arch of ARCHITECTURES) {
    if (!arch.marker) continue;
    const config = await readModelJson(files, arch.marker, true);
    if (config) return { arch, config, where: fileLocation(files, arch.marker) };
  }
  const where = fileLocation(files, "config.json");
  const config = await readModelJson(files, "config.json");
  const generation = await readModelJson(files, "generation_config.json", true);
  const name = architectureOf(config, where);
  const arch = findArchitecture(name);
  if (!arch || arch.marker) {
    const supported = ARCHITECTURES.filter((a) => !a.marker).map((a) => a.name).join(", ");
    throw new WebcapError(
      "UNSUPPORTED_ARCH",
      `${where}: architecture "${name}" is not supported (supported: ${supported})`,
    );
  }
  return { arch, config, where, generation };
}

/**
 * The image processor of a model folder (a path, a URL or {@link ModelFiles}):
 * `preprocessor_config.json`, ClipCap's `clip-vision/preprocessor_config.json`, or the defaults
 * of the architecture its `config.json` names (Show-Attend-Tell's checkpoints ship none).
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
  const where = fileLocation(files, "config.json");
  const defaults = config && configArchitecture(config)?.defaultPreprocessor?.(config, where);
  if (defaults) return defaults;
  throw new WebcapError(
    "MISSING_FILE",
    `${files.source}: no preprocessor_config.json (the image processor settings); add the one of the model's hub repo`,
  );
}

/**
 * The tokenizer of a model folder (a path, a URL or {@link ModelFiles}): `tokenizer.json`, else a
 * `word_map.json` (word → id), else — for checkpoints shipped without a vocabulary — the default
 * of the architecture its `config.json` names (Show-Attend-Tell: token ids written as numbers,
 * `kind` "ids").
 */
export async function loadTokenizer(dir: string | ModelFiles): Promise<Tokenizer> {
  const files = asModelFiles(dir);
  for (const name of ["tokenizer.json", "word_map.json"]) {
    const tokenizer = await Tokenizer.fromModelFiles(files, name);
    if (tokenizer) return tokenizer;
  }
  const config = await readModelJson(files, "config.json", true);
  const fallback = config && configArchitecture(config)?.defaultTokenizer?.(config, files.source);
  if (fallback) return fallback;
  throw new WebcapError(
    "MISSING_FILE",
    `${files.source}: no tokenizer.json or word_map.json; captions cannot be turned into text without one`,
  );
}
