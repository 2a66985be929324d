/**
 * A job's output: JSON lines, appended one per item and synced after each batch, so a task
 * killed at any moment leaves every finished item on disk. The first line names the command
 * that makes the file (model, shard, the flags that change captions); a rerun of the same
 * command cuts a torn last line, skips the keys already written and appends the rest, and a
 * different command is refused with the differences.
 *
 *   {"webcap_job":1,"command":{"model":"…","shard":"0/3","settings":{"--num-beams":"3"}}}
 *   {"key":"000001","source":"a.tar:000001.jpg","captions":[{"text":"…","score":-3.2}]}
 *   {"key":"000002","source":"a.tar:000002.jpg","error":{"code":"BAD_IMAGE","message":"…"}}
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { ImageId } from "./inputs.ts";

/** What decides a job's captions: the model, the task's shard and the flags that matter. */
export interface JobCommand {
  model: string;
  /** `I/N`, or `merged` for the join of all tasks. */
  shard: string;
  /** Flag → value (`true` for switches), for every given flag that changes captions. */
  settings: Record<string, string | boolean>;
}

/** One item's line. */
export interface JobLine {
  key: string;
  source: string;
  image_id?: ImageId;
  /** Best first. */
  captions?: { text: string; score: number }[];
  error?: { code: string; message: string };
}

const encoder = new TextEncoder();

/** The line of an item and what became of it (`captions` is empty when `error` is set). */
export function jobLine(
  item: { key: string; source: string; imageId?: ImageId },
  result: { captions: { text: string; score: number }[]; error?: WebcapError },
): JobLine {
  const line: JobLine = { key: item.key, source: item.source };
  if (item.imageId !== undefined) line.image_id = item.imageId;
  if (result.error) line.error = { code: result.error.code, message: result.error.message };
  else line.captions = result.captions.map(({ text, score }) => ({ text, score }));
  return line;
}

/** The header line of a file made by `command`. */
export function headerLine(command: JobCommand): string {
  return JSON.stringify({ webcap_job: 1, command }) + "\n";
}

/** The command of a header line, or undefined when the line is not one. */
function commandOf(line: unknown): JobCommand | undefined {
  const rec = line as { webcap_job?: unknown; command?: JobCommand };
  return rec?.webcap_job === 1 && typeof rec.command?.model === "string" ? rec.command : undefined;
}

/** How `file` differs from `now`, as `what: the file has X, this command Y` phrases. */
export function commandDifferences(file: JobCommand, now: JobCommand): string[] {
  const show = (v: unknown) => v === undefined ? "none" : JSON.stringify(v);
  const out: string[] = [];
  const say = (what: string, a: unknown, b: unknown) => {
    if (a !== b) out.push(`${what}: the file has ${show(a)}, this command ${show(b)}`);
  };
  say("model", file.model, now.model);
  say("shard", file.shard, now.shard);
  const flags = [...new Set([...Object.keys(file.settings), ...Object.keys(now.settings)])].sort();
  for (const f of flags) say(f, file.settings[f], now.settings[f]);
  return out;
}

/**
 * Cut a last line that lacks its newline (a write the task was killed in); returns the size
 * kept. Reads back from the end in 64 kB steps.
 */
async function cutTornLine(path: string): Promise<number> {
  const file = await Deno.open(path, { read: true, write: true });
  try {
    const size = (await file.stat()).size;
    let end = size;
    const buf = new Uint8Array(65536);
    while (end > 0) {
      const start = Math.max(0, end - buf.length);
      await file.seek(start, Deno.SeekMode.Start);
      const chunk = buf.subarray(0, end - start);
      let off = 0;
      while (off < chunk.length) off += (await file.read(chunk.subarray(off))) ?? chunk.length;
      const nl = chunk.lastIndexOf(10);
      if (nl >= 0) {
        end = start + nl + 1;
        break;
      }
      end = start;
    }
    if (end < size) await file.truncate(end);
    return end;
  } finally {
    file.close();
  }
}

/** The complete lines of a file as they stream (not a torn last one), with 1-based numbers. */
async function* fileLines(path: string): AsyncGenerator<[string, number]> {
  const file = await Deno.open(path);
  let rest = "";
  let n = 0;
  for await (const text of file.readable.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + text).split("\n");
    rest = parts.pop()!;
    for (const p of parts) yield [p, ++n];
  }
}

/** A job file read whole: its command and item lines (a torn last line is left out). */
export interface JobFile {
  command: JobCommand;
  lines: JobLine[];
  /** Whether the last line was torn (the task was killed while writing it). */
  torn: boolean;
}

/**
 * Read a job output.
 * @throws WebcapError BAD_INPUT when the file is not a webcap job output or a line (other than
 *   a torn last one) is not an item.
 */
