/**
 * Three tasks of a sharded job over 30 generated images — in a folder with a subfolder, and in
 * two WebDataset tars — write the captions one process writes, each key exactly once; the merge
 * joins them, reports missing and duplicate keys, and writes the COCO results `deno task eval`
 * reads.
 */
import assert from "node:assert/strict";
import { ownsKey } from "../../src/jobs/shard.ts";
import { caption } from "../cli/run.ts";
import { captionsByKey, images, outputLines, quick, samples, tar, writeFiles } from "./data.ts";

const dir = await Deno.makeTempDir({ prefix: "webcap-sharded-" });
const files = images(30);
const names = [...files.keys()];
// the folder: 20 images at the top, 10 in a subfolder
await writeFiles(
  `${dir}/imgs`,
  new Map([...files].map(([n, b], i) => [i < 20 ? n : `more/${n}`, b])),
);
await Deno.writeFile(`${dir}/a.tar`, tar(samples(new Map([...files].slice(0, 15)))));
await Deno.writeFile(`${dir}/b.tar`, tar(samples(new Map([...files].slice(15)))));
const tars = [`${dir}/a.tar`, `${dir}/b.tar`];

/** Captions by image name (`img007`), from keys `img007.png`, `more/img027.png` or `img007`. */
const byStem = (m: Map<string, string>) =>
  new Map([...m].map(([k, v]) => [k.replace(/^more\//, "").replace(/\.png$/, ""), v]));

const merge = (args: string[]) => caption(["merge", ...args]);

/** One process's captions of the folder, as every sharded run must give them. */
const single = await caption([`${dir}/imgs`, ...quick, "--output", `${dir}/one.jsonl`]);
const oneLines = await outputLines(`${dir}/one.jsonl`);
const one = byStem(captionsByKey(oneLines));

Deno.test("sharded: one process captions the folder and its subfolder, with a summary", () => {
  assert.equal(single.code, 0, single.stderr);
  assert.equal(one.size, 30);
  assert.deepEqual([...one.keys()].sort(), names.map((n) => n.replace(".png", "")));
  assert.match(single.stderr, /done 30, skipped 0, failed 0 in [\d.]+ s/);
});

Deno.test("sharded: tasks 0/3, 1/3, 2/3 over the folder give the same captions, each key once", async () => {
  const parts = [0, 1, 2].map((i) => `${dir}/folder-${i}.jsonl`);
  const runs = await Promise.all(
    parts.map((out, i) => caption([`${dir}/imgs`, ...quick, "--shard", `${i}/3`, "--output", out])),
  );
  for (const [i, r] of runs.entries()) {
    assert.equal(r.code, 0, r.stderr);
    const keys = (await outputLines(parts[i])).map((l) => l.key);
    assert.ok(keys.length > 0 && keys.every((k) => ownsKey({ index: i, count: 3 }, k)));
  }
  const m = await merge([...parts, "--output", `${dir}/folder.jsonl`, "--expect", `${dir}/imgs`]);
  assert.equal(m.code, 0, m.stderr);
  assert.match(m.stderr, /merged 30 keys \(0 failed\); missing 0; duplicates 0/);
  assert.deepEqual(byStem(captionsByKey(await outputLines(`${dir}/folder.jsonl`))), one);
});

Deno.test("sharded: three tasks over two tars (flag, Kubernetes and Slurm indexes) match too", async () => {
  const parts = [0, 1, 2].map((i) => `${dir}/tar-${i}.jsonl`);
  const envs: Record<string, string>[] = [
    {},
    { JOB_COMPLETION_INDEX: "1" },
    { SLURM_ARRAY_TASK_ID: "2", SLURM_ARRAY_TASK_COUNT: "3" },
  ];
  const flags = [["--shard", "0/3"], ["--shard-count", "3"], []];
  const runs = await Promise.all(
    parts.map((out, i) => caption([...tars, ...quick, ...flags[i], "--output", out], envs[i])),
  );
  for (const r of runs) assert.equal(r.code, 0, r.stderr);
  const m = await merge([
    ...parts,
    "--output",
    `${dir}/tars.jsonl`,
    "--expect",
    tars[0],
    "--expect",
    tars[1],
  ]);
  assert.equal(m.code, 0, m.stderr);
  const merged = await outputLines(`${dir}/tars.jsonl`);
  assert.deepEqual(byStem(captionsByKey(merged)), one);
  assert.match(merged[0].source, /a\.tar:img\d+\.png$/);
});

Deno.test("sharded: --shard-by tar gives whole tars to tasks", async () => {
  const parts = [0, 1].map((i) => `${dir}/bytar-${i}.jsonl`);
  const runs = await Promise.all(
    parts.map((out, i) =>
      caption([...tars, ...quick, "--shard-by", "tar", "--shard", `${i}/2`, "--output", out])
    ),
  );
  for (const r of runs) assert.equal(r.code, 0, r.stderr);
  const [a, b] = await Promise.all(parts.map(outputLines));
  assert.ok(a.every((l) => l.source.includes("a.tar:")) && a.length === 15);
  assert.ok(b.every((l) => l.source.includes("b.tar:")) && b.length === 15);
  assert.deepEqual(byStem(captionsByKey([...a, ...b])), one);
});

Deno.test("sharded: merge reports missing tasks and keys, duplicates, and other commands' files", async () => {
  const folder = [0, 1, 2].map((i) => `${dir}/folder-${i}.jsonl`);
  const missing = await merge([
    folder[0],
    folder[2],
    "--output",
    `${dir}/m.jsonl`,
    "--expect",
    `${dir}/imgs`,
  ]);
  assert.equal(missing.code, 1, missing.stderr);
  const lost = (await outputLines(folder[1])).map((l) => l.key);
  assert.match(missing.stderr, new RegExp(`missing ${lost.length}; duplicates 0`));
  assert.match(missing.stderr, /tasks with no output: 1/);
  assert.match(missing.stderr, new RegExp(`missing keys: .*${lost[0].replace(".", "\\.")}`));
  const twice = await merge([...folder, folder[1], "--output", `${dir}/m.jsonl`]);
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, new RegExp(`merged 30 keys .*duplicates ${lost.length}`));
  await caption([
    `${dir}/imgs/img000.png`,
    ...quick,
    "--num-beams",
    "2",
    "--output",
    `${dir}/x.jsonl`,
  ]);
  const mixed = await merge([folder[0], `${dir}/x.jsonl`, "--output", `${dir}/m.jsonl`]);
  assert.equal(mixed.code, 2);
  assert.match(
    mixed.stderr,
    /^error BAD_INPUT: .*x\.jsonl was made by another command .*--num-beams/,
  );
});

Deno.test("sharded: merge --format coco writes the results file deno task eval scores", async () => {
  const parts = [0, 1, 2].map((i) => `${dir}/tar-${i}.jsonl`);
  const m = await merge([...parts, "--output", `${dir}/results.json`, "--format", "coco"]);
  assert.equal(m.code, 0, m.stderr);
  const results = JSON.parse(await Deno.readTextFile(`${dir}/results.json`));
  assert.equal(results.length, 30);
  assert.deepEqual(
    new Map(results.map((r: { image_id: string; caption: string }) => [r.image_id, r.caption])),
    one,
  );
  const refs = Object.fromEntries(
    results.map((r: { image_id: string }) => [r.image_id, ["a test image"]]),
  );
  await Deno.writeTextFile(`${dir}/refs.json`, JSON.stringify(refs));
  const evalScript = new URL("../../examples/eval.ts", import.meta.url).pathname;
  const ev = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      evalScript,
      "--results",
      `${dir}/results.json`,
      "--annotations",
      `${dir}/refs.json`,
      "--metrics",
      "BLEU",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(ev.stdout) + new TextDecoder().decode(ev.stderr);
  assert.equal(ev.code, 0, text);
  assert.match(text, /Bleu_1/);
});

Deno.test("sharded: clean up", async () => {
  await Deno.remove(dir, { recursive: true });
});
