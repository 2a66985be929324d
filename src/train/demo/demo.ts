/**
 * `deno task train --demo shapes` (Deno): generate the shapes data set ({@link writeShapes}),
 * build the model folder's architecture with fresh weights and a word-level tokenizer trained on
 * the training captions ({@link initRandom}), train it with cross-entropy, then with SCST from
 * the cross-entropy checkpoint, and report the validation metrics (greedy captions; the names of
 * `deno task eval`) of the untrained, cross-entropy and SCST models. The two stages are the
 * plain `deno task train` runs with {@link DEMO_RECIPES}' settings, so
 * `--data DIR/data/dataset_shapes.json --model CONFIG --init random --mode xe` and then
 * `--mode scst --model DIR/xe` reproduce them on any Karpathy-layout set.
 * @module
 */
import { loadSplitImages, readCaptionData, splitEntries } from "../data.ts";
import { initRandom } from "../init_random.ts";
import { type LoadedSplit, scstSignature, trainCaptioner, validate } from "../scst.ts";
import { type ShapesSizes, writeShapes } from "./shapes.ts";
import { Trainer } from "../trainer.ts";
import { stepLine, TRAIN_LOG, TrainLog } from "../train_log.ts";

/** One stage's settings (the flags of `deno task train`). */
export interface StageRecipe {
  steps: number;
  batchSize: number;
  lr: number;
  /** Clip the global gradient norm to this (`--grad-clip`); unset: no clipping. */
  maxGradNorm?: number;
  /** Validate every this many steps (besides the end). */
  valEvery?: number;
}

/** The demo's data sizes and stages. */
export interface DemoRecipe {
  data: ShapesSizes;
  xe: StageRecipe;
  scst: StageRecipe & { samples: number; frozenEncoder: boolean };
}

/**
 * `--quick` (within 10 minutes on two CPU cores under lavapipe) and the full demo. Cross-entropy
 * clips the gradient norm to 1 (transformers' `Trainer` default): unclipped, the quick demo's
 * validation CIDEr-D after 400 steps was 1.1 or 1.7 with nothing changed but the order of float
 * sums in the reductions, clipped 2.1–2.3 (BENCHMARKS.md, "The shapes demonstration").
 */
export const DEMO_RECIPES: Record<"quick" | "full", DemoRecipe> = {
  quick: {
    data: { train: 1000, val: 50, test: 50 },
    xe: { steps: 400, batchSize: 16, lr: 2e-3, maxGradNorm: 1, valEvery: 100 },
    scst: { steps: 80, batchSize: 8, lr: 5e-5, samples: 5, frozenEncoder: true, valEvery: 20 },
  },
  full: {
    data: { train: 3000, val: 200, test: 200 },
    xe: { steps: 1500, batchSize: 16, lr: 2e-3, maxGradNorm: 1, valEvery: 250 },
    scst: { steps: 300, batchSize: 8, lr: 5e-5, samples: 5, frozenEncoder: true, valEvery: 50 },
  },
};

