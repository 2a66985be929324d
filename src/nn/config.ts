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
