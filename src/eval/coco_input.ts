/**
 * Input formats of the caption evaluation and their validation: COCO results
 * (`[{image_id, caption}]`), COCO caption annotations (`{annotations: [{image_id, caption}],
 * images?: [{id}]}`), a plain `{image_id: [refs]}` map, and the eval fixture layout. Bad
 * input is refused with `BAD_EVAL_INPUT` naming the file (or argument) and the entry at fault,
 * never scored partially.
 * @module
 */

import { WebcapError } from "../errors.ts";

/** A COCO image id (numbers in COCO files; strings are accepted and kept as given). */
export type ImageId = number | string;

/** One entry of a COCO results file. */
export interface CaptionResult {
  /** Image the caption belongs to. */
  image_id: ImageId;
  /** The generated caption (raw text). */
  caption: string;
}

/** References of each image, in evaluation order (key: `String(image_id)`). */
export type ReferenceTable = Map<string, { id: ImageId; refs: string[] }>;

/** Candidates of each image (key: `String(image_id)`). */
export type CandidateTable = Map<string, { id: ImageId; caption: string }>;

/** The images of one evaluation, aligned: `refs[i]` and `candidates[i]` belong to `ids[i]`. */
export interface PairedCaptions {
  /** Image ids in evaluation order. */
  ids: ImageId[];
  /** Raw (or tokenized) references per image. */
  refs: string[][];
  /** One candidate per image. */
  candidates: string[];
}

function bad(message: string): never {
  throw new WebcapError("BAD_EVAL_INPUT", message);
}

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/** Parse JSON text; on a syntax error name the source and the line/column. */
export function parseJsonText(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const pos = /position (\d+)/.exec(msg);
    let where = "";
    if (pos && !/line \d+/.test(msg)) {
      const before = text.slice(0, Number(pos[1])).split("\n");
      where = ` (line ${before.length} column ${before[before.length - 1].length + 1})`;
    }
    return bad(`${source}: malformed JSON: ${msg}${where}; fix the file and retry`);
  }
}

/** Read and parse a JSON file, naming it in every error. */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new WebcapError("MISSING_FILE", `cannot read ${path}: ${msg}`, { cause: e });
  }
  return parseJsonText(text, path);
}

function imageIdOf(x: unknown, where: string): ImageId {
  if ((typeof x === "number" && Number.isFinite(x)) || (typeof x === "string" && x !== "")) {
    return x;
  }
  return bad(`${where}: image_id must be a number or a non-empty string, got ${JSON.stringify(x)}`);
}

function captionOf(x: unknown, where: string): string {
  if (typeof x === "string") return x;
  return bad(`${where}: caption must be a string, got ${x === null ? "null" : typeof x}`);
}

/**
 * Parse COCO results `[{image_id, caption}, …]`. Refuses a second result for an image (the
 * reference asserts exactly one candidate per image).
 */
export function parseResults(json: unknown, source: string): CandidateTable {
  if (!Array.isArray(json)) {
    bad(`${source}: results must be a JSON array of {image_id, caption} objects`);
  }
  const table: CandidateTable = new Map();
  const firstIndex = new Map<string, number>();
  json.forEach((entry, i) => {
    if (!isRecord(entry)) bad(`${source}: result [${i}] is not an object`);
    const id = imageIdOf(entry.image_id, `${source}: result [${i}]`);
    const caption = captionOf(entry.caption, `${source}: result [${i}] (image_id ${id})`);
    const key = String(id);
    if (table.has(key)) {
      bad(
        `${source}: image_id ${id} has two results ([${firstIndex.get(key)}] and [${i}]); ` +
          "keep exactly one caption per image",
      );
    }
    firstIndex.set(key, i);
    table.set(key, { id, caption });
  });
  return table;
}

/** Results given in memory: an array of results, a Map or a plain object id → caption. */
export function toCandidateTable(
  res: readonly CaptionResult[] | ReadonlyMap<ImageId, string> | Readonly<Record<string, string>>,
  source = "results",
): CandidateTable {
  if (Array.isArray(res)) return parseResults(res, source);
  const entries = res instanceof Map ? [...res.entries()] : Object.entries(res);
  const table: CandidateTable = new Map();
  for (const [rawId, caption] of entries) {
    const id = imageIdOf(rawId, `${source}: entry ${JSON.stringify(rawId)}`);
    const key = String(id);
    if (table.has(key)) bad(`${source}: image_id ${id} appears twice; keep one caption per image`);
    table.set(key, { id, caption: captionOf(caption, `${source}: image_id ${id}`) });
  }
  return table;
}

function cocoReferences(json: Record<string, unknown>, source: string): ReferenceTable {
  const anns = json.annotations;
  if (!Array.isArray(anns)) bad(`${source}: "annotations" must be an array`);
  const table: ReferenceTable = new Map();
  if (json.images !== undefined) {
    if (!Array.isArray(json.images)) bad(`${source}: "images" must be an array`);
    json.images.forEach((img, i) => {
      if (!isRecord(img)) bad(`${source}: images[${i}] is not an object`);
      const id = imageIdOf(img.id, `${source}: images[${i}]`);
      if (!table.has(String(id))) table.set(String(id), { id, refs: [] });
    });
  }
  anns.forEach((ann, i) => {
    if (!isRecord(ann)) bad(`${source}: annotations[${i}] is not an object`);
    const id = imageIdOf(ann.image_id, `${source}: annotations[${i}]`);
    const caption = captionOf(ann.caption, `${source}: annotations[${i}] (image_id ${id})`);
    let entry = table.get(String(id));
    if (!entry) {
      if (json.images !== undefined) {
        bad(`${source}: annotations[${i}] refers to image_id ${id}, which is not in "images"`);
      }
      table.set(String(id), entry = { id, refs: [] });
    }
    entry.refs.push(caption);
  });
  return table;
}

