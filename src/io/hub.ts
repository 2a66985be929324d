/**
 * Model repositories from the Hugging Face hub, kept in huggingface_hub's cache layout so that
 * Python tools and webcap share downloads:
 *
 * ```
 * <cache>/models--org--name/
 *   blobs/<etag>                    file contents (git sha1, or sha256 for LFS files)
 *   blobs/<etag>.incomplete         a download in progress (resumed with a Range request)
 *   snapshots/<commit>/<file>       symlink to ../../blobs/<etag> (a copy where links fail)
 *   refs/<revision>                 the commit a branch or tag pointed to
 * <cache>/.locks/models--org--name/<etag>.lock
 * ```
 * @module
 */

import { checkRepoPath, dirname, join, relative, repoFileUrl } from "./path.ts";
import { WebcapError } from "../errors.ts";
import { ProgressBar } from "./progress.ts";
import { isFile } from "./fs.ts";
import { checkTextSize, localFiles } from "./model_files.ts";
import { isIndex, isWeightsFile, parseWeightMap } from "./shard_index.ts";
import { Sha256 } from "./sha256.ts";

/** Reports download progress: bytes of `file` done out of `total`. */
export type ProgressCallback = (file: string, done: number, total: number) => void;

/** Options of {@link resolveModel}. */
export interface ResolveModelOptions {
  /** Branch, tag or commit. Default `"main"`. */
  revision?: string;
  /** Hub URL. Default env `HF_ENDPOINT`, else `https://huggingface.co`. */
  endpoint?: string;
  /** Cache folder. Default env `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. */
  cacheDir?: string;
  /** Use only the cache. Default env `HF_HUB_OFFLINE` (1/true/yes/on). */
  offline?: boolean;
  /**
   * Exactly these repo files (e.g. a ClipCap repo's own names) instead of the standard set:
   * `config.json`, `preprocessor_config.json`, `tokenizer.json`, the weights, and
   * `generation_config.json` plus tokenizer side files when present.
   */
  files?: string[];
  /** Progress per file; default a {@link ProgressBar} on stderr (silent when not a terminal). */
  onProgress?: ProgressCallback;
  /** The fetch to use. Default `globalThis.fetch`. */
  fetch?: typeof fetch;
}

/** Everything one resolution needs, settled from options and environment. */
interface Repo {
  id: string;
  revision: string;
  endpoint: string;
  cacheDir: string;
  /** `<cacheDir>/models--org--name` */
  folder: string;
  files?: string[];
  offline: boolean;
  token?: string;
  fetch: typeof fetch;
  onProgress: ProgressCallback;
}

/** Where a file is fetched from, as the hub's HEAD answer says. */
interface FileMeta {
  etag: string;
  size?: number;
  /** The resolve URL, or the CDN URL it redirects to. */
  location: string;
  /** Send the token (only to the hub itself, not to a CDN). */
  auth: boolean;
}

const REQUIRED_FILES = ["config.json", "preprocessor_config.json", "tokenizer.json"];
const OPTIONAL_FILES = [
  "generation_config.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "vocab.json",
  "merges.txt",
  "vocab.txt",
];
/** Weight files in order of preference: safetensors first, sharded after single. */
const WEIGHT_FILES = [
  "model.safetensors",
  "model.safetensors.index.json",
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
];
const COMMIT = /^[0-9a-f]{40}$/;
const RETRIES = 3;
const RETRY_BASE_MS = 200;
const STALL_MS = 30_000;

/**
 * Return a local directory holding a model: `idOrDir` itself when it is a directory, else
 * the cached snapshot of hub repo `org/name`, downloading what is missing (resumable,
 * atomic, with progress). A complete cached snapshot of the revision is used without any
 * request; pass a commit as `revision` to pin another version.
 *
 * Every LFS file's sha256 is checked against its ETag before it enters the cache, and the token
 * goes only to the hub's own origin.
 *
 * Errors: `BAD_OPTION` (neither a directory nor a valid id, or a control character in it),
 * `HUB_NOT_FOUND` (no such repo, revision or file; private or gated), `MISSING_FILE` (repo lacks a
 * needed file), `BAD_WEIGHTS` (a shard index naming something other than weights files inside
 * the repo), `FILE_TOO_LARGE` (a text file above `MAX_TEXT_BYTES`), `HUB_OFFLINE` (offline and not
 * cached), `DOWNLOAD_FAILED` (network, a redirect to a non-http(s) URL, a download whose sha256 is
 * not its ETag; running again resumes or starts afresh).
 */
