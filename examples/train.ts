/**
 * Fine-tune a ViT-GPT2 captioner with cross-entropy or SCST (CIDEr-D rewards, train-set df).
 *
 *   deno task train --data FILE|DIR [--images DIR] --model DIR --mode xe|scst
 *     --steps N|--epochs N --batch-size B --lr X --out DIR [--resume DIR] [--json]
 *     [--samples K] [--baseline greedy|mean] [--temperature T] [--top-k K] [--val-every N]
 *     [--seed S] [--frozen-encoder] [--save-every N] [--log FILE]
 *     [--reward cider:1,bleu4:0.5,keywords:W,length:W] [--keywords a,b] [--target-length N]
 *     [--split 0.9,0.05,0.05] [--split-file FILE] [--missing skip|error]
 *     [--bad-captions skip|error] [--schedule constant|linear|cosine] [--warmup N]
 *     [--weight-decay W] [--grad-clip X] [--grad-accum N] [--init random]
 *   deno task train --demo shapes [--quick] [--json] [--out DIR] [--seed S] [--model CONFIG_DIR]
 *
 * `--data`: a Karpathy split file, a COCO `captions_*.json` (images under `--images`, default
 * the data file's folder), a Flickr8k/30k caption file (`Flickr8k.token.txt`,
 * `results_20130124.token`, `results.csv`; splits from `--split-file`, the `Flickr_8k.*Images.txt`
 * lists beside it, or `--split` fractions) or a folder of images with a `.txt` of captions
 * beside each; the train split trains, the val split validates (greedy captions, the metrics of
 * `deno task eval`, a few captions shown). `--resume DIR`: continue from a checkpoint folder
 * written by `--out` (weights, optimizer state, seed; the same trajectory as a run that was not
 * interrupted) instead of `--model`. The checkpoint in `--out` (saved every `--save-every` steps
 * and at the end) loads with `--model` and `deno task caption`. Every step and validation goes
 * to the JSON-lines `--log` (default `OUT/train_log.jsonl`) with the curve `train_curve.svg`
 * beside it; progress goes to stderr. With `--json` the last line is
 * `{"mode","steps","val":{…},"checkpoint"}`.
 *
 * `--model` is a folder or a hub id (`org/name`, downloaded into the Hugging Face cache as
 * `deno task caption` does; `HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE` apply). The optimizer
 * is AdamW: `--schedule` of the learning rate over the run's steps (default constant; linear and
 * cosine decay to 0 at the last step) after `--warmup N` steps rising from 0, `--weight-decay`
 * (default 0), `--grad-clip` (global gradient norm; default none) and `--grad-accum` micro-batches
 * of `--batch-size` per step (default 1). A resumed run continues its checkpoint's optimizer
 * settings and schedule: these flags may be left out, and one that differs is refused.
 *
 * `--init random`: train `--model`'s `config.json` (ViT + GPT-2) from fresh weights, with a
 * word-level tokenizer trained on the training captions when the folder has none.
 * `--demo shapes`: generate the shapes set, train `--model` (default the shapes fixture's
 * `model-config`) from random weights with cross-entropy, then SCST, and print the validation
 * metrics of the untrained, XE and SCST models (with `--json` the last line is
 * `{"init","xe","scst","signature"}`); `--quick` is the ten-minute CPU recipe.
 * @module
 */
import { parseArgs } from "node:util";
import { WebcapError } from "../src/errors.ts";
import { resolveModel } from "../src/io/hub.ts";
import { readTrainerState, TRAINER_STATE } from "../src/train/checkpoint.ts";
import type { OptimizerConfig } from "../src/train/optim.ts";
import { type ScheduleConfig, scheduleOf } from "../src/train/schedule.ts";
import { type CaptionSplits, readCaptionData, splitEntries } from "../src/train/data.ts";
import {
  combineRewards,
  parseRewardWeights,
  rewardName,
  rewardTerms,
} from "../src/train/rewards.ts";
import { loopSteps, readLoopState, scstSignature, trainCaptioner } from "../src/train/scst.ts";
import {
  stepLine,
  TRAIN_CURVE,
  TRAIN_LOG,
  TrainLog,
  TrainProgress,
} from "../src/train/train_log.ts";
import { Trainer } from "../src/train/trainer.ts";
import { DEMO_RECIPES, demoTable, runShapesDemo } from "../src/train/demo/demo.ts";
import { initRandom } from "../src/train/init_random.ts";

