/**
 * A job's inputs as items `{key, source, read}`: image files and URLs, folders (recursive,
 * sorted), text files of paths or URLs (one a line, `#` comments; a line ending in `.tar` is a
 * tar shard), JSON lines (`{"key", "path"|"url", "image_id"?}`), and WebDataset `.tar` shards,
 * local or http(s), streamed; `{000..063}` ranges expand as in webdataset. Relative paths in lists are relative to the list's folder. Only
 * the items of this task's shard are produced, and only those `select` accepts are read.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { fetchBytes, type FetchSettings, fetchStream, isUrl } from "./fetch.ts";
import { ownsKey, type Shard } from "./shard.ts";
import { type ByteSource, fileSource, streamSource, tarSamples } from "./tar.ts";

/** An image id of a COCO results file. */
export type ImageId = number | string;

/** One image to caption. */
export interface JobItem {
  /** Unique across the job: what sharding hashes and outputs are keyed by. */
  readonly key: string;
  /** Where the image comes from: a path, a URL or `shard.tar:member`. */
  readonly source: string;
  /** `image_id` given in a JSON-lines input. */
  readonly imageId?: ImageId;
  /** The encoded image; rejects with a WebcapError naming the source. */
  read(): Promise<Uint8Array>;
}

/** How inputs are split and fetched. */
export interface InputOptions {
  shard: Shard;
  /** Give whole tar files to tasks (the t-th tar to task t mod N) instead of hashing keys. */
  shardByTar: boolean;
  fetch: FetchSettings;
  /** Asked before a remote tar is streamed; false passes over it (a count of local items). */
  remoteTar?: (url: string) => boolean;
}

/** Decides, once per item of the shard, whether it is read (false: skipped, counted elsewhere). */
export type Select = (key: string, source: string) => boolean;

/** An input that could not be read as a whole (a list, a tar); its items may be partly done. */
export type InputError = (input: string, error: WebcapError) => void;

const IMAGE_EXT = /\.(jpe?g|png|webp|bmp|tiff?|gif)$/i;
const TAR = /\.tar(?:[?#].*)?$/i;
const IMAGE_KINDS = ".jpg, .jpeg, .png, .webp, .bmp, .tif, .tiff, .gif";

/**
 * Expand a numeric range in braces as webdataset does: `shard-{000..002}.tar` →
 * `shard-000.tar`, `shard-001.tar`, `shard-002.tar` (zero-padded to the first bound's width).
 * Several ranges expand left to right; text without one is returned as it is.
 */
export function expandRanges(input: string): string[] {
  const m = /\{(\d+)\.\.(\d+)\}/.exec(input);
  if (!m) return [input];
  const [lo, hi] = [Number(m[1]), Number(m[2])];
  if (hi < lo || hi - lo >= 1e6) {
    throw new WebcapError(
      "BAD_OPTION",
      `${input}: the range {${m[1]}..${m[2]}} is empty or too big`,
    );
  }
  const head = input.slice(0, m.index);
  const tail = expandRanges(input.slice(m.index + m[0].length));
  const out: string[] = [];
  for (let i = lo; i <= hi; i++) {
    const n = String(i).padStart(m[1].length, "0");
    for (const t of tail) out.push(head + n + t);
  }
  return out;
}

/**
 * Refuse inputs that cannot work before anything is loaded: a list, tar or folder that does not
 * exist, a folder without images, anything but tars to split with `--shard-by tar`. A missing
 * image file is left to be reported as its item.
 * @throws WebcapError MISSING_FILE or BAD_OPTION naming the input.
 */
export async function checkInputs(inputs: string[], opts: InputOptions): Promise<void> {
  for (const input of inputs) {
    if (opts.shardByTar && opts.shard.count > 1 && !TAR.test(input)) {
      throw new WebcapError(
        "BAD_OPTION",
        `--shard-by tar splits tar files only, and ${input} is not one`,
      );
    }
    if (isUrl(input)) continue;
    const info = await Deno.stat(input).catch(() => undefined);
    if (info?.isDirectory) {
      const first = await folderImages(input).next();
      if (first.done) {
        throw new WebcapError(
          "MISSING_FILE",
          `${input}: the folder holds no images (${IMAGE_KINDS}), in it or its subfolders`,
        );
      }
    } else if (!info && !IMAGE_EXT.test(input)) {
      throw new WebcapError("MISSING_FILE", `${input}: no such file or folder`);
    }
  }
}

/** The items of `inputs` in this task's shard that `select` accepts, in input order. */
export async function* jobItems(
  inputs: string[],
  opts: InputOptions,
  select: Select,
  onError: InputError,
): AsyncGenerator<JobItem> {
  let tars = 0;
  const own = (key: string, source: string) => ownsKey(opts.shard, key) && select(key, source);
  /** One input or list line: a tar, or anything else (`key` for an image). */
  async function* unit(target: string, key: string): AsyncGenerator<JobItem> {
    try {
      if (TAR.test(target)) {
        const mine = !opts.shardByTar || tars++ % opts.shard.count === opts.shard.index;
        if (mine && (!isUrl(target) || (opts.remoteTar?.(target) ?? true))) {
          yield* tarItems(target, opts, opts.shardByTar ? select : own);
        }
      } else if (!opts.shardByTar || opts.shard.count === 1) {
        yield* plainItems(target, key, opts, own, onError);
      } else throw new WebcapError("BAD_OPTION", `--shard-by tar: ${target} is not a tar`);
    } catch (e) {
      if (!(e instanceof WebcapError)) throw e;
      onError(target, e);
    }
  }
  for (const input of inputs) {
    if (!/\.txt$/i.test(input) || isUrl(input)) yield* unit(input, input);
    else {
      const lines = await listLines(input).catch((e) => {
        onError(
          input,
          new WebcapError("MISSING_FILE", `${input}: cannot read the list (${e.message})`),
        );
        return [];
      });
      for (const [line] of lines) yield* unit(resolve(input, line), line);
    }
  }
}

/** Items of an input that is not a tar or a text list: a file, URL, folder or JSON lines. */
async function* plainItems(
  target: string,
  key: string,
  opts: InputOptions,
  own: Select,
  onError: InputError,
): AsyncGenerator<JobItem> {
  const info = isUrl(target) ? undefined : await Deno.stat(target).catch(() => undefined);
  if (info?.isDirectory) {
    const root = target.replace(/\/+$/, "");
    for await (const rel of folderImages(root)) {
      const path = `${root}/${rel}`;
      if (own(rel, path)) yield fileItem(rel, path);
    }
  } else if (info && /\.jsonl$/i.test(target)) {
    yield* jsonLineItems(target, opts, own, onError);
  } else if (own(key, target)) yield imageItem(key, target, opts.fetch);
}

/** A path or URL read as an image. */
function imageItem(key: string, target: string, fetch: FetchSettings, imageId?: ImageId): JobItem {
  if (!isUrl(target)) return fileItem(key, target, imageId);
  return { key, source: target, imageId, read: () => fetchBytes(target, fetch) };
}

function fileItem(key: string, path: string, imageId?: ImageId): JobItem {
  return {
    key,
    source: path,
    imageId,
    read: () =>
      Deno.readFile(path).catch((e) => {
        throw new WebcapError(
          "MISSING_FILE",
          `${path}: cannot read the image file (${(e as Error).message}); check the path.`,
          { cause: e },
        );
      }),
  };
}

/** `target` of a list relative to the list's folder (URLs and absolute paths as they are). */
function resolve(list: string, target: string): string {
  if (isUrl(target) || target.startsWith("/")) return target;
  const dir = list.includes("/") ? list.slice(0, list.lastIndexOf("/") + 1) : "";
  return dir + target;
}

/** The non-empty lines of a list that are not `#` comments, each with `file:line`. */
async function listLines(path: string): Promise<[string, string][]> {
  const text = await Deno.readTextFile(path);
  const out: [string, string][] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line && !line.startsWith("#")) out.push([line, `${path}:${i + 1}`]);
  }
  return out;
}

