/**
 * What a training run shows and leaves behind (Deno): a JSON-lines log of every step,
 * validation and checkpoint ({@link TrainLog}; a resumed run keeps the lines up to its
 * checkpoint's step), a progress line on stderr ({@link TrainProgress}: step/total, ETA from the
 * measured time, loss, reward, lr, samples/s; plain lines when stderr is not a terminal), and the
 * training-curve picture drawn from the log ({@link trainCurveSvg}: loss, reward and validation
 * CIDEr-D against step, as SVG).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { ProgressBar, type ProgressWriter } from "../io/progress.ts";
import type { LoopStep } from "./scst.ts";

/** A log line at the start of a run (or of a resumed part). */
export interface LogStart {
  /** The kind of line. */
  event: "start";
  /** Optimizer steps already taken (0, or the resumed checkpoint's). */
  step: number;
  /** "xe" or "scst". */
  mode: string;
  /** Wall-clock time, ISO 8601. */
  time: string;
  /** More about the run (seed, batch size, the SCST signature, …). */
  [key: string]: unknown;
}

/** A log line per optimizer step. */
export interface LogStep {
  /** The kind of line. */
  event: "step";
  /** Optimizer steps taken, this one included. */
  step: number;
  /** Epochs done. */
  epoch: number;
  /** The step's loss. */
  loss: number;
  /** Mean reward of the step's samples (SCST only). */
  reward?: number;
  /** The learning rate of the step. */
  lr: number;
  /** The gradient norm before clipping. */
  grad_norm: number;
  /** Images per second of the step. */
  samples_per_s: number;
}

/** A log line per validation. */
export interface LogEval {
  /** The kind of line. */
  event: "eval";
  /** The step validated after. */
  step: number;
  /** The COCO metrics (names as `deno task eval` prints them). */
  metrics: Record<string, number>;
  /** A few greedy captions. */
  captions: { image: string; caption: string }[];
}

/** A log line per checkpoint. */
export interface LogSave {
  /** The kind of line. */
  event: "save";
  /** The step saved. */
  step: number;
  /** The checkpoint folder. */
  dir: string;
}

/** One line of a training log. */
export type LogLine = LogStart | LogStep | LogEval | LogSave;

/** The name of the log a training run writes into its output folder by default. */
export const TRAIN_LOG = "train_log.jsonl";
/** The name of the curve picture, written beside the log. */
export const TRAIN_CURVE = "train_curve.svg";

/** The log's line of a loop step. */
export function stepLine(r: LoopStep): LogStep {
  return {
    event: "step",
    step: r.step,
    epoch: r.epoch,
    loss: r.loss,
    ...(r.reward === undefined ? {} : { reward: r.reward }),
    lr: r.lr,
    grad_norm: r.gradNorm,
    samples_per_s: r.samplesPerSec,
  };
}

/**
 * The lines of a JSON-lines training log.
 * @throws WebcapError MISSING_FILE when it cannot be read, BAD_INPUT naming a line that is not
 *   a log line.
 */
