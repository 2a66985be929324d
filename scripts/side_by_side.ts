/**
 * webcap and PyTorch side by side: reads the JSON of `deno task bench --json FILE` (webcap) and of
 * `python3 ../shared/tools/torch_caption_bench.py FILE` (PyTorch + transformers), both run on the
 * same GPU in the same call (`scripts/device_check.sh` does), and appends a markdown section to
 * `BENCHMARKS.md` in the current folder (then formats it with `deno fmt`): the GPU's name, the
 * date, per model and strategy webcap's ms, PyTorch's fp32 ms and their ratio, PyTorch's best
 * fp16 ms (its static KV cache where it ran), the peak memory of each; and the training step.
 * The section is printed too.
 *
 * ```sh
 * # from the repository root, after scripts/device_check.sh wrote $OUT/webcap.json, $OUT/torch.json
 * deno run -A scripts/side_by_side.ts $OUT/webcap.json $OUT/torch.json
 * ```
 *
 * Ratios are given only for webcap rows at the real sizes (a model name with "real sizes",
 * random weights as PyTorch's are): fixture rows are tiny models, listed without a ratio.
 * @module
 */
import { WebcapError } from "../src/errors.ts";

/** A webcap caption row: `bench --caption` (`ms`, `peakBytes`) or `--caption --real` (`wallMs`, `peakPoolMiB`). */
interface CaptionRow {
  model: string;
  strategy?: string;
  ms?: number;
  wallMs?: number;
  peakBytes?: number;
  peakPoolMiB?: number;
}

/** A webcap training row (`bench --train [--train-real]`). */
interface TrainRow {
  model: string;
  encoder: string;
  batch: number;
  tokens: number;
  stepMs: number;
  peakGpuMiB: number;
}

/** What `deno task bench --json` writes. */
interface WebcapBench {
  adapter: string;
  caption?: CaptionRow[];
  train?: TrainRow[];
}

/** `torch_caption_bench.py`'s figures of one model and dtype: ms by key, `peak_mem_mb`. */
type TorchFigures = Record<string, number | string>;

/** What `torch_caption_bench.py` writes: `gpu`, versions, and `"<model>:<dtype>"` figures. */
type TorchBench = Record<string, string | number | TorchFigures>;

/** torch_caption_bench.py's key of each strategy of `bench --caption`. */
const TORCH_KEY: Record<string, string> = {
  "greedy": "greedy20_b1_ms",
  "beam 3": "beam3_20_b1_ms",
  "beam 5": "beam5_20_b1_ms",
  "sampling": "sample20_b1_ms",
  "batch 8 greedy": "greedy20_b8_ms",
};

/** torch_caption_bench.py's model name of a webcap model name (real or fixture). */
function torchModel(model: string): string | undefined {
  if (model.startsWith("vit-gpt2")) return "vit-gpt2";
  if (model.startsWith("blip")) return "blip-base";
  return undefined;
}

const isReal = (model: string) => /real sizes/.test(model);
const MiB = 2 ** 20;

function fmt(x: number | undefined, digits = 1): string {
  return x === undefined || !Number.isFinite(x) ? "—" : x.toFixed(digits);
}

/** `torch[model:dtype][key]` when it is a number. */
function figure(torch: TorchBench, model: string, dtype: string, key: string): number | undefined {
  const v = (torch[`${model}:${dtype}`] as TorchFigures | undefined)?.[key];
  return typeof v === "number" ? v : undefined;
}

/** A markdown table (numbers right-aligned), or a line saying there is nothing to compare. */
function table(head: string[], rows: string[][], right: boolean[]): string {
  if (!rows.length) return "No rows of this kind in both files.";
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  const rule = head.map((_, i) => (right[i] ? "--:" : "---"));
  return [line(head), line(rule), ...rows.map(line)].join("\n");
}

/** One row per webcap caption row that PyTorch has a figure for. */
function captionTable(web: WebcapBench, torch: TorchBench): string {
  const rows: string[][] = [];
  for (const r of web.caption ?? []) {
    const model = torchModel(r.model), strategy = r.strategy ?? "greedy";
    const key = TORCH_KEY[strategy];
    if (!model || !key) continue;
    const ms = r.ms ?? r.wallMs, real = isReal(r.model);
    const fp32 = figure(torch, model, "float32", key);
    const fp16 = [
      figure(torch, model, "float16", key),
      key === "greedy20_b1_ms"
        ? figure(torch, model, "float16", "greedy20_b1_static_cache_ms")
        : undefined,
    ].filter((x) => x !== undefined);
    const best = fp16.length ? Math.min(...fp16) : undefined;
    const peak = r.peakPoolMiB ?? (r.peakBytes === undefined ? undefined : r.peakBytes / MiB);
    rows.push([
      real || / fixture/.test(r.model) ? r.model : `${r.model} (fixture)`,
      strategy,
      fmt(ms),
      fmt(fp32),
      real && ms !== undefined && fp32 ? fmt(ms / fp32, 2) : "—",
      fmt(best),
      real && ms !== undefined && best ? fmt(ms / best, 2) : "—",
      fmt(peak),
      fmt(figure(torch, model, "float32", "peak_mem_mb"), 0),
      fmt(figure(torch, model, "float16", "peak_mem_mb"), 0),
    ]);
  }
  const head = [
    "webcap model",
    "strategy",
    "webcap ms",
    "PyTorch fp32 ms",
    "webcap / fp32",
    "PyTorch fp16 best ms",
    "webcap / fp16 best",
    "webcap peak MiB",
    "PyTorch fp32 peak MiB",
    "PyTorch fp16 peak MiB",
  ];
  return table(head, rows, head.map((_, i) => i > 1));
}