export async function resolveModel(
  idOrDir: string,
  opts: ResolveModelOptions = {},
): Promise<string> {
  if (await isLocalDirectory(idOrDir)) return idOrDir;
  const repo = settle(idOrDir, opts);
  const cached = await cachedSnapshot(repo);
  if (cached !== undefined) return cached;
  if (repo.offline) throw offlineError(repo);
  return await downloadSnapshot(repo);
}

/** The hub cache folder that huggingface_hub would use, from the environment. */
export function hubCacheDir(): string {
  const hubCache = envVar("HF_HUB_CACHE");
  if (hubCache) return expandHome(hubCache);
  const hfHome = envVar("HF_HOME");
  if (hfHome) return join(expandHome(hfHome), "hub");
  const xdg = envVar("XDG_CACHE_HOME");
  return join(xdg ? expandHome(xdg) : join(homeDir(), ".cache"), "huggingface", "hub");
}

function envVar(name: string): string | undefined {
  return typeof Deno === "undefined" ? undefined : Deno.env.get(name) || undefined;
}

function homeDir(): string {
  return envVar("HOME") ?? envVar("USERPROFILE") ?? ".";
}

function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? homeDir() + path.slice(1) : path;
}

/**
 * True for an existing directory; BAD_OPTION for a file, a missing path-looking name or a name
 * with a control character (which no file system call gets to see).
 */
