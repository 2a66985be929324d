/**
 * `deno task quantize DIR --dtype q8|q4|f16 [--group-size G] --out OUT`: write a quantized copy of
 * the model folder DIR (f32, f16 or bf16 weights, safetensors or torch) to OUT: its weights as
 * one `model.safetensors` in the layout of the README ("Quantized model folders": the weights of
 * matmuls, embeddings and the patch projection as `<name>` I8/U8, `<name>.qscale` and
 * `<name>.qoffset` F16, every other float tensor in F16 (f32 again once loaded); `__metadata__`
 * naming the scheme, group size, original dtype and layout version), and every other file of the
 * folder copied. `f16` writes every float tensor in F16, nothing quantized. Loading OUT with the
 * same dtype reads the quantized tensors as stored. The model is loaded once (on the GPU) to
 * learn which tensors are quantized and how. `quantizeFolder` is the same for `bench --dtypes`.
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
import type { Param } from "../src/nn/params.ts";
import type { QuantScheme } from "../src/shaders/quant/qmatrix.ts";

/** The weight files `openWeights` reads, left out of the copy: OUT has its own. */
const WEIGHT_FILE = /^(model|pytorch_model)\b.*\.(safetensors|bin|pt|pth)$|\.index\.json$/;

/** The parameters of `dir`'s model loaded as `scheme` (which tensors are quantized, and how). */
async function quantizedParams(dir: string, scheme: QuantScheme, groupSize: number) {
  const model = await loadCaptionModel(await getGpu(), dir, { dtype: scheme, groupSize });
  const params = [...model.params];
  model.dispose();
  return params;
}

/** Bytes of a store's tensors as stored (its header aside). */
function storedBytes(store: Awaited<ReturnType<typeof openWeights>>): number {
  return store.names().reduce((s, n) => {
    const { dtype, shape } = store.info(n);
    return s + numelOf(shape) * DTYPE_BYTES[dtype];
  }, 0);
}

/** Write the weights of `dir` as `dtype` to `out/model.safetensors`. */
async function writeWeights(
  dir: string,
  out: string,
  dtype: QuantScheme | "f16",
  params: readonly Param[],
  groupSize: number,
) {
  const store = await openWeights(dir);
  try {
    const tensors = await quantizedTensors(store, params);
    const quantized = params.filter((p) => p.quant && store.has(p.name));
    if (dtype !== "f16" && quantized.length === 0) {
      throw new WebcapError("BAD_WEIGHTS", `${dir}: no tensor of this model is quantized`);
    }
    const original = [...new Set(quantized.map((p) => store.info(p.name).dtype))].join(",");
    await Deno.mkdir(out, { recursive: true });
    await writeSafetensors(`${out}/model.safetensors`, tensors, {
      format: "pt",
      ...(dtype === "f16" ? {} : {
        [QUANT_METADATA.scheme]: dtype,
        [QUANT_METADATA.groupSize]: String(dtype === "q8" ? 0 : groupSize),
        [QUANT_METADATA.originalDtype]: original,
        [QUANT_METADATA.version]: String(QUANT_VERSION),
      }),
    });
    return {
      before: storedBytes(store),
      after: (await Deno.stat(`${out}/model.safetensors`)).size,
    };
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

/**
 * Write model folder `dir` to `out` with its weights in `dtype`; returns the bytes of its
 * weights as stored and of the new `model.safetensors`.
 */
export async function quantizeFolder(
  dir: string,
  out: string,
  dtype: QuantScheme | "f16",
  groupSize = DEFAULT_GROUP_SIZE,
): Promise<{ before: number; after: number }> {
  const params = dtype === "f16" ? [] : await quantizedParams(dir, dtype, groupSize);
  const sizes = await writeWeights(dir, out, dtype, params, groupSize);
  await copyFolder(dir, out, WEIGHT_FILE);
  return sizes;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: {
      dtype: { type: "string" },
      "group-size": { type: "string" },
      out: { type: "string" },
    },
    allowPositionals: true,
  });
  const groupSize = Number(values["group-size"] ?? DEFAULT_GROUP_SIZE);
  const dtype = values.dtype;
  if (
    positionals.length !== 1 || !values.out ||
    (dtype !== "q8" && dtype !== "q4" && dtype !== "f16") ||
    !Number.isInteger(groupSize)
  ) {
    console.error("usage: deno task quantize DIR --dtype q8|q4|f16 [--group-size G] --out OUT");
    return 2;
  }
  try {
    const [dir, out] = [positionals[0].replace(/\/$/, ""), values.out.replace(/\/$/, "")];
    const { before, after } = await quantizeFolder(dir, out, dtype, groupSize);
    const pct = ((100 * after) / before).toFixed(1);
    console.log(`${out}: ${dtype} weights, ${after} B (${pct} % of ${before} B as stored)`);
    return 0;
  } catch (e) {
    if (!(e instanceof WebcapError)) throw e;
    console.error(`error ${e.code}: ${e.message}`);
    return 2;
  }
}

if (import.meta.main) Deno.exit(await main());
