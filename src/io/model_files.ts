/**
 * Where a model's files come from: a local folder (Deno) or a base URL (anywhere `fetch` is).
 * Model loading reads every file through a {@link ModelFiles}, so the same code loads a folder
 * on disk, a folder served over HTTP, or a hub repo's `resolve/<revision>/` URLs in a browser.
 * Nothing here touches `Deno` until a local folder is read.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { concatBytes } from "../bytes.ts";
import { repoFileUrl } from "./path.ts";

/** The files of one model folder, by name relative to it (`config.json`, `clip-vision/config.json`). */
export interface ModelFiles {
  /** The folder or base URL, for messages. */
  readonly source: string;
  /** The file as UTF-8 text; `undefined` when it does not exist. Other failures throw WebcapError. */
  text(name: string): Promise<string | undefined>;
  /** The file's bytes; `undefined` when it does not exist. Other failures throw WebcapError. */
  bytes(name: string): Promise<Uint8Array | undefined>;
  /**
   * A local path to the file when it exists (`undefined` when it does not), so large files can be
   * read range by range instead of whole. Only local sources have it.
   */
  path?(name: string): Promise<string | undefined>;
  /** The file names directly in subfolder `folder` (default the top). Only sources that can list. */
  list?(folder?: string): Promise<string[]>;
}

/** `name` inside `dir` (a path or a base URL), with one `/` between them. */
export function joinPath(dir: string, name: string): string {
  if (dir === "") return name;
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** Where file `name` of `files` is, for messages: a path or a URL. */
export function fileLocation(files: ModelFiles, name: string): string {
  return joinPath(files.source, name);
}

/**
 * Largest text file read (`config.json`, `tokenizer.json`, `preprocessor_config.json`, weight
 * indexes, …): 64 MiB, about twice the largest tokenizer on the hub. A larger one is refused with
 * FILE_TOO_LARGE before it is read whole (weights files have no such limit: they are read range by
 * range or as bytes).
 */
export const MAX_TEXT_BYTES = 64 * 2 ** 20;

function textTooLarge(where: string, size?: number): WebcapError {
  const is = size === undefined ? `more than ${MAX_TEXT_BYTES}` : `${size}`;
  return new WebcapError(
    "FILE_TOO_LARGE",
    `${where} is ${is} bytes, above the ${MAX_TEXT_BYTES}-byte (64 MiB) limit for a text file ` +
      `(config, tokenizer, weight index); it cannot be one a model needs: check the file`,
  );
}

/** FILE_TOO_LARGE naming `where` when a text file of `size` bytes is above the limit. */
export function checkTextSize(where: string, size: number): void {
  if (size > MAX_TEXT_BYTES) throw textTooLarge(where, size);
}

/**
 * All bytes of `stream`, or FILE_TOO_LARGE naming `where` as soon as it passes
 * {@link MAX_TEXT_BYTES} (the rest is left unread).
 */
async function readText(stream: ReadableStream<Uint8Array>, where: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  try {
    for (let step = await reader.read(); !step.done; step = await reader.read()) {
      size += step.value.length;
      if (size > MAX_TEXT_BYTES) throw textTooLarge(where);
      chunks.push(step.value);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  }
  return new TextDecoder().decode(concatBytes(chunks));
}

/** A local folder's files (Deno). Symlinks are followed (hub caches link snapshots to blobs). */
export function localFiles(dir: string): ModelFiles {
  const at = (name: string) => joinPath(dir, name);
  return {
    source: dir,
    text: (name) => readLocalText(at(name)),
    bytes: (name) => readLocal(at(name), (p) => Deno.readFile(p)),
    path: async (name) => (await isLocalFile(at(name))) ? at(name) : undefined,
    list: (folder = "") => listLocal(folder ? at(folder) : dir),
  };
}

function isAbsence(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory;
}

function unreadable(path: string, e: unknown): WebcapError {
  return new WebcapError("MISSING_FILE", `${path} cannot be read: ${(e as Error).message}`, {
    cause: e,
  });
}

async function readLocal<T>(path: string, read: (p: string) => Promise<T>): Promise<T | undefined> {
  try {
    return await read(path);
  } catch (e) {
    if (isAbsence(e)) return undefined;
    throw unreadable(path, e);
  }
}

/** A local text file, its size checked before it is read (and again while reading: FIFOs). */
async function readLocalText(path: string): Promise<string | undefined> {
  const file = await readLocal(path, (p) => Deno.open(p));
  if (file === undefined) return undefined;
  let stat: Deno.FileInfo;
  try {
    stat = await file.stat();
  } catch (e) {
    file.close();
    throw unreadable(path, e);
  }
  if (stat.isDirectory || stat.size > MAX_TEXT_BYTES) {
    file.close();
    if (stat.isDirectory) return undefined;
    checkTextSize(path, stat.size);
  }
  try {
    return await readText(file.readable, path); // the stream closes the file
  } catch (e) {
    throw e instanceof WebcapError ? e : unreadable(path, e);
  }
}

async function isLocalFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw unreadable(path, e);
  }
}

