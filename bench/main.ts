/**
 * `deno task bench [--kernels] [--strategies] [--caption [--real [--all]]] [--eval]
 *   [--train [--train-real]] [--dtypes --model DIR --data KARPATHY.json [--split val]
 *   [--max-images N]] [--json FILE] [--reps N]`
 * Prints a table per group and writes all rows as JSON. With no group flag, runs them all.
 * @module
 */
import { parseArgs } from "node:util";
import { getGpu } from "../src/gpu/device.ts";
import { benchKernels } from "./kernels.ts";
import type { SplitName } from "../src/train/data.ts";

type Row = Record<string, string | number | undefined>;

function table(title: string, rows: Row[]): void {
  if (!rows.length) return;
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const late = ["timer"]; // descriptive columns after the numbers
  const cols = [...keys.filter((k) => !late.includes(k)), ...keys.filter((k) => late.includes(k))];
  const fmt = (v: unknown) =>
    typeof v === "number"
      ? (Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4))
      : String(v ?? "");
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => fmt(r[c]).length)));
  console.log(`\n## ${title}`);
  console.log(cols.map((c, i) => c.padEnd(widths[i])).join("  "));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(cols.map((c, i) => fmt(r[c]).padEnd(widths[i])).join("  "));
}

const USAGE =
  `usage: deno task bench [--kernels] [--strategies] [--caption [--real [--all]]] [--eval]
                       [--train [--train-real]] [--json FILE] [--reps N]
                       [--dtypes --model DIR --data KARPATHY.json [--split val] [--max-images N]]

Time webcap on this machine's WebGPU adapter and print a table per group (all groups when none
is chosen).

  --kernels      per-kernel timings at ViT-B/16 and GPT-2 small shapes
  --strategies   every decoding strategy on one model, encoder included
  --caption      per fixture model and strategy, 20 tokens: wall ms, tokens/s, GPU ms (where
                 the adapter has timestamp-query), submits, host waits, dispatches, bind groups,
                 pipelines and buffers created, bytes read, peak bytes; greedy also with q8 and
                 q4 weights (dtype column)
  --real         with --caption: only ViT-GPT2 (239M parameters) and BLIP-base at their real
                 sizes (random weights written to a temporary folder): one image, 20 tokens,
                 greedy; the columns of --caption and encoder ms, ms per token, peak memory,
                 tokens (the fastest of --reps)
  --all          with --caption --real: also beam 3, beam 5, sampling and batch 8 greedy (for
                 GPU machines: one real-size caption takes ~10-60 s on a CPU adapter)
  --eval         COCO caption metrics on a synthetic 5,000-image set
  --train        training steps of the fixture ViT-GPT2 (AdamW, batch 8): step time, samples/s,
                 peak GPU bytes, whole model and frozen encoder
  --train-real   with --train: ViT-GPT2 at its real sizes (239M parameters, random weights) —
                 for GPU machines (about 4 GB of GPU memory)
  --dtypes       only this table: f32, f16, q8 and q4 of --model: weights file bytes and % of
                 f32, COCO metrics of greedy captions on --split of --data, ms per caption
                 (greedy, 20 tokens)
  --data FILE    with --dtypes: a Karpathy split file (or COCO captions file)
  --split NAME   with --dtypes: train, val or test (default val)
  --max-images N with --dtypes: caption at most N images of the split
  --model DIR    the model of --strategies (default the fixture ViT-GPT2) and of --dtypes
  --reps N       repetitions of each kernel and strategy timing (median; default 3)
  --json FILE    also write every row as JSON
  -h, --help     print this help`;