/** Items of a JSON-lines list: `{"key"?, "path"|"url", "image_id"?}` per line. */
async function* jsonLineItems(path: string, opts: InputOptions, own: Select, onError: InputError) {
  for (const [line, where] of await listLines(path)) {
    let rec: ListRecord;
    try {
      rec = parseRecord(line, where);
    } catch (e) {
      onError(where, e as WebcapError);
      continue;
    }
    const target = rec.path ?? rec.url;
    const key = rec.key ?? target;
    const resolved = resolve(path, target);
    if (own(key, resolved)) yield imageItem(key, resolved, opts.fetch, rec.image_id);
  }
}

interface ListRecord {
  key?: string;
  path: string;
  url: string;
  image_id?: ImageId;
}

function parseRecord(line: string, where: string): ListRecord {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line);
  } catch {
    throw new WebcapError("BAD_INPUT", `${where}: not a JSON object: ${line.slice(0, 80)}`);
  }
  const str = (k: string) => typeof rec?.[k] === "string" && rec[k] !== "";
  const id = rec?.image_id;
  if (
    typeof rec !== "object" || rec === null || (!str("path") && !str("url")) ||
    (rec.key !== undefined && !str("key")) ||
    (id !== undefined && typeof id !== "string" && !Number.isSafeInteger(id))
  ) {
    throw new WebcapError(
      "BAD_INPUT",
      `${where}: each line must be {"key"?: string, "path" or "url": string, ` +
        `"image_id"?: integer or string}, got ${line.slice(0, 80)}`,
    );
  }
  return rec as unknown as ListRecord;
}

/** The image files under `dir`, as paths relative to it, sorted, subfolders included. */
async function* folderImages(dir: string, prefix = ""): AsyncGenerator<string> {
  const entries: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(`${dir}/${prefix}`)) entries.push(e);
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const rel = prefix + e.name;
    const info = e.isSymlink ? await Deno.stat(`${dir}/${rel}`).catch(() => undefined) : e;
    if (info?.isFile && IMAGE_EXT.test(e.name)) yield rel;
    else if (e.isDirectory) yield* folderImages(dir, `${rel}/`);
  }
}

/** The samples of a tar (local or http(s)) that `select` accepts, as items. */
async function* tarItems(tar: string, opts: InputOptions, select: Select) {
  const src: ByteSource = isUrl(tar)
    ? streamSource(await fetchStream(tar, opts.fetch), tar, opts.fetch.timeoutMs)
    : await fileSource(tar).catch((e) => {
      throw new WebcapError("MISSING_FILE", `${tar}: cannot read the tar (${e.message})`);
    });
  try {
    const samples = tarSamples(src, tar, (key) => select(key, `${tar}:${key}`));
    for await (const s of samples) {
      yield {
        key: s.key,
        source: s.source,
        read: () => s.image ? Promise.resolve(s.image) : Promise.reject(s.error),
      };
    }
  } finally {
    await src.close();
  }
}
