import assert from "node:assert/strict";
import posix from "node:path/posix";
import {
  checkRepoPath,
  dirname,
  join,
  normalizePath,
  relative,
  repoFileUrl,
} from "../../src/io/path.ts";
import { assertCode, rng } from "../util.ts";

/** Random paths from a small alphabet of segments, `.`, `..` and repeated or trailing slashes. */
function randomPaths(seed: number, n: number): string[] {
  const r = rng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  return Array.from({ length: n }, () => {
    const segs = Array.from(
      { length: Math.floor(r() * 5) },
      () => pick(["a", "bb", ".", "..", ""]),
    );
    return pick(["", "/", "//"]) + segs.join("/") + pick(["", "/"]);
  });
}

Deno.test("path: join, normalizePath and dirname agree with node:path/posix", () => {
  const paths = randomPaths(1, 400).filter((p) => p !== "");
  for (const p of paths) {
    assert.equal(normalizePath(p), posix.normalize(p).replace(/(.)\/$/, "$1"), p);
    assert.equal(dirname(p), posix.dirname(posix.normalize(p)), p);
  }
  for (const [a, b] of paths.slice(1).map((p, i) => [paths[i], p])) {
    const node = posix.join(a, b);
    assert.equal(join(a, b), node === "/" ? node : node.replace(/\/$/, ""), `${a} + ${b}`);
  }
});

Deno.test("path: relative between absolute paths agrees with node:path/posix", () => {
  const abs = randomPaths(2, 400).map((p) => `/${p}`);
  for (const [a, b] of abs.slice(1).map((p, i) => [abs[i], p])) {
    assert.equal(relative(a, b), posix.relative(a, b), `${a} → ${b}`);
  }
});

/** Names that would leave a folder (or its URL) if appended to it, or that a file system misreads. */
const ESCAPES = [
  "",
  "file:%2Fetc%2Fpasswd",
  "file:///etc/passwd",
  "https:127.0.0.1:9/x.safetensors",
  "%2e%2e/x.safetensors",
  "../x.safetensors",
  "sub/../../x",
  "./x",
  "/abs.safetensors",
  "//127.0.0.1:9/x",
  "/\\127.0.0.1:9/x",
  "a\\b",
  "a//b",
  "a/",
  "a\0b",
  "a\nb",
  "C:x",
  "?x",
  "#x",
];

Deno.test("checkRepoPath: names inside the folder pass, every way out is refused", () => {
  for (const ok of ["config.json", "sub/x.safetensors", "clip-vision/config.json", "a b+c@d=e,f"]) {
    checkRepoPath(ok, "file");
  }
  for (const bad of ESCAPES) {
    assertCode(() => checkRepoPath(bad, "shard", "BAD_WEIGHTS"), "BAD_WEIGHTS", "shard");
  }
  assertCode(() => checkRepoPath("../x", "revision"), "BAD_OPTION", "revision", '"../x"');
});

Deno.test("repoFileUrl: every accepted name resolves under the base URL, others throw", () => {
  const base = "http://127.0.0.1:9/org/name/resolve/main/";
  const r = rng(3);
  const alphabet = ["a", ".", "..", "-", "_", "+", "@", "=", ",", " ", "/", "x.json"];
  for (let i = 0; i < 2000; i++) {
    const name = Array.from(
      { length: 1 + Math.floor(r() * 6) },
      () => alphabet[Math.floor(r() * alphabet.length)],
    ).join("");
    let url: URL;
    try {
      url = repoFileUrl(base, name, "file");
    } catch {
      continue;
    }
    assert.ok(url.href.startsWith(base) && url.href.length > base.length, `${name} → ${url}`);
    assert.equal(decodeURIComponent(url.href.slice(base.length)), name);
  }
  for (const bad of ESCAPES) assertCode(() => repoFileUrl(base, bad, "file"), "BAD_OPTION");
});