function parseFlags() {
  try {
    return parseArgs({
      args: Deno.args,
      options: {
        kernels: { type: "boolean" },
        strategies: { type: "boolean" },
        caption: { type: "boolean" },
        eval: { type: "boolean" },
        train: { type: "boolean" },
        "train-real": { type: "boolean" },
        real: { type: "boolean" },
        all: { type: "boolean" },
        json: { type: "string" },
        reps: { type: "string" },
        model: { type: "string" },
        dtypes: { type: "boolean" },
        data: { type: "string" },
        split: { type: "string" },
        "max-images": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    // node:util throws a TypeError (code ERR_PARSE_ARGS_*) for unknown or malformed flags.
    console.error(`error BAD_OPTION: ${(e as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
}

const values = parseFlags();
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const reps = Number(values.reps ?? 3);
if (!(Number.isSafeInteger(reps) && reps >= 1)) {
  console.error(`error BAD_OPTION: --reps must be a whole number ≥ 1, got "${values.reps}"`);
  Deno.exit(2);
}
if (values.all && !(values.caption && values.real)) {
  console.error(`error BAD_OPTION: --all needs --caption --real\n${USAGE}`);
  Deno.exit(2);
}
/** Options of --dtypes, refused with BAD_OPTION naming the flag. */
function dtypeOptions() {
  const maxImages = values["max-images"] === undefined ? undefined : Number(values["max-images"]);
  const split = values.split ?? "val";
  const bad = !values.model || !values.data
    ? "--dtypes needs --model DIR and --data FILE"
    : !["train", "val", "test"].includes(split)
    ? `--split must be train, val or test, got "${split}"`
    : maxImages !== undefined && !(Number.isSafeInteger(maxImages) && maxImages >= 1)
    ? `--max-images must be a whole number ≥ 1, got "${values["max-images"]}"`
    : undefined;
  if (bad) {
    console.error(`error BAD_OPTION: ${bad}\n${USAGE}`);
    Deno.exit(2);
  }
  return { model: values.model!, data: values.data!, split: split as SplitName, maxImages, reps };
}

if (values.dtypes) {
  const { benchDtypes } = await import("./dtypes.ts");
  const rows = await benchDtypes(dtypeOptions());
  const gpu = await getGpu();
  console.log(`adapter: ${gpu.adapterName} (f16: ${gpu.hasF16})`);
  table("dtypes", rows as unknown as Row[]);
  if (values.json) {
    await Deno.writeTextFile(
      values.json,
      JSON.stringify({ adapter: gpu.adapterName, dtypes: rows }, null, 2),
    );
    console.log(`\nwrote ${values.json}`);
  }
  Deno.exit(0);
}
const all = !values.kernels && !values.strategies && !values.caption && !values.eval &&
  !values.train;
const out: Record<string, unknown> = {};
const gpu = await getGpu();
out.adapter = gpu.adapterName;
console.log(`adapter: ${gpu.adapterName} (timestamps: ${gpu.hasTimestamps}, f16: ${gpu.hasF16})`);
if (values.kernels || all) {
  const rows = await benchKernels(gpu, reps);
  table("kernels", rows as unknown as Row[]);
  out.kernels = rows;
}
if (values.strategies || all) {
  const { benchStrategies } = await import("./strategies.ts");
  const rows = await benchStrategies(values.model, reps);
  table("decoding strategies", rows as unknown as Row[]);
  out.strategies = rows;
}
if (values.caption && values.real) {
  const { benchImage, benchRealModels } = await import("./real_caption.ts");
  const rows = await benchRealModels(await benchImage(), reps, values.all ?? false);
  table("real-size caption (20 tokens)", rows as unknown as Row[]);
  out.caption = rows;
} else if (values.caption || all) {
  const { benchCaption } = await import("./caption.ts");
  const rows = await benchCaption(reps);
  table("caption speed (20 tokens)", rows as unknown as Row[]);
  out.caption = rows;
}
if (values.eval || all) {
  const { benchEval } = await import("./eval.ts");
  const rows = await benchEval();
  table("COCO metrics", rows as unknown as Row[]);
  out.eval = rows;
}
if (values.train) {
  const { benchTrain } = await import("./train.ts");
  const rows = await benchTrain(values["train-real"] ?? false, reps);
  table("training steps", rows as unknown as Row[]);
  out.train = rows;
}
if (values.json) {
  const rows = values.kernels && !values.strategies && !values.eval ? out.kernels : out;
  await Deno.writeTextFile(values.json, JSON.stringify(rows, null, 2));
  console.log(`\nwrote ${values.json}`);
}