export async function readJobFile(path: string): Promise<JobFile> {
  let command: JobCommand | undefined;
  const lines: JobLine[] = [];
  let torn = false;
  const text = await Deno.readTextFile(path).catch((e) => {
    throw new WebcapError("MISSING_FILE", `${path}: cannot read (${e.message})`);
  });
  const all = text.split("\n");
  if (all.at(-1) === "") all.pop();
  else torn = all.length > 0;
  for (const [i, line] of all.entries()) {
    if (torn && i === all.length - 1) break;
    const rec = parseLine(line, path, i + 1);
    if (i === 0) command = headerOf(rec, path);
    else lines.push(itemOf(rec, path, i + 1));
  }
  if (!command) throw notJobFile(path);
  return { command, lines, torn };
}

function parseLine(line: string, path: string, n: number): unknown {
  try {
    return JSON.parse(line);
  } catch {
    throw new WebcapError(
      "BAD_INPUT",
      `${path} line ${n} is not JSON (${line.slice(0, 60)}…); webcap writes whole lines, so ` +
        "the file was changed by something else; nothing was appended",
    );
  }
}

function headerOf(rec: unknown, path: string): JobCommand {
  const command = commandOf(rec);
  if (!command) throw notJobFile(path);
  return command;
}

function notJobFile(path: string): WebcapError {
  return new WebcapError(
    "BAD_OPTION",
    `${path} is not a webcap caption output (its first line is not a {"webcap_job": 1, …} ` +
      "header), so nothing is appended to it; choose another --output file",
  );
}

function itemOf(rec: unknown, path: string, n: number): JobLine {
  const item = rec as JobLine;
  if (typeof item?.key !== "string" || (!Array.isArray(item.captions) && !item.error)) {
    throw new WebcapError(
      "BAD_INPUT",
      `${path} line ${n} is not an item line ({"key", "captions" or "error", …})`,
    );
  }
  return item;
}

/** An output file open for appending, with the keys it already holds. */
export class JobOutput {
  private constructor(
    readonly path: string,
    /** Keys already written (by earlier runs of the command), errors included. */
    readonly done: Set<string>,
    /** Whether a torn last line was cut. */
    readonly repaired: boolean,
    private readonly file: Deno.FsFile,
  ) {}

  /**
   * Open `path` for `command`: create it with its header, or resume it.
   * @throws WebcapError BAD_OPTION when the file was made by another command (saying how it
   *   differs) or is not a job output; BAD_INPUT when a line is damaged. Nothing is changed then.
   */
  static async open(path: string, command: JobCommand): Promise<JobOutput> {
    const exists = await Deno.stat(path).then(() => true, () => false);
    const done = new Set<string>();
    let repaired = false;
    let fresh = !exists;
    if (exists) {
      await checkHeader(path, command);
      for await (const [line, n] of fileLines(path)) {
        if (n > 1 && line) done.add(itemOf(parseLine(line, path, n), path, n).key);
      }
      const size = (await Deno.stat(path)).size;
      repaired = (await cutTornLine(path)) < size;
      fresh = (await Deno.stat(path)).size === 0; // only a torn header was there
    }
    const file = await Deno.open(path, { append: true, create: true });
    const out = new JobOutput(path, done, repaired, file);
    if (fresh) await out.#write(headerLine(command));
    return out;
  }

  /** Append item lines and sync them to disk. */
  async append(lines: JobLine[]): Promise<void> {
    if (lines.length === 0) return;
    await this.#write(lines.map((l) => JSON.stringify(l) + "\n").join(""));
    for (const l of lines) this.done.add(l.key);
  }

  async #write(text: string): Promise<void> {
    const bytes = encoder.encode(text);
    let off = 0;
    while (off < bytes.length) off += await this.file.write(bytes.subarray(off));
    await this.file.syncData();
  }

  /** Close the file. */
  close(): void {
    this.file.close();
  }
}

/**
 * Refuse a file made by another command or not by webcap. A file without a whole first line is
 * a header torn by a kill when it is the start of one (then it is cut and written again).
 */
async function checkHeader(path: string, command: JobCommand): Promise<void> {
  const first = await fileLines(path).next();
  if (first.done) {
    if ((await Deno.stat(path)).size > 4096) throw notJobFile(path);
    const text = new TextDecoder().decode(await Deno.readFile(path));
    if (headerLine(command).startsWith(text) || text.startsWith('{"webcap_job":')) return;
    throw notJobFile(path);
  }
  const fileCommand = headerOf(parseLine(first.value[0], path, 1), path);
  const diff = commandDifferences(fileCommand, command);
  if (diff.length) {
    throw new WebcapError(
      "BAD_OPTION",
      `--output ${path} was made by another command, so nothing is appended to it (${
        diff.join("; ")
      }); rerun with the same model and options, or choose another --output file`,
    );
  }
}
