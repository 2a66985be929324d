/**
 * Joining the outputs of a job's tasks: one line per key (the first one met), with a report of
 * what is wrong with the set — keys written twice, keys of the inputs that no task wrote, tasks
 * of the array that left no file, torn last lines — and the COCO results file
 * `[{"image_id", "caption"}]` that `deno task eval` reads.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { DEFAULT_FETCH } from "./fetch.ts";
import { type ImageId, jobItems } from "./inputs.ts";
import { commandDifferences, type JobCommand, type JobLine, readJobFile } from "./output.ts";
import { parseShard, WHOLE } from "./shard.ts";

/** What a merge found. */
export interface MergeReport {
  /** Keys in the merged output. */
  keys: number;
  /** Of those, items written with an error. */
  failed: number;
  /** Keys written more than once, with the files that hold them. */
  duplicates: { key: string; files: string[] }[];
  /** Keys of the expected inputs that no file holds. */
  missing: string[];
  /** Task indexes of the array (`I` of `I/N` headers) with no file among the parts. */
  missingTasks: number[];
  /** Parts whose last line was torn (a task killed while writing; rerun it). */
  torn: string[];
}

/** The merged output: the command (shard `merged`), the lines and the report. */
export interface Merged {
  command: JobCommand;
  lines: JobLine[];
  report: MergeReport;
}

/**
 * Merge task outputs. `expectInputs` (the inputs the tasks were given) makes missing keys
 * known; without it only missing tasks are.
 * @throws WebcapError BAD_INPUT when the parts were made by different commands.
 */
export async function mergeJobs(parts: string[], expectInputs: string[] = []): Promise<Merged> {
  if (parts.length === 0) throw new WebcapError("BAD_OPTION", "merge: no output file given");
  const files = await Promise.all(parts.map(readJobFile));
  const command = { ...files[0].command, shard: "merged" };
  const where = new Map<string, string[]>();
  const lines: JobLine[] = [];
  for (const [i, f] of files.entries()) {
    const diff = commandDifferences({ ...f.command, shard: "merged" }, command);
    if (diff.length) {
      throw new WebcapError(
        "BAD_INPUT",
        `${parts[i]} was made by another command than ${parts[0]} (${
          diff.join("; ").replaceAll("this command", parts[0] + " has")
        }); merge the outputs of one job`,
      );
    }
    for (const line of f.lines) {
      const seen = where.get(line.key);
      if (seen) seen.push(parts[i]);
      else {
        where.set(line.key, [parts[i]]);
        lines.push(line);
      }
    }
  }
  const report: MergeReport = {
    keys: lines.length,
    failed: lines.filter((l) => l.error).length,
    duplicates: [...where].filter(([, fs]) => fs.length > 1).map(([key, files]) => ({
      key,
      files,
    })),
    missing: (await expectedKeys(expectInputs)).filter((k) => !where.has(k)),
    missingTasks: missingTasks(files.map((f) => f.command.shard)),
    torn: parts.filter((_, i) => files[i].torn),
  };
  return { command, lines, report };
}

/** Every key of the inputs (all shards), in input order. */
async function expectedKeys(inputs: string[]): Promise<string[]> {
  const keys: string[] = [];
  const input = { shard: WHOLE, shardByTar: false, fetch: DEFAULT_FETCH };
  const collect = (key: string) => (keys.push(key), false);
  const onError = (_: string, e: WebcapError) => {
    throw e;
  };
  for await (const _ of jobItems(inputs, input, collect, onError)) { /* nothing is taken */ }
  return keys;
}

/** Indexes of an `I/N` array with no part. */
function missingTasks(shards: string[]): number[] {
  const parsed = shards.filter((s) => s !== "merged").map((s) => parseShard(s, "shard"));
  if (parsed.length === 0) return [];
  const have = new Set(parsed.map((s) => s.index));
  return Array.from({ length: parsed[0].count }, (_, i) => i).filter((i) => !have.has(i));
}

/** The report as lines for stderr: counts, then up to 10 examples of each problem. */
export function reportLines(r: MergeReport): string[] {
  const some = (xs: string[]) => xs.slice(0, 10).join(", ") + (xs.length > 10 ? ", …" : "");
  const out = [
    `merged ${r.keys} keys (${r.failed} failed); missing ${r.missing.length}; ` +
    `duplicates ${r.duplicates.length}`,
  ];
  if (r.missingTasks.length) out.push(`tasks with no output: ${r.missingTasks.join(", ")}`);
  if (r.missing.length) out.push(`missing keys: ${some(r.missing)}`);
  if (r.duplicates.length) {
    out.push(
      `duplicate keys: ${some(r.duplicates.map((d) => `${d.key} (${d.files.join(", ")})`))}`,
    );
  }
  if (r.torn.length) out.push(`torn last line (task killed; rerun it): ${r.torn.join(", ")}`);
  return out;
}

/** The image id of a line: its `image_id`, else its key (a number when it is all digits). */
function imageIdOf(line: JobLine): ImageId {
  if (line.image_id !== undefined) return line.image_id;
  return /^\d{1,15}$/.test(line.key) ? Number(line.key) : line.key;
}

/** COCO results: each captioned line's best caption (failed lines are left out). */
export function cocoResults(lines: JobLine[]): { image_id: ImageId; caption: string }[] {
  return lines.filter((l) => l.captions?.length).map((l) => ({
    image_id: imageIdOf(l),
    caption: l.captions![0].text,
  }));
}
