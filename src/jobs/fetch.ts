/**
 * Fetching an image or a tar over http(s) for a job: a timeout on each try (connecting and
 * reading the body alike, so a stalled response ends), retries with exponential backoff for
 * failures that may pass (dropped connections, timeouts, 408, 429, 5xx), none for the rest.
 * @module
 */
import { WebcapError } from "../errors.ts";

/** How URLs are fetched. */
export interface FetchSettings {
  /** Milliseconds one try may take, body included. */
  timeoutMs: number;
  /** Tries after the first one. */
  retries: number;
  /** Wait before the first retry; doubled for each further one. */
  backoffMs: number;
  /** Largest body accepted, in bytes. */
  maxBytes: number;
}

/** 30 s per try, 3 retries from 0.5 s, 64 MB. */
export const DEFAULT_FETCH: FetchSettings = {
  timeoutMs: 30_000,
  retries: 3,
  backoffMs: 500,
  maxBytes: 64e6,
};

/** Whether `s` is an http(s) URL. */
export function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/** A failure that a later try may not meet. */
class Transient extends Error {}

/** Statuses worth another try. */
const RETRY_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/** One try: the whole body, within `timeoutMs`. */
async function fetchOnce(url: string, s: FetchSettings): Promise<Uint8Array> {
  const signal = AbortSignal.timeout(s.timeoutMs);
  let res: Response;
  try {
    res = await fetch(url, { signal });
  } catch (e) {
    throw new Transient(reason(e, s));
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    const why = `HTTP ${res.status} ${res.statusText}`.trim();
    if (RETRY_STATUS.has(res.status)) throw new Transient(why);
    throw new WebcapError("DOWNLOAD_FAILED", `${url}: ${why}`);
  }
  const length = Number(res.headers.get("content-length") ?? NaN);
  if (length > s.maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw tooLarge(url, s);
  }
  try {
    return await readBody(res.body!, url, s);
  } catch (e) {
    if (e instanceof WebcapError) throw e;
    throw new Transient(reason(e, s));
  }
}

async function readBody(
  body: ReadableStream<Uint8Array>,
  url: string,
  s: FetchSettings,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let have = 0;
  for await (const part of body) {
    parts.push(part);
    if ((have += part.length) > s.maxBytes) throw tooLarge(url, s);
  }
  const out = new Uint8Array(have);
  let off = 0;
  for (const p of parts) out.set(p, (off += p.length) - p.length);
  return out;
}

function tooLarge(url: string, s: FetchSettings): WebcapError {
  return new WebcapError("FILE_TOO_LARGE", `${url}: the body is over ${s.maxBytes} bytes`);
}

function reason(e: unknown, s: FetchSettings): string {
  const name = (e as Error)?.name;
  if (name === "TimeoutError" || name === "AbortError") return `no answer within ${s.timeoutMs} ms`;
  return `connection failed (${(e as Error)?.message ?? e})`;
}

/**
 * Fetch `url`'s body, retrying what may pass.
 * @throws WebcapError DOWNLOAD_FAILED naming the URL, the status or failure and the tries.
 */
export async function fetchBytes(url: string, s: FetchSettings): Promise<Uint8Array> {
  for (let attempt = 0;; attempt++) {
    try {
      return await fetchOnce(url, s);
    } catch (e) {
      if (!(e instanceof Transient)) throw e;
      if (attempt >= s.retries) {
        throw new WebcapError(
          "DOWNLOAD_FAILED",
          `${url}: ${e.message} (${attempt + 1} tr${attempt ? "ies" : "y"}); ` +
            "check the URL and the server, or raise --fetch-timeout / --retries",
        );
      }
      await new Promise((r) => setTimeout(r, s.backoffMs * 2 ** attempt));
    }
  }
}

/**
 * Open `url` as a stream (a remote tar): the answer's status is awaited within `timeoutMs` and
 * checked, with retries; the caller reads the body (see `streamSource` for its stall timeout).
 */
export async function fetchStream(
  url: string,
  s: FetchSettings,
): Promise<ReadableStream<Uint8Array>> {
  for (let attempt = 0;; attempt++) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), s.timeoutMs);
    try {
      const res = await fetch(url, { signal: ctl.signal });
      clearTimeout(timer);
      if (res.ok && res.body) return res.body;
      await res.body?.cancel().catch(() => {});
      const why = `HTTP ${res.status} ${res.statusText}`.trim();
      if (!RETRY_STATUS.has(res.status) || attempt >= s.retries) {
        throw new WebcapError("DOWNLOAD_FAILED", `${url}: ${why}`);
      }
    } catch (e) {
      clearTimeout(timer);
      if (e instanceof WebcapError) throw e;
      if (attempt >= s.retries) {
        throw new WebcapError("DOWNLOAD_FAILED", `${url}: ${reason(e, s)} (${attempt + 1} tries)`);
      }
    }
    await new Promise((r) => setTimeout(r, s.backoffMs * 2 ** attempt));
  }
}
