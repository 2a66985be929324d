/**
 * Captioning data sets for training: the Karpathy split file (`dataset_coco.json` layout:
 * `images[]` with `filepath`, `filename`, `split`, `sentences[].raw`; the image at
 * `IMAGES/filepath/filename`) and COCO `captions_*.json` (`images[]` with `id`, `file_name`;
 * `annotations[]` with `image_id`, `caption`) over an image folder. Entries are grouped into
 * train / val / test splits; images are decoded on the host ahead of the GPU
 * ({@link loadSplitImages}). A malformed file, an image without captions, a missing image or an
 * empty split is a `BAD_INPUT` / `MISSING_FILE` error naming the file and the entry.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { loadImage, type RgbImage } from "../image/decode.ts";

/** One image of a data set and its reference captions. */
export interface CaptionEntry {
  /** The image's path (`IMAGES/filepath/filename`), also its key for the encoder cache. */
  path: string;
  /** Its reference captions (raw text, at least one). */
  captions: string[];
}

/** The splits a data set names (Karpathy's `restval` counts as train). */
export type SplitName = "train" | "val" | "test";

/** A data set's entries by split. */
export type CaptionSplits = Record<SplitName, CaptionEntry[]>;

/** Options of {@link readCaptionData}. */
export interface ReadDataOptions {
  /** The image folder (default: the data file's folder). */
  images?: string;
  /** The split of every entry of a COCO file (default: from the file name, else "train"). */
  split?: SplitName;
}

type Json = Record<string, unknown>;

function bad(file: string, what: string): WebcapError {
  return new WebcapError("BAD_INPUT", `${file}: ${what}`);
}

function folderOf(file: string): string {
  const i = file.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : file.slice(0, i);
}

function join(...parts: string[]): string {
  return parts.filter((p) => p !== "" && p !== ".").join("/").replace(/\/+/g, "/") || ".";
}

function captionList(file: string, where: string, raw: unknown[]): string[] {
  const caps = raw.map((c, j) => {
    if (typeof c !== "string" || c.trim() === "") {
      throw bad(file, `${where}: caption ${j} is ${JSON.stringify(c)}, not a non-empty string`);
    }
    return c.trim();
  });
  if (caps.length === 0) throw bad(file, `${where} has no captions`);
  return caps;
}

/** Entries of a Karpathy split file (`images[]` with `filepath`, `filename`, `split`, `sentences`). */
function karpathy(file: string, json: Json, images: string): CaptionSplits {
  const splits: CaptionSplits = { train: [], val: [], test: [] };
  (json.images as unknown[]).forEach((img, i) => {
    const e = img as Json;
    const where = `images[${i}]`;
    if (typeof e?.filename !== "string" || !Array.isArray(e.sentences)) {
      throw bad(file, `${where} needs a "filename" and "sentences"`);
    }
    const split = e.split === "restval" ? "train" : e.split;
    if (split !== "train" && split !== "val" && split !== "test") {
      throw bad(
        file,
        `${where}: split ${JSON.stringify(e.split)} is not train, val, test or restval`,
      );
    }
    const raws = e.sentences.map((s: unknown) => (s as Json)?.raw);
    const filepath = typeof e.filepath === "string" ? e.filepath : "";
    splits[split].push({
      path: join(images, filepath, e.filename),
      captions: captionList(file, `${where} (${e.filename})`, raws),
    });
  });
  return splits;
}

/** The split a COCO captions file holds, from its name (`captions_val2014.json` → val). */
function splitOfName(file: string): SplitName {
  const name = file.slice(file.lastIndexOf("/") + 1);
  return (["val", "test"] as const).find((s) => name.includes(s)) ?? "train";
}

/** Entries of a COCO `captions_*.json` (`images[]` with `id`, `file_name`; `annotations[]`). */
function coco(file: string, json: Json, images: string, split: SplitName): CaptionSplits {
  if (!Array.isArray(json.annotations)) throw bad(file, `COCO "annotations" must be an array`);
  const caps = new Map<unknown, unknown[]>();
  json.annotations.forEach((a: Json, i: number) => {
    if (!a || (typeof a.image_id !== "number" && typeof a.image_id !== "string")) {
      throw bad(file, `annotations[${i}] has no image_id`);
    }
    caps.set(a.image_id, [...caps.get(a.image_id) ?? [], a.caption]);
  });
  const entries = (json.images as unknown[]).map((img, i) => {
    const e = img as Json;
    if (typeof e?.file_name !== "string") throw bad(file, `images[${i}] has no "file_name"`);
    const raw = caps.get(e.id) ?? [];
    return {
      path: join(images, e.file_name),
      captions: captionList(file, `images[${i}] (id ${e.id}, ${e.file_name})`, raw),
    };
  });
  return { train: [], val: [], test: [], [split]: entries };
}

/**
 * Read a Karpathy split file or a COCO captions file (told apart by `annotations`).
 * @throws WebcapError MISSING_FILE when the file cannot be read, BAD_INPUT when it is not one
 *   of the layouts or an entry is malformed (no file name, no or empty captions, unknown split).
 */
export async function readCaptionData(
  file: string,
  opts: ReadDataOptions = {},
): Promise<CaptionSplits> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new WebcapError("MISSING_FILE", `data file ${file}: ${(e as Error).message}`);
  }
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad(file, `not JSON (${(e as Error).message})`);
  }
  if (!json || !Array.isArray(json.images)) {
    throw bad(file, `a data file needs an "images" array (Karpathy split file or COCO captions)`);
  }
  const images = opts.images ?? folderOf(file);
  return "annotations" in json
    ? coco(file, json, images, opts.split ?? splitOfName(file))
    : karpathy(file, json, images);
}

/** The entries of `split`, refused when there are none. */
export function splitEntries(splits: CaptionSplits, split: SplitName, source: string) {
  const entries = splits[split];
  if (entries.length === 0) {
    throw new WebcapError("BAD_INPUT", `${source}: the ${split} split has no images`);
  }
  return entries;
}

/**
 * Decode the images of `entries` on the host (in order, `concurrency` at a time).
 * @throws WebcapError MISSING_FILE naming an image that cannot be read, BAD_IMAGE one that
 *   does not decode.
 */
export async function loadSplitImages(
  entries: readonly CaptionEntry[],
  concurrency = 8,
): Promise<RgbImage[]> {
  const out = new Array<RgbImage>(entries.length);
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const i = next++;
      out[i] = await loadImage(entries[i].path);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, entries.length) }, worker));
  return out;
}
