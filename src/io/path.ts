/**
 * Path helpers for the hub cache, in place of `node:path` so that every module reachable from
 * mod.ts loads in a browser. Paths come out with `/` separators (which Windows accepts too);
 * `\` is read as a separator as well. Semantics follow `node:path/posix`. Also the one rule for
 * file names inside a model repo or folder ({@link checkRepoPath}).
 * @module
 */
import { WebcapError, type WebcapErrorCode } from "../errors.ts";

/** Characters of one part of a repo path: what hub file names use, nothing a URL or shell reads. */
const REPO_PATH = /^[\w.\-+@=, ]+(\/[\w.\-+@=, ]+)*$/;

/**
 * The one rule for a file inside a model repo or folder (hub files and revisions, shard names of
 * an index, every file of a URL folder): parts of letters, digits and `_.-+@=, ` joined by `/`,
 * with no `.` or `..` part. So no scheme (`file:`, `https:host`), no `%` escape, no `\`, no
 * absolute or scheme-relative (`//host`) path and no control character: appended to a folder (or
 * a folder URL) it always names something inside it.
 * @throws WebcapError `code` naming `what` and the path otherwise.
 */
export function checkRepoPath(
  path: string,
  what: string,
  code: WebcapErrorCode = "BAD_OPTION",
): void {
  const ok = REPO_PATH.test(path) && !path.split("/").some((p) => p === "." || p === "..");
  if (!ok) {
    throw new WebcapError(
      code,
      `${what} ${JSON.stringify(path)} is not a valid relative repo path (parts of letters, ` +
        `digits and "_.-+@=, " joined by "/", no "." or ".." part)`,
    );
  }
}

/** `path` without `.` segments, `..` after names, repeated or trailing `/` (`"."` if empty). */
export function normalizePath(path: string): string {
  const absolute = /^[\\/]/.test(path);
  const out: string[] = [];
  for (const seg of path.split(/[\\/]+/)) {
    if (seg === "" || seg === ".") continue;
    if (seg !== ".." || (!absolute && (out.length === 0 || out[out.length - 1] === ".."))) {
      out.push(seg);
    } else {
      out.pop(); // `..` of a name, or above the root (which stays the root)
    }
  }
  const body = out.join("/");
  return absolute ? `/${body}` : body || ".";
}

/** The segments joined by `/` and normalized; empty segments are skipped. */
export function join(...segments: string[]): string {
  return normalizePath(segments.filter((s) => s !== "").join("/"));
}

/** The folder holding `path`: `"/"` for a top-level absolute path, `"."` for a bare name. */
export function dirname(path: string): string {
  const n = normalizePath(path);
  const cut = n.lastIndexOf("/");
  return cut < 0 ? "." : cut === 0 ? "/" : n.slice(0, cut);
}

/**
 * The path from folder `from` to `to`, both absolute or both relative to the same folder
 * (e.g. a symlink target beside its link).
 */
export function relative(from: string, to: string): string {
  const a = normalizePath(from).split("/").filter((s) => s !== "" && s !== ".");
  const b = normalizePath(to).split("/").filter((s) => s !== "" && s !== ".");
  let common = 0;
  while (common < a.length && common < b.length && a[common] === b[common]) common++;
  return [...a.slice(common).map(() => ".."), ...b.slice(common)].join("/");
}

/** Repo path `path` (checked by {@link checkRepoPath}) as a URL inside folder URL `base` (`…/`). */
export function repoFileUrl(
  base: string | URL,
  path: string,
  what: string,
  code?: WebcapErrorCode,
): URL {
  checkRepoPath(path, what, code);
  return new URL(path.split("/").map(encodeURIComponent).join("/"), base);
}
