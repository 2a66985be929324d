/**
 * Shard indexes (`model.safetensors.index.json`, `pytorch_model.bin.index.json`): which shard file
 * holds each tensor. One rule for local folders, URL folders and hub repos, checked before any
 * shard is opened or downloaded: a shard is a weights file (`.safetensors` or a torch pickle
 * extension), never another index, at a relative path inside the index's folder (`checkRepoPath`;
 * like transformers, `sub/x.safetensors` is allowed, `../x` is not).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { checkRepoPath } from "./path.ts";

/** File endings of torch pickle checkpoints. */
export const PICKLE_EXTENSIONS = [".bin", ".pt", ".pth", ".pth.tar", ".ckpt"];
const WEIGHT_EXTENSIONS = [".safetensors", ...PICKLE_EXTENSIONS];

/** Whether `name` is a weights file by its ending (an index is not). */
export function isWeightsFile(name: string): boolean {
  return WEIGHT_EXTENSIONS.some((x) => name.endsWith(x));
}

/** Whether `name` is a shard index. */
export function isIndex(name: string): boolean {
  return name.endsWith(".index.json");
}

/**
 * The `weight_map` of shard index text `text` (at `where`, for messages): tensor name → shard path
 * relative to the index's folder.
 * @throws WebcapError BAD_WEIGHTS for bad JSON, a missing map or a shard that breaks the rule.
 */
export function parseWeightMap(text: string, where: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new WebcapError("BAD_WEIGHTS", `${where}: not valid JSON (${(e as Error).message})`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new WebcapError(
      "BAD_WEIGHTS",
      `${where}: "weight_map" must map tensor names to shard files`,
    );
  }
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(map)) out.set(name, checkShard(shard, name, where));
  return out;
}

function checkShard(shard: unknown, tensor: string, where: string): string {
  const mapsTo = `${where}: tensor "${tensor}" maps to`;
  if (typeof shard !== "string") {
    throw new WebcapError("BAD_WEIGHTS", `${mapsTo} ${JSON.stringify(shard)}, not a shard file`);
  }
  checkRepoPath(shard, `${mapsTo} shard`, "BAD_WEIGHTS");
  if (!isWeightsFile(shard)) {
    throw new WebcapError(
      "BAD_WEIGHTS",
      `${mapsTo} "${shard}", which is not a weights file (${WEIGHT_EXTENSIONS.join(", ")}); ` +
        `shards are never indexes`,
    );
  }
  return shard;
}
