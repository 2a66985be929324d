/**
 * Save and resume (Deno). A checkpoint is a folder in the Hugging Face layout that webcap and
 * transformers load: `model.safetensors` (trainable parameters read back from the GPU in f32,
 * stacked q/k/v unstacked by offset, tied tensors once as `save_pretrained` stores them; every
 * other stored tensor — frozen, folded or not held, like ViT's pooler — copied as stored from the
 * source checkpoint), the source's `config.json`, generation, tokenizer and preprocessor files;
 * plus `optimizer.safetensors` (the optimizer state by `<param>.<state>`) and
 * `trainer_state.json` (`global_step`, the optimizer settings) for resuming.
 *
 * Writes are atomic: everything goes to a temporary sibling folder that is renamed into place; a
 * failed save leaves the previous checkpoint as it was. A folder that exists and is not a
 * checkpoint (no `trainer_state.json`) is refused, nothing in it touched.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { CaptionModel } from "../arch/caption_model.ts";
import { Recorder } from "../gpu/recorder.ts";
import { numel } from "../gpu/tensor.ts";
import { asModelFiles, type ModelFiles, subFolder } from "../io/model_files.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { type TensorToWrite, writeSafetensors } from "../io/safetensors_write.ts";
import { openWeights, type WeightStore } from "../io/weights.ts";
import type { Param } from "../nn/params.ts";
import type { Optimizer } from "./optim.ts";

/** The marker of a checkpoint folder, and its training state. */
export const TRAINER_STATE = "trainer_state.json";

/** Files copied from the source folder when present. */
const COPIED = [
  "config.json",
  "generation_config.json",
  "preprocessor_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "vocab.txt",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
  "word_map.json",
];

/** The weight files a copied sub-folder may hold. */
const WEIGHT_FILES = ["model.safetensors", "pytorch_model.bin"];

/** Where a checkpoint's files go: the Hugging Face layout, or an architecture's own. */
export interface CheckpointLayout {
  /** The config file the source must have (copied). */
  config: string;
  /** The weights file written. */
  weights: string;
  /** The source's weights. */
  open(files: ModelFiles): Promise<WeightStore>;
  /** Sub-folders of frozen parts copied as stored (their config, weights and processor files). */
  folders: readonly string[];
}

/** `config.json` and `model.safetensors` (ViT-GPT2, BLIP, Show-Attend-Tell). */
export const HF_LAYOUT: CheckpointLayout = {
  config: "config.json",
  weights: "model.safetensors",
  open: openWeights,
  folders: [],
};

/** What a checkpoint saves of a model: its parameters (a `CaptionModel`, or a model held for training). */
export type Saved = Pick<CaptionModel, "params">;

/** Options of {@link saveCheckpoint}. */
export interface SaveOptions {
  /** The model folder (or files) `model` was loaded from. */
  source: string | ModelFiles;
  /** Save its state for resuming (between steps: no micro-batch pending). */
  optimizer?: Optimizer;
  /** More fields for `trainer_state.json` (epoch, losses, …). */
  state?: Record<string, unknown>;
  /** The folder layout (default {@link HF_LAYOUT}). */
  layout?: CheckpointLayout;
  /**
   * Names of files in the folder kept in the new checkpoint (e.g. a training log written
   * beside the weights); a folder holding only these counts as a checkpoint folder.
   */
  carry?: readonly string[];
}

/** `trainer_state.json` as written. */
export interface TrainerState {
  /** Optimizer steps taken. */
  global_step: number;
  /** The optimizer's settings, or null when saved without one. */
  optimizer: Optimizer["config"] | null;
  /** Other fields, kept as written. */
  [key: string]: unknown;
}

