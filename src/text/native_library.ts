/**
 * Hugging Face's native `tokenizers` (Rust through Node-API) behind {@link JsonTokenizer}, in
 * Deno. Its `encode` and `decode` return promises, while webcap's tokenizer is synchronous, so the
 * library lives on one worker thread (`native_worker.ts`) and the main thread blocks on each call
 * (`Atomics.wait` on a shared flag, then `receiveMessageOnPort`); a call takes about a
 * millisecond. The worker is started on first use and does not keep the process alive.
 *
 * Nothing here is imported statically by a browser: `node:worker_threads` is taken from
 * `process.getBuiltinModule` at run time and the worker is a URL, so the browser bundle holds no
 * native code.
 * @module
 */

import type * as WorkerThreads from "node:worker_threads";
import { WebcapError } from "../errors.ts";
import type { JsonTokenizer } from "./library.ts";
import type { Opened, Reply, Request, WorkerData } from "./native_worker.ts";

/** Longest wait for the worker to load the library or answer one call. */
const TIMEOUT_MS = 60_000;

/** Permissions the library's loader needs; without them Deno would prompt. */
const PERMISSIONS = ["ffi", "read", "env"] as const;

/** The worker and its port; `failed` once it stopped answering. */
interface Native {
  threads: typeof WorkerThreads;
  worker: WorkerThreads.Worker;
  port: WorkerThreads.MessagePort;
  signal: Int32Array;
  /** A word nothing notifies: the main thread sleeps on it while the reply is on its way. */
  nap: Int32Array;
  failed?: string;
}

/** The started library, or why it is unavailable; undefined before the first try. */
let native: Native | string | undefined;

function workerThreads(): typeof WorkerThreads | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?(id: string): unknown } }).process;
  return proc?.getBuiltinModule?.("node:worker_threads") as typeof WorkerThreads | undefined;
}

/** Why the library cannot be tried here (browser, missing permission), or undefined. */
function unsupported(): string | undefined {
  if (!("Deno" in globalThis)) return "not running in Deno";
  for (const name of PERMISSIONS) {
    if (Deno.permissions.querySync({ name }).state !== "granted") {
      return `--allow-${name} is not granted`;
    }
  }
  if (!workerThreads()) return "node:worker_threads is unavailable";
}

/**
 * Block until the worker answers; its reply, or undefined when it did not in time. The signal
 * can be seen before the reply reaches this end of the port, so the port is polled until then.
 */
function awaitReply(n: Native): Reply | undefined {
  const deadline = performance.now() + TIMEOUT_MS;
  if (Atomics.wait(n.signal, 0, 0, TIMEOUT_MS) === "timed-out") return undefined;
  for (;;) {
    const got = n.threads.receiveMessageOnPort(n.port);
    if (got) return got.message as Reply;
    if (performance.now() > deadline) return undefined;
    Atomics.wait(n.nap, 0, 0, 1); // 1 ms: nothing ever notifies `nap`
  }
}

/** Post `req` and block until the worker answers; the reply's value. */
function call(n: Native, req: Request): unknown {
  if (n.failed) throw nativeFailed(n.failed);
  Atomics.store(n.signal, 0, 0);
  n.port.postMessage(req);
  const reply = awaitReply(n);
  if (!reply) {
    n.failed = `no answer in ${TIMEOUT_MS / 1000} s`;
    n.worker.terminate();
    throw nativeFailed(n.failed);
  }
  if ("error" in reply) throw new Error(reply.error);
  return reply.value;
}

function nativeFailed(why: string): WebcapError {
  return new WebcapError("BAD_TOKENIZER", `the native tokenizers library failed: ${why}.`);
}

/** Start the worker thread that loads the library, with its end of the channel. */
function spawn(threads: typeof WorkerThreads): Native {
  const { port1, port2 } = new threads.MessageChannel();
  const signal = new Int32Array(new SharedArrayBuffer(4));
  const workerData: WorkerData = { port: port2, signal };
  const worker = new threads.Worker(new URL("./native_worker.ts", import.meta.url), {
    workerData,
    transferList: [port2],
  });
  worker.unref();
  return { threads, worker, port: port1, signal, nap: new Int32Array(new SharedArrayBuffer(4)) };
}

/** Start the worker and wait until it has loaded the library; why not, as a string. */
function start(): Native | string {
  const why = unsupported();
  if (why) return why;
  let n: Native;
  try {
    n = spawn(workerThreads()!);
  } catch (e) {
    return `no worker thread (${e instanceof Error ? e.message : e})`;
  }
  const ready = awaitReply(n);
  if (ready && "value" in ready) return n;
  n.worker.terminate();
  return ready ? ready.error : `the worker did not start in ${TIMEOUT_MS / 1000} s`;
}

/** The native library, started on first use, or why it is unavailable here. */
export function nativeLibrary(): { open(json: object): JsonTokenizer } | string {
  native ??= start();
  const n = native;
  if (typeof n === "string") return n;
  return { open: (json) => openNative(n, json) };
}

/** Frees a tokenizer in the worker once its {@link JsonTokenizer} is collected. */
const dropped = new FinalizationRegistry<{ n: Native; handle: number }>(({ n, handle }) => {
  if (!n.failed) n.port.postMessage({ op: "drop", handle } satisfies Request);
});

/**
 * Load a complete `tokenizer.json` with the native library.
 * @throws the library's error for a tokenizer.json it rejects.
 */
function openNative(n: Native, json: object): JsonTokenizer {
  const { handle, vocab } = call(n, { op: "open", json: JSON.stringify(json) }) as Opened;
  const tok: JsonTokenizer = {
    backend: "tokenizers",
    encode: (text, addSpecialTokens) =>
      call(n, { op: "encode", handle, text, addSpecialTokens }) as number[],
    decode: (ids, skipSpecialTokens) =>
      call(n, { op: "decode", handle, ids, skipSpecialTokens }) as string,
    vocab: new Map(Object.entries(vocab)),
  };
  dropped.register(tok, { n, handle });
  return tok;
}
