/**
 * `deno task bench [--kernels] [--strategies] [--eval] [--json FILE] [--reps N]`
 * Prints a table per group and writes all rows as JSON. With no group flag, runs them all.
 * @module
 */
import { parseArgs } from "node:util";
import { getGpu } from "../src/gpu/device.ts";
import { benchKernels } from "./kernels.ts";

type Row = Record<string, string | number | undefined>;

function table(title: string, rows: Row[]): void {
  if (!rows.length) return;
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const late = ["timer"]; // descriptive columns after the numbers
  const cols = [...keys.filter((k) => !late.includes(k)), ...keys.filter((k) => late.includes(k))];
  const fmt = (v: unknown) =>
    typeof v === "number"
      ? (Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4))
      : String(v ?? "");
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => fmt(r[c]).length)));
  console.log(`\n## ${title}`);
  console.log(cols.map((c, i) => c.padEnd(widths[i])).join("  "));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(cols.map((c, i) => fmt(r[c]).padEnd(widths[i])).join("  "));
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    kernels: { type: "boolean" },
    strategies: { type: "boolean" },
    eval: { type: "boolean" },
    json: { type: "string" },
    reps: { type: "string" },
    model: { type: "string" },
  },
});
const all = !values.kernels && !values.strategies && !values.eval;
const reps = Number(values.reps ?? 3);
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
if (values.eval || all) {
  const { benchEval } = await import("./eval.ts");
  const rows = await benchEval();
  table("COCO metrics", rows as unknown as Row[]);
  out.eval = rows;
}
if (values.json) {
  const rows = values.kernels && !values.strategies && !values.eval ? out.kernels : out;
  await Deno.writeTextFile(values.json, JSON.stringify(rows, null, 2));
  console.log(`\nwrote ${values.json}`);
}
