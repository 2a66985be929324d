/**
 * The deployment examples as written: the Slurm array script run as two array tasks, merged;
 * the Kubernetes manifest's and Dockerfile's flags and paths are the CLI's and the repository's.
 */
import assert from "node:assert/strict";
import { CAPTION_FLAGS } from "../../src/cli/options.ts";
import { caption } from "../cli/run.ts";
import { captionsByKey, images, model, outputLines, samples, tar } from "./data.ts";

const root = new URL("../../", import.meta.url).pathname;

Deno.test("deploy: the Slurm array script, run as tasks 0 and 1 of 2, then merged", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-slurm-" });
  try {
    const files = [...images(8)];
    for (const i of [0, 1]) {
      const part = new Map(files.slice(i * 4, i * 4 + 4));
      await Deno.writeFile(`${dir}/0000${i}.tar`, tar(samples(part)));
    }
    const bin = Deno.execPath().replace(/\/[^/]*$/, "");
    const env = {
      SHARDS: `${dir}/{00000..00001}.tar`,
      OUT: `${dir}/out`,
      MODEL: model,
      PATH: `${bin}:${Deno.env.get("PATH") ?? ""}`,
    };
    const runs = await Promise.all([0, 1].map((i) =>
      new Deno.Command("bash", {
        args: ["examples/slurm/caption-array.sh", "--max-new-tokens", "3"],
        cwd: root,
        env: { ...env, SLURM_ARRAY_TASK_ID: String(i), SLURM_ARRAY_TASK_COUNT: "2" },
        stdout: "piped",
        stderr: "piped",
      }).output()
    ));
    for (const r of runs) assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    const m = await caption([
      "merge",
      `${dir}/out/part-0.jsonl`,
      `${dir}/out/part-1.jsonl`,
      "--expect",
      env.SHARDS,
      "--output",
      `${dir}/all.jsonl`,
    ]);
    assert.equal(m.code, 0, m.stderr);
    assert.equal(captionsByKey(await outputLines(`${dir}/all.jsonl`)).size, 8);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deploy: the Kubernetes Job passes flags the CLI has; the Dockerfile copies what exists", async () => {
  const job = await Deno.readTextFile(`${root}examples/k8s/job.yaml`);
  const flags = [...job.matchAll(/^\s+- --([\w-]+)/gm)].map((m) => m[1]);
  assert.ok(flags.includes("shard-count") && flags.includes("output"));
  for (const f of flags) assert.ok(Object.hasOwn(CAPTION_FLAGS, f), `--${f}`);
  assert.match(job, /completionMode: Indexed/);
  const completions = Number(job.match(/completions: (\d+)/)![1]);
  assert.equal(Number(job.match(/--shard-count=(\d+)/)![1]), completions);
  const docker = await Deno.readTextFile(`${root}examples/k8s/Dockerfile`);
  for (const m of docker.matchAll(/^COPY (.+) \S+$/gm)) {
    for (const path of m[1].split(" ")) await Deno.stat(`${root}${path}`); // throws if missing
  }
});
