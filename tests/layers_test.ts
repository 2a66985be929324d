/**
 * The arrows of docs/ARCHITECTURE.md, checked on every import in src/: a layer imports only the
 * layers below it (kernels know no models, decoding knows no GPU), and no folder grows past 20
 * TypeScript files.
 */
import assert from "node:assert/strict";

const SRC = new URL("../src/", import.meta.url);

/** What each layer (first folder under src/, or a root file) may import besides itself. */
const ALLOWED: Record<string, string[]> = {
  "errors.ts": [],
  "bytes.ts": [],
  gpu: [],
  shaders: ["gpu"],
  decode: [],
  eval: [],
  io: [],
  image: ["io"],
  text: ["io"],
  nn: ["gpu", "shaders", "io"],
  arch: ["nn", "gpu", "shaders", "io", "image", "text"],
  captioner: ["arch", "nn", "gpu", "shaders", "io", "image", "text", "decode"],
  train: ["captioner", "arch", "nn", "gpu", "shaders", "io", "image", "text", "decode", "eval"],
  jobs: ["captioner", "arch", "io", "image", "text", "decode"],
  cli: ["jobs", "captioner", "arch", "io", "image", "text", "decode"],
};
/** Root files every layer may use. */
const BASE = ["errors.ts", "bytes.ts"];

/** Every `.ts` file under `dir`, as paths relative to src/. */
function tsFiles(dir: URL, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (e.isDirectory) out.push(...tsFiles(new URL(`${e.name}/`, dir), `${prefix}${e.name}/`));
    else if (e.name.endsWith(".ts")) out.push(prefix + e.name);
  }
  return out;
}

/** Relative specifiers of static, dynamic and re-export imports in `code`. */
export function relativeImports(code: string): string[] {
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["'](\.{1,2}\/[^"']+)["']/gm;
  return [...code.matchAll(re)].map((m) => m[1]);
}

/** The layer of a path relative to src/ (`nn/vit.ts` → `nn`, `errors.ts` → `errors.ts`). */
function layerOf(path: string): string {
  return path.includes("/") ? path.slice(0, path.indexOf("/")) : path;
}

/** Imports of `file` (relative to src/) that go against the arrows, as `from → to` lines. */
export function wrongArrows(file: string, code: string): string[] {
  const from = layerOf(file);
  const allowed = ALLOWED[from];
  if (!allowed) return [`${file}: layer "${from}" is not in the layer table`];
  const bad: string[] = [];
  for (const spec of relativeImports(code)) {
    const target = new URL(spec, new URL(file, SRC)).href;
    if (!target.startsWith(SRC.href)) {
      bad.push(`${file} → ${spec} (outside src/)`);
      continue;
    }
    const to = layerOf(target.slice(SRC.href.length));
    if (to !== from && !BASE.includes(to) && !allowed.includes(to)) {
      bad.push(`${file} → ${spec} (${from} may not import ${to})`);
    }
  }
  return bad;
}

Deno.test("every import in src/ follows the layer arrows", () => {
  const bad = tsFiles(SRC).flatMap((f) => wrongArrows(f, Deno.readTextFileSync(new URL(f, SRC))));
  assert.deepEqual(bad, []);
});

Deno.test("the arrow check catches imports against the arrows", () => {
  assert.deepEqual(wrongArrows("shaders/x.ts", `import { a } from "../arch/blip.ts";`), [
    `shaders/x.ts → ../arch/blip.ts (shaders may not import arch)`,
  ]);
  assert.equal(wrongArrows("decode/x.ts", `const m = await import("../gpu/device.ts");`).length, 1);
  assert.equal(wrongArrows("decode/x.ts", `export { b } from "../nn/gpt2.ts";`).length, 1);
  assert.equal(wrongArrows("decode/x.ts", `import "../gpu/device.ts";`).length, 1);
  assert.deepEqual(wrongArrows("nn/x.ts", `import { c } from "../../mod.ts";`), [
    "nn/x.ts → ../../mod.ts (outside src/)",
  ]);
  assert.deepEqual(wrongArrows("nn/x.ts", `import type { E } from "../errors.ts";`), []);
});

Deno.test("no folder in src/ holds more than 20 TypeScript files", () => {
  const perFolder = new Map<string, number>();
  for (const f of tsFiles(SRC)) {
    const dir = f.includes("/") ? f.slice(0, f.lastIndexOf("/")) : ".";
    perFolder.set(dir, (perFolder.get(dir) ?? 0) + 1);
  }
  const over = [...perFolder].filter(([, n]) => n > 20);
  assert.deepEqual(over, []);
});
