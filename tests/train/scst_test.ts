/**
 * SCST on the vit-gpt2 fixture: a step's loss equals −Σ (r − b)·log p / Σ mask computed on the
 * host from the same samples (their sampling log-probabilities), rewards and baselines; CIDEr-D
 * rewards use the training references' document frequencies (equal to the eval module's CIDEr-D
 * with that df, and not what the batch's own df gives); XE then SCST from the CLI writes a
 * checkpoint that `Captioner.fromPretrained` loads and a `--json` last line with the documented
 * keys; contradictory options are refused before any GPU work; SCST for 2 steps, then resumed
 * for 2 more, equals 4 uninterrupted steps (losses, weights, optimizer state), with the log,
 * checkpoints every N steps, the curve, and `--epochs`.
 */
import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import { CiderD, documentFrequency } from "../../src/eval/cider.ts";
import { evaluatePaired, tokenizePaired } from "../../src/eval/coco.ts";
import { loadSplitImages, readCaptionData } from "../../src/train/data.ts";
import { ciderReward, scstStep, trainCaptioner } from "../../src/train/scst.ts";
import { readTrainLog } from "../../src/train/train_log.ts";
import { Trainer } from "../../src/train/trainer.ts";
import { fixture, getGpu } from "../util.ts";

const SHAPES = fixture("shapes/dataset_shapes.json");
const MODEL = fixture("hf/vit-gpt2");

Deno.test("an SCST step's loss is −Σ(r − b)·log p·mask / Σ mask of its samples (both baselines)", async () => {
  const splits = await readCaptionData(SHAPES);
  const entries = splits.train.slice(0, 2);
  const images = await loadSplitImages(entries);
  const trainer = await Trainer.fromPretrained(MODEL, {
    optimizer: { kind: "adamw", lr: 1e-3 },
    dropout: false, // the loss is compared with the sampling pass's log-probabilities (no dropout)
    gpu: await getGpu(),
  });
  const lengthReward = (samples: string[]) => samples.map((s, i) => s.length / 10 + i % 2);
  for (const baseline of ["mean", "greedy"] as const) {
    const r = await scstStep(trainer, { images }, entries.map((e) => e.captions), {
      samples: 3,
      baseline,
      reward: lengthReward,
      maxNewTokens: 6,
      seed: 7,
    });
    assert.equal(r.samples.length, 6);
    const total = r.lengths.reduce((a, b) => a + b, 0);
    const want = -r.logprobs.reduce((s, lp, i) => s + (r.rewards[i] - r.baselines[i]) * lp, 0) /
      total;
    assert.ok(want !== 0);
    assert.ok(
      Math.abs(r.step!.loss - want) < 1e-4 * Math.max(1, Math.abs(want)),
      `${baseline}: ${r.step!.loss} vs ${want}`,
    );
  }
  trainer.dispose();
});

Deno.test("CIDEr-D rewards use the training references' df: the eval module's CIDEr-D with that df, not the batch's", async () => {
  const splits = await readCaptionData(SHAPES);
  const trainRefs = splits.train.map((e) => e.captions);
  const reward = ciderReward(trainRefs);
  const refs = [trainRefs[0], trainRefs[1]];
  const samples = [trainRefs[0][0], trainRefs[1][2]];
  const got = reward(samples, refs);
  const tok = tokenizePaired({ ids: [], refs: trainRefs, candidates: [] }).refs;
  const paired = { ids: [0, 1], refs, candidates: samples };
  const trainDf = await evaluatePaired(paired, {
    metrics: ["CIDEr"],
    ciderDf: documentFrequency(tok),
  });
  assert.deepEqual(got, trainDf.perImage.map((p) => p.CIDEr));
  const batchDf = await evaluatePaired(paired, { metrics: ["CIDEr"] });
  assert.ok(
    got.every((g, i) => Math.abs(g - batchDf.perImage[i].CIDEr) > 1e-3),
    `${got} vs batch df`,
  );
  const t = tokenizePaired(paired);
  assert.ok(got[0] > 0 && got[0] !== new CiderD(t.refs).scoreOne(0, t.candidates[0]));
});

