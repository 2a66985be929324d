/**
 * Captioning data sets for training, read into train / val / test splits:
 * - the Karpathy split file (`dataset_coco.json` layout: `images[]` with `filepath`, `filename`,
 *   `split`, `sentences[].raw`; the image at `IMAGES/filepath/filename`);
 * - COCO `captions_*.json` (`images[]` with `id`, `file_name`; `annotations[]` with `image_id`,
 *   `caption`) over an image folder;
 * - Flickr8k / Flickr30k caption files: `Flickr8k.token.txt` and `results_20130124.token`
 *   (`image.jpg#0<TAB>caption`), Flickr30k's `results.csv` (`image_name| comment_number| comment`);
 * - a folder of images, each with a `.txt` of captions (one per line) beside it.
 *
 * Files that name no split take it from a Karpathy split file (`splitFile`, e.g.
 * `dataset_flickr8k.json`), else from the standard `Flickr_8k.{train,dev,test}Images.txt` lists
 * beside the data file, else from seeded fractions (`split: [0.9, 0.05, 0.05]`). Missing images
 * and bad captions (empty, or text that is not UTF-8) are `BAD_INPUT` / `MISSING_FILE` errors
 * naming the file and the entry, or skipped and counted (`missing`, `badCaptions`: "skip").
 * Images are decoded on the host ahead of the GPU ({@link loadSplitImages}).
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

/** What a read left out under the "skip" policies, and images no split list names. */
export interface SkipCounts {
  /** Entries whose image file does not exist. */
  missingImages: number;
  /** Captions that are empty (whitespace only), and images left with none. */
  emptyCaptions: number;
  /** Caption lines or files that are not UTF-8. */
  notUtf8: number;
  /** Images that the split file or lists do not name. */
  unsplit: number;
}

/** A data set's entries by split, and what was skipped. */
export interface CaptionSplits {
  /** Training entries (Karpathy's `restval` included). */
  train: CaptionEntry[];
  /** Validation entries (Flickr's `dev` list). */
  val: CaptionEntry[];
  /** Test entries. */
  test: CaptionEntry[];
  /** What was left out. */
  skipped: SkipCounts;
}

/** Options of {@link readCaptionData}. */
export interface ReadDataOptions {
  /** The image folder (default: the data file's folder; for an image folder, itself). */
  images?: string;
  /** The split of every entry of a COCO file (default: from the file name, else "train"). */
  split?: SplitName | readonly [number, number, number];
  /** A Karpathy split file whose `images[].filename` / `split` give a caption file's splits. */
  splitFile?: string;
  /** Seed of the fractional split (default 0). */
  seed?: number;
  /** An image that does not exist: "error" (default, MISSING_FILE) or "skip" (counted). */
  missing?: "skip" | "error";
  /** An empty caption or text that is not UTF-8: "error" (default, BAD_INPUT) or "skip". */
  badCaptions?: "skip" | "error";
}

type Json = Record<string, unknown>;

/** The image files of a folder data set. */
const IMAGE_EXT = /\.(jpe?g|png|webp|bmp|tiff?|gif)$/i;

/** The standard Flickr8k split lists, looked for beside the data file. */
const FLICKR_LISTS = [
  ["train", "Flickr_8k.trainImages.txt"],
  ["val", "Flickr_8k.devImages.txt"],
  ["test", "Flickr_8k.testImages.txt"],
] as const;

function bad(file: string, what: string): WebcapError {
  return new WebcapError("BAD_INPUT", `${file}: ${what}`);
}