/** webcap's training steps (whole model trained) beside PyTorch's fp32 step of the same batch. */
function trainTable(web: WebcapBench, torch: TorchBench): string {
  const rows: string[][] = [];
  for (const r of web.train ?? []) {
    const model = torchModel(r.model);
    if (!model || r.encoder !== "trained") continue;
    const fp32 = figure(torch, model, "train_fp32", `train_step_b${r.batch}_ms`);
    rows.push([
      r.model,
      String(r.batch),
      String(r.tokens),
      fmt(r.stepMs),
      fmt(fp32),
      isReal(r.model) && fp32 ? fmt(r.stepMs / fp32, 2) : "—",
      fmt(r.peakGpuMiB),
      fmt(figure(torch, model, "train_fp32", `train_peak_mem_b${r.batch}_mb`), 0),
    ]);
  }
  const head = [
    "webcap model",
    "batch",
    "webcap tokens",
    "webcap ms",
    "PyTorch fp32 ms (20 tokens)",
    "webcap / fp32",
    "webcap peak MiB",
    "PyTorch peak MiB",
  ];
  return table(head, rows, head.map((_, i) => i > 0));
}

/** The markdown section of `web` and `torch`, dated `date` (YYYY-MM-DD). */
function sideBySide(web: WebcapBench, torch: TorchBench, date: string): string {
  const gpu = String(torch.gpu ?? "unknown GPU");
  const versions = [`PyTorch ${torch.torch ?? "?"}`, `transformers ${torch.transformers ?? "?"}`];
  return [
    `## webcap and PyTorch side by side (${gpu}, ${date})`,
    "",
    `\`scripts/device_check.sh\` ran both on the same GPU in one call: \`deno task bench\` (webcap, ` +
    `adapter \`${web.adapter}\`) and \`torch_caption_bench.py\` (${versions.join(", ")}, eager, ` +
    "random weights at the real sizes). 20 new tokens forced, one image (eight for batch 8), " +
    "median ms. A ratio below 1: webcap is faster. Ratios are given for webcap rows at the real " +
    "sizes only; fixture rows are tiny models. PyTorch's fp16 best is the lower of its fp16 " +
    "time and, for greedy, its static KV cache; its peak memory is over all strategies of a " +
    "dtype, webcap's per row.",
    "",
    "### Captioning",
    "",
    captionTable(web, torch),
    "",
    "### Training step (AdamW, whole model)",
    "",
    trainTable(web, torch),
    "",
  ].join("\n");
}

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  try {
    const v = JSON.parse(await Deno.readTextFile(path));
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new WebcapError("MISSING_FILE", `${path}: no such file`);
    }
  }
  throw new WebcapError("BAD_CONFIG", `${path} is not the JSON object ${what} writes`);
}

async function main(args: string[]): Promise<void> {
  if (args.length !== 2) {
    throw new WebcapError(
      "BAD_OPTION",
      "usage: deno run -A scripts/side_by_side.ts WEBCAP.json TORCH.json (from the repository root)",
    );
  }
  const web = await readJson(args[0], "deno task bench --json") as unknown as WebcapBench;
  const torch = await readJson(args[1], "torch_caption_bench.py") as TorchBench;
  if (typeof web.adapter !== "string") {
    throw new WebcapError("BAD_CONFIG", `${args[0]} has no "adapter": not deno task bench's JSON`);
  }
  if (typeof torch.gpu !== "string") {
    throw new WebcapError(
      "BAD_CONFIG",
      `${args[1]} has no "gpu": not torch_caption_bench.py's JSON`,
    );
  }
  const target = "BENCHMARKS.md";
  const old = await Deno.readTextFile(target).catch(() => {
    throw new WebcapError("MISSING_FILE", `no ${target} here: run from the repository root`);
  });
  const section = sideBySide(web, torch, new Date().toISOString().slice(0, 10));
  await Deno.writeTextFile(target, `${old.trimEnd()}\n\n${section}`);
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", target] }).output();
  console.log(section);
}

try {
  await main(Deno.args);
} catch (e) {
  if (!(e instanceof WebcapError)) throw e;
  console.error(`error ${e.code}: ${e.message}`);
  Deno.exit(2);
}