export async function readTrainLog(path: string): Promise<LogLine[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new WebcapError("MISSING_FILE", `training log ${path}: ${(e as Error).message}`);
  }
  return text.split("\n").flatMap((line, i) => {
    if (line.trim() === "") return [];
    let v: LogLine;
    try {
      v = JSON.parse(line);
    } catch {
      v = {} as LogLine;
    }
    if (typeof v?.event !== "string" || !Number.isInteger(v.step)) {
      throw new WebcapError("BAD_INPUT", `${path}: line ${i + 1} is not a training log line`);
    }
    return [v];
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Write `text` to `path` through a temporary sibling renamed into place. */
async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}

/** Options of {@link TrainLog.open}. */
export interface TrainLogOptions {
  /** A resumed run: keep the lines up to this step (of `path`, or else of `from`). */
  resumeStep?: number;
  /** The log of the checkpoint being resumed, when `path` has none. */
  from?: string;
}

/** A JSON-lines training log being written (one line per step, validation, checkpoint). */
export class TrainLog {
  private constructor(
    /** The log file. */
    readonly path: string,
  ) {}

  /**
   * Start the log at `path` (its folder made): empty for a new run; for a resumed one, the
   * lines of `path` (or else of `from`) up to the resumed step.
   */
  static async open(path: string, opts: TrainLogOptions = {}): Promise<TrainLog> {
    const dir = path.slice(0, Math.max(0, path.lastIndexOf("/")));
    if (dir) await Deno.mkdir(dir, { recursive: true });
    let kept: LogLine[] = [];
    const { resumeStep: step, from } = opts;
    if (step !== undefined) {
      const source = await exists(path) ? path : from && await exists(from) ? from : undefined;
      kept = source ? (await readTrainLog(source)).filter((l) => l.step <= step) : [];
    }
    await writeAtomic(path, kept.map((l) => JSON.stringify(l) + "\n").join(""));
    return new TrainLog(path);
  }

  /** Append one line. */
  async write(line: LogLine): Promise<void> {
    await Deno.writeTextFile(this.path, JSON.stringify(line) + "\n", { append: true });
  }

  /**
   * Log a validation at `step`: its metrics and the first three greedy `captions` of the images
   * at `paths`; redraw the curve. Returns the captions logged, for showing.
   */
  async writeEval(
    step: number,
    metrics: Record<string, number>,
    captions: readonly string[],
    paths: readonly string[],
  ): Promise<LogEval["captions"]> {
    const shown = captions.slice(0, 3).map((caption, i) => ({ image: paths[i], caption }));
    await this.write({ event: "eval", step, metrics, captions: shown });
    await this.writeCurve();
    return shown;
  }

  /** Draw the curve of the log so far into `train_curve.svg` beside it; returns its path. */
  async writeCurve(): Promise<string> {
    const i = this.path.lastIndexOf("/");
    const svg = i < 0 ? TRAIN_CURVE : `${this.path.slice(0, i)}/${TRAIN_CURVE}`;
    await writeAtomic(svg, trainCurveSvg(await readTrainLog(this.path)));
    return svg;
  }
}

/** Options of a {@link TrainProgress}. */
export interface TrainProgressOptions {
  /** Optimizer steps of the run. */
  total: number;
  /** Plain lines, one per step, instead of a redrawn bar (e.g. with `--json`). */
  plain?: boolean;
  /** Where to write (default `Deno.stderr`); plain lines when it is not a terminal. */
  writer?: ProgressWriter;
}

const encoder = new TextEncoder();

/**
 * The progress of a training run: `[####....] 40% 4/10 ETA 6s loss 2.3134 reward 0.5120 lr
 * 1.00e-3 12.3 samples/s`, redrawn on a terminal, else (or `plain`) one line per step.
 */
export class TrainProgress {
  readonly #bar: ProgressBar;
  readonly #writer: ProgressWriter;
  readonly #plain: boolean;
  #done = 0;

  /** A progress display of `opts.total` steps; nothing is written before the first step. */
  constructor(opts: TrainProgressOptions) {
    const writer = opts.writer ?? Deno.stderr;
    const plain = opts.plain === true || writer.isTerminal?.() !== true;
    this.#writer = writer;
    this.#plain = plain;
    const sink = { writeSync: (p: Uint8Array) => p.length };
    this.#bar = new ProgressBar({
      total: opts.total,
      label: "step",
      rate: false,
      intervalMs: 0,
      writer: plain ? sink : writer,
    });
  }

  /** Show one more step done. */
  step(r: LoopStep): void {
    this.#bar.detail = `loss ${r.loss.toFixed(4)}` +
      (r.reward === undefined ? "" : ` reward ${r.reward.toFixed(4)}`) +
      ` lr ${r.lr.toExponential(2)} ${r.samplesPerSec.toFixed(1)} samples/s`;
    this.#bar.update(++this.#done);
    if (this.#plain) this.#line(this.#bar.render());
  }

  /** Write a line of its own (a validation, a checkpoint) without breaking the bar. */
  note(text: string): void {
    this.#line(this.#plain ? text : `\r\x1b[K${text}`);
    if (!this.#plain && this.#done) this.#bar.update(this.#done);
  }

  /** End the bar's line. */
  done(): void {
    this.#bar.done();
  }

  #line(text: string): void {
    const w = this.#writer;
    const bytes = encoder.encode(text + "\n");
    let off = 0;
    while (off < bytes.length) off += w.writeSync(bytes.subarray(off));
  }
}

/** The round tick step (1, 2 or 5 × 10^k) for about `count` ticks over [lo, hi]. */
function tickStep(lo: number, hi: number, count: number): number {
  const raw = (hi - lo) / count, mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
}

/** Round tick values covering [lo, hi], about `count` of them (steps of 1, 2 or 5 × 10^k). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step = tickStep(lo, hi, count);
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    out.push(Number(t.toPrecision(12)));
  }
  return out;
}

/** A series of the curve: its title, colour and points (step, value). */
interface Series {
  title: string;
  color: string;
  points: [number, number][];
}

/** The series a log holds: loss and reward per step, CIDEr-D per validation. */
function seriesOf(lines: readonly LogLine[]): Series[] {
  const steps = lines.filter((l): l is LogStep => l.event === "step");
  const evals = lines.filter((l): l is LogEval => l.event === "eval");
  return [
    { title: "loss", color: "#1f77b4", points: steps.map((l) => [l.step, l.loss]) },
    {
      title: "reward (mean of samples)",
      color: "#ff7f0e",
      points: steps.filter((l) => l.reward !== undefined).map((l) => [l.step, l.reward!]),
    },
    {
      title: "validation CIDEr-D",
      color: "#2ca02c",
      points: evals.filter((l) => Number.isFinite(l.metrics.CIDEr))
        .map((l) => [l.step, l.metrics.CIDEr]),
    },
  ];
}

