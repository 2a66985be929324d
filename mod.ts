/** Hub downloads: `resolveModel("org/name")` → a local model directory in the HF cache. */
export { hubCacheDir, resolveModel } from "./src/model/hub.ts";
export type { ProgressCallback, ResolveModelOptions } from "./src/model/hub.ts";
/** A one-line terminal progress bar on stderr. */
export { ProgressBar } from "./src/model/progress.ts";
export type { ProgressBarOptions, ProgressWriter } from "./src/model/progress.ts";
/** Checkpoint reading, tensor by tensor: safetensors (single or sharded) and torch.save pickles. */
export {
  bf16ToF32,
  f16ToF32,
  openPickleCheckpoint,
  openSafetensors,
  openShardedWeights,
  openWeights,
  parseSafetensorsHeader,
  withTiedWeights,
} from "./src/model/weights.ts";
export type { Dtype, TensorInfo, WeightStore } from "./src/model/weights.ts";
export type { SafetensorsEntry, SafetensorsHeader } from "./src/model/safetensors.ts";
