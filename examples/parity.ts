/**
 * `deno task parity DIR [--dtype f16] [--json]`: compare a model folder in the layout of
 * `shared/fixtures/hf/<model>/` with its `reference.safetensors` (relative L2 error per tensor)
 * and run every case of its `generate.json` (pass/fail per case). Exits 1 on any failure or a
 * tensor error above its bound: 1e-3 for logits, 1e-4 for hidden states and other tensors. With
 * `--dtype f16` each tensor is held to the rounding floor (the error of the float32 path run on
 * f16-rounded weights) plus that bound, and sequence mismatches do not fail the run.
 * @module
 */
import { parseArgs } from "node:util";
import { getGpu } from "../src/gpu/device.ts";
import { runParity } from "../src/captioner/parity.ts";
import { WebcapError } from "../src/errors.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { dtype: { type: "string" }, json: { type: "boolean" } },
  allowPositionals: true,
});
if (
  positionals.length !== 1 || (values.dtype && values.dtype !== "f32" && values.dtype !== "f16")
) {
  console.error("usage: deno task parity DIR [--dtype f32|f16] [--json]");
  Deno.exit(2);
}
const dtype = (values.dtype ?? "f32") as "f32" | "f16";
try {
  const gpu = await getGpu();
  const r = await runParity(gpu, positionals[0].replace(/\/$/, ""), { dtype });
  if (values.json) console.log(JSON.stringify(r));
  else {
    console.log(`${r.dir}: ${r.architecture} (${dtype}, ${gpu.adapterName})`);
    for (const t of r.tensors) {
      const floor = t.floor === undefined ? "" : `floor ${t.floor.toExponential(3)} + `;
      const limit = `(≤ ${floor}${t.bound.toExponential(0)})`;
      console.log(
        `  tensor ${t.name.padEnd(28)} rel L2 ${t.relL2.toExponential(3)} ${limit}  ${
          t.pass ? "ok" : "FAIL"
        }`,
      );
    }
    for (const c of r.cases) {
      console.log(`  case   ${c.name.padEnd(28)} ${c.status.toUpperCase()}  ${c.detail}`);
    }
  }
  const tensorFail = r.tensors.some((t) => !t.pass);
  const caseFail = dtype === "f32" && r.cases.some((c) => c.status === "fail");
  Deno.exit(tensorFail || caseFail ? 1 : 0);
} catch (e) {
  if (e instanceof WebcapError) {
    console.error(`error ${e.code}: ${e.message}`);
    Deno.exit(2);
  }
  throw e;
}
