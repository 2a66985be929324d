/**
 * The worker thread of `native_library.ts`: holds Hugging Face's native `tokenizers` and its
 * loaded tokenizers (by handle), and answers one request at a time. Each answer is posted on the
 * port, then `signal[0]` is set to 1 and notified, so the main thread can wait for it blocking.
 * The first answer says whether the library loaded.
 * @module
 */

import { type MessagePort, workerData } from "node:worker_threads";
import type { Tokenizer } from "npm:tokenizers@0.23.2";

/** What the main thread asks; `drop` frees a tokenizer and is not answered. */
export type Request =
  | { op: "open"; json: string }
  | { op: "encode"; handle: number; text: string; addSpecialTokens: boolean }
  | { op: "decode"; handle: number; ids: number[]; skipSpecialTokens: boolean }
  | { op: "drop"; handle: number };

/** A request's result, or the library's error message. */
export type Reply = { value: unknown } | { error: string };

/** The value of an `open` request. */
export interface Opened {
  handle: number;
  /** Token → id, added tokens included. */
  vocab: Record<string, number>;
}

/** What the main thread passes to the worker. */
export interface WorkerData {
  port: MessagePort;
  /** `signal[0]`: 0 while a request is pending, 1 once it is answered. */
  signal: Int32Array;
}

const { port, signal } = workerData as WorkerData;
const tokenizers = new Map<number, Tokenizer>();
let nextHandle = 1;

function answer(reply: Reply): void {
  port.postMessage(reply);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
}

function loaded(handle: number): Tokenizer {
  const tok = tokenizers.get(handle);
  if (!tok) throw new Error(`no tokenizer with handle ${handle}`);
  return tok;
}

async function run(library: typeof import("npm:tokenizers@0.23.2"), req: Request) {
  switch (req.op) {
    case "open": {
      const tok = library.Tokenizer.fromString(req.json);
      tokenizers.set(nextHandle, tok);
      return { handle: nextHandle++, vocab: tok.getVocab(true) } satisfies Opened;
    }
    case "encode": {
      const opts = { addSpecialTokens: req.addSpecialTokens };
      return (await loaded(req.handle).encode(req.text, null, opts)).getIds();
    }
    case "decode":
      return await loaded(req.handle).decode(req.ids, req.skipSpecialTokens);
    case "drop":
      return tokenizers.delete(req.handle);
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

try {
  const library = await import("npm:tokenizers@0.23.2");
  port.on("message", async (req: Request) => {
    let reply: Reply;
    try {
      reply = { value: await run(library, req) };
    } catch (e) {
      reply = { error: message(e) };
    }
    if (req.op !== "drop") answer(reply);
  });
  answer({ value: true });
} catch (e) {
  answer({ error: message(e) });
}
