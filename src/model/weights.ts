/**
 * The weight store: a checkpoint's tensors by name, read one at a time so a file is never held
 * twice in memory. {@link openWeights} finds the checkpoint in a model folder (safetensors,
 * sharded safetensors, or a torch pickle); {@link withTiedWeights} adds names that a checkpoint
 * leaves out because they share another tensor (a tied LM head).
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Dtype } from "./dtype.ts";
import { openPickleCheckpoint } from "./pickle.ts";
import { openSafetensors } from "./safetensors.ts";
import { makeStore, missingTensor, type StoredTensor } from "./tensor_source.ts";
import { isFile } from "./fs.ts";

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

const PICKLE_EXTENSIONS = [".bin", ".pt", ".pth", ".pth.tar", ".ckpt"];

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** Open one weights file by its name: safetensors, a shard index, or a torch pickle. */
function openFile(path: string): Promise<WeightStore> {
  if (path.endsWith(".index.json")) return openShardedWeights(path);
  if (path.endsWith(".safetensors")) return openSafetensors(path);
  return openPickleCheckpoint(path);
}

/**
 * Open the weights of a model folder (or a weights file directly). In a folder, the first that
 * exists wins: `model.safetensors`, `model.safetensors.index.json` (+ shards),
 * `<folder>.safetensors`, `pytorch_model.bin`, `pytorch_model.bin.index.json`, then the only
 * `*.pt` / `*.pth` / `*.pth.tar` / `*.ckpt` / `*.bin` file. Safetensors is preferred whenever both
 * formats exist.
 * @throws WebcapError MISSING_FILE listing what was looked for.
 */
export async function openWeights(dir: string): Promise<WeightStore> {
  if (await isFile(dir)) return openFile(dir);
  const named = [
    "model.safetensors",
    "model.safetensors.index.json",
    `${baseName(dir)}.safetensors`,
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
  ];
  for (const name of named) {
    if (await isFile(join(dir, name))) return openFile(join(dir, name));
  }
  const pickles = await listPickles(dir);
  if (pickles.length === 1) return openPickleCheckpoint(join(dir, pickles[0]));
  const found = pickles.length > 1 ? `; found several candidates (${pickles.join(", ")})` : "";
  throw new WebcapError(
    "MISSING_FILE",
    `no weights in "${dir}": looked for ${named.join(", ")} and one file ending in ` +
      `${PICKLE_EXTENSIONS.join(", ")}${found}; pass the weights file path instead`,
  );
}

async function listPickles(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      // Hub caches link snapshot files to blobs: follow symlinks.
      if (!PICKLE_EXTENSIONS.some((x) => e.name.endsWith(x))) continue;
      if (e.isFile || (e.isSymlink && await isFile(join(dir, e.name)))) out.push(e.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new WebcapError("MISSING_FILE", `model folder "${dir}" does not exist`, { cause: e });
    }
    throw e;
  }
  return out.sort();
}

/** The `weight_map` of a shard index: tensor name → shard file name. */
async function readWeightMap(indexPath: string): Promise<Map<string, string>> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(indexPath));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new WebcapError("MISSING_FILE", `shard index "${indexPath}" does not exist`);
    }
    throw new WebcapError("BAD_WEIGHTS", `${indexPath}: not valid JSON (${(e as Error).message})`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new WebcapError(
      "BAD_WEIGHTS",
      `${indexPath}: "weight_map" must map tensor names to shard files`,
    );
  }
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(map)) {
    if (
      typeof shard !== "string" || shard.includes("/") || shard.includes("\\") ||
      shard.startsWith(".")
    ) {
      throw new WebcapError(
        "BAD_WEIGHTS",
        `${indexPath}: tensor "${name}" maps to ${
          JSON.stringify(shard)
        }; shards must be plain file names beside the index`,
      );
    }
    out.set(name, shard);
  }
  return out;
}

/**
 * Open a sharded checkpoint from its index (`*.safetensors.index.json` or
 * `*.bin.index.json`): every shard is opened, and every tensor of the weight map must be in its
 * shard.
 * @throws WebcapError MISSING_FILE for an absent shard, BAD_WEIGHTS for a tensor its shard lacks.
 */
export async function openShardedWeights(indexPath: string): Promise<WeightStore> {
  const weightMap = await readWeightMap(indexPath);
  const dir = indexPath.slice(0, indexPath.lastIndexOf("/") + 1) || "./";
  const shards = new Map<string, WeightStore>();
  const closeAll = () => shards.forEach((s) => s.close());
  try {
    for (const shard of new Set(weightMap.values())) {
      const path = dir + shard;
      if (!(await isFile(path))) {
        throw new WebcapError(
          "MISSING_FILE",
          `shard "${path}" listed in ${indexPath} does not exist`,
        );
      }
      shards.set(shard, await openFile(path));
    }
    const tensors = new Map<string, StoredTensor>();
    for (const [name, shard] of weightMap) {
      const store = shards.get(shard)!;
      if (!store.has(name)) {
        throw new WebcapError(
          "BAD_WEIGHTS",
          `${indexPath} lists tensor "${name}" in shard "${shard}", which does not contain it`,
        );
      }
      tensors.set(name, { info: store.info(name), read: () => store.read(name) });
    }
    return makeStore(indexPath, tensors, closeAll);
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
    read: (name) => store.read(resolve(name)),
    readF32: (name) => store.readF32(resolve(name)),
    close: () => store.close(),
  };
}
