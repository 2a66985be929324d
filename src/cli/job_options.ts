/**
 * The job flags of the caption CLI (`--output`, `--shard`, `--shard-count`, `--shard-by`,
 * `--prefetch`, `--decode-workers`, `--fetch-timeout`, `--retries`), the command recorded in an output's header, and
 * the flags of `deno task caption merge`.
 * @module
 */
import { parseArgs } from "node:util";
import { WebcapError } from "../errors.ts";
import { defaultDecodeWorkers } from "../jobs/decode_pool.ts";
import { DEFAULT_FETCH, type FetchSettings } from "../jobs/fetch.ts";
import type { InputOptions } from "../jobs/inputs.ts";
import type { JobCommand } from "../jobs/output.ts";
import { resolveShard, shardSpec } from "../jobs/shard.ts";
import { CAPTION_FLAGS, type Flags, num, positiveInt } from "./options.ts";

/** How a caption run splits, fetches and prefetches its inputs. */
export interface JobFlags {
  input: InputOptions;
  /** Items read and decoded ahead of the GPU. */
  prefetch: number;
  /** Worker threads that decode images (0: the main thread). */
  decodeWorkers: number;
}

/** {@link JobFlags} from parsed flags and the scheduler's environment. */
export function jobFlagsFrom(
  flags: Flags,
  batchSize: number,
  env: Record<string, string | undefined>,
): JobFlags {
  const by = flags["shard-by"] ?? "key";
  if (by !== "key" && by !== "tar") {
    throw new WebcapError("BAD_OPTION", `--shard-by must be key or tar, got "${by}"`);
  }
  const shard = resolveShard(
    flags.shard as string | undefined,
    positiveInt(flags, "shard-count"),
    env,
  );
  return {
    input: { shard, shardByTar: by === "tar", fetch: fetchFrom(flags) },
    prefetch: positiveInt(flags, "prefetch") ?? 4 * batchSize,
    decodeWorkers: decodeWorkersFrom(flags),
  };
}

/** `--decode-workers N` (N ≥ 0), by default min(4, CPU threads − 1). */
function decodeWorkersFrom(flags: Flags): number {
  const n = num(flags, "decode-workers");
  if (n === undefined) return defaultDecodeWorkers();
  if (!(Number.isSafeInteger(n) && n >= 0 && n <= 64)) {
    throw new WebcapError(
      "BAD_OPTION",
      `--decode-workers must be a whole number from 0 to 64, got "${flags["decode-workers"]}"`,
    );
  }
  return n;
}

function fetchFrom(flags: Flags): FetchSettings {
  const timeout = num(flags, "fetch-timeout");
  if (timeout !== undefined && !(timeout > 0)) {
    throw new WebcapError("BAD_OPTION", `--fetch-timeout must be seconds > 0, got "${timeout}"`);
  }
  const retries = num(flags, "retries");
  if (retries !== undefined && !(Number.isSafeInteger(retries) && retries >= 0)) {
    throw new WebcapError("BAD_OPTION", `--retries must be a whole number ≥ 0, got "${retries}"`);
  }
  return {
    ...DEFAULT_FETCH,
    timeoutMs: timeout === undefined ? DEFAULT_FETCH.timeoutMs : timeout * 1000,
    retries: retries ?? DEFAULT_FETCH.retries,
  };
}

const NAMES = Object.keys(CAPTION_FLAGS);

/** Flags that change what an output holds: storage, image limit, split and every decoding flag. */
const RESULT_FLAGS = [
  "dtype",
  "max-pixels",
  "shard-by",
  ...NAMES.slice(NAMES.indexOf("num-beams")),
];

/** The command an output file records: the model as given, the shard and the flags that matter. */
export function jobCommand(model: string, input: InputOptions, flags: Flags): JobCommand {
  const settings: Record<string, string | boolean> = {};
  for (const f of RESULT_FLAGS) {
    const v = flags[f];
    if (v !== undefined) settings[`--${f}`] = v;
  }
  return { model, shard: shardSpec(input.shard), settings };
}

/** `parseArgs` options of `deno task caption merge`. */
const MERGE_FLAGS = {
  output: { type: "string" },
  format: { type: "string" },
  expect: { type: "string", multiple: true },
  help: { type: "boolean", short: "h" },
} as const;

/** `deno task caption merge --help`. */
export const MERGE_USAGE = [
  "usage: deno task caption merge PART.jsonl... --output FILE [--format jsonl|coco] [--expect INPUT]...",
  "",
  "Join the --output files of a sharded job: one line per key, the first one met. Reports keys",
  "written twice, tasks of the array that left no file, torn last lines and, with --expect (the",
  "inputs the tasks were given, repeatable), keys that no task wrote; exits 1 if any is missing",
  "or duplicated.",
  "",
  "  --output FILE          where the merged lines (or COCO results) go",
  "  --format jsonl|coco    jsonl (default): the job's lines under one header; coco: the",
  "                         [{image_id, caption}] results file of deno task eval (best caption",
  "                         per image; image_id from the input's image_id, else the key)",
  "  --expect INPUT         an input of the job, to find the keys no task wrote",
  "  -h, --help             print this help",
].join("\n");

/** Parsed arguments of `deno task caption merge`. */
export interface MergeArgs {
  parts: string[];
  output?: string;
  format: "jsonl" | "coco";
  expect: string[];
  help: boolean;
}

/** Parse `merge`'s arguments (after the word `merge`). */
export function parseMergeArgs(args: string[]): MergeArgs {
  let parsed;
  try {
    parsed = parseArgs({ args, options: MERGE_FLAGS, allowPositionals: true });
  } catch (e) {
    throw new WebcapError("BAD_OPTION", `merge: ${(e as Error).message} (see merge --help)`);
  }
  const { values, positionals } = parsed;
  const format = values.format ?? "jsonl";
  if (format !== "jsonl" && format !== "coco") {
    throw new WebcapError("BAD_OPTION", `--format must be jsonl or coco, got "${format}"`);
  }
  if (!values.help && !values.output) {
    throw new WebcapError("BAD_OPTION", "merge needs --output FILE (see merge --help)");
  }
  return {
    parts: positionals,
    output: values.output,
    format,
    expect: values.expect ?? [],
    help: !!values.help,
  };
}
