/**
 * The dtype table of one model: for f32, f16, q8 and q4, the size of its weights file (bytes and
 * % of f32), the COCO metrics of its greedy captions on one split of a Karpathy file (the names
 * `deno task eval` prints) and its decode speed (ms per caption, greedy, 20 tokens forced, one
 * image, median of `reps` after a warm-up). f16, q8 and q4 are written by `quantizeFolder` (as
 * `deno task quantize` writes them) into a temporary folder and loaded from it, so the quality
 * and the speed are those of the file a browser downloads. Where the adapter lacks `shader-f16`
 * the f16 file is held in f32 (`held` says so).
 * @module
 */
import { Captioner } from "../src/captioner/captioner.ts";
import { getGpu } from "../src/gpu/device.ts";
import { evaluatePaired } from "../src/eval/coco.ts";
import { openWeights } from "../src/io/weights.ts";
import {
  loadSplitImages,
  readCaptionData,
  splitEntries,
  type SplitName,
} from "../src/train/data.ts";
import type { WeightDtype } from "../src/nn/params.ts";
import { quantizeFolder } from "../examples/quantize.ts";

/** One row of the dtype table. */
export interface DtypeRow {
  dtype: string;
  /** How the weights were held on the GPU. */
  held: WeightDtype;
  /** The weights file's bytes. */
  bytes: number;
  /** `bytes` as a percentage of f32's. */
  pctOfF32: number;
  /** Median ms of one greedy caption of 20 tokens. */
  msPerCaption: number;
  /** COCO metrics by name (`Bleu_4`, `METEOR_noparaphrase`, `ROUGE_L`, `CIDEr`, …). */
  [metric: string]: string | number;
}

/** Options of {@link benchDtypes}. */
export interface DtypeBenchOptions {
  /** The model folder (f32 weights). */
  model: string;
  /** A Karpathy split file (or COCO captions file). */
  data: string;
  /** Default "val". */
  split?: SplitName;
  /** Caption at most this many images of the split. */
  maxImages?: number;
  /** Timed captions per dtype (median). */
  reps?: number;
}

const DTYPES = ["f32", "f16", "q8", "q4"] as const;
const TOKENS = 20;

/** The weights file of a model folder (the one `openWeights` opens). */
async function weightsBytes(dir: string): Promise<number> {
  const store = await openWeights(dir);
  store.close();
  return (await Deno.stat(store.source)).size;
}

/** COCO metrics of greedy captions and the median ms of one 20-token caption. */
async function measure(
  dir: string,
  held: WeightDtype,
  split: { ids: string[]; refs: string[][]; images: Awaited<ReturnType<typeof loadSplitImages>> },
  reps: number,
) {
  const captioner = await Captioner.fromPretrained(dir, { dtype: held });
  try {
    const greedy = { numBeams: 1, doSample: false, maxNewTokens: TOKENS };
    const candidates: string[] = [];
    for (let i = 0; i < split.images.length; i += 8) {
      const r = await captioner.caption(split.images.slice(i, i + 8), greedy);
      candidates.push(...r.map((c) => c.captions[0]?.text ?? ""));
    }
    const { metrics } = await evaluatePaired(
      { ids: split.ids, refs: split.refs, candidates },
      { metrics: ["BLEU", "METEOR", "ROUGE_L", "CIDEr"] },
    );
    const one = [split.images[0]], forced = { ...greedy, minNewTokens: TOKENS };
    await captioner.caption(one, forced); // warm-up
    const times: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await captioner.caption(one, forced);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return { metrics, ms: times[Math.floor(times.length / 2)] };
  } finally {
    captioner.dispose();
  }
}

/** f32, f16, q8 and q4 of one model: file size, greedy-caption metrics, decode speed. */
export async function benchDtypes(o: DtypeBenchOptions): Promise<DtypeRow[]> {
  const entries = splitEntries(await readCaptionData(o.data), o.split ?? "val", o.data)
    .slice(0, o.maxImages);
  const split = {
    ids: entries.map((e) => e.path),
    refs: entries.map((e) => e.captions),
    images: await loadSplitImages(entries),
  };
  const tmp = await Deno.makeTempDir({ prefix: "webcap-dtypes-" });
  const { hasF16 } = await getGpu();
  try {
    const rows: DtypeRow[] = [];
    let f32Bytes = 0;
    for (const dtype of DTYPES) {
      const dir = dtype === "f32" ? o.model : `${tmp}/${dtype}`;
      if (dtype !== "f32") await quantizeFolder(o.model, dir, dtype);
      const bytes = await weightsBytes(dir);
      if (dtype === "f32") f32Bytes = bytes;
      const held = dtype === "f16" && !hasF16 ? "f32" : dtype;
      const { metrics, ms } = await measure(dir, held, split, o.reps ?? 3);
      rows.push({
        dtype,
        held,
        bytes,
        pctOfF32: (100 * bytes) / f32Bytes,
        msPerCaption: ms,
        ...metrics,
      });
    }
    return rows;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}
