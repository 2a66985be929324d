/**
 * Fine-tune a ViT-GPT2 captioner with cross-entropy or SCST (CIDEr-D rewards, train-set df).
 *
 *   deno task train --data dataset_coco.json [--images DIR] --model DIR --mode xe|scst
 *     --steps N --batch-size B --lr X --out DIR [--resume DIR] [--json]
 *     [--samples K] [--baseline greedy|mean] [--temperature T] [--top-k K] [--val-every N]
 *     [--seed S] [--frozen-encoder] [--init random]
 *   deno task train --demo shapes [--quick] [--json] [--out DIR] [--seed S] [--model CONFIG_DIR]
 *
 * `--data`: a Karpathy split file or a COCO `captions_*.json` (images under `--images`, default
 * the data file's folder); the train split trains, the val split validates (greedy captions,
 * the metrics of `deno task eval`). `--resume DIR`: continue from a checkpoint folder written by
 * `--out` (weights and optimizer state) instead of `--model`. The checkpoint in `--out` loads
 * with `--model` and `deno task caption`. With `--json` the last line is
 * `{"mode","steps","val":{…},"checkpoint"}`.
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
import { loadSplitImages, readCaptionData, splitEntries } from "../src/train/data.ts";
import { scstSignature, trainCaptioner } from "../src/train/scst.ts";
import { Trainer } from "../src/train/trainer.ts";
import { DEMO_RECIPES, demoTable, runShapesDemo } from "../src/train/demo.ts";
import { initRandom } from "../src/train/init_random.ts";

const USAGE = "usage: deno task train --data FILE [--images DIR] --model DIR --mode xe|scst " +
  "--steps N --batch-size B --lr X --out DIR [--resume DIR] [--json] [--samples K] " +
  "[--baseline greedy|mean] [--temperature T] [--top-k K] [--val-every N] [--seed S] " +
  "[--frozen-encoder] [--init random]\n       deno task train --demo shapes [--quick] [--json] " +
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
  const scstOnly = ["samples", "baseline", "temperature", "top-k"] as const;
  const stray = scstOnly.find((k) => f[k] !== undefined);
  if (f.mode === "xe" && stray) bad(`--${stray} is an SCST option; it contradicts --mode xe`);
  const samples = num(f, "samples", true, 5);
  if (baseline === "mean" && samples < 2) bad("--baseline mean needs --samples ≥ 2");
  return {
    mode: f.mode,
    steps: num(f, "steps", true),
    batchSize: num(f, "batch-size", true),
    lr: num(f, "lr", false),
    valEvery: f["val-every"] === undefined ? undefined : num(f, "val-every", true),
    seed: num(f, "seed", true, 0, 0),
    scst: {
      samples,
      baseline,
      temperature: num(f, "temperature", false, 1),
      topK: num(f, "top-k", true, 0, 0),
    },
  } as const;
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
  const log = f.json ? console.error : console.log;
  const splits = await readCaptionData(f.data!, { images: f.images });
  const train = splitEntries(splits, "train", f.data!), val = splitEntries(splits, "val", f.data!);
  const [trainImages, valImages] = [await loadSplitImages(train), await loadSplitImages(val)];
  log(`data: ${train.length} train, ${val.length} val images from ${f.data}`);
  if (o.mode === "scst") log(scstSignature(o.scst));
  const init = f.init && await Deno.makeTempDir({ prefix: "webcap-init-" });
  if (init) {
    const captions = train.flatMap((e) => e.captions);
    await initRandom(f.model!, init, { seed: o.seed, captions });
    log(`init: ${f.model} with random weights (seed ${o.seed}) in ${init}`);
  }
  const trainer = await Trainer.fromPretrained(init || f.resume || f.model!, {
    optimizer: { kind: "adamw", lr: o.lr, weightDecay: 0 },
    frozen: f["frozen-encoder"] ? ["encoder."] : [],
    resume: f.resume !== undefined,
  });
  try {
    const metrics = await trainCaptioner(trainer, { entries: train, images: trainImages }, {
      entries: val,
      images: valImages,
    }, {
      ...o,
      onStep: (r) =>
        log(
          `step ${r.step} loss ${r.loss.toFixed(4)} lr ${r.lr.toExponential(2)}` +
            (r.reward === undefined ? "" : ` reward ${r.reward.toFixed(4)}`),
        ),
      onEval: (step, m) => log(`val @ ${step}: ${JSON.stringify(m)}`),
    });
    const parent = f.out!.replace(/\/+$/, "").replace(/\/[^/]*$/, "");
    if (parent && parent !== f.out) await Deno.mkdir(parent, { recursive: true });
    await trainer.save(f.out!);
    log(`checkpoint: ${f.out}`);
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
