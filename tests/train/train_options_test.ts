/**
 * The training options people expect, on the vit-gpt2 fixture: `deno task train`'s learning-rate
 * schedule with warm-up over the run's steps, weight decay, gradient clipping and accumulation
 * (the learning rates of the log are the schedule's, the settings land in the checkpoint, a
 * resumed run continues them and refuses flags that differ), bad values refused before any GPU
 * work; `trainCaptioner`'s `chooseBatch` curriculum hook (its indices are the images trained on,
 * a bad answer refused before its step); `--model` as a hub id downloaded from a hub on
 * 127.0.0.1 into the cache that `HF_HUB_CACHE` names.
 */
import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { readCaptionData } from "../../src/train/data.ts";
import {
  constantSchedule,
  cosineSchedule,
  linearSchedule,
  type ScheduleConfig,
  scheduleOf,
} from "../../src/train/schedule.ts";
import { trainCaptioner } from "../../src/train/scst.ts";
import { readTrainLog } from "../../src/train/train_log.ts";
import { Trainer } from "../../src/train/trainer.ts";
import { readFixtureRepo, startFixtureHub } from "../io/hub_server.ts";
import { fixture, getGpu } from "../util.ts";

const SHAPES = fixture("shapes/dataset_shapes.json");
const MODEL = fixture("hf/vit-gpt2");

