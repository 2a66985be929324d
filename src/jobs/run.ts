/**
 * The job loop: this task's items are read and decoded ahead of the GPU by a bounded prefetch,
 * captioned `batchSize` at a time, and handed in input order to a sink (the output file,
 * stdout); a progress bar shows items/s and the ETA of the task's share, and the summary counts
 * done, skipped (already in the output) and failed items.
 *
 * Reading (files, URLs with retries, tar members) is async I/O on this thread, many items in
 * flight; decoding runs on a {@link DecodePool} of `decodeWorkers` threads, so the WebAssembly
 * decoders do not hold the thread that drives the GPU, or here when `decodeWorkers` is 0. Either
 * way items come out in input order, at most `prefetch` of them in memory, and an item that does
 * not decode keeps its error; the workers end with the job, also when it fails. Preprocessing
 * (resize, normalise) stays in `Captioner`, which takes RGB images.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Captioner, CaptionOptions, CaptionResult } from "../captioner/captioner.ts";
import { decodeImage, type RgbImage } from "../image/decode.ts";
import { ProgressBar } from "../io/progress.ts";
import { DecodePool } from "./decode_pool.ts";
import { type InputOptions, type JobItem, jobItems } from "./inputs.ts";

/** What a job runs. */
export interface JobSettings {
  inputs: string[];
  input: InputOptions;
  options: CaptionOptions;
  /** Images per encoder pass. */
  batchSize: number;
  /** Items read and decoded ahead of the GPU (at most this many in memory). */
  prefetch: number;
  /** Worker threads that decode images; 0 decodes on this thread. */
  decodeWorkers: number;
  /** Draw the progress bar even when stderr is not a terminal. */
  progress?: boolean;
}

/** Where finished items go, a batch at a time, in input order. */
export type JobSink = (batch: { item: JobItem; result: CaptionResult }[]) => Promise<void>;

/** What a task did. */
export interface JobSummary {
  /** Items captioned now. */
  done: number;
  /** Items already in the output. */
  skipped: number;
  /** Items that failed (written with their error) and items of a duplicate key. */
  failed: number;
  /** Inputs that could not be read through (a list, a tar cut short or stalled). */
  badInputs: number;
  seconds: number;
}

/**
 * Which items of the shard to caption: not those already done, and a key only once — a
 * second item with a key already seen is a failure reported through `log`, not captioned.
 */
class Selection {
  readonly #seen = new Map<string, string>();
  skipped = 0;
  duplicates = 0;
  constructor(readonly done: ReadonlySet<string>, readonly log: (msg: string) => void) {}

  take = (key: string, source: string): boolean => {
    const first = this.#seen.get(key);
    if (first !== undefined) {
      this.duplicates++;
      this.log(
        `error BAD_INPUT: key "${key}" appears twice (${first} and ${source}); keys must be ` +
          "unique across all inputs and shards, the second is not captioned",
      );
      return false;
    }
    this.#seen.set(key, source);
    if (this.done.has(key)) this.skipped++;
    return !this.done.has(key);
  };
}

/** How many items of the share are to be captioned, or 0 when a remote tar makes it unknown. */
async function countToDo(s: JobSettings, done: ReadonlySet<string>): Promise<number> {
  let unknown = false;
  let n = 0;
  const sel = new Selection(done, () => {});
  const input = { ...s.input, remoteTar: () => (unknown = true, false) };
  const count = (key: string, source: string) => (sel.take(key, source) && n++, false);
  for await (const _ of jobItems(s.inputs, input, count, () => {})) { /* nothing is taken */ }
  return unknown ? 0 : n;
}

type Loaded = { image: RgbImage; error?: undefined } | { error: WebcapError };

