/**
 * Which task of a job array captions which item. An item belongs to task `I` of `N` when
 * `fnv1a32(utf8(key)) mod N = I` (stable across runs, machines and input order), or, with
 * `--shard-by tar`, whole tar files go to tasks in turn (the `t`-th tar to task `t mod N`).
 * The task index and count come from `--shard I/N` or from the scheduler's environment.
 * @module
 */
import { WebcapError } from "../errors.ts";

/** This task's place in a job array: index `index` (0-based) of `count` tasks. */
export interface Shard {
  readonly index: number;
  readonly count: number;
}

/** The whole input in one task. */
export const WHOLE: Shard = { index: 0, count: 1 };

/** `"I/N"` as a shard; the spec is named in errors as `what` (a flag or variable). */
export function parseShard(spec: string, what = "--shard"): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  if (!m) {
    throw new WebcapError(
      "BAD_OPTION",
      `${what} must be INDEX/COUNT with a 0-based index, as in 0/4, got "${spec}"`,
    );
  }
  return checkShard(Number(m[1]), Number(m[2]), `${what} ${spec.trim()}`);
}

function checkShard(index: number, count: number, what: string): Shard {
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new WebcapError("BAD_OPTION", `${what}: the task count must be at least 1`);
  }
  if (!Number.isSafeInteger(index) || index >= count) {
    throw new WebcapError(
      "BAD_OPTION",
      `${what}: the task index is 0-based, so with ${count} task${count > 1 ? "s" : ""} it ` +
        `must be ${count > 1 ? `0…${count - 1}` : "0"}`,
    );
  }
  return { index, count };
}

/** A whole number ≥ 0 from an environment variable, named in the error. */
function envInt(env: Record<string, string | undefined>, name: string): number {
  const v = env[name] ?? "";
  if (!/^\d+$/.test(v.trim())) {
    throw new WebcapError("BAD_OPTION", `${name} must be a whole number ≥ 0, got "${v}"`);
  }
  return Number(v);
}

/** Where an index variable needs the task count from `--shard-count`. */
const COUNTLESS = [
  ["JOB_COMPLETION_INDEX", "a Kubernetes Indexed Job", "the Job's completions"],
  ["AWS_BATCH_JOB_ARRAY_INDEX", "an AWS Batch array job", "the array size"],
] as const;

/**
 * The shard of this task: `--shard I/N` when given, else the scheduler's environment —
 * `JOB_COMPLETION_INDEX` (Kubernetes Indexed Job) or `AWS_BATCH_JOB_ARRAY_INDEX` with
 * `shardCount` (`--shard-count`), or `SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of
 * `SLURM_ARRAY_TASK_COUNT` — else the whole input.
 */
export function resolveShard(
  flag: string | undefined,
  shardCount: number | undefined,
  env: Record<string, string | undefined>,
): Shard {
  if (flag !== undefined) return parseShard(flag);
  for (const [name, scheduler, count] of COUNTLESS) {
    if (env[name] === undefined) continue;
    if (shardCount === undefined) {
      throw new WebcapError(
        "BAD_OPTION",
        `${name} is set (${scheduler}) but the task count is not: pass --shard-count N (${count})`,
      );
    }
    return checkShard(envInt(env, name), shardCount, `${name}=${env[name]} of --shard-count`);
  }
  if (env.SLURM_ARRAY_TASK_ID !== undefined) {
    const id = envInt(env, "SLURM_ARRAY_TASK_ID");
    const min = env.SLURM_ARRAY_TASK_MIN === undefined ? 0 : envInt(env, "SLURM_ARRAY_TASK_MIN");
    const count = shardCount ?? envInt(env, "SLURM_ARRAY_TASK_COUNT");
    return checkShard(id - min, count, `SLURM_ARRAY_TASK_ID=${id} (from ${min}) of ${count}`);
  }
  return WHOLE;
}

const utf8 = new TextEncoder();

/** 32-bit FNV-1a of the key's UTF-8 bytes: the stable hash that assigns items to tasks. */
export function keyHash(key: string): number {
  let h = 0x811c9dc5;
  for (const b of utf8.encode(key)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

/** Whether the item `key` belongs to `shard`. */
export function ownsKey(shard: Shard, key: string): boolean {
  return shard.count === 1 || keyHash(key) % shard.count === shard.index;
}

/** `"I/N"`. */
export function shardSpec(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}
