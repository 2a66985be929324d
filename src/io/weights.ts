/**
 * The weight store: a checkpoint's tensors by name, read one at a time so a file is never held
 * twice in memory. {@link openWeights} finds the checkpoint in a model folder, local or at a URL
 * (safetensors, sharded safetensors, or a torch pickle); {@link withTiedWeights} adds names that a checkpoint
 * leaves out because they share another tensor (a tied LM head).
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Dtype } from "./dtype.ts";
import { openPickleCheckpoint } from "./pickle.ts";
import { openSafetensors } from "./safetensors.ts";
import { makeStore, missingTensor, type StoredTensor } from "./tensor_source.ts";
import { isFile } from "./fs.ts";
import { asModelFiles, fileLocation, localFiles, type ModelFiles } from "./model_files.ts";
import { isIndex, parseWeightMap, PICKLE_EXTENSIONS } from "./shard_index.ts";
import { dropCorruptBlob } from "./hub.ts";

export type { Dtype } from "./dtype.ts";
export { bf16ToF32, f16ToF32 } from "./dtype.ts";
export { openSafetensors, parseSafetensorsHeader } from "./safetensors.ts";
export { openPickleCheckpoint } from "./pickle.ts";

/** Name, element type and shape of a stored tensor. */
export interface TensorInfo {
  /** Name in the checkpoint, e.g. `decoder.transformer.wte.weight`. */
  name: string;
  /** Element type as stored. */
  dtype: Dtype;
  /** Dimensions, outermost first (row-major). */
  shape: number[];
}

/** Where a checkpoint's tensors come from; reading is per tensor so a file is never held twice. */
export interface WeightStore {
  /** File or folder, for error messages. */
  readonly source: string;
  /** Every tensor name. */
  names(): string[];
  /** Dtype and shape; throws WebcapError BAD_WEIGHTS naming the tensor if absent. */
  info(name: string): TensorInfo;
  /** True if the tensor exists. */
  has(name: string): boolean;
  /**
   * The `__metadata__` string map of each file the tensors come from (safetensors; `{}` for a
   * torch pickle), by file as messages name it, in the order the files were opened: one entry
   * for a single file, one per shard for a sharded checkpoint.
   */
  fileMetadata(): ReadonlyMap<string, Readonly<Record<string, string>>>;
  /** Raw little-endian bytes of the tensor, contiguous row-major (read-only: may be a view). */
  read(name: string): Promise<Uint8Array>;
  /**
   * The tensor as float32, converted from F16/BF16/F64/integers. F32 tensors of an in-memory
   * source may come back as a view of that buffer: treat the result as read-only.
   */
  readF32(name: string): Promise<Float32Array>;
  /** Release file handles. */
  close(): void;
}

function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** `path` split into its folder (`""` for a bare name) and file name. */
function splitPath(path: string): [string, string] {
  const cut = path.lastIndexOf("/");
  return cut < 0 ? ["", path] : [path.slice(0, cut + 1), path.slice(cut + 1)];
}

/**
 * Open weights file `name` of `files` by its name: a shard index (`*.index.json`), safetensors, or
 * a torch pickle. Local files are read tensor by tensor; others are fetched whole.
 * @returns undefined when the file does not exist.
 */
export async function openWeightFile(
  files: ModelFiles,
  name: string,
): Promise<WeightStore | undefined> {
  if (!isIndex(name)) return await openCheckpointFile(files, name);
  const index = await files.text(name);
  return index === undefined ? undefined : await openShards(files, name, index);
}

/**
 * Open safetensors or pickle file `name` of `files`. When a hub cache file fails to load, its blob
 * is checked against its sha256 and, if corrupt, dropped so that the next download repairs it.
 */
async function openCheckpointFile(
  files: ModelFiles,
  name: string,
): Promise<WeightStore | undefined> {
  const data = files.path ? await files.path(name) : await files.bytes(name);
  if (data === undefined) return undefined;
  const where = fileLocation(files, name);
  try {
    return name.endsWith(".safetensors")
      ? await openSafetensors(data, { name: where })
      : await openPickleCheckpoint(data, { name: where });
  } catch (e) {
    const dropped = typeof data === "string" ? await dropCorruptBlob(data) : undefined;
    if (dropped === undefined) throw e;
    throw new WebcapError(
      "DOWNLOAD_FAILED",
      `${where} failed to load (${(e as Error).message}); ${dropped}`,
      {
        cause: e,
      },
    );
  }
}

/**
 * Open the weights of a model folder — a local path, an `http(s)://` base URL or any
 * {@link ModelFiles} — or a local weights file directly. In a folder, the first that exists wins:
 * `model.safetensors`, `model.safetensors.index.json` (+ shards), `<folder>.safetensors`,
 * `pytorch_model.bin`, `pytorch_model.bin.index.json`, then (where the source can list its
 * files, i.e. local folders) the only `*.pt` / `*.pth` / `*.pth.tar` / `*.ckpt` / `*.bin` file.
 * Safetensors is preferred whenever both formats exist.
 * @throws WebcapError MISSING_FILE listing what was looked for.
 */