function folderOf(file: string): string {
  const i = file.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : file.slice(0, i);
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function join(...parts: string[]): string {
  return parts.filter((p) => p !== "" && p !== ".").join("/").replace(/\/+/g, "/") || ".";
}

function noSkips(): SkipCounts {
  return { missingImages: 0, emptyCaptions: 0, notUtf8: 0, unsplit: 0 };
}

/** A permutation of 0..n−1 from `seed` (xorshift; the same seed gives the same order). */
export function permutation(n: number, seed: number): number[] {
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    x ^= x << 13, x >>>= 0, x ^= x >>> 17, x ^= x << 5, x >>>= 0;
    const j = x % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Reads one data set: the policies, and what they skipped. */
class Reader {
  readonly skipped = noSkips();
  constructor(readonly opts: ReadDataOptions) {}

  /** `raw`'s captions trimmed; an empty one (or none) refused or skipped by `badCaptions`. */
  captions(file: string, where: string, raw: unknown[]): string[] {
    const caps = raw.flatMap((c, j) => {
      if (typeof c === "string" && c.trim() !== "") return [c.trim()];
      this.badCaption(
        "emptyCaptions",
        file,
        `${where}: caption ${j} is ${JSON.stringify(c)}, not a non-empty string`,
      );
      return [];
    });
    if (caps.length === 0) this.badCaption("emptyCaptions", file, `${where} has no captions`);
    return caps;
  }

  badCaption(kind: "emptyCaptions" | "notUtf8", file: string, what: string): void {
    if (this.opts.badCaptions !== "skip") {
      throw bad(file, `${what} (skip such captions with badCaptions "skip", --bad-captions skip)`);
    }
    this.skipped[kind]++;
  }

  /** `entries` whose image exists (a missing one refused or skipped by `missing`). */
  async existing(source: string, entries: CaptionEntry[]): Promise<CaptionEntry[]> {
    const found = await Promise.all(entries.map((e) => isFile(e.path)));
    const missing = entries.filter((_, i) => !found[i]);
    if (missing.length && this.opts.missing !== "skip") {
      throw new WebcapError(
        "MISSING_FILE",
        `${source}: image ${missing[0].path} does not exist (${missing.length} missing in all; ` +
          `skip them with missing "skip", --missing skip)`,
      );
    }
    this.skipped.missingImages += missing.length;
    return entries.filter((_, i) => found[i]);
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return false;
    throw e;
  }
}

async function readBytes(file: string, what: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(file);
  } catch (e) {
    throw new WebcapError("MISSING_FILE", `${what} ${file}: ${(e as Error).message}`);
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** `bytes` as UTF-8 text, or undefined when they are not UTF-8. */
function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** The lines of `bytes` (a final newline ends the last line), each decoded on its own. */
function utf8Lines(bytes: Uint8Array): (string | undefined)[] {
  const out: (string | undefined)[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i < bytes.length && bytes[i] !== 10) continue;
    if (i === bytes.length && start === i) break;
    const line = decodeUtf8(bytes.subarray(start, i));
    out.push(line?.replace(/\r$/, ""));
    start = i + 1;
  }
  return out;
}

/** Whether `bytes` start (after white space) with `{`: a JSON data file. */
function looksJson(bytes: Uint8Array): boolean {
  const i = bytes.findIndex((b) => b !== 32 && b !== 9 && b !== 10 && b !== 13);
  return bytes[i] === 123;
}

function parseJson(file: string, bytes: Uint8Array): Json {
  const text = decodeUtf8(bytes);
  if (text === undefined) throw bad(file, "not UTF-8 text");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw bad(file, `not JSON (${(e as Error).message})`);
  }
}

/** The split a Karpathy entry names (`restval` → train). */
function karpathySplit(file: string, where: string, split: unknown): SplitName {
  const s = split === "restval" ? "train" : split;
  if (s === "train" || s === "val" || s === "test") return s;
  throw bad(file, `${where}: split ${JSON.stringify(split)} is not train, val, test or restval`);
}

/** Entries of a Karpathy split file (`images[]` with `filepath`, `filename`, `split`, `sentences`). */
function karpathy(r: Reader, file: string, json: Json, images: string): SplitEntries {
  const splits: SplitEntries = { train: [], val: [], test: [] };
  (json.images as unknown[]).forEach((img, i) => {
    const e = img as Json;
    const where = `images[${i}]`;
    if (typeof e?.filename !== "string" || !Array.isArray(e.sentences)) {
      throw bad(file, `${where} needs a "filename" and "sentences"`);
    }
    const split = karpathySplit(file, where, e.split);
    const raws = e.sentences.map((s: unknown) => (s as Json)?.raw);
    const filepath = typeof e.filepath === "string" ? e.filepath : "";
    const captions = r.captions(file, `${where} (${e.filename})`, raws);
    if (captions.length) splits[split].push({ path: join(images, filepath, e.filename), captions });
  });
  return splits;
}

type SplitEntries = Omit<CaptionSplits, "skipped">;

/** The split a COCO captions file holds, from its name (`captions_val2014.json` → val). */
function splitOfName(file: string): SplitName {
  const name = baseName(file);
  return (["val", "test"] as const).find((s) => name.includes(s)) ?? "train";
}

/** Entries of a COCO `captions_*.json` (`images[]` with `id`, `file_name`; `annotations[]`). */
function coco(r: Reader, file: string, json: Json, images: string): CaptionEntry[] {
  if (!Array.isArray(json.annotations)) throw bad(file, `COCO "annotations" must be an array`);
  const caps = new Map<unknown, unknown[]>();
  json.annotations.forEach((a: Json, i: number) => {
    if (!a || (typeof a.image_id !== "number" && typeof a.image_id !== "string")) {
      throw bad(file, `annotations[${i}] has no image_id`);
    }
    caps.set(a.image_id, [...caps.get(a.image_id) ?? [], a.caption]);
  });
  return (json.images as unknown[]).flatMap((img, i) => {
    const e = img as Json;
    if (typeof e?.file_name !== "string") throw bad(file, `images[${i}] has no "file_name"`);
    const where = `images[${i}] (id ${e.id}, ${e.file_name})`;
    const captions = r.captions(file, where, caps.get(e.id) ?? []);
    return captions.length ? [{ path: join(images, e.file_name), captions }] : [];
  });
}

/**
 * Captions by image name of a Flickr caption file: `name#k<TAB>caption` lines, or
 * `image_name| comment_number| comment` rows after that header (a row whose second `|` is a
 * space, as one of Flickr30k's is, reads the same). A line that is not UTF-8 or holds an empty
 * caption is refused or skipped by `badCaptions`.
 */
function flickr(r: Reader, file: string, bytes: Uint8Array): Map<string, unknown[]> {
  const lines = utf8Lines(bytes);
  const csv = /^image_name\s*\|/.test(lines[0] ?? "");
  const caps = new Map<string, unknown[]>();
  lines.forEach((line, i) => {
    if (line === undefined) return r.badCaption("notUtf8", file, `line ${i + 1} is not UTF-8`);
    if ((csv && i === 0) || line.trim() === "") return;
    const m = csv
      ? /^([^|]+)\|\s*\d+(?:\s*\||\s)(.*)$/.exec(line)
      : /^([^\t#]+)#\d+\t(.*)$/.exec(line);
    if (!m) {
      const layout = csv ? "image_name| comment_number| comment" : "image.jpg#0<TAB>caption";
      throw bad(file, `line ${i + 1} is not "${layout}": ${JSON.stringify(line.slice(0, 80))}`);
    }
    const name = m[1].trim();
    caps.set(name, [...caps.get(name) ?? [], m[2]]);
  });
  return caps;
}

/** Captions by image path of a folder of images with a `.txt` beside each (recursively). */
async function imageFolder(r: Reader, dir: string): Promise<Map<string, unknown[]>> {
  const caps = new Map<string, unknown[]>();
  for (const image of await imagesUnder(dir)) {
    const txt = image.replace(/\.[^.]+$/, ".txt");
    if (!(await isFile(txt))) {
      r.badCaption("emptyCaptions", txt, `no captions for ${image}`);
      continue;
    }
    const lines = utf8Lines(await readBytes(txt, "captions file"));
    if (lines.some((l) => l === undefined)) {
      r.badCaption("notUtf8", txt, "not UTF-8 text");
      continue;
    }
    caps.set(image, lines);
  }
  return caps;
}

/** Image files under `dir`, sorted. */
async function imagesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) out.push(...await imagesUnder(path));
    else if (e.isFile && IMAGE_EXT.test(e.name)) out.push(path);
  }
  return out.sort();
}