/** `work` over `items`, up to `depth` started ahead of the one awaited, yielded in order. */
async function* prefetch<T>(
  items: AsyncIterable<JobItem>,
  depth: number,
  work: (item: JobItem) => Promise<T>,
): AsyncGenerator<[JobItem, T]> {
  const queue: [JobItem, Promise<T>][] = [];
  const it = items[Symbol.asyncIterator]();
  let exhausted = false;
  for (;;) {
    while (!exhausted && queue.length < depth) {
      const next = await it.next();
      if (next.done) exhausted = true;
      else {
        const p = work(next.value);
        p.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
        queue.push([next.value, p]);
      }
    }
    const head = queue.shift();
    if (!head) return;
    yield [head[0], await head[1]];
  }
}

/** Read and decode an item (on `pool`, else here); its WebcapError becomes its result. */
async function load(item: JobItem, maxPixels: number, pool?: DecodePool): Promise<Loaded> {
  try {
    const bytes = await item.read();
    const image = pool
      ? await pool.decode(bytes, item.source, maxPixels)
      : await decodeImage(bytes, item.source, { maxPixels });
    return { image };
  } catch (e) {
    if (e instanceof WebcapError) return { error: e };
    throw e;
  }
}

/** Caption the images of a batch; items that failed to load keep their error. */
async function captionBatch(
  captioner: Captioner,
  batch: [JobItem, Loaded][],
  options: CaptionOptions,
): Promise<{ item: JobItem; result: CaptionResult }[]> {
  const ok = batch.filter(([, l]) => !l.error);
  const results = ok.length
    ? await captioner.caption(ok.map(([, l]) => (l as { image: RgbImage }).image), options)
    : [];
  let next = 0;
  return batch.map(([item, l]) => {
    const result = l.error ? { source: item.source, captions: [], error: l.error } : {
      ...results[next++],
      source: item.source,
    };
    return { item, result };
  });
}

/**
 * Caption this task's share of the inputs, skipping the keys in `done`, handing results to
 * `sink`; duplicate keys and unreadable inputs are reported through `log` (stderr).
 */
export async function runJob(
  captioner: Captioner,
  s: JobSettings,
  done: ReadonlySet<string>,
  sink: JobSink,
  log: (msg: string) => void,
): Promise<JobSummary> {
  const start = performance.now();
  const total = await countToDo(s, done);
  const bar = total === 1
    ? undefined
    : new ProgressBar({ total, label: "captioning", force: s.progress });
  bar?.update(0);
  const sel = new Selection(done, log);
  const summary = { done: 0, skipped: 0, failed: 0, badInputs: 0, seconds: 0 };
  const onError = (_input: string, e: WebcapError) => {
    summary.badInputs++;
    log(`error ${e.code}: ${e.message}`);
  };
  const items = jobItems(s.inputs, s.input, sel.take, onError);
  let batch: [JobItem, Loaded][] = [];
  const flush = async () => {
    const finished = await captionBatch(captioner, batch, s.options);
    batch = [];
    await sink(finished);
    for (const { result } of finished) result.error ? summary.failed++ : summary.done++;
    bar?.update(summary.done + summary.failed);
  };
  const depth = Math.max(s.prefetch, s.batchSize);
  const pool = s.decodeWorkers > 0 ? new DecodePool(s.decodeWorkers) : undefined;
  try {
    for await (const entry of prefetch(items, depth, (i) => load(i, captioner.maxPixels, pool))) {
      batch.push(entry);
      if (batch.length >= s.batchSize) await flush();
    }
    if (batch.length) await flush();
  } finally {
    pool?.close();
  }
  bar?.done();
  summary.skipped = sel.skipped;
  summary.failed += sel.duplicates;
  summary.seconds = (performance.now() - start) / 1000;
  return summary;
}

/** `done 28, skipped 0, failed 2 in 12.3 s (2.3 items/s)`, and the inputs not read through. */
export function summaryLine(s: JobSummary): string {
  const rate = s.seconds > 0 ? (s.done + s.failed) / s.seconds : 0;
  const bad = s.badInputs
    ? `, ${s.badInputs} input${s.badInputs > 1 ? "s" : ""} not read through`
    : "";
  return `done ${s.done}, skipped ${s.skipped}, failed ${s.failed}${bad} in ` +
    `${s.seconds.toFixed(1)} s (${rate.toFixed(1)} items/s)`;
}
