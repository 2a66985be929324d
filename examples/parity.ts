/**
 * `deno task parity DIR [--dtype f16|q8|q4] [--group-size G] [--json]`: compare a model folder in the layout of
 * `shared/fixtures/hf/<model>/` with its `reference.safetensors` (relative L2 error per tensor)
 * and run every case of its `generate.json` (pass/fail per case). Exits 1 on any failure or a
 * tensor error above its bound: 1e-3 for logits, 1e-4 for hidden states and other tensors. With
 * `--dtype f16` each tensor is held to the rounding floor (the error of the float32 path run on
 * f16-rounded weights) plus that bound, and sequence mismatches do not fail the run; with
 * `--dtype q8|q4` (q4 groups of `--group-size`, default 32) the floor is the float32 path run on
 * the quantized-and-dequantized weights, the same way.
 *
 * `deno task parity DIR --train [--json]`: gradients of the CE and SCST losses against the
 * folder's `train-reference.safetensors` (`src/train/parity_train.ts`); exits 1 when a tensor is
 * off by more than 1e-3 relative L2 or a loss by more than 1e-5 relative.
 * @module
 */
import { parseArgs } from "node:util";
import { getGpu } from "../src/gpu/device.ts";
import { runParity } from "../src/captioner/parity.ts";
import { WebcapError } from "../src/errors.ts";
import { runTrainParity } from "../src/train/parity_train.ts";
import type { WeightDtype } from "../src/nn/params.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    dtype: { type: "string" },
    "group-size": { type: "string" },
    json: { type: "boolean" },
    train: { type: "boolean" },
  },
  allowPositionals: true,
});
const DTYPES = ["f32", "f16", "q8", "q4"];
const groupSize = values["group-size"] === undefined ? undefined : Number(values["group-size"]);
if (
  positionals.length !== 1 || (values.dtype && !DTYPES.includes(values.dtype)) ||
  (groupSize !== undefined && !Number.isInteger(groupSize))
) {
  console.error(
    "usage: deno task parity DIR [--dtype f32|f16|q8|q4] [--group-size G] [--json] | " +
      "DIR --train [--json]",
  );
  Deno.exit(2);
}
const dtype = (values.dtype ?? "f32") as WeightDtype;

/** `--train`: print (or give as JSON) every tensor's and both losses' errors; the exit code. */
async function train(dir: string): Promise<number> {
  const gpu = await getGpu();
  const r = await runTrainParity(gpu, dir);
  if (values.json) {
    const { ce, scst } = r.losses;
    const losses = {
      ce: { value: ce.value, reference: ce.reference },
      scst: { value: scst.value, reference: scst.reference },
    };
    console.log(JSON.stringify({ tensors: r.tensors, losses }));
  } else {
    console.log(`${r.dir}: training gradients (${gpu.adapterName})`);
    for (const t of r.tensors) {
      const verdict = t.pass ? "ok" : "FAIL";
      console.log(`  tensor ${t.name.padEnd(72)} rel L2 ${t.relL2.toExponential(3)}  ${verdict}`);
    }
    for (const [name, l] of Object.entries(r.losses)) {
      console.log(
        `  loss   ${name.padEnd(6)} ${l.value} (reference ${l.reference})  ${
          l.pass ? "ok" : "FAIL"
        }`,
      );
    }
  }
  const fail = r.tensors.some((t) => !t.pass) || !r.losses.ce.pass || !r.losses.scst.pass;
  return fail ? 1 : 0;
}

try {
  if (values.train) {
    if (values.dtype && values.dtype !== "f32") {
      console.error("--train runs in f32 only");
      Deno.exit(2);
    }
    Deno.exit(await train(positionals[0].replace(/\/$/, "")));
  }
  const gpu = await getGpu();
  const r = await runParity(gpu, positionals[0].replace(/\/$/, ""), { dtype, groupSize });
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