export async function openWeights(dirOrFiles: string | ModelFiles): Promise<WeightStore> {
  if (typeof dirOrFiles === "string" && !isUrl(dirOrFiles) && await isFile(dirOrFiles)) {
    const [dir, name] = splitPath(dirOrFiles);
    return (await openWeightFile(localFiles(dir), name))!;
  }
  const files = asModelFiles(dirOrFiles);
  const named = [
    "model.safetensors",
    "model.safetensors.index.json",
    `${baseName(files.source)}.safetensors`,
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
  ];
  for (const name of named) {
    const store = await openWeightFile(files, name);
    if (store) return store;
  }
  const listed = files.list ? await files.list() : undefined;
  const pickles = (listed ?? []).filter((f) => PICKLE_EXTENSIONS.some((x) => f.endsWith(x)));
  if (pickles.length === 1) return (await openWeightFile(files, pickles[0]))!;
  const found = pickles.length > 1 ? `; found several candidates (${pickles.join(", ")})` : "";
  const other = listed
    ? ` and one file ending in ${
      PICKLE_EXTENSIONS.join(", ")
    }${found}; pass the weights file path instead`
    : " (this source cannot list its files, so no other name was tried)";
  throw new WebcapError(
    "MISSING_FILE",
    `no weights in "${files.source}": looked for ${named.join(", ")}${other}`,
  );
}

function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/**
 * Open a local sharded checkpoint from its index (`*.safetensors.index.json` or
 * `*.bin.index.json`): every shard is opened, and every tensor of the weight map must be in its
 * shard.
 * @throws WebcapError MISSING_FILE for an absent index or shard, BAD_WEIGHTS for a tensor its
 * shard lacks.
 */
export async function openShardedWeights(indexPath: string): Promise<WeightStore> {
  const [dir, name] = splitPath(indexPath);
  const store = await openWeightFile(localFiles(dir || "./"), name);
  if (!store) throw new WebcapError("MISSING_FILE", `shard index "${indexPath}" does not exist`);
  return store;
}

/** The shards of index `indexName` (text `index`) of `files`, as one store. */
async function openShards(
  files: ModelFiles,
  indexName: string,
  index: string,
): Promise<WeightStore> {
  const where = fileLocation(files, indexName);
  const weightMap = parseWeightMap(index, where);
  const [folder] = splitPath(indexName);
  const shards = new Map<string, WeightStore>();
  const closeAll = () => shards.forEach((s) => s.close());
  try {
    for (const shard of new Set(weightMap.values())) {
      const store = await openCheckpointFile(files, folder + shard);
      if (!store) {
        throw new WebcapError(
          "MISSING_FILE",
          `shard "${fileLocation(files, folder + shard)}" listed in ${where} does not exist`,
        );
      }
      shards.set(shard, store);
    }
    const tensors = new Map<string, StoredTensor>();
    for (const [name, shard] of weightMap) {
      const store = shards.get(shard)!;
      if (!store.has(name)) {
        throw new WebcapError(
          "BAD_WEIGHTS",
          `${where} lists tensor "${name}" in shard "${shard}", which does not contain it`,
        );
      }
      tensors.set(name, { info: store.info(name), read: () => store.read(name) });
    }
    const metadata = new Map([...shards.values()].flatMap((s) => [...s.fileMetadata()]));
    return makeStore(where, tensors, closeAll, metadata);
  } catch (e) {
    closeAll();
    throw e;
  }
}

/**
 * A view of `store` where each absent key of `ties` reads the tensor it names, e.g.
 * `{"decoder.lm_head.weight": "decoder.transformer.wte.weight"}` for a tied LM head. A tied name
 * whose target is absent too stays absent.
 */
export function withTiedWeights(store: WeightStore, ties: Record<string, string>): WeightStore {
  const alias = new Map<string, string>();
  for (const [name, target] of Object.entries(ties)) {
    if (!store.has(name) && store.has(target)) alias.set(name, target);
  }
  const resolve = (name: string) => alias.get(name) ?? name;
  const names = () => [...store.names(), ...alias.keys()];
  return {
    source: store.source,
    names,
    has: (name) => alias.has(name) || store.has(name),
    info(name) {
      if (!alias.has(name) && !store.has(name)) throw missingTensor(store.source, name, names());
      return { ...store.info(resolve(name)), name };
    },
    fileMetadata: () => store.fileMetadata(),
    read: (name) => store.read(resolve(name)),
    readF32: (name) => store.readF32(resolve(name)),
    close: () => store.close(),
  };
}