/** The entries of captions by image name, refused or skipped by `badCaptions`. */
function entriesOf(r: Reader, file: string, caps: Map<string, unknown[]>, images: string) {
  return [...caps].flatMap(([name, raw]) => {
    const captions = r.captions(file, name, raw);
    return captions.length ? [{ path: join(images, name), captions }] : [];
  });
}

/** Split by image name from a Karpathy split file (`images[].filename`, `split`). */
async function namesFromSplitFile(file: string): Promise<Map<string, SplitName>> {
  const json = parseJson(file, await readBytes(file, "split file"));
  if (!Array.isArray(json?.images)) throw bad(file, `a split file needs an "images" array`);
  return new Map(json.images.map((img: Json, i: number) => {
    if (typeof img?.filename !== "string") throw bad(file, `images[${i}] has no "filename"`);
    return [img.filename, karpathySplit(file, `images[${i}]`, img.split)];
  }));
}

/** Split by image name from the Flickr8k lists beside `file`, when all three are there. */
async function namesFromLists(file: string): Promise<Map<string, SplitName> | undefined> {
  const names = new Map<string, SplitName>();
  for (const [split, list] of FLICKR_LISTS) {
    const path = join(folderOf(file), list);
    if (!(await isFile(path))) return undefined;
    const text = decodeUtf8(await readBytes(path, "split list"));
    if (text === undefined) throw bad(path, "not UTF-8 text");
    for (const name of text.split(/\r?\n/)) if (name.trim()) names.set(name.trim(), split);
  }
  return names;
}