/**
 * Parse references: COCO `captions_*.json` (image order from `images` when present, else
 * first appearance in `annotations`; captions in file order) or a map `{image_id: [refs]}`
 * (image order: JavaScript object key order, i.e. integer-like ids ascending first).
 */
export function parseReferences(json: unknown, source: string): ReferenceTable {
  if (!isRecord(json)) {
    return bad(`${source}: annotations must be a COCO captions object or {image_id: [refs]}`);
  }
  if ("annotations" in json) return cocoReferences(json, source);
  return toReferenceTable(json as Record<string, unknown>, source);
}

/** References given in memory: a Map or a plain object id → list of captions. */
export function toReferenceTable(
  gts: ReadonlyMap<ImageId, readonly unknown[]> | Readonly<Record<string, unknown>>,
  source = "references",
): ReferenceTable {
  const entries = gts instanceof Map ? [...gts.entries()] : Object.entries(gts);
  const table: ReferenceTable = new Map();
  for (const [rawId, refs] of entries) {
    const id = imageIdOf(rawId, `${source}: entry ${JSON.stringify(rawId)}`);
    if (!Array.isArray(refs)) bad(`${source}: image_id ${id}: references must be an array`);
    if (table.has(String(id))) bad(`${source}: image_id ${id} appears twice`);
    table.set(String(id), {
      id,
      refs: refs.map((r, j) => captionOf(r, `${source}: image_id ${id} reference [${j}]`)),
    });
  }
  return table;
}

function listIds(keys: string[]): string {
  const shown = keys.slice(0, 5).join(", ");
  return keys.length > 5 ? `${shown}, … (${keys.length} in all)` : shown;
}

/**
 * Align references and candidates in reference order. Like pycocoevalcap, refuses results for
 * images absent from the references and references without a result; with `subset`, only
 * the images that have a result are evaluated (pycocoevalcap's demo sets
 * `params['image_id'] = cocoRes.getImgIds()` for that).
 */
export function pairCaptions(
  refs: ReferenceTable,
  cands: CandidateTable,
  opts: { subset?: boolean; refsSource?: string; resultsSource?: string } = {},
): PairedCaptions {
  const refsSource = opts.refsSource ?? "references", resSource = opts.resultsSource ?? "results";
  const unknown = [...cands.keys()].filter((k) => !refs.has(k));
  if (unknown.length > 0) {
    bad(
      `${resSource}: image_id ${listIds(unknown)} not found in ${refsSource}; ` +
        "results must belong to the annotated images",
    );
  }
  const missing = [...refs.keys()].filter((k) => !cands.has(k));
  if (missing.length > 0 && !opts.subset) {
    bad(
      `${resSource}: no result for image_id ${listIds(missing)} of ${refsSource}; ` +
        "give one caption per annotated image, or evaluate only the images with results " +
        "(subset: true, CLI --subset)",
    );
  }
  const paired: PairedCaptions = { ids: [], refs: [], candidates: [] };
  for (const [key, { id, refs: r }] of refs) {
    const cand = cands.get(key);
    if (!cand) continue;
    if (r.length === 0) bad(`${refsSource}: image_id ${id} has no reference captions`);
    paired.ids.push(id);
    paired.refs.push(r);
    paired.candidates.push(cand.caption);
  }
  if (paired.ids.length === 0) bad(`${resSource}: no images to evaluate`);
  return paired;
}

/**
 * Corpus metric names of an eval fixture, in file order: the keys of `expected` (COCO files) or
 * `expected_set` (edge-case file); `undefined` when the file has neither.
 */
export function fixtureMetricNames(json: unknown): string[] | undefined {
  const expected = isRecord(json) ? (json.expected ?? json.expected_set) : undefined;
  return isRecord(expected) ? Object.keys(expected) : undefined;
}

/** Images of an eval fixture file (`images` or `cases`: `{id, refs, candidate}`), in order. */
export function parseFixture(json: unknown, source: string): PairedCaptions {
  const list = isRecord(json) ? (json.images ?? json.cases) : undefined;
  if (!Array.isArray(list)) {
    return bad(`${source}: not an eval fixture (expected "images" or "cases" array)`);
  }
  const refs: ReferenceTable = new Map(), cands: CandidateTable = new Map();
  list.forEach((item, i) => {
    if (!isRecord(item)) bad(`${source}: entry [${i}] is not an object`);
    const id = imageIdOf(item.id, `${source}: entry [${i}]`);
    if (refs.has(String(id))) bad(`${source}: id ${id} appears twice`);
    if (!Array.isArray(item.refs)) bad(`${source}: id ${id}: "refs" must be an array`);
    refs.set(String(id), {
      id,
      refs: item.refs.map((r, j) => captionOf(r, `${source}: id ${id} refs[${j}]`)),
    });
    cands.set(String(id), { id, caption: captionOf(item.candidate, `${source}: id ${id}`) });
  });
  return pairCaptions(refs, cands, { refsSource: source, resultsSource: source });
}
