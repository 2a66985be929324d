/**
 * Helpers of the job tests: generated PNG images, WebDataset tars written here (ustar), the job
 * output read back line by line with every line checked.
 */
import assert from "node:assert/strict";
import { encodeRgbPng } from "../../src/image/png_writer.ts";
import type { JobLine } from "../../src/jobs/output.ts";
import { rng } from "../util.ts";
import { fixture } from "../util.ts";

/** The tiny ViT-GPT2 fixture: fast on the CPU adapter. */
export const model = fixture("hf/vit-gpt2");

/** Flags every job test passes: short captions. */
export const quick = ["--model", model, "--max-new-tokens", "4"];

/** A noise PNG of `w`×`h` from `seed`. */
export function png(w: number, h: number, seed: number): Uint8Array {
  const r = rng(seed);
  return encodeRgbPng(w, h, Uint8Array.from({ length: w * h * 3 }, () => Math.floor(r() * 256)));
}

/** `n` images `img000.png`, … of sizes 16…39 px, as name → bytes. */
export function images(n: number): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (let i = 0; i < n; i++) {
    out.set(`img${String(i).padStart(3, "0")}.png`, png(16 + (i % 24), 16 + ((i * 7) % 24), i + 1));
  }
  return out;
}

/** Write `files` (name → bytes) under `dir`, making subfolders. */
export async function writeFiles(dir: string, files: Map<string, Uint8Array>): Promise<void> {
  for (const [name, bytes] of files) {
    const path = `${dir}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeFile(path, bytes);
  }
}

/** A ustar header block for a regular file. */
function header(name: string, size: number): Uint8Array {
  const h = new Uint8Array(512);
  const put = (off: number, text: string) => h.set(new TextEncoder().encode(text), off);
  put(0, name);
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, size.toString(8).padStart(11, "0") + "\0");
  put(136, "00000000000\0");
  put(148, "        ");
  h[156] = 48; // "0": regular file
  put(257, "ustar\x0000");
  const sum = h.reduce((a, b) => a + b, 0);
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

/** A tar archive of `members` in order, with its two end blocks. */
export function tar(members: [name: string, data: Uint8Array][]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [name, data] of members) {
    parts.push(header(name, data.length), data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  parts.push(new Uint8Array(1024));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, (off += p.length) - p.length);
  return out;
}

/** WebDataset members of images: `KEY.png` then `KEY.json` for each. */
export function samples(files: Map<string, Uint8Array>): [string, Uint8Array][] {
  return [...files].flatMap(([name, bytes]) => {
    const key = name.replace(/\.png$/, "");
    const meta = new TextEncoder().encode(JSON.stringify({ key, caption: "a test image" }));
    return [[name, bytes], [`${key}.json`, meta]] as [string, Uint8Array][];
  });
}

/** The item lines of a job output; asserts a header first and every line whole JSON. */
export async function outputLines(path: string): Promise<JobLine[]> {
  const text = await Deno.readTextFile(path);
  assert.ok(text.endsWith("\n"), `${path} ends with a whole line`);
  const lines = text.slice(0, -1).split("\n").map((l) => JSON.parse(l));
  assert.equal(lines[0].webcap_job, 1, "a header first");
  return lines.slice(1);
}

/** Each key's best caption; asserts no key twice and no error line. */
export function captionsByKey(lines: JobLine[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of lines) {
    assert.ok(!out.has(l.key), `key ${l.key} once`);
    assert.equal(l.error, undefined, `${l.key}: ${l.error?.message}`);
    out.set(l.key, l.captions![0].text);
  }
  return out;
}