async function listLocal(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile || (e.isSymlink && await isLocalFile(joinPath(dir, e.name)))) out.push(e.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new WebcapError("MISSING_FILE", `model folder "${dir}" does not exist`, { cause: e });
    }
    throw e;
  }
  return out.sort();
}

/**
 * The files under `baseUrl` (a folder URL; a missing trailing `/` is added), fetched on demand.
 * Every name must pass `checkRepoPath` (path.ts), so it resolves to a URL inside the folder; any other
 * name (`file:…`, `https:host/…`, `%2e%2e`, `/abs`, `//host/…`) is BAD_OPTION before any request.
 * HTTP 404 means absent; any other failure is DOWNLOAD_FAILED naming the URL. Text files above
 * {@link MAX_TEXT_BYTES} are FILE_TOO_LARGE, and are fetched once per source (configs are read by
 * several loaders); bytes are not kept.
 */
export function urlFiles(baseUrl: string | URL, fetchImpl: typeof fetch = fetch): ModelFiles {
  const href = String(baseUrl);
  if (!URL.canParse(href)) {
    throw new WebcapError("BAD_OPTION", `model URL ${JSON.stringify(href)} is not a valid URL`);
  }
  const base = new URL(href.endsWith("/") ? href : `${href}/`);
  const texts = new Map<string, Promise<string | undefined>>();
  const url = (name: string) => repoFileUrl(base, name, `file of ${base.href}`);
  const textOf = async (name: string) => await fetchText(url(name), fetchImpl);
  return {
    source: base.href,
    bytes: async (name) => {
      const at = url(name);
      const res = await fetchFile(at, fetchImpl);
      return res && await readBody(at, () => res.arrayBuffer().then((b) => new Uint8Array(b)));
    },
    text(name) {
      let t = texts.get(name);
      if (!t) {
        t = textOf(name);
        t.catch(() => texts.delete(name));
        texts.set(name, t);
      }
      return t;
    },
  };
}

function downloadFailed(url: URL, why: string, cause?: unknown): WebcapError {
  return new WebcapError(
    "DOWNLOAD_FAILED",
    `${url.href}: ${why}; check the URL, the network and that the file is public`,
    { cause },
  );
}

/** The response for `url`; `undefined` for HTTP 404. */
async function fetchFile(url: URL, fetchImpl: typeof fetch): Promise<Response | undefined> {
  let res: Response;
  try {
    res = await fetchImpl(url);
  } catch (e) {
    throw downloadFailed(url, `request failed (${(e as Error).message})`, e);
  }
  if (!res.ok) {
    await res.body?.cancel();
    if (res.status === 404) return undefined;
    throw downloadFailed(url, `HTTP ${res.status} ${res.statusText}`.trim());
  }
  return res;
}

/** `read()` of a response body, an interrupted download being DOWNLOAD_FAILED. */
async function readBody<T>(url: URL, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    if (e instanceof WebcapError) throw e;
    throw downloadFailed(url, `download interrupted (${(e as Error).message})`, e);
  }
}

/** A text file at `url`, refused by its Content-Length or while streaming when too large. */
async function fetchText(url: URL, fetchImpl: typeof fetch): Promise<string | undefined> {
  const res = await fetchFile(url, fetchImpl);
  if (res === undefined) return undefined;
  const length = Number(res.headers.get("content-length") ?? NaN);
  if (length > MAX_TEXT_BYTES) await res.body?.cancel();
  checkTextSize(url.href, length);
  if (res.body === null) return "";
  return await readBody(url, () => readText(res.body!, url.href));
}

/** The files of subfolder `folder` of `files` (e.g. ClipCap's `clip-vision/`). */
export function subFolder(files: ModelFiles, folder: string): ModelFiles {
  const at = (name: string) => `${folder}/${name}`;
  const { path, list } = files;
  return {
    source: fileLocation(files, folder),
    text: (name) => files.text(at(name)),
    bytes: (name) => files.bytes(at(name)),
    path: path && ((name) => path.call(files, at(name))),
    list: list && ((sub) => list.call(files, sub ? at(sub) : folder)),
  };
}

/** `dirOrFiles` as a {@link ModelFiles}: an `http(s)://` URL, a local folder, or itself. */
export function asModelFiles(dirOrFiles: string | ModelFiles): ModelFiles {
  if (typeof dirOrFiles !== "string") return dirOrFiles;
  return /^https?:\/\//i.test(dirOrFiles) ? urlFiles(dirOrFiles) : localFiles(dirOrFiles);
}
