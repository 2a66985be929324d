/**
 * `deno task quantize DIR --dtype q8|q4 [--group-size G] --out OUT`: write a quantized copy of
 * the model folder DIR (f32, f16 or bf16 weights, safetensors or torch) to OUT: its weights as
 * one `model.safetensors` in the layout of the README ("Quantized model folders": the weights of
 * matmuls, embeddings and the patch projection as `<name>` I8/U8, `<name>.qscale` and
 * `<name>.qoffset` F16, every other float tensor in F16 (f32 again once loaded); `__metadata__`
 * naming the scheme, group size, original dtype and layout version), and every
 * other file of the folder copied. Loading OUT with the same dtype reads the quantized tensors as
 * stored. The model is loaded once (on the GPU) to learn which tensors are quantized and how.
 * @module
 */
import { parseArgs } from "node:util";
import { getGpu } from "../src/gpu/device.ts";
import { WebcapError } from "../src/errors.ts";
import { loadCaptionModel } from "../src/arch/load.ts";
import { openWeights } from "../src/io/weights.ts";
import { DTYPE_BYTES, numelOf } from "../src/io/dtype.ts";
import { writeSafetensors } from "../src/io/safetensors_write.ts";
import {
  DEFAULT_GROUP_SIZE,
  QUANT_METADATA,
  QUANT_VERSION,
  quantizedTensors,
} from "../src/nn/quant.ts";
import type { QuantScheme } from "../src/shaders/quant/qmatrix.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { dtype: { type: "string" }, "group-size": { type: "string" }, out: { type: "string" } },
  allowPositionals: true,
});
const groupSize = Number(values["group-size"] ?? DEFAULT_GROUP_SIZE);
if (
  positionals.length !== 1 || !values.out || (values.dtype !== "q8" && values.dtype !== "q4") ||
  !Number.isInteger(groupSize)
) {
  console.error("usage: deno task quantize DIR --dtype q8|q4 [--group-size G] --out OUT");
  Deno.exit(2);
}
/** The weight files `openWeights` reads, left out of the copy: OUT has its own. */
const WEIGHT_FILE = /^(model|pytorch_model)\b.*\.(safetensors|bin|pt|pth)$|\.index\.json$/;

/** Quantize `dir` into `out`; returns the bytes of the float and the quantized weights. */
async function quantizeFolder(dir: string, out: string, scheme: QuantScheme) {
  const gpu = await getGpu();
  const model = await loadCaptionModel(gpu, dir, { dtype: scheme, groupSize });
  const params = [...model.params];
  model.dispose();
  const store = await openWeights(dir);
  try {
    const tensors = await quantizedTensors(store, params);
    const quantized = params.filter((p) => p.quant && store.has(p.name));
    if (quantized.length === 0) {
      throw new WebcapError("BAD_WEIGHTS", `${dir}: no tensor of this model is quantized`);
    }
    const original = [...new Set(quantized.map((p) => store.info(p.name).dtype))].join(",");
    await Deno.mkdir(out, { recursive: true });
    await writeSafetensors(`${out}/model.safetensors`, tensors, {
      format: "pt",
      [QUANT_METADATA.scheme]: scheme,
      [QUANT_METADATA.groupSize]: String(scheme === "q8" ? 0 : groupSize),
      [QUANT_METADATA.originalDtype]: original,
      [QUANT_METADATA.version]: String(QUANT_VERSION),
    });
    const before = store.names().reduce((s, n) => {
      const { dtype, shape } = store.info(n);
      return s + numelOf(shape) * DTYPE_BYTES[dtype];
    }, 0);
    return { before, after: (await Deno.stat(`${out}/model.safetensors`)).size };
  } finally {
    store.close();
  }
}

/** Copy `dir` into `out`, but the files of its top level that `skip` matches. */
async function copyFolder(dir: string, out: string, skip?: RegExp): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && skip?.test(e.name)) continue;
    if (e.isDirectory) {
      await Deno.mkdir(`${out}/${e.name}`, { recursive: true });
      await copyFolder(`${dir}/${e.name}`, `${out}/${e.name}`);
    } else await Deno.copyFile(`${dir}/${e.name}`, `${out}/${e.name}`);
  }
}

try {
  const [dir, out] = [positionals[0].replace(/\/$/, ""), values.out.replace(/\/$/, "")];
  const { before, after } = await quantizeFolder(dir, out, values.dtype);
  await copyFolder(dir, out, WEIGHT_FILE);
  const pct = ((100 * after) / before).toFixed(1);
  console.log(`${out}: ${values.dtype} weights, ${after} B (${pct} % of ${before} B as stored)`);
} catch (e) {
  if (e instanceof WebcapError) {
    console.error(`error ${e.code}: ${e.message}`);
    Deno.exit(2);
  }
  throw e;
}