async function train(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/train.ts", "--data", SHAPES, ...args],
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", ...env },
    signal: AbortSignal.timeout(240_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function refused(r: { code: number; stderr: string }, code: string, message: string): void {
  assert.equal(r.code, 2, r.stderr);
  assert.ok(r.stderr.includes(`error ${code}`) && r.stderr.includes(message), r.stderr);
}

Deno.test("scheduleOf rebuilds each schedule from its saved config; an unknown kind is refused", () => {
  for (const s of [constantSchedule(), linearSchedule(3, 10), cosineSchedule(2, 9, 1.5)]) {
    const again = scheduleOf(JSON.parse(JSON.stringify(s.config)));
    assert.deepEqual(again.config, s.config);
    for (let step = 0; step <= 11; step++) assert.equal(again.factor(step), s.factor(step));
  }
  assert.throws(
    () => scheduleOf({ kind: "step" } as unknown as ScheduleConfig),
    (e) => e instanceof WebcapError && e.message.includes('got "step"'),
  );
});

Deno.test("CLI refuses bad schedule, warm-up, weight decay, clipping and accumulation before any GPU work", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-train-opts-" });
  const base = ["--model", MODEL, "--mode", "xe", "--steps", "2", "--batch-size", "1"];
  const common = [...base, "--lr", "1e-3", "--out", `${tmp}/out`];
  const cases: [string[], string][] = [
    [["--schedule", "step"], "--schedule must be constant, linear or cosine, got step"],
    [["--warmup", "1"], "--warmup needs --schedule linear or cosine"],
    [["--schedule", "constant", "--warmup", "1"], "--warmup needs --schedule linear or cosine"],
    [["--schedule", "linear", "--warmup=-1"], "--warmup must be an integer ≥ 0"],
    [["--schedule", "cosine", "--warmup", "2"], "--warmup 2 must be shorter than the run's 2"],
    [["--weight-decay=-0.1"], "--weight-decay must be a number ≥ 0, got -0.1"],
    [["--weight-decay", "x"], "--weight-decay must be a number ≥ 0, got x"],
    [["--grad-clip", "0"], "--grad-clip must be a number > 0"],
    [["--grad-accum", "0"], "--grad-accum must be an integer ≥ 1"],
    [["--grad-accum", "1.5"], "--grad-accum must be an integer ≥ 1"],
  ];
  for (const [args, message] of cases) {
    refused(await train([...common, ...args]), "BAD_OPTION", message);
  }
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("CLI: linear schedule with warm-up, weight decay, clipping, accumulation; resume continues them", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-train-sched-" });
  const n = (await readCaptionData(SHAPES)).train.length, epochs = 3 * 2 / n; // 3 steps of 2
  const lr = 1e-3;
  const run = await train([
    ...["--model", MODEL, "--mode", "xe", "--epochs", String(epochs), "--batch-size", "1"],
    ...["--lr", String(lr), "--schedule", "linear", "--warmup", "1", "--weight-decay", "0.1"],
    ...["--grad-clip", "1", "--grad-accum", "2", "--out", `${tmp}/a`, "--json"],
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(JSON.parse(run.stdout.trim().split("\n").at(-1)!).steps, 3);
  const schedule = linearSchedule(1, 3);
  const steps = (await readTrainLog(`${tmp}/a/train_log.jsonl`)).flatMap((l) =>
    l.event === "step" ? [l] : []
  );
  assert.deepEqual(steps.map((l) => l.lr), [0, 1, 2].map((s) => lr * schedule.factor(s)));
  assert.ok(steps.every((l) => Number.isFinite(l.grad_norm) && l.grad_norm > 0));
  const state = JSON.parse(await Deno.readTextFile(`${tmp}/a/trainer_state.json`));
  assert.equal(state.optimizer.weightDecay, 0.1);
  assert.equal(state.optimizer.maxGradNorm, 1);
  assert.equal(state.optimizer.accumulate, 2);
  assert.deepEqual(state.optimizer.schedule, schedule.config);
  const resume = ["--resume", `${tmp}/a`, "--mode", "xe", "--steps", "1", "--batch-size", "1"];
  const more = ["--lr", String(lr), "--out", `${tmp}/a`];
  for (
    const [flags, message] of [
      [["--grad-accum", "1"], "--grad-accum 1 contradicts 2"],
      [["--weight-decay", "0"], "--weight-decay 0 contradicts 0.1"],
      [["--schedule", "cosine"], "leave them out to resume"],
      [["--schedule", "linear", "--warmup", "2"], "leave them out to resume"],
    ] as const
  ) refused(await train([...resume, ...more, ...flags]), "BAD_OPTION", message);
  const resumed = await train([...resume, ...more, "--grad-clip", "1", "--json"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  const after = JSON.parse(await Deno.readTextFile(`${tmp}/a/trainer_state.json`)).optimizer;
  assert.deepEqual(after, state.optimizer);
  const last = (await readTrainLog(`${tmp}/a/train_log.jsonl`)).filter((l) => l.event === "step");
  assert.equal(last.length, 4);
  assert.equal(last[3].lr, lr * schedule.factor(3));
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("trainCaptioner: chooseBatch picks each micro-batch's images; a bad answer is refused before its step", async () => {
  const splits = await readCaptionData(SHAPES);
  const entries = splits.train.slice(0, 6), val = { entries: splits.val.slice(0, 1) };
  const run = async (train: typeof entries, pick: (m: number) => number[]) => {
    const trainer = await Trainer.fromPretrained(MODEL, {
      optimizer: { kind: "adamw", lr: 1e-3 },
      gpu: await getGpu(),
    });
    const losses: number[] = [], asked: number[] = [];
    try {
      await trainCaptioner(trainer, { entries: train }, val, {
        mode: "xe",
        steps: 2,
        batchSize: 2,
        chooseBatch: (m, seen) => {
          assert.equal(seen.length, train.length);
          asked.push(m);
          return pick(m);
        },
        onStep: (r) => void losses.push(r.loss),
      });
      return { losses, asked };
    } catch (e) {
      assert.equal(trainer.optimizer.steps, 0);
      throw e;
    } finally {
      trainer.dispose();
    }
  };
  const chosen = await run(entries, (m) => m === 0 ? [4, 1] : [5]);
  assert.deepEqual(chosen.asked, [0, 1]);
  const alone = await run([entries[4], entries[1], entries[5]], (m) => m === 0 ? [0, 1] : [2]);
  assert.deepEqual(chosen.losses, alone.losses);
  const shuffled = await run(entries, (m) => [2 * m, 2 * m + 1]);
  assert.notDeepEqual(shuffled.losses, chosen.losses);
  for (const bad of [[6], [], [0.5]]) {
    const err = await run(entries, () => bad).then(() => undefined, (e) => e);
    assert.ok(err instanceof WebcapError && err.code === "BAD_OPTION", String(err));
    assert.ok(err.message.includes("chooseBatch(0) must return"), err.message);
  }
});

Deno.test("CLI: --model as a hub id downloads into the hub cache (a hub on 127.0.0.1) and trains", async () => {
  const id = "webcap-test/vit-gpt2";
  const repo = await readFixtureRepo(id, new URL(`file://${MODEL}/`));
  const hub = await startFixtureHub([repo]);
  const tmp = await Deno.makeTempDir({ prefix: "webcap-train-hub-" });
  const env = { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: `${tmp}/cache`, HF_HUB_OFFLINE: "0" };
  try {
    const args = ["--mode", "xe", "--steps", "1", "--batch-size", "1", "--lr", "1e-3"];
    const missing = await train(["--model", "webcap-test/nope", ...args, "--out", `${tmp}/x`], env);
    refused(missing, "HUB_NOT_FOUND", "webcap-test/nope");
    const r = await train(["--model", id, ...args, "--out", `${tmp}/out`, "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    const snapshots = `${tmp}/cache/models--webcap-test--vit-gpt2/snapshots`;
    const [snap] = await Array.fromAsync(Deno.readDir(snapshots));
    assert.deepEqual(
      await Deno.readFile(`${snapshots}/${snap.name}/model.safetensors`),
      repo.files.get("model.safetensors"),
    );
    assert.deepEqual(
      await Deno.readTextFile(`${tmp}/out/config.json`),
      await Deno.readTextFile(`${MODEL}/config.json`),
    );
  } finally {
    await hub.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
