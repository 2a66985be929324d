/**
 * A one-line terminal progress bar for long jobs (hub downloads, captioning a folder): count,
 * rate and, when the total is known, the time left at the rate so far.
 * It draws on stderr with carriage returns, and stays silent when stderr is not a terminal
 * (pipes, CI logs) unless forced.
 * @module
 */

/** Something a {@link ProgressBar} can draw on; `Deno.stderr` fits. */
export interface ProgressWriter {
  /** Write bytes synchronously; returns how many were written. */
  writeSync(p: Uint8Array): number;
  /** Whether this is a terminal; a writer without it counts as not one. */
  isTerminal?(): boolean;
}

/** Options of a {@link ProgressBar}. */
export interface ProgressBarOptions {
  /** Units of work in all; 0 while unknown (then only the count is shown). */
  total?: number;
  /** Text before the bar, e.g. a file name. */
  label?: string;
  /** How counts print: `"bytes"` (kB, MB, GB) or `"items"` (plain numbers). Default `"items"`. */
  unit?: "bytes" | "items";
  /** Draw even when the writer is not a terminal. Default false. */
  force?: boolean;
  /** Where to draw. Default `Deno.stderr`. */
  writer?: ProgressWriter;
  /** Bar width in cells. Default 24. */
  width?: number;
  /** Least milliseconds between two redraws; the final state always draws. Default 100. */
  intervalMs?: number;
  /** Show the rate of units per second. Default true. */
  rate?: boolean;
}

const encoder = new TextEncoder();

/** Format a byte count in decimal units, e.g. `1.5 MB`. */
function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** Seconds as `42s`, `3m05s` or `2h04m`. */
function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  const two = (n: number) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  return `${Math.floor(s / 3600)}h${two(Math.floor(s / 60) % 60)}m`;
}

/**
 * A progress bar: set `total`, call `update(done)` as work advances and `done()` at the end.
 *
 * ```ts
 * const bar = new ProgressBar({ label: "images", total: files.length });
 * for (let i = 0; i < files.length; i++) { await work(files[i]); bar.update(i + 1); }
 * bar.done();
 * ```
 */
export class ProgressBar {
  /** Units of work in all; 0 while unknown. May change while running. */
  total: number;
  /** Text before the bar. May change while running. */
  label: string;
  /** Text after the bar and the ETA (e.g. a loss). May change while running. */
  detail = "";
  readonly #unit: "bytes" | "items";
  readonly #writer: ProgressWriter;
  readonly #enabled: boolean;
  readonly #width: number;
  readonly #intervalMs: number;
  readonly #rate: boolean;
  readonly #start = performance.now();
  #value = 0;
  #lastDraw = -Infinity;
  /** The value shown by the last draw. */
  #shown = -1;
  #finished = false;

  /** Make a bar; nothing is drawn before the first `update`. */
  constructor(opts: ProgressBarOptions = {}) {
    this.total = opts.total ?? 0;
    this.label = opts.label ?? "";
    this.#unit = opts.unit ?? "items";
    this.#writer = opts.writer ?? Deno.stderr;
    this.#enabled = opts.force === true || this.#writer.isTerminal?.() === true;
    this.#width = opts.width ?? 24;
    this.#intervalMs = opts.intervalMs ?? 100;
    this.#rate = opts.rate ?? true;
  }

  /** Record that `done` units are complete and redraw (at most every `intervalMs`). */
  update(done: number): void {
    this.#value = done;
    const now = performance.now();
    const complete = this.total > 0 && done >= this.total;
    if (complete || now - this.#lastDraw >= this.#intervalMs) this.#draw(now);
  }

  /** Draw the final state and end the line. Further calls do nothing. */
  done(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (!this.#enabled) return;
    if (this.#shown !== this.#value) this.#draw(performance.now());
    this.#write("\n");
  }

  /** The text of the line as it would be drawn now (without the carriage return). */
  render(now: number = performance.now()): string {
    const parts = this.label ? [this.label] : [];
    const count = this.#format(this.#value);
    if (this.total > 0) {
      const frac = Math.min(1, Math.max(0, this.#value / this.total));
      const cells = Math.floor(frac * this.#width);
      parts.push(`[${"#".repeat(cells)}${".".repeat(this.#width - cells)}]`);
      parts.push(`${Math.floor(frac * 100)}%`.padStart(4));
      parts.push(`${count}/${this.#format(this.total)}`);
    } else {
      parts.push(count);
    }
    const seconds = (now - this.#start) / 1000;
    if (this.#rate && seconds > 0.5) {
      parts.push(`${this.#format(Math.round(this.#value / seconds))}/s`);
    }
    if (seconds > 0.5 && this.#value > 0 && this.#value < this.total) {
      parts.push(`ETA ${formatDuration(((this.total - this.#value) * seconds) / this.#value)}`);
    }
    if (this.detail) parts.push(this.detail);
    return parts.join(" ");
  }

  #format(n: number): string {
    return this.#unit === "bytes" ? formatBytes(n) : String(n);
  }

  #draw(now: number): void {
    if (!this.#enabled) return;
    this.#lastDraw = now;
    this.#shown = this.#value;
    this.#write(`\r${this.render(now)}\x1b[K`);
  }

  #write(text: string): void {
    const bytes = encoder.encode(text);
    let off = 0;
    while (off < bytes.length) off += this.#writer.writeSync(bytes.subarray(off));
  }
}
