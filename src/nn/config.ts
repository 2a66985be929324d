/**
 * Reading numbers out of HF config objects with errors that name the file and the key.
 * @module
 */
import { WebcapError } from "../errors.ts";

/** `c[key]` (else `fallback`) as a finite non-negative number; BAD_CONFIG naming `where` and `key` otherwise. */
export function configNumber(
  c: Record<string, unknown>,
  key: string,
  where: string,
  fallback?: number,
): number {
  const v = c[key] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: "${key}" must be a non-negative number, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/**
 * `c[key]` (else `fallback`) as a count (layers, heads, sizes): a non-negative integer;
 * BAD_CONFIG naming `where` and `key` otherwise (`num_hidden_layers: 2.5` included).
 */
export function configCount(
  c: Record<string, unknown>,
  key: string,
  where: string,
  fallback?: number,
): number {
  const v = configNumber(c, key, where, fallback);
  if (!Number.isInteger(v)) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: "${key}" is a count and must be a whole number, got ${v}`,
    );
  }
  return v;
}

/** A probability `key` in [0, 1) (a dropout rate): `fallback` when absent, else a named BAD_CONFIG. */
export function configRate(
  c: Record<string, unknown>,
  key: string,
  where: string,
  fallback: number,
): number {
  const v = configNumber(c, key, where, fallback);
  if (v >= 1) throw new WebcapError("BAD_CONFIG", `${where}: "${key}" must be below 1, got ${v}`);
  return v;
}