async function train(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/train.ts", "--data", SHAPES, ...args],
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    signal: AbortSignal.timeout(240_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("CLI: XE then SCST (resumed) writes a checkpoint Captioner loads; --json's last line has the keys", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-train-cli-" });
  const common = ["--steps", "2", "--batch-size", "2", "--lr", "1e-3", "--json"];
  const xe = await train(["--model", MODEL, "--mode", "xe", "--out", `${tmp}/xe`, ...common]);
  assert.equal(xe.code, 0, xe.stderr);
  const scst = await train([
    "--resume",
    `${tmp}/xe`,
    "--mode",
    "scst",
    "--samples",
    "2",
    "--baseline",
    "mean",
    "--out",
    `${tmp}/scst`,
    ...common,
  ]);
  assert.equal(scst.code, 0, scst.stderr);
  assert.ok(scst.stderr.includes("SCST K=2 baseline=mean reward=CIDEr-D(train-df) eos=kept"));
  const last = JSON.parse(scst.stdout.trim().split("\n").at(-1)!);
  assert.deepEqual(Object.keys(last), ["mode", "steps", "val", "checkpoint"]);
  assert.equal(last.mode, "scst");
  assert.equal(last.steps, 4);
  assert.equal(last.checkpoint, `${tmp}/scst`);
  for (const k of ["Bleu_4", "METEOR_noparaphrase", "ROUGE_L", "CIDEr"]) {
    assert.ok(Number.isFinite(last.val[k]), k);
  }
  const captioner = await Captioner.fromPretrained(last.checkpoint, { gpu: await getGpu() });
  const [r] = await captioner.caption([fixture("shapes/images/shapes_train_00000.png")]);
  assert.ok(r.error === undefined && r.captions.length === 1);
  captioner.dispose();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("CLI refuses contradictory or bad options and bad data before any GPU work", async () => {
  const notCheckpoint = await Deno.makeTempDir({ prefix: "webcap-not-ckpt-" });
  await Deno.writeTextFile(`${notCheckpoint}/notes.txt`, "mine");
  const base = [
    "--model",
    MODEL,
    "--steps",
    "1",
    "--batch-size",
    "1",
    "--lr",
    "1e-3",
    "--out",
    `${notCheckpoint}/out`,
  ];
  const cases: [string[], string][] = [
    [[...base, "--mode", "xe", "--samples", "3"], "contradicts --mode xe"],
    [[...base, "--mode", "scst", "--baseline", "mean", "--samples", "1"], "--samples ≥ 2"],
    [[...base, "--mode", "rl"], "--mode must be xe or scst"],
    [[...base, "--mode", "xe", "--resume", "/tmp/y"], "contradict"],
    [[...base, "--mode", "xe", "--steps", "0"], "--steps must be an integer"],
    [[...base, "--mode", "xe", "--epochs", "2"], "--steps and --epochs contradict"],
    [[...base.slice(0, 2), ...base.slice(4), "--mode", "xe"], "--steps or --epochs is required"],
    [[...base, "--mode", "scst", "--reward", "cider:1,rouge:2"], '"rouge:2" is not name:weight'],
    [[...base, "--mode", "scst", "--reward", "cider:0"], "a number ≠ 0"],
    [[...base, "--mode", "xe", "--reward", "bleu4"], "--reward is an SCST option"],
    [[...base, "--mode", "scst", "--reward", "keywords"], "needs --keywords"],
    [[...base, "--mode", "scst", "--keywords", "dog"], "--keywords needs keywords in --reward"],
    [[...base, "--mode", "scst", "--reward", "length:1"], "needs --target-length"],
    [[...base, "--mode", "xe", "--split", "0.9,0.1"], "--split must be three fractions"],
    [[...base, "--mode", "xe", "--missing", "ignore"], "--missing must be skip or error"],
    [[...base, "--mode", "xe", "--out", notCheckpoint], "is not a webcap checkpoint"],
  ];
  for (const [args, message] of cases) {
    const r = await train(args);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes("error BAD_OPTION") && r.stderr.includes(message), r.stderr);
  }
  const missing = await train([...base, "--mode", "xe", "--images", "/no/such/dir"]);
  assert.equal(missing.code, 2);
  assert.ok(
    missing.stderr.includes("error MISSING_FILE") && missing.stderr.includes("/no/such/dir"),
  );
  await Deno.remove(notCheckpoint, { recursive: true });
});

async function bytes(path: string): Promise<Uint8Array> {
  return await Deno.readFile(path);
}

async function stepLosses(log: string): Promise<number[]> {
  return (await readTrainLog(log)).flatMap((l) => l.event === "step" ? [l.loss] : []);
}

Deno.test("CLI: SCST 2 steps + resume 2 steps equals 4 steps (losses, weights, optimizer state); log, curve, epochs", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-resume-" });
  const scst = [
    "--model",
    MODEL,
    "--mode",
    "scst",
    "--samples",
    "2",
    "--baseline",
    "mean",
    "--reward",
    "cider:1,length:0.5",
    "--target-length",
    "4",
    "--batch-size",
    "2",
    "--lr",
    "1e-2",
    "--seed",
    "5",
    "--val-every",
    "100",
  ];
  const whole = await train([...scst, "--steps", "4", "--out", `${tmp}/whole`, "--json"]);
  assert.equal(whole.code, 0, whole.stderr);
  assert.ok(whole.stderr.includes("reward=1*CIDEr-D(train-df)+0.5*length(4)"), whole.stderr);
  const first = await train([...scst, "--steps", "2", "--out", `${tmp}/part`, "--save-every", "1"]);
  assert.equal(first.code, 0, first.stderr);
  const rest = scst.slice(2).filter((_, i, a) => a[i] !== "--seed" && a[i - 1] !== "--seed");
  const resumed = await train([
    ...rest,
    "--resume",
    `${tmp}/part`,
    "--steps",
    "2",
    "--out",
    `${tmp}/part`,
    "--json",
  ]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.equal(JSON.parse(resumed.stdout.trim().split("\n").at(-1)!).steps, 4);
  const losses = await stepLosses(`${tmp}/whole/train_log.jsonl`);
  assert.equal(losses.length, 4);
  assert.ok(losses.some((l) => l !== 0), `${losses}`);
  assert.deepEqual(await stepLosses(`${tmp}/part/train_log.jsonl`), losses);
  for (const f of ["model.safetensors", "optimizer.safetensors"]) {
    assert.deepEqual(await bytes(`${tmp}/part/${f}`), await bytes(`${tmp}/whole/${f}`), f);
  }
  assert.notDeepEqual(
    await bytes(`${tmp}/whole/model.safetensors`),
    await bytes(`${MODEL}/model.safetensors`),
  );
  const log = await readTrainLog(`${tmp}/part/train_log.jsonl`);
  assert.deepEqual(log.filter((l) => l.event === "save").map((l) => l.step), [1, 2, 4]);
  assert.deepEqual(log.filter((l) => l.event === "start").map((l) => l.step), [0, 2]);
  const svg = await Deno.readTextFile(`${tmp}/part/train_curve.svg`);
  assert.equal(svg.match(/<polyline/g)?.length, 3);
  const seedClash = await train([
    ...rest,
    "--resume",
    `${tmp}/part`,
    "--steps",
    "1",
    "--seed",
    "6",
    "--out",
    `${tmp}/x`,
  ]);
  assert.equal(seedClash.code, 2);
  assert.ok(seedClash.stderr.includes("--seed 6 contradicts the seed 5"), seedClash.stderr);
  const epochs = await train([
    "--model",
    MODEL,
    "--mode",
    "xe",
    "--epochs",
    "0.05",
    "--batch-size",
    "2",
    "--lr",
    "1e-3",
    "--out",
    `${tmp}/ep`,
    "--log",
    `${tmp}/logs/xe.jsonl`,
    "--json",
  ]);
  assert.equal(epochs.code, 0, epochs.stderr);
  assert.equal(
    JSON.parse(epochs.stdout.trim().split("\n").at(-1)!).steps,
    Math.ceil(0.05 * 96 / 2),
  );
  assert.equal((await stepLosses(`${tmp}/logs/xe.jsonl`)).length, 3);
  assert.ok((await Deno.stat(`${tmp}/logs/train_curve.svg`)).isFile);
  assert.match(epochs.stderr, /step \[#+\] 100% 3\/3 .*loss [\d.]+ lr 1\.00e-3 [\d.]+ samples\/s/);
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("trainCaptioner: images decoded per batch (prefetched) train and validate as images held in memory", async () => {
  const splits = await readCaptionData(SHAPES);
  const train = { entries: splits.train.slice(0, 6) }, val = { entries: splits.val.slice(0, 3) };
  const run = async (held: boolean) => {
    const trainer = await Trainer.fromPretrained(MODEL, {
      optimizer: { kind: "adamw", lr: 1e-3 },
      gpu: await getGpu(),
    });
    const losses: number[] = [], captions: string[][] = [];
    const images = async (s: { entries: typeof train.entries }) =>
      held ? { ...s, images: await loadSplitImages(s.entries) } : s;
    await trainCaptioner(trainer, await images(train), await images(val), {
      mode: "xe",
      epochs: 1,
      batchSize: 4,
      valEvery: 1,
      onStep: (r) => void losses.push(r.loss),
      onEval: (_, __, c) => void captions.push(c),
    });
    trainer.dispose();
    return { losses, captions };
  };
  const lazy = await run(false);
  assert.equal(lazy.losses.length, 2); // ⌈6 / 4⌉ steps: one epoch
  assert.equal(lazy.captions.length, 2);
  assert.deepEqual(lazy, await run(true));
});