async function exists(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Refuse a save folder that exists and holds anything but a checkpoint (or `carry` files). */
async function checkTarget(dir: string, carry: readonly string[]): Promise<void> {
  const info = await exists(dir);
  if (!info) return;
  const notCheckpoint = () =>
    new WebcapError(
      "BAD_OPTION",
      `save folder ${dir} exists and is not a webcap checkpoint (no ${TRAINER_STATE}); nothing ` +
        "was written: choose a new folder or remove it",
    );
  if (!info.isDirectory) throw notCheckpoint();
  let empty = true;
  for await (const e of Deno.readDir(dir)) {
    if (carry.includes(e.name)) continue;
    empty = false;
    break;
  }
  if (!empty && !(await exists(`${dir}/${TRAINER_STATE}`))?.isFile) throw notCheckpoint();
}

/** Trainable f32 parameters read back from the GPU, by name (little-endian f32 bytes). */
async function readTrainable(params: readonly Param[]): Promise<Map<string, Uint8Array>> {
  const gpuParams = params.filter((p) => p.trainable && p.tensor.dtype === "f32");
  const out = new Map<string, Uint8Array>();
  if (gpuParams.length === 0) return out;
  const rec = new Recorder(gpuParams[0].tensor.gpu);
  const reads = gpuParams.map((p) =>
    [p.name, rec.read(p.tensor.buffer, numel(p.shape) * 4, p.offset * 4)] as const
  );
  await rec.submit();
  for (const [name, buf] of reads) out.set(name, new Uint8Array(await buf));
  return out;
}

/**
 * LM heads the supported architectures tie to their word embeddings: when the model does not hold
 * one (it uses the embeddings), a stored copy is left out, as `save_pretrained` does.
 */
const TIED_HEAD = /(^|\.)lm_head\.weight$|(^|\.)cls\.predictions\.decoder\.weight$/;

/** The tensors of `model.safetensors`: the source's, trained ones from the GPU. */
function modelTensors(
  store: WeightStore,
  params: readonly Param[],
  fromGpu: Map<string, Uint8Array>,
): TensorToWrite[] {
  const shapes = new Map(params.map((p) => [p.name, p.shape]));
  const trained = (name: string): TensorToWrite => ({
    name,
    dtype: "F32",
    shape: shapes.get(name)!,
    read: () => fromGpu.get(name)!,
  });
  const stored = store.names().filter((n) => shapes.has(n) || !TIED_HEAD.test(n));
  const out = stored.map((name) =>
    fromGpu.has(name) ? trained(name) : {
      name,
      dtype: store.info(name).dtype,
      shape: store.info(name).shape,
      read: () => store.read(name),
    }
  );
  for (const name of fromGpu.keys()) if (!store.has(name)) out.push(trained(name));
  return out;
}

async function optimizerTensors(opt: Optimizer): Promise<TensorToWrite[]> {
  const state = await opt.readState();
  return [...state].map(([name, { shape, data }]) => ({
    name,
    dtype: "F32",
    shape,
    read: () => new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  }));
}

/** Copy the files of `names` that `files` has into the folder `to`. */
async function copyFiles(files: ModelFiles, to: string, names: Iterable<string>): Promise<void> {
  for (const name of names) {
    const bytes = await files.bytes(name);
    if (bytes) await Deno.writeFile(`${to}/${name}`, bytes);
  }
}

/** Write every file of the checkpoint into `tmp`. */
async function writeFolder(
  tmp: string,
  files: ModelFiles,
  model: Saved,
  opts: SaveOptions,
): Promise<void> {
  const layout = opts.layout ?? HF_LAYOUT;
  const store = await layout.open(files);
  try {
    const fromGpu = await readTrainable(model.params);
    const tensors = modelTensors(store, model.params, fromGpu);
    await writeSafetensors(`${tmp}/${layout.weights}`, tensors, { format: "pt" });
  } finally {
    store.close();
  }
  await copyFiles(files, tmp, new Set([layout.config, ...COPIED]));
  for (const folder of layout.folders) {
    await Deno.mkdir(`${tmp}/${folder}`);
    await copyFiles(subFolder(files, folder), `${tmp}/${folder}`, [...COPIED, ...WEIGHT_FILES]);
  }
  const opt = opts.optimizer;
  if (opt) {
    await writeSafetensors(`${tmp}/optimizer.safetensors`, await optimizerTensors(opt), {
      step: String(opt.steps),
    });
  }
  const state: TrainerState = {
    ...opts.state,
    global_step: opt?.steps ?? 0,
    optimizer: opt?.config ?? null,
  };
  await Deno.writeTextFile(`${tmp}/${TRAINER_STATE}`, JSON.stringify(state, null, 2) + "\n");
}

/**
 * Save `model` (loaded from `opts.source`) and the optimizer's state as a checkpoint folder
 * `dir`, replacing an earlier checkpoint there atomically.
 * @throws WebcapError BAD_OPTION when `dir` exists and is not a checkpoint, the source has no
 *   config file of the layout, or the optimizer is between micro-batches of a step.
 */
export async function saveCheckpoint(
  dir: string,
  model: Saved,
  opts: SaveOptions,
): Promise<void> {
  const files = asModelFiles(opts.source);
  if (opts.optimizer && opts.optimizer.pending > 0) {
    throw new WebcapError(
      "BAD_OPTION",
      `save: ${opts.optimizer.pending} micro-batch(es) of the next step are accumulated but not ` +
        "applied; save right after a step",
    );
  }
  const config = (opts.layout ?? HF_LAYOUT).config;
  if ((await files.text(config)) === undefined) {
    throw new WebcapError(
      "BAD_OPTION",
      `save: ${files.source} has no ${config}; a checkpoint is written in the layout of its source`,
    );
  }
  const carry = opts.carry ?? [];
  await checkTarget(dir, carry);
  const tag = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
  const tmp = `${dir.replace(/\/+$/, "")}.saving-${tag}`;
  await Deno.mkdir(tmp);
  try {
    await writeFolder(tmp, files, model, opts);
    for (const name of carry) {
      if (await exists(`${dir}/${name}`)) await Deno.copyFile(`${dir}/${name}`, `${tmp}/${name}`);
    }
  } catch (e) {
    await Deno.remove(tmp, { recursive: true });
    throw e;
  }
  const old = `${dir.replace(/\/+$/, "")}.old-${tag}`;
  if (await exists(dir)) await Deno.rename(dir, old);
  await Deno.rename(tmp, dir);
  if (await exists(old)) await Deno.remove(old, { recursive: true });
}

/**
 * Restore `optimizer`'s state and step from checkpoint `dir` (the model is loaded from `dir`
 * with `loadCaptionModel` or `Captioner.fromPretrained`). Returns `trainer_state.json`.
 * @throws WebcapError BAD_CONFIG when the checkpoint holds another optimizer's state, MISSING_FILE
 *   when it holds none, BAD_WEIGHTS when a parameter's state is missing or misshapen.
 */
export async function loadOptimizerState(
  dir: string,
  optimizer: Optimizer,
): Promise<TrainerState> {
  const where = `${dir}/${TRAINER_STATE}`;
  const state = await readTrainerState(dir);
  if (!state?.optimizer) {
    throw new WebcapError("MISSING_FILE", `${dir}: no optimizer state saved (${where})`);
  }
  if (state.optimizer.kind !== optimizer.config.kind) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: the checkpoint holds ${state.optimizer.kind} state; this optimizer is ${optimizer.config.kind}`,
    );
  }
  const file = `${dir}/optimizer.safetensors`;
  const st = await openSafetensors(file);
  try {
    const tensors = new Map<string, Float32Array>();
    for (const name of st.names()) tensors.set(name, await st.readF32(name));
    optimizer.loadState(tensors, state.global_step, file);
  } finally {
    st.close();
  }
  return state;
}

/**
 * `trainer_state.json` of checkpoint `dir` (global step, optimizer settings, loop state), or
 * undefined when the folder has none.
 * @throws WebcapError BAD_CONFIG when it is not a trainer state.
 */
export async function readTrainerState(dir: string): Promise<TrainerState | undefined> {
  const where = `${dir}/${TRAINER_STATE}`;
  const text = await exists(where) ? await Deno.readTextFile(where) : undefined;
  return text === undefined ? undefined : parseState(text, where);
}

function parseState(text: string, where: string): TrainerState {
  try {
    const s = JSON.parse(text);
    if (typeof s === "object" && s !== null && Number.isInteger(s.global_step)) return s;
  } catch {
    // reported below
  }
  throw new WebcapError("BAD_CONFIG", `${where}: not a trainer state (JSON with global_step)`);
}