/** Fractions [train, val, test] checked: each in [0, 1], summing to 1. */
function checkFractions(f: readonly number[]): void {
  const sum = f.reduce((a, b) => a + b, 0);
  if (f.length !== 3 || f.some((x) => !(x >= 0 && x <= 1)) || Math.abs(sum - 1) > 1e-6) {
    throw new WebcapError(
      "BAD_OPTION",
      `split fractions must be three numbers in [0, 1] summing to 1 (train,val,test), got ${f}`,
    );
  }
}

/** `entries` in seeded random order cut by fractions [train, val, test]. */
function splitByFractions(
  entries: CaptionEntry[],
  f: readonly [number, number, number],
  seed: number,
): SplitEntries {
  const order = permutation(entries.length, seed).map((i) => entries[i]);
  const nTrain = Math.round(f[0] * entries.length);
  const nVal = Math.round((f[0] + f[1]) * entries.length) - nTrain;
  return {
    train: order.slice(0, nTrain),
    val: order.slice(nTrain, nTrain + nVal),
    test: order.slice(nTrain + nVal),
  };
}

/** A caption file's entries into splits: split file, else Flickr lists, else fractions. */
async function assignSplits(
  r: Reader,
  file: string,
  entries: CaptionEntry[],
): Promise<SplitEntries> {
  const { splitFile, split, seed = 0 } = r.opts;
  const names = splitFile ? await namesFromSplitFile(splitFile) : await namesFromLists(file);
  if (!names) {
    if (!Array.isArray(split)) {
      throw new WebcapError(
        "BAD_OPTION",
        `${file} names no splits: give a Karpathy split file (splitFile, --split-file), put ` +
          `${FLICKR_LISTS.map((l) => l[1]).join(", ")} beside it, or fractions (split, ` +
          "--split 0.9,0.05,0.05)",
      );
    }
    return splitByFractions(entries, split as [number, number, number], seed);
  }
  const out: SplitEntries = { train: [], val: [], test: [] };
  for (const e of entries) {
    const s = names.get(baseName(e.path));
    if (s) out[s].push(e);
    else r.skipped.unsplit++;
  }
  return out;
}

/** Entries of a JSON data file: Karpathy split file or COCO captions (`annotations`). */
function jsonSplits(r: Reader, file: string, bytes: Uint8Array, images: string): SplitEntries {
  const json = parseJson(file, bytes);
  if (!json || !Array.isArray(json.images)) {
    throw bad(file, `a data file needs an "images" array (Karpathy split file or COCO captions)`);
  }
  if (!("annotations" in json)) return karpathy(r, file, json, images);
  const entries = coco(r, file, json, images);
  const split = r.opts.split ?? splitOfName(file);
  if (typeof split !== "string") return splitByFractions(entries, split, r.opts.seed ?? 0);
  return { train: [], val: [], test: [], [split]: entries };
}

/** Every split's entries whose image exists (by the `missing` policy). */
async function withImages(r: Reader, file: string, s: SplitEntries): Promise<SplitEntries> {
  return {
    train: await r.existing(file, s.train),
    val: await r.existing(file, s.val),
    test: await r.existing(file, s.test),
  };
}

/**
 * Read a data set: a Karpathy split file or COCO captions file (JSON, told apart by
 * `annotations`), a Flickr caption file (`Flickr8k.token.txt`, `results_20130124.token`,
 * `results.csv`), or a folder of images with a `.txt` of captions beside each.
 * @throws WebcapError MISSING_FILE when the file cannot be read or (by `missing`) an image does
 *   not exist; BAD_INPUT when it is not one of the layouts, an entry is malformed, or (by
 *   `badCaptions`) a caption is empty or not UTF-8; BAD_OPTION when a caption file names no
 *   splits and no way to make them is given, or the fractions are bad.
 */
export async function readCaptionData(
  file: string,
  opts: ReadDataOptions = {},
): Promise<CaptionSplits> {
  if (Array.isArray(opts.split)) checkFractions(opts.split);
  const r = new Reader(opts);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(file);
  } catch (e) {
    throw new WebcapError("MISSING_FILE", `data file ${file}: ${(e as Error).message}`);
  }
  const images = opts.images ?? folderOf(file);
  let splits: SplitEntries;
  if (info.isDirectory) {
    splits = await assignSplits(r, file, entriesOf(r, file, await imageFolder(r, file), ""));
  } else {
    const bytes = await readBytes(file, "data file");
    splits = looksJson(bytes)
      ? jsonSplits(r, file, bytes, images)
      : await assignSplits(r, file, entriesOf(r, file, flickr(r, file, bytes), images));
  }
  return { ...await withImages(r, file, splits), skipped: r.skipped };
}

/** The entries of `split`, refused when there are none. */
export function splitEntries(
  splits: CaptionSplits,
  split: SplitName,
  source: string,
): CaptionEntry[] {
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
