/** Shared helpers for tests: seeded random data, float64 references, error measures. */
import assert from "node:assert/strict";
import { WebcapError } from "../src/errors.ts";
import { type AdapterClass, getGpu, type Gpu } from "../src/gpu/device.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { emptyTensor, type Tensor, writeTensor } from "../src/gpu/tensor.ts";

/** Path of a fixture under ../shared/fixtures (works from a fresh clone next to shared/). */
export function fixture(rel: string): string {
  return new URL(`../../shared/fixtures/${rel}`, import.meta.url).pathname;
}

/** A seeded generator of uniform floats in [-scale, scale) (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` uniform values in [-scale, scale). */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

/** ||a - b|| / ||b|| in float64. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

/** Index of the first non-finite value, or -1. */
export function firstNonFinite(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

/** A pooled f32 output tensor filled with NaN, so unwritten elements are caught. */
export function poisoned(gpu: Gpu, shape: number[]): Tensor {
  const t = emptyTensor(gpu, shape);
  writeTensor(t, new Float32Array(t.size).fill(NaN));
  return t;
}

/** Record `fn`, submit, read `out` back as f32. */
export async function runAndRead(gpu: Gpu, fn: (rec: Recorder) => Tensor): Promise<Float32Array> {
  const rec = new Recorder(gpu);
  const out = fn(rec);
  const p = rec.readTensor(out);
  await rec.submit();
  return (await p) as Float32Array;
}

/** Submit `rec` and read every tensor of `ts` back as f32. */
export async function readAll(rec: Recorder, ts: Tensor[]): Promise<Float32Array[]> {
  const reads = ts.map((t) => rec.readTensor(t));
  await rec.submit();
  return (await Promise.all(reads)) as Float32Array[];
}

/** Σ a·b, in float64. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** `deno task bundle` into `out` (the browser build the browser tests load). */
export async function buildBundle(out: string): Promise<void> {
  const { success, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--platform=browser", "mod.ts", "-o", out],
    cwd: new URL("../", import.meta.url),
    env: { NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(success, `deno bundle failed:\n${new TextDecoder().decode(stderr)}`);
}

/**
 * Assert `p` rejects with a WebcapError with `code` whose message matches every pattern in
 * `mentions` (a string is read as a pattern, as in {@link assertCode}).
 */
export async function assertRejectsCode(
  p: Promise<unknown>,
  code: string,
  ...mentions: (string | RegExp)[]
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof WebcapError, `expected WebcapError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const m of mentions) assert.match(e.message, new RegExp(m), e.message);
    return true;
  });
}

/** Assert `fn` throws a WebcapError with `code` whose message matches every pattern in `mentions`. */
export function assertCode(fn: () => unknown, code: string, ...mentions: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof WebcapError, `expected WebcapError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const m of mentions) assert.match(e.message, new RegExp(m), e.message);
    return true;
  });
}

export { getGpu };

/** Both adapter classes: kernels with per-class variants are tested in each on any machine. */
export const ADAPTER_CLASSES: readonly AdapterClass[] = ["cpu", "gpu"];

/** `asAdapterClass(gpu, cls, fn)`, `withSubgroups(gpu, on, fn)`: as the benchmarks switch them. */
export { asClass as asAdapterClass, withSubgroups } from "../bench/kernel_timing.ts";
