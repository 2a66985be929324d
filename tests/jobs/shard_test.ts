/** Shard specs and the scheduler's environment; every key in exactly one task. */
import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { keyHash, ownsKey, parseShard, resolveShard } from "../../src/jobs/shard.ts";

const refused = (fn: () => unknown, message: RegExp) =>
  assert.throws(
    fn,
    (e) => e instanceof WebcapError && e.code === "BAD_OPTION" && message.test(e.message),
  );

Deno.test("shard: I/N parses; 3/3, 1/0 and words are refused, naming the rule", () => {
  assert.deepEqual(parseShard("2/3"), { index: 2, count: 3 });
  assert.deepEqual(parseShard(" 0 / 1 "), { index: 0, count: 1 });
  refused(() => parseShard("3/3"), /--shard 3\/3: the task index is 0-based.*0…2/);
  refused(() => parseShard("1/0"), /--shard 1\/0: the task count must be at least 1/);
  refused(() => parseShard("-1/3"), /INDEX\/COUNT/);
  refused(() => parseShard("one/3"), /INDEX\/COUNT/);
});

Deno.test("shard: from Kubernetes, Slurm and AWS Batch environments; the flag wins", () => {
  assert.deepEqual(resolveShard(undefined, 4, { JOB_COMPLETION_INDEX: "3" }), {
    index: 3,
    count: 4,
  });
  refused(
    () => resolveShard(undefined, undefined, { JOB_COMPLETION_INDEX: "0" }),
    /JOB_COMPLETION_INDEX is set \(a Kubernetes Indexed Job\).*--shard-count/,
  );
  refused(() => resolveShard(undefined, 4, { JOB_COMPLETION_INDEX: "4" }), /0-based.*0…3/);
  assert.deepEqual(resolveShard(undefined, 2, { AWS_BATCH_JOB_ARRAY_INDEX: "1" }), {
    index: 1,
    count: 2,
  });
  const slurm = {
    SLURM_ARRAY_TASK_ID: "5",
    SLURM_ARRAY_TASK_MIN: "3",
    SLURM_ARRAY_TASK_COUNT: "4",
  };
  assert.deepEqual(resolveShard(undefined, undefined, slurm), { index: 2, count: 4 });
  refused(() => resolveShard(undefined, undefined, { SLURM_ARRAY_TASK_ID: "x" }), /whole number/);
  assert.deepEqual(resolveShard("1/2", undefined, slurm), { index: 1, count: 2 });
  assert.deepEqual(resolveShard(undefined, undefined, {}), { index: 0, count: 1 });
});

Deno.test("shard: every key belongs to exactly one task, the split is even and stable", () => {
  const keys = Array.from({ length: 3000 }, (_, i) => `sample-${i}`);
  for (const count of [1, 3, 7]) {
    const sizes = Array(count).fill(0);
    for (const k of keys) {
      const owners = sizes.map((_, i) => ownsKey({ index: i, count }, k));
      assert.equal(owners.filter(Boolean).length, 1, k);
      sizes[owners.indexOf(true)]++;
    }
    for (const n of sizes) assert.ok(Math.abs(n - keys.length / count) < keys.length / count / 5);
  }
  // FNV-1a 32 of "a" (the published test vector): the hash does not drift between versions
  assert.equal(keyHash("a"), 0xe40c292c);
});