const USAGE = "usage: deno task train --data FILE [--images DIR] --model DIR --mode xe|scst " +
  "--steps N|--epochs N --batch-size B --lr X --out DIR [--resume DIR] [--json] [--samples K] " +
  "[--baseline greedy|mean] [--temperature T] [--top-k K] [--val-every N] [--seed S] " +
  "[--frozen-encoder] [--save-every N] [--log FILE] [--reward cider:1,bleu4:0.5] " +
  "[--keywords a,b] [--target-length N] [--split 0.9,0.05,0.05] [--split-file FILE] " +
  "[--missing skip|error] [--bad-captions skip|error] [--schedule constant|linear|cosine] " +
  "[--warmup N] [--weight-decay W] [--grad-clip X] [--grad-accum N] [--init random]\n       deno task train --demo shapes [--quick] [--json] " +
  "[--out DIR] [--seed S] [--model CONFIG_DIR]";

/** The shapes fixture's model config, the demo's default `--model`. */
const SHAPES_CONFIG =
  new URL("../../shared/fixtures/shapes/model-config", import.meta.url).pathname;

function flags() {
  return parseArgs({
    args: Deno.args,
    options: {
      data: { type: "string" },
      images: { type: "string" },
      model: { type: "string" },
      mode: { type: "string" },
      steps: { type: "string" },
      "batch-size": { type: "string" },
      lr: { type: "string" },
      out: { type: "string" },
      resume: { type: "string" },
      json: { type: "boolean" },
      samples: { type: "string" },
      baseline: { type: "string" },
      temperature: { type: "string" },
      "top-k": { type: "string" },
      "val-every": { type: "string" },
      seed: { type: "string" },
      "frozen-encoder": { type: "boolean" },
      epochs: { type: "string" },
      "save-every": { type: "string" },
      log: { type: "string" },
      reward: { type: "string" },
      keywords: { type: "string" },
      "target-length": { type: "string" },
      split: { type: "string" },
      "split-file": { type: "string" },
      missing: { type: "string" },
      "bad-captions": { type: "string" },
      schedule: { type: "string" },
      warmup: { type: "string" },
      "weight-decay": { type: "string" },
      "grad-clip": { type: "string" },
      "grad-accum": { type: "string" },
      init: { type: "string" },
      demo: { type: "string" },
      quick: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  }).values;
}

type Flags = ReturnType<typeof flags>;

function bad(message: string): never {
  throw new WebcapError("BAD_OPTION", message);
}

/** A numeric flag: integer ≥ `min` when `int`, else a finite number > 0. */
function num(f: Flags, name: keyof Flags, int: boolean, fallback?: number, min = 1): number {
  const v = f[name];
  if (v === undefined) return fallback ?? bad(`--${name} is required\n${USAGE}`);
  const x = Number(v);
  const ok = int ? Number.isInteger(x) && x >= min : Number.isFinite(x) && x > 0;
  if (!ok) bad(`--${name} must be ${int ? `an integer ≥ ${min}` : "a number > 0"}, got ${v}`);
  return x;
}

/** The demo's options, checked before any file or GPU work: it sets everything else itself. */
function demoOptions(f: Flags) {
  if (f.demo !== "shapes") bad(`--demo must be shapes, got ${f.demo}`);
  const allowed = new Set(["demo", "quick", "json", "out", "seed", "model", "help"]);
  const stray = Object.keys(f).find((k) => !allowed.has(k));
  if (stray) bad(`--${stray} contradicts --demo shapes: the demo sets it (see --help)`);
  return { seed: num(f, "seed", true, 0, 0), recipe: DEMO_RECIPES[f.quick ? "quick" : "full"] };
}

/** Every option checked before any file or GPU work. */
function options(f: Flags) {
  if (f.quick) bad("--quick is an option of --demo shapes");
  if (f.init !== undefined && f.init !== "random") bad(`--init must be random, got ${f.init}`);
  if (f.init && f.resume) bad("--init random contradicts --resume: --resume loads trained weights");
  for (const k of ["data", "out"] as const) if (!f[k]) bad(`--${k} is required\n${USAGE}`);
  if (!f.model && !f.resume) bad(`--model (or --resume) is required\n${USAGE}`);
  if (f.model && f.resume) bad("--model and --resume contradict: --resume loads its own model");
  if (f.mode !== "xe" && f.mode !== "scst") bad(`--mode must be xe or scst, got ${f.mode}`);
  const baseline = f.baseline ?? "greedy";
  if (baseline !== "greedy" && baseline !== "mean") {
    bad(`--baseline must be greedy or mean, got ${baseline}`);
  }
  const scstOnly = [
    "samples",
    "baseline",
    "temperature",
    "top-k",
    "reward",
    "keywords",
    "target-length",
  ] as const;
  const stray = scstOnly.find((k) => f[k] !== undefined);
  if (f.mode === "xe" && stray) bad(`--${stray} is an SCST option; it contradicts --mode xe`);
  const samples = num(f, "samples", true, 5);
  if (baseline === "mean" && samples < 2) bad("--baseline mean needs --samples ≥ 2");
  if (f.steps !== undefined && f.epochs !== undefined) {
    bad("--steps and --epochs contradict: give the length of training as one of them");
  }
  if (f.steps === undefined && f.epochs === undefined) {
    bad(`--steps or --epochs is required\n${USAGE}`);
  }
  for (const k of ["missing", "bad-captions"] as const) {
    if (f[k] !== undefined && f[k] !== "skip" && f[k] !== "error") {
      bad(`--${k} must be skip or error, got ${f[k]}`);
    }
  }
  return {
    mode: f.mode,
    steps: f.steps === undefined ? undefined : num(f, "steps", true),
    epochs: f.epochs === undefined ? undefined : num(f, "epochs", false),
    batchSize: num(f, "batch-size", true),
    saveEvery: f["save-every"] === undefined ? undefined : num(f, "save-every", true),
    reward: rewardOptions(f),
    data: dataOptions(f),
    optim: optimFlags(f),
    lr: num(f, "lr", false),
    valEvery: f["val-every"] === undefined ? undefined : num(f, "val-every", true),
    seed: f.seed === undefined ? undefined : num(f, "seed", true, 0, 0),
    scst: {
      samples,
      baseline,
      temperature: num(f, "temperature", false, 1),
      topK: num(f, "top-k", true, 0, 0),
    },
  } as const;
}

/** `--reward` and what its rewards need, checked (CIDEr-D alone by default). */
function rewardOptions(f: Flags) {
  const weights = parseRewardWeights(f.reward ?? "cider:1");
  const uses = (name: string) => weights.some((w) => w.name === name);
  if (f.keywords !== undefined && !uses("keywords")) bad("--keywords needs keywords in --reward");
  if (f["target-length"] !== undefined && !uses("length")) {
    bad("--target-length needs length in --reward");
  }
  const keywords = f.keywords?.split(",").map((k) => k.trim());
  if (uses("keywords") && !keywords?.every((k) => k !== "")) {
    bad("--reward keywords needs --keywords a,b (none empty)");
  }
  if (uses("length") && f["target-length"] === undefined) {
    bad("--reward length needs --target-length N");
  }
  const targetLength = uses("length") ? num(f, "target-length", true) : undefined;
  return { weights, keywords, targetLength };
}

/** `--schedule`, `--warmup`, `--weight-decay`, `--grad-clip`, `--grad-accum` as given, checked. */
function optimFlags(f: Flags) {
  const kind = f.schedule;
  if (kind !== undefined && kind !== "constant" && kind !== "linear" && kind !== "cosine") {
    bad(`--schedule must be constant, linear or cosine, got ${kind}`);
  }
  if (f.warmup !== undefined && (kind === undefined || kind === "constant")) {
    bad("--warmup needs --schedule linear or cosine (the constant schedule has no warm-up)");
  }
  const wd = f["weight-decay"];
  if (wd !== undefined && !(wd.trim() !== "" && Number(wd) >= 0 && Number.isFinite(+wd))) {
    bad(`--weight-decay must be a number ≥ 0, got ${wd}`);
  }
  return {
    kind,
    warmup: f.warmup === undefined ? undefined : num(f, "warmup", true, 0, 0),
    weightDecay: wd === undefined ? undefined : Number(wd),
    maxGradNorm: f["grad-clip"] === undefined ? undefined : num(f, "grad-clip", false),
    accumulate: f["grad-accum"] === undefined ? undefined : num(f, "grad-accum", true),
  };
}

type OptimFlags = ReturnType<typeof optimFlags>;

/**
 * The optimizer settings of the run: the flags (defaults: no decay, no clipping, one
 * micro-batch per step), or a resumed checkpoint's settings, a flag that differs refused.
 */
function stepSettings(g: OptimFlags, saved: OptimizerConfig | null | undefined, resume?: string) {
  const pick = <T>(flag: string, given: T | undefined, was: T | undefined, fallback: T): T => {
    if (!saved) return given ?? fallback;
    if (given !== undefined && given !== was) {
      bad(`--${flag} ${given} contradicts ${was} in ${resume}: leave it out to resume`);
    }
    return was!;
  };
  return {
    weightDecay: pick("weight-decay", g.weightDecay, saved?.weightDecay, 0),
    maxGradNorm: pick("grad-clip", g.maxGradNorm, saved?.maxGradNorm ?? undefined, undefined),
    accumulate: pick("grad-accum", g.accumulate, saved?.accumulate, 1),
  };
}

/**
 * The learning-rate schedule over the run's `steps` (warm-up checked shorter than the run), or
 * a resumed checkpoint's, a `--schedule` or `--warmup` that differs refused.
 */
function runSchedule(g: OptimFlags, steps: number, saved: ScheduleConfig | undefined) {
  if (saved) {
    const warmup = "warmupSteps" in saved ? saved.warmupSteps : undefined;
    if ((g.kind !== undefined && g.kind !== saved.kind) || (g.warmup ?? warmup) !== warmup) {
      bad(
        `--schedule ${g.kind ?? saved.kind} --warmup ${g.warmup ?? warmup ?? 0} contradicts the ` +
          `resumed run's ${JSON.stringify(saved)}: leave them out to resume`,
      );
    }
    return scheduleOf(saved);
  }
  const warmupSteps = g.warmup ?? 0;
  if (g.kind === undefined || g.kind === "constant") return scheduleOf({ kind: "constant" });
  if (warmupSteps >= steps) {
    bad(`--warmup ${warmupSteps} must be shorter than the run's ${steps} steps`);
  }
  return scheduleOf(
    g.kind === "linear"
      ? { kind: "linear", warmupSteps, totalSteps: steps }
      : { kind: "cosine", warmupSteps, totalSteps: steps, cycles: 0.5 },
  );
}

/** The data reader's options: `--split` fractions, `--split-file`, the skip policies. */
function dataOptions(f: Flags) {
  const split = f.split?.split(",").map(Number);
  if (split && (split.length !== 3 || split.some((x) => !(x >= 0)))) {
    bad(`--split must be three fractions train,val,test (e.g. 0.9,0.05,0.05), got ${f.split}`);
  }
  return {
    images: f.images,
    split: split as [number, number, number] | undefined,
    splitFile: f["split-file"],
    missing: f.missing as "skip" | "error" | undefined,
    badCaptions: f["bad-captions"] as "skip" | "error" | undefined,
  };
}

/** Refuse an `--out` that holds something other than a checkpoint, before any GPU work. */
async function checkOut(out: string, log: string): Promise<void> {
  let names: string[];
  try {
    names = (await Array.fromAsync(Deno.readDir(out))).map((e) => e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  const ours = [TRAINER_STATE, log.slice(log.lastIndexOf("/") + 1), TRAIN_CURVE];
  if (names.some((n) => !ours.includes(n)) && !names.includes(TRAINER_STATE)) {
    bad(`--out ${out} exists and is not a webcap checkpoint; choose a new folder or remove it`);
  }
}

/** `data: 90 train, 5 val images from F (skipped: 2 missing images, …)`. */
function dataLine(splits: CaptionSplits, train: number, val: number, data: string): string {
  const s = splits.skipped;
  const skips = [
    [s.missingImages, "missing images"],
    [s.emptyCaptions, "empty captions"],
    [s.notUtf8, "not UTF-8"],
    [s.unsplit, "in no split"],
  ].filter(([n]) => n).map(([n, what]) => `${n} ${what}`);
  return `data: ${train} train, ${val} val images from ${data}` +
    (skips.length ? ` (skipped: ${skips.join(", ")})` : "");
}

/** The run's seed: the resumed checkpoint's (a different `--seed` refused), else `--seed`. */
async function runSeed(resume: string | undefined, seed: number | undefined): Promise<number> {
  const state = resume ? await readLoopState(resume) : undefined;
  if (state && seed !== undefined && seed !== state.seed) {
    bad(`--seed ${seed} contradicts the seed ${state.seed} of ${resume}: leave it out to resume`);
  }
  return state?.seed ?? seed ?? 0;
}

async function demo(f: Flags): Promise<void> {
  const o = demoOptions(f);
  const log = f.json ? console.error : console.log;
  const out = f.out ?? await Deno.makeTempDir({ prefix: "webcap-demo-" });
  log(`demo: shapes from scratch into ${out}`);
  const result = await runShapesDemo({ ...o, out, model: f.model ?? SHAPES_CONFIG, log });
  log(demoTable(result));
  if (f.json) console.log(JSON.stringify(result));
}

async function main(): Promise<void> {
  const f = flags();
  if (f.help) return console.log(USAGE);
  if (f.demo !== undefined) return await demo(f);
  const o = options(f);
  const out = f.out!.replace(/\/+$/, "");
  const logPath = f.log ?? `${out}/${TRAIN_LOG}`;
  await checkOut(out, logPath);
  const seed = await runSeed(f.resume, o.seed);
  const saved = f.resume ? (await readTrainerState(f.resume))?.optimizer : undefined;
  const step = stepSettings(o.optim, saved, f.resume);
  const log = f.json ? console.error : console.log;
  const splits = await readCaptionData(f.data!, { ...o.data, seed });
  const train = splitEntries(splits, "train", f.data!), val = splitEntries(splits, "val", f.data!);
  const steps = loopSteps(o, train.length, step.accumulate);
  const schedule = runSchedule(o.optim, steps, saved?.schedule);
  log(dataLine(splits, train.length, val.length, f.data!));
  const terms = rewardTerms(o.reward.weights, {
    trainRefs: train.map((e) => e.captions),
    ...o.reward,
  });
  const signature = scstSignature({ ...o.scst, rewardName: rewardName(terms) });
  if (o.mode === "scst") log(signature);
  const init = f.init && await Deno.makeTempDir({ prefix: "webcap-init-" });
  if (init) {
    const captions = train.flatMap((e) => e.captions);
    await initRandom(f.model!, init, { seed, captions });
    log(`init: ${f.model} with random weights (seed ${seed}) in ${init}`);
  }
  const source = init || f.resume || await resolveModel(f.model!);
  const trainer = await Trainer.fromPretrained(source, {
    optimizer: { kind: "adamw", lr: o.lr, schedule, ...step },
    frozen: f["frozen-encoder"] ? ["encoder."] : [],
    resume: f.resume !== undefined,
    seed,
  });
  try {
    const parent = out.slice(0, out.lastIndexOf("/"));
    if (parent) await Deno.mkdir(parent, { recursive: true });
    const start = trainer.optimizer.steps;
    const trainLog = await TrainLog.open(logPath, {
      resumeStep: f.resume === undefined ? undefined : start,
      from: f.resume && `${f.resume}/${TRAIN_LOG}`,
    });
    await trainLog.write({
      event: "start",
      step: start,
      mode: o.mode,
      time: new Date().toISOString(),
      seed,
      batch_size: o.batchSize,
      steps,
      ...(o.mode === "scst" ? { signature } : {}),
    });
    const inOut = logPath.slice(0, logPath.lastIndexOf("/")) === out;
    const progress = new TrainProgress({ total: steps, plain: f.json });
    const metrics = await trainCaptioner(trainer, { entries: train }, { entries: val }, {
      ...o,
      seed,
      scst: { ...o.scst, reward: combineRewards(terms) },
      saveTo: out,
      carry: inOut ? [logPath.slice(out.length + 1), TRAIN_CURVE] : [],
      onStep: async (r) => {
        progress.step(r);
        await trainLog.write(stepLine(r));
      },
      onEval: async (step, m, captions) => {
        const shown = await trainLog.writeEval(step, m, captions, val.map((e) => e.path));
        const names = ["Bleu_4", "METEOR_noparaphrase", "ROUGE_L", "CIDEr"];
        const summary = names.filter((k) => k in m).map((k) => `${k} ${m[k].toFixed(4)}`);
        progress.note(`val @ ${step}: ${summary.join(" ")}`);
        for (const c of shown) progress.note(`  ${c.image}: ${JSON.stringify(c.caption)}`);
      },
      onSave: async (step, dir) => {
        await trainLog.write({ event: "save", step, dir });
        progress.note(`checkpoint @ ${step}: ${dir}`);
      },
    });
    progress.done();
    log(`checkpoint: ${f.out}`);
    log(`log: ${logPath}, curve: ${await trainLog.writeCurve()}`);
    const result = {
      mode: o.mode,
      steps: trainer.optimizer.steps,
      val: metrics,
      checkpoint: f.out,
    };
    if (f.json) console.log(JSON.stringify(result));
  } finally {
    trainer.dispose();
    if (init) await Deno.remove(init, { recursive: true });
  }
}

try {
  await main();
} catch (e) {
  if (!(e instanceof WebcapError) && !(e instanceof TypeError && "code" in e)) throw e;
  const code = e instanceof WebcapError ? e.code : "BAD_OPTION";
  console.error(`error ${code}: ${e.message}`);
  Deno.exit(2);
}
