/**
 * Where a model's files come from: a local folder (Deno) or a base URL (anywhere `fetch` is).
 * Model loading reads every file through a {@link ModelFiles}, so the same code loads a folder
 * on disk, a folder served over HTTP, or a hub repo's `resolve/<revision>/` URLs in a browser.
 * Nothing here touches `Deno` until a local folder is read.
 * @module
 */
import { WebcapError } from "../errors.ts";

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

/** A local folder's files (Deno). Symlinks are followed (hub caches link snapshots to blobs). */
export function localFiles(dir: string): ModelFiles {
  const at = (name: string) => joinPath(dir, name);
  return {
    source: dir,
    text: (name) => readLocal(at(name), (p) => Deno.readTextFile(p)),
    bytes: (name) => readLocal(at(name), (p) => Deno.readFile(p)),
    path: async (name) => (await isLocalFile(at(name))) ? at(name) : undefined,
    list: (folder = "") => listLocal(folder ? at(folder) : dir),
  };
}

function isAbsence(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory;
}

async function readLocal<T>(path: string, read: (p: string) => Promise<T>): Promise<T | undefined> {
  try {
    return await read(path);
  } catch (e) {
    if (isAbsence(e)) return undefined;
    throw new WebcapError("MISSING_FILE", `${path} cannot be read: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

async function isLocalFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw new WebcapError("MISSING_FILE", `${path} cannot be read: ${(e as Error).message}`, {
      cause: e,
    });
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
 * HTTP 404 means absent; any other failure is DOWNLOAD_FAILED naming the URL. Text files are
 * fetched once per source (configs are read by several loaders); bytes are not kept.
 */
export function urlFiles(baseUrl: string | URL, fetchImpl: typeof fetch = fetch): ModelFiles {
  const href = String(baseUrl);
  const base = new URL(href.endsWith("/") ? href : `${href}/`);
  const texts = new Map<string, Promise<string | undefined>>();
  const get = (name: string) => fetchBytes(new URL(name, base), fetchImpl);
  return {
    source: base.href,
    bytes: get,
    text(name) {
      let t = texts.get(name);
      if (!t) {
        t = get(name).then((b) => b && new TextDecoder().decode(b));
        t.catch(() => texts.delete(name));
        texts.set(name, t);
      }
      return t;
    },
  };
}

async function fetchBytes(url: URL, fetchImpl: typeof fetch): Promise<Uint8Array | undefined> {
  const failed = (why: string, cause?: unknown) =>
    new WebcapError(
      "DOWNLOAD_FAILED",
      `${url.href}: ${why}; check the URL, the network and that the file is public`,
      { cause },
    );
  let res: Response;
  try {
    res = await fetchImpl(url);
  } catch (e) {
    throw failed(`request failed (${(e as Error).message})`, e);
  }
  if (!res.ok) {
    await res.body?.cancel();
    if (res.status === 404) return undefined;
    throw failed(`HTTP ${res.status} ${res.statusText}`.trim());
  }
  try {
    return new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    throw failed(`download interrupted (${(e as Error).message})`, e);
  }
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