async function isLocalDirectory(idOrDir: string): Promise<boolean> {
  // deno-lint-ignore no-control-regex
  const control = /[\u0000-\u001f\u007f]/.exec(idOrDir);
  if (control) {
    const code = control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
    throw new WebcapError(
      "BAD_OPTION",
      `model ${JSON.stringify(idOrDir)} contains the control character U+${code}; ` +
        `pass the model's directory or a hub id like "org/name"`,
    );
  }
  try {
    const st = await Deno.stat(idOrDir);
    if (st.isDirectory) return true;
    throw new WebcapError(
      "BAD_OPTION",
      `model "${idOrDir}" is a file; pass the model's directory or a hub id like "org/name"`,
    );
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (/^(\.|\/|~|[A-Za-z]:)|\\/.test(idOrDir)) {
    throw new WebcapError("BAD_OPTION", `model directory "${idOrDir}" does not exist`);
  }
  return false;
}

/** Validate the id and options and read the environment. */
function settle(id: string, opts: ResolveModelOptions): Repo {
  checkRepoId(id);
  const revision = opts.revision ?? "main";
  checkRepoPath(revision, "revision");
  for (const f of opts.files ?? []) checkRepoPath(f, "files entry");
  const endpoint = hubEndpoint(opts.endpoint);
  const cacheDir = opts.cacheDir ?? hubCacheDir();
  const offlineEnv = /^(1|on|yes|true)$/i.test(envVar("HF_HUB_OFFLINE") ?? "");
  return {
    id,
    revision,
    endpoint,
    cacheDir,
    folder: join(cacheDir, repoFolderName(id)),
    files: opts.files,
    offline: opts.offline ?? offlineEnv,
    token: envVar("HF_TOKEN"),
    fetch: opts.fetch ?? ((input, init) => fetch(input, init)),
    onProgress: opts.onProgress ?? progressBars(),
  };
}

/** The hub URL: the option, else env `HF_ENDPOINT` (Deno), else https://huggingface.co. */
function hubEndpoint(option: string | undefined): string {
  const endpoint = (option ?? envVar("HF_ENDPOINT") ?? "https://huggingface.co").replace(
    /\/+$/,
    "",
  );
  if (!/^https?:\/\/[^/]/.test(endpoint)) {
    throw new WebcapError("BAD_OPTION", `hub endpoint "${endpoint}" is not an http(s) URL`);
  }
  return endpoint;
}

/**
 * The base URL of hub repo `id`'s files at a revision, `{endpoint}/{id}/resolve/{revision}/`,
 * for fetching them directly (as browsers do: they have no disk cache of their own).
 * @param orElse what else a model string could have been, for the BAD_OPTION message.
 * @throws WebcapError BAD_OPTION for an invalid id, revision or endpoint.
 */
export function hubResolveUrl(
  id: string,
  opts: Pick<ResolveModelOptions, "revision" | "endpoint"> = {},
  orElse = "an existing directory",
): string {
  checkRepoId(id, orElse);
  const revision = opts.revision ?? "main";
  checkRepoPath(revision, "revision");
  return `${hubEndpoint(opts.endpoint)}/${id}/resolve/${encodeURIComponent(revision)}/`;
}

function repoFolderName(id: string): string {
  return `models--${id.replaceAll("/", "--")}`;
}

/** huggingface_hub's rule: `org/name`, word characters, `-` and `.`, no `--` or `..`. */
function checkRepoId(id: string, orElse = "an existing directory"): void {
  const part = /^\w(?:[\w.-]{0,94}\w)?$/;
  const parts = id.split("/");
  const ok = parts.length === 2 && parts.every((p) => part.test(p)) && !id.includes("--") &&
    !id.includes("..") && !id.endsWith(".git");
  if (!ok) {
    throw new WebcapError(
      "BAD_OPTION",
      `model "${id}" is neither ${orElse} nor a hub id of the form "org/name" ` +
        `(letters, digits, "_", "-", "." in each part, no "--" or "..")`,
    );
  }
}

/** One progress bar per file on stderr. */
function progressBars(): ProgressCallback {
  let bar: ProgressBar | undefined;
  return (file, done, total) => {
    if (bar?.label !== file) {
      bar?.done();
      bar = new ProgressBar({ label: file, total, unit: "bytes" });
    }
    bar.total = total;
    bar.update(done);
    if (done >= total) bar.done();
  };
}

function offlineError(repo: Repo): WebcapError {
  return new WebcapError(
    "HUB_OFFLINE",
    `model ${repo.id} (revision "${repo.revision}") is not complete in the hub cache ` +
      `${repo.cacheDir} and offline mode is on (HF_HUB_OFFLINE or the offline option); run once ` +
      `with network access and offline mode off to download it, or pass a local model directory`,
  );
}

// ---------------------------------------------------------------------------------- cache

/** The commit a revision names: itself when a commit hash, else what refs/ recorded. */
async function cachedCommit(repo: Repo): Promise<string | undefined> {
  if (COMMIT.test(repo.revision)) return repo.revision;
  try {
    const text = (await Deno.readTextFile(join(repo.folder, "refs", repo.revision))).trim();
    return COMMIT.test(text) ? text : undefined;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** The snapshot directory when it holds every file the selection asks for. */
async function cachedSnapshot(repo: Repo): Promise<string | undefined> {
  const commit = await cachedCommit(repo);
  if (commit === undefined) return undefined;
  const dir = join(repo.folder, "snapshots", commit);
  const present = new Set(await listFiles(dir));
  const plan = planFiles(present, repo.files);
  if (plan.missing.length > 0) return undefined;
  for (const index of plan.files.filter(isIndex)) {
    const shards = await readShards(dir, index);
    if (!shards.every((s) => present.has(s))) return undefined;
  }
  return dir;
}

/** Relative paths (with `/`) of the regular files and live symlinks under `dir`. */
async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const path = join(dir, entry.name);
      const rel = prefix + entry.name;
      if (entry.isDirectory) out.push(...await listFiles(path, rel + "/"));
      else if (await isFile(path)) out.push(rel);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

/** The files to fetch in order (small ones first, weights last) and the needed ones absent. */
function planFiles(
  available: Set<string>,
  explicit?: string[],
): { files: string[]; missing: string[] } {
  if (explicit) return { files: explicit, missing: explicit.filter((f) => !available.has(f)) };
  const weights = WEIGHT_FILES.find((f) => available.has(f));
  const missing = REQUIRED_FILES.filter((f) => !available.has(f));
  if (weights === undefined) missing.push(`weights (${WEIGHT_FILES.join(", ")})`);
  const files = [
    ...REQUIRED_FILES.filter((f) => available.has(f)),
    ...OPTIONAL_FILES.filter((f) => available.has(f)),
    ...(weights === undefined ? [] : [weights]),
  ];
  return { files, missing };
}

/**
 * The shard files index `index` of snapshot `dir` names in its `weight_map`, relative to the
 * repo root, checked by the shard rule (`parseWeightMap`) before any is downloaded.
 */
async function readShards(dir: string, index: string): Promise<string[]> {
  const where = join(dir, index);
  const text = await localFiles(dir).text(index);
  if (text === undefined) throw new WebcapError("MISSING_FILE", `${where} does not exist`);
  const base = index.includes("/") ? index.slice(0, index.lastIndexOf("/") + 1) : "";
  const shards = new Set(parseWeightMap(text, where).values());
  return [...shards].map((s) => base + s).sort();
}

// ------------------------------------------------------------------------------- download

/** Fetch the repo listing, record the ref and fetch every planned file into the snapshot. */
async function downloadSnapshot(repo: Repo): Promise<string> {
  const { sha, files: listed } = await repoInfo(repo);
  const available = new Set(listed);
  const plan = planFiles(available, repo.files);
  if (plan.missing.length > 0) throw missingError(repo, plan.missing);
  await writeRef(repo, sha);
  const dir = join(repo.folder, "snapshots", sha);
  for (const file of plan.files) {
    await fetchFile(repo, sha, file);
    if (!isIndex(file)) continue;
    const shards = await readShards(dir, file);
    const absent = shards.filter((s) => !available.has(s));
    if (absent.length > 0) throw missingError(repo, absent);
    for (const shard of shards) await fetchFile(repo, sha, shard);
  }
  return dir;
}

function missingError(repo: Repo, missing: string[]): WebcapError {
  const advice = repo.files
    ? "check the files option"
    : "pass the repo's own file names with the files option";
  return new WebcapError(
    "MISSING_FILE",
    `hub repo ${repo.id} (revision "${repo.revision}") at ${repo.endpoint} has no ` +
      `${missing.join(", ")}; ${advice}`,
  );
}

/** `GET /api/models/{id}/revision/{rev}`: the commit and the repo's file names. */
async function repoInfo(repo: Repo): Promise<{ sha: string; files: string[] }> {
  const url = `${repo.endpoint}/api/models/${repo.id}/revision/${
    encodeURIComponent(repo.revision)
  }`;
  const body = await request(repo, url, {}, true, async (res) => {
    if (!res.ok) throw await httpError(repo, res, "the model listing");
    return await res.json();
  }).catch(unreachable(repo));
  const sha = body?.sha;
  const siblings = body?.siblings;
  if (typeof sha !== "string" || !COMMIT.test(sha) || !Array.isArray(siblings)) {
    throw new WebcapError(
      "DOWNLOAD_FAILED",
      `${url} did not answer a hub model listing (no "sha" commit or "siblings" list); ` +
        `check that ${repo.endpoint} is a Hugging Face hub endpoint`,
    );
  }
  const files = siblings.map((s: { rfilename?: unknown }) => s?.rfilename)
    .filter((f: unknown): f is string => typeof f === "string");
  return { sha, files };
}

async function writeRef(repo: Repo, commit: string): Promise<void> {
  if (repo.revision === commit) return;
  const path = join(repo.folder, "refs", repo.revision);
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeTextFile(path, commit);
}

/**
 * Make `snapshots/<commit>/<file>` point at its complete blob, downloading it if needed; a text
 * file (not weights) above the text limit is FILE_TOO_LARGE before its download.
 */
async function fetchFile(repo: Repo, commit: string, file: string): Promise<void> {
  const pointer = join(repo.folder, "snapshots", commit, file);
  if (await isFile(pointer)) return;
  const meta = await fileMeta(repo, commit, file);
  if (!isWeightsFile(file)) checkTextSize(`"${file}" of hub repo ${repo.id}`, meta.size ?? 0);
  const blob = join(repo.folder, "blobs", meta.etag);
  const lock = join(repo.cacheDir, ".locks", repoFolderName(repo.id), `${meta.etag}.lock`);
  await withLock(lock, async () => {
    if (await isFile(blob)) {
      const size = (await Deno.stat(blob)).size;
      repo.onProgress(file, size, size);
    } else {
      await downloadBlob(repo, file, meta, blob);
    }
    await linkPointer(blob, pointer);
  });
}

/**
 * `HEAD {endpoint}/{id}/resolve/{commit}/{file}`: ETag, size and download location. A redirect's
 * `Location` is resolved against the request URL and must be http(s). One to the hub's own origin
 * without `X-Linked-Etag` (a renamed repo) is followed; any other is where the file is downloaded
 * from (a CDN), and gets the token only when its origin is the hub's.
 */
async function fileMeta(repo: Repo, commit: string, file: string): Promise<FileMeta> {
  const hub = new URL(repo.endpoint).origin;
  let url = repoFileUrl(`${repo.endpoint}/${repo.id}/resolve/${commit}/`, file, "file").href;
  for (let hop = 0; hop < 5; hop++) {
    const init: RequestInit = { method: "HEAD", redirect: "manual" };
    const res = await request(repo, url, init, true, async (r) => {
      await r.body?.cancel();
      return r;
    }).catch(unreachable(repo));
    const target = redirectTarget(repo, res, url, file);
    if (target?.origin === hub && !res.headers.has("x-linked-etag")) {
      url = target.href;
      continue;
    }
    if (res.status >= 300 && target === undefined) {
      throw await httpError(repo, res, `file "${file}"`);
    }
    const etag = normalizeEtag(res.headers.get("x-linked-etag") ?? res.headers.get("etag"));
    if (etag === undefined) {
      throw new WebcapError(
        "DOWNLOAD_FAILED",
        `${url} answered without a usable ETag, so "${file}" cannot be cached; ` +
          `check that ${repo.endpoint} is a Hugging Face hub endpoint`,
      );
    }
    const sizeHeader = res.headers.get("x-linked-size") ??
      (target ? null : res.headers.get("content-length"));
    const size = Number(sizeHeader ?? NaN);
    return {
      etag,
      size: Number.isSafeInteger(size) && size >= 0 ? size : undefined,
      location: target?.href ?? url,
      auth: (target?.origin ?? hub) === hub,
    };
  }
  throw new WebcapError("DOWNLOAD_FAILED", `too many redirects resolving "${file}" at ${url}`);
}

/**
 * Where a 3xx answer to `url` points (its `Location` resolved against `url`), else undefined.
 * @throws WebcapError DOWNLOAD_FAILED naming `file` when that is not an http(s) URL.
 */
function redirectTarget(repo: Repo, res: Response, url: string, file: string): URL | undefined {
  const location = res.headers.get("location");
  if (res.status < 300 || res.status >= 400 || location === null) return undefined;
  const target = URL.canParse(location, url) ? new URL(location, url) : undefined;
  if (target?.protocol === "http:" || target?.protocol === "https:") return target;
  throw new WebcapError(
    "DOWNLOAD_FAILED",
    `${url} redirected "${file}" of ${repo.id} to ${JSON.stringify(location)}, which is not an ` +
      `http(s) URL, so it was not fetched; check that ${repo.endpoint} is a Hugging Face hub endpoint`,
  );
}

/** Strip `W/` and quotes; refuse anything that is not a safe file name. */
function normalizeEtag(raw: string | null): string | undefined {
  if (raw === null) return undefined;
  const etag = raw.replace(/^W\//, "").replace(/^"(.*)"$/, "$1");
  return /^[\w.-]+$/.test(etag) && !etag.startsWith(".") ? etag : undefined;
}

/** Run `fn` holding an exclusive lock on `path` (other processes fetching the same blob wait). */
async function withLock(path: string, fn: () => Promise<void>): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const file = await Deno.open(path, { create: true, write: true });
  try {
    await file.lock(true);
    await fn();
  } finally {
    file.close();
  }
}

/** A failure worth retrying with resume: a dropped connection, a short body, a 5xx. */
class Retryable extends Error {}

/**
 * Download into `<blob>.incomplete`, retrying with resume; check its size and, for an LFS file
 * (a sha256 ETag), its hash; then rename it into place. A file that fails either is deleted.
 */
async function downloadBlob(repo: Repo, file: string, meta: FileMeta, blob: string): Promise<void> {
  const partial = `${blob}.incomplete`;
  await Deno.mkdir(dirname(blob), { recursive: true });
  const hash: PartialHash = { sha: new Sha256(), verify: SHA256.test(meta.etag) };
  let expected = meta.size;
  for (let attempt = 0;; attempt++) {
    try {
      expected = await downloadOnce(repo, file, meta, partial, expected, hash);
      break;
    } catch (e) {
      if (!(e instanceof Retryable)) throw e;
      if (attempt >= RETRIES) throw await droppedError(repo, file, partial, expected, e);
      await new Promise((r) => setTimeout(r, RETRY_BASE_MS * 2 ** attempt));
    }
  }
  const size = (await Deno.stat(partial)).size;
  if (size !== expected) {
    await Deno.remove(partial);
    throw new WebcapError(
      "DOWNLOAD_FAILED",
      `"${file}" of ${repo.id} came out ${size} bytes instead of ${expected}; ` +
        `the partial file was deleted, run again to download it afresh`,
    );
  }
  if (hash.verify) await checkHash(repo, file, meta, partial, hash);
  await Deno.rename(partial, blob);
}

/** The sha256 of an LFS ETag (git sha1 ETags of small files are not checked). */
const SHA256 = /^[0-9a-f]{64}$/;

/** The running hash of the partial file's bytes; `sha.length` says how many it has seen. */
interface PartialHash {
  sha: Sha256;
  /** Whether the ETag is a sha256 to check. */
  verify: boolean;
}

/** Make `hash` cover exactly the first `have` bytes of `partial` (rehashed from disk if not). */
async function syncHash(hash: PartialHash, partial: string, have: number): Promise<void> {
  if (!hash.verify || hash.sha.length === have) return;
  hash.sha = new Sha256();
  if (have > 0) await hashFile(partial, hash.sha, have);
}

/** Feed the first `limit` bytes of file `path` to `sha`. */
async function hashFile(path: string, sha: Sha256, limit = Infinity): Promise<void> {
  const file = await Deno.open(path);
  const reader = file.readable.getReader();
  try {
    for (let step = await reader.read(); !step.done; step = await reader.read()) {
      const rest = limit - sha.length;
      sha.update(rest < step.value.length ? step.value.subarray(0, rest) : step.value);
      if (sha.length >= limit) break;
    }
  } finally {
    await reader.cancel().catch(() => {}); // closes the file
  }
}

/** Refuse and delete a complete download whose sha256 is not its ETag. */
async function checkHash(
  repo: Repo,
  file: string,
  meta: FileMeta,
  partial: string,
  hash: PartialHash,
): Promise<void> {
  await syncHash(hash, partial, (await Deno.stat(partial)).size);
  const actual = hash.sha.hex();
  if (actual === meta.etag) return;
  await Deno.remove(partial);
  throw new WebcapError(
    "DOWNLOAD_FAILED",
    `"${file}" of ${repo.id} downloaded from ${new URL(meta.location).origin} has sha256 ` +
      `${actual}, not ${meta.etag} as the hub says; the download was deleted, run again to ` +
      `download it afresh`,
  );
}

async function droppedError(
  repo: Repo,
  file: string,
  partial: string,
  expected: number | undefined,
  cause: Error,
): Promise<WebcapError> {
  const have = await Deno.stat(partial).then((s) => s.size, () => 0);
  return new WebcapError(
    "DOWNLOAD_FAILED",
    `downloading "${file}" of ${repo.id} from ${repo.endpoint} failed after ${RETRIES + 1} ` +
      `tries (${cause.message}); ${have} of ${expected ?? "?"} bytes are kept in ${partial} ` +
      `and running again resumes from there`,
    { cause },
  );
}

/**
 * One GET, resuming from the partial file's size and feeding `hash` what is written; returns the
 * file's full size.
 */
async function downloadOnce(
  repo: Repo,
  file: string,
  meta: FileMeta,
  partial: string,
  expected: number | undefined,
  hash: PartialHash,
): Promise<number> {
  let have = await Deno.stat(partial).then((s) => s.size, () => 0);
  if (expected !== undefined && have > expected) have = 0;
  if (expected !== undefined && have === expected && have > 0) {
    repo.onProgress(file, have, expected);
    return expected;
  }
  const headers: Record<string, string> = have > 0 ? { range: `bytes=${have}-` } : {};
  return await request(repo, meta.location, { headers }, meta.auth, async (res, kick) => {
    const total = await checkGet(repo, file, res, partial, have, expected);
    if (res.status === 200) have = 0;
    await syncHash(hash, partial, have);
    const append = have > 0;
    const out = await Deno.open(partial, { create: true, write: true, append, truncate: !append });
    repo.onProgress(file, have, total);
    try {
      await eachChunk(res, async (chunk) => {
        kick();
        await writeAll(out, chunk);
        if (hash.verify) hash.sha.update(chunk);
        have += chunk.length;
        repo.onProgress(file, have, total);
      });
    } catch (e) {
      if (e instanceof Retryable) e.message += ` after ${have} of ${total} bytes`;
      throw e;
    } finally {
      out.close();
    }
    if (have < total) throw new Retryable(`connection closed after ${have} of ${total} bytes`);
    return total;
  });
}

/** Check a GET's status against the resume offset; returns the full file size. */
async function checkGet(
  repo: Repo,
  file: string,
  res: Response,
  partial: string,
  from: number,
  expected: number | undefined,
): Promise<number> {
  let total: number;
  if (res.status === 206) {
    const m = /^bytes (\d+)-\d+\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
    if (!m || Number(m[1]) !== from) {
      await res.body?.cancel();
      throw new Retryable(`bad Content-Range "${res.headers.get("content-range")}"`);
    }
    total = Number(m[2]);
  } else if (res.status === 200) {
    total = Number(res.headers.get("content-length") ?? expected);
  } else if (res.status === 416) {
    await res.body?.cancel();
    await Deno.truncate(partial, 0);
    throw new Retryable(`the server refused to resume from byte ${from}`);
  } else {
    if (res.status >= 500) {
      await res.body?.cancel();
      throw new Retryable(`server error ${res.status}`);
    }
    throw await httpError(repo, res, `file "${file}"`);
  }
  if (!Number.isSafeInteger(total) || (expected !== undefined && total !== expected)) {
    await res.body?.cancel();
    throw new WebcapError(
      "DOWNLOAD_FAILED",
      `"${file}" of ${repo.id}: the server announced ${total} bytes where ${expected} were ` +
        `expected; the file changed on the hub, run again`,
    );
  }
  return total;
}

/**
 * Hand each body chunk to `use`; a failed read (the connection dropped) is Retryable, a
 * failure of `use` (e.g. a full disk) is not and cancels the body.
 */
async function eachChunk(res: Response, use: (chunk: Uint8Array) => Promise<void>) {
  if (res.body === null) return;
  const reader = res.body.getReader();
  for (;;) {
    let step: ReadableStreamReadResult<Uint8Array>;
    try {
      step = await reader.read();
    } catch (e) {
      throw new Retryable(`connection dropped (${message(e)})`);
    }
    if (step.done) return;
    try {
      await use(step.value);
    } catch (e) {
      await reader.cancel().catch(() => {});
      throw e;
    }
  }
}

async function writeAll(out: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await out.write(bytes.subarray(off));
}

/** Point `pointer` at `blob` with a relative symlink, or a copy renamed into place. */
async function linkPointer(blob: string, pointer: string): Promise<void> {
  await Deno.mkdir(dirname(pointer), { recursive: true });
  await Deno.remove(pointer).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  try {
    await Deno.symlink(relative(dirname(pointer), blob), pointer, { type: "file" });
  } catch {
    const tmp = `${blob}.copy-${crypto.randomUUID()}`;
    await Deno.copyFile(blob, tmp);
    await Deno.rename(tmp, pointer);
  }
}

/**
 * After a cached hub file at `path` failed to load: when it leads (through its snapshot link) to
 * an LFS blob (named by its sha256) whose bytes do not match that name, remove the blob and the
 * link, so that the next {@link resolveModel} downloads it afresh.
 * @returns what was done, for the error message; undefined when `path` is no such corrupt blob.
 */
export async function dropCorruptBlob(path: string): Promise<string | undefined> {
  if (typeof Deno === "undefined") return undefined;
  const blob = await Deno.realPath(path).catch(() => undefined);
  const etag = blob && /[\\/]blobs[\\/]([0-9a-f]{64})$/.exec(blob)?.[1];
  if (!blob || !etag) return undefined;
  const sha = new Sha256();
  await hashFile(blob, sha);
  const actual = sha.hex();
  if (actual === etag) return undefined;
  await Deno.remove(blob);
  if (path !== blob) await Deno.remove(path);
  return `its hub cache blob ${blob} has sha256 ${actual}, not the ${etag} it is named by, and ` +
    `was removed with its snapshot link: run again to download it afresh`;
}

// ---------------------------------------------------------------------------------- HTTP

/**
 * Fetch `url` and hand the response to `use`; the request aborts when no data comes for
 * {@link STALL_MS} (`use` calls `kick` on each chunk). Network failures become Retryable.
 */
async function request<T>(
  repo: Repo,
  url: string,
  init: RequestInit,
  auth: boolean,
  use: (res: Response, kick: () => void) => Promise<T>,
): Promise<T> {
  const ctrl = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const kick = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ctrl.abort(new Error(`no data for ${STALL_MS / 1000} s`)), STALL_MS);
  };
  const headers = new Headers(init.headers);
  headers.set("accept-encoding", "identity");
  headers.set("user-agent", "webcap");
  if (auth && repo.token) headers.set("authorization", `Bearer ${repo.token}`);
  kick();
  try {
    let res: Response;
    try {
      res = await repo.fetch(url, { ...init, headers, signal: ctrl.signal });
    } catch (e) {
      throw new Retryable(`cannot reach ${url}: ${message(e)}`);
    }
    return await use(res, kick);
  } finally {
    clearTimeout(timer);
  }
}

/** Turn a network failure outside a file body into a final DOWNLOAD_FAILED. */
function unreachable(repo: Repo): (e: unknown) => never {
  return (e) => {
    if (!(e instanceof Retryable)) throw e;
    throw new WebcapError(
      "DOWNLOAD_FAILED",
      `${e.message}; check the network and the endpoint ${repo.endpoint} (HF_ENDPOINT), or ` +
        `set HF_HUB_OFFLINE=1 to use only the cache`,
      { cause: e },
    );
  };
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Map a hub error status to a WebcapError that says what to do. */
async function httpError(repo: Repo, res: Response, what: string): Promise<WebcapError> {
  await res.body?.cancel();
  const code = res.headers.get("x-error-code");
  const where = `${repo.endpoint} (HF_ENDPOINT)`;
  if (res.status === 401 || res.status === 403) {
    const advice = repo.token
      ? "HF_TOKEN is set but was refused: check that it is valid and has access"
      : "if it is private or gated, accept its terms on the hub and set HF_TOKEN to an access token";
    return new WebcapError(
      "HUB_NOT_FOUND",
      `hub repo ${repo.id} at ${where} refused access to ${what} (${res.status}); ` +
        `check the id, and ${advice}`,
    );
  }
  if (res.status === 404) {
    const detail = code === "RevisionNotFound"
      ? `revision "${repo.revision}" of hub repo ${repo.id} was not found`
      : code === "EntryNotFound"
      ? `${what} of hub repo ${repo.id} was not found`
      : `hub repo ${repo.id} was not found`;
    return new WebcapError(
      "HUB_NOT_FOUND",
      `${detail} at ${where}; check the id "${repo.id}" and revision, or pass a local directory`,
    );
  }
  return new WebcapError(
    "DOWNLOAD_FAILED",
    `${where} answered ${res.status} ${res.statusText} for ${what} of ${repo.id}; try again later`,
  );
}
