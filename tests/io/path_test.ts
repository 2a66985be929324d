import assert from "node:assert/strict";
import posix from "node:path/posix";
import { dirname, join, normalizePath, relative } from "../../src/io/path.ts";
import { rng } from "../util.ts";

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