const W = 720, H = 200, LEFT = 70, RIGHT = 20, TOP = 30, BOTTOM = 42;

/** A number as a tick label: short, without float noise. */
function label(v: number): string {
  return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3)
    ? v.toExponential(1)
    : String(Number(v.toPrecision(4)));
}

/** The y range of `ys` widened to round ticks (a flat series gets a range around it). */
function yRange(ys: number[]): [number, number] {
  let [lo, hi] = [Math.min(...ys), Math.max(...ys)];
  if (hi === lo) {
    [lo, hi] = [lo - Math.max(1, Math.abs(lo)) / 2, hi + Math.max(1, Math.abs(hi)) / 2];
  }
  const step = tickStep(lo, hi, 4);
  return [Math.floor(lo / step) * step, Math.ceil(hi / step) * step];
}

/** Dashed lines where a run resumed in another mode or from a checkpoint, named by mode. */
function runMarks(
  starts: readonly LogStart[],
  top: number,
  bottom: number,
  x: (v: number) => number,
) {
  return starts.filter((l) => l.step > 0).map((l) =>
    `<line x1="${x(l.step).toFixed(1)}" y1="${top}" x2="${x(l.step).toFixed(1)}" y2="${bottom}" ` +
    `stroke="#888" stroke-dasharray="4 3"/><text x="${(x(l.step) + 4).toFixed(1)}" ` +
    `y="${top + 12}" fill="#555">${l.mode === "scst" ? "scst" : "xe"}</text>`
  );
}

/** One panel: frame, ticks and labels on both axes, run marks, the series' polyline. */
function panel(
  s: Series,
  y0: number,
  xs: [number, number],
  starts: readonly LogStart[],
): string {
  const [lo, hi] = yRange(s.points.map((p) => p[1]));
  const pw = W - LEFT - RIGHT, ph = H - TOP - BOTTOM;
  const x = (v: number) => LEFT + ((v - xs[0]) / (xs[1] - xs[0] || 1)) * pw;
  const y = (v: number) => y0 + TOP + ph - ((v - lo) / (hi - lo)) * ph;
  const f = (v: number) => v.toFixed(1);
  const xt = niceTicks(xs[0], xs[1]).map((t) =>
    `<line x1="${f(x(t))}" y1="${y0 + TOP + ph}" x2="${f(x(t))}" y2="${y0 + TOP + ph + 5}" ` +
    `stroke="#333"/><text x="${f(x(t))}" y="${y0 + TOP + ph + 18}" text-anchor="middle">` +
    `${label(t)}</text>`
  );
  const yt = niceTicks(lo, hi, 4).map((t) =>
    `<line x1="${LEFT - 5}" y1="${f(y(t))}" x2="${LEFT}" y2="${f(y(t))}" stroke="#333"/>` +
    `<text x="${LEFT - 8}" y="${f(y(t) + 4)}" text-anchor="end">${label(t)}</text>`
  );
  const pts = s.points.map(([a, b]) => `${f(x(a))},${f(y(b))}`).join(" ");
  return [
    `<g class="panel" data-series="${s.title}">`,
    `<text x="${LEFT}" y="${y0 + TOP - 10}" font-weight="bold">${s.title}</text>`,
    `<rect x="${LEFT}" y="${y0 + TOP}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
    ...xt,
    ...yt,
    ...runMarks(starts, y0 + TOP, y0 + TOP + ph, x),
    `<text x="${LEFT + pw / 2}" y="${y0 + H - 6}" text-anchor="middle">step</text>`,
    `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${pts}"/>`,
    "</g>",
  ].join("\n");
}

/**
 * The training curve of a log as an SVG document: one panel per series that has points (loss
 * and mean reward per step, validation CIDEr-D per evaluation) against step, each with ticks
 * and labels on both axes and one polyline of all its points; a dashed line marks each resumed
 * run (named by its mode: XE then SCST shows where SCST began).
 */
export function trainCurveSvg(lines: readonly LogLine[]): string {
  const series = seriesOf(lines).filter((s) => s.points.length > 0);
  const starts = lines.filter((l): l is LogStart => l.event === "start");
  const steps = series.flatMap((s) => s.points.map((p) => p[0]));
  const xs: [number, number] = steps.length ? [Math.min(0, ...steps), Math.max(...steps)] : [0, 1];
  const height = Math.max(1, series.length) * H;
  const body = series.length
    ? series.map((s, i) => panel(s, i * H, xs, starts))
    : [`<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no steps logged</text>`];
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" ` +
    `viewBox="0 0 ${W} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${height}" fill="white"/>`,
    ...body,
    "</svg>",
    "",
  ].join("\n");
}