/** Options of {@link runShapesDemo}. */
export interface DemoOptions {
  /** Folder for `data/`, `init/`, `xe/` and `scst/` (new or empty). */
  out: string;
  /** The model folder whose `config.json` is trained from scratch. */
  model: string;
  recipe: DemoRecipe;
  /** Seed of the data, the weights, the batch order and the samples (default 0). */
  seed?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** Validation metrics of each model and the SCST signature. */
export interface DemoResult {
  init: Record<string, number>;
  xe: Record<string, number>;
  scst: Record<string, number>;
  signature: string;
}

async function split(file: string, name: "train" | "val"): Promise<LoadedSplit> {
  const entries = splitEntries(await readCaptionData(file), name, file);
  return { entries, images: await loadSplitImages(entries) };
}

/** Train `from` for one stage, save it to `to`; the init metrics too when asked. */
async function stage(
  from: string,
  to: string,
  data: { train: LoadedSplit; val: LoadedSplit },
  mode: "xe" | "scst",
  r: StageRecipe & { samples?: number; frozenEncoder?: boolean },
  o: DemoOptions & { trainLog: TrainLog; offset: number },
): Promise<{ before?: Record<string, number>; after: Record<string, number> }> {
  const log = o.log ?? (() => {}), { trainLog, offset } = o;
  const trainer = await Trainer.fromPretrained(from, {
    optimizer: { kind: "adamw", lr: r.lr, weightDecay: 0, maxGradNorm: r.maxGradNorm },
    frozen: r.frozenEncoder ? ["encoder."] : [],
    seed: o.seed ?? 0,
  });
  const time = new Date().toISOString();
  await trainLog.write({ event: "start", step: offset, mode, time, from, steps: r.steps });
  const paths = data.val.entries.map((e) => e.path);
  const evaluated = (step: number, metrics: Record<string, number>, caps: string[]) =>
    trainLog.writeEval(step + offset, metrics, caps, paths);
  try {
    const before = mode === "xe"
      ? (await validate(trainer, data.val.entries, data.val.images, r.batchSize))
      : undefined;
    if (before) await evaluated(0, before.metrics, before.captions);
    const after = await trainCaptioner(trainer, data.train, data.val, {
      mode,
      steps: r.steps,
      batchSize: r.batchSize,
      valEvery: r.valEvery,
      seed: o.seed ?? 0,
      scst: mode === "scst" ? { samples: r.samples } : undefined,
      onStep: async (s) => {
        if (s.step % 20 === 0) log(`${mode} step ${s.step} loss ${s.loss.toFixed(4)}`);
        await trainLog.write({ ...stepLine(s), step: s.step + offset });
      },
      onEval: async (step, m, caps) => {
        log(`${mode} val @ ${step}: CIDEr ${m.CIDEr.toFixed(3)} e.g. "${caps[0]}"`);
        await evaluated(step, m, caps);
      },
    });
    await trainer.save(to);
    return { before: before?.metrics, after };
  } finally {
    trainer.dispose();
  }
}

/** Run the demo (see the module notes). */
export async function runShapesDemo(o: DemoOptions): Promise<DemoResult> {
  const log = o.log ?? (() => {}), seed = o.seed ?? 0, r = o.recipe;
  const file = await writeShapes(`${o.out}/data`, { ...r.data, seed });
  const data = { train: await split(file, "train"), val: await split(file, "val") };
  log(`data: ${data.train.entries.length} train, ${data.val.entries.length} val images in ${file}`);
  await initRandom(o.model, `${o.out}/init`, {
    seed,
    captions: data.train.entries.flatMap((e) => e.captions),
  });
  const trainLog = await TrainLog.open(`${o.out}/${TRAIN_LOG}`);
  const xeOpts = { ...o, trainLog, offset: 0 };
  const xe = await stage(`${o.out}/init`, `${o.out}/xe`, data, "xe", r.xe, xeOpts);
  const signature = scstSignature({ samples: r.scst.samples });
  log(signature);
  const scstOpts = { ...o, trainLog, offset: r.xe.steps };
  const scst = await stage(`${o.out}/xe`, `${o.out}/scst`, data, "scst", r.scst, scstOpts);
  log(`log: ${trainLog.path}, curve: ${await trainLog.writeCurve()}`);
  return { init: xe.before!, xe: xe.after, scst: scst.after, signature };
}

/** The metrics of the three models as a text table, the signature below it. */
export function demoTable(r: DemoResult): string {
  const names = Object.keys(r.scst), w = Math.max(...names.map((n) => n.length));
  const row = (n: string) =>
    [n.padEnd(w), ...[r.init, r.xe, r.scst].map((m) => m[n].toFixed(4).padStart(9))].join("  ");
  const head = ["metric".padEnd(w), ...["untrained", "XE", "SCST"].map((h) => h.padStart(9))];
  return [head.join("  "), ...names.map(row), r.signature].join("\n");
}
