/**
 * Self-critical sequence training (Rennie et al. 2017, as ruotianluo/self-critical.pytorch): K
 * captions per image sampled on the GPU from the {@link Trainer}'s live weights, rewarded with
 * CIDEr-D whose document frequencies come from the TRAINING references, a greedy baseline
 * (decoded without gradients) or the mean of the other samples, and the loss
 * −Σ (r − b)·log p·mask / Σ mask (mask up to and including the end token) through the trainer's
 * weighted-token step. {@link trainCaptioner} runs cross-entropy or SCST steps over data splits
 * with validation by the COCO metrics and `onStep` / `onEval` hooks.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { generateOnGpu } from "../captioner/gpu_decoder.ts";
import type { GenerateOptions } from "../decode/options.ts";
import type { GeneratedSequence } from "../decode/search.ts";
import { Recorder } from "../gpu/recorder.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { loadImage, type RgbImage } from "../image/decode.ts";
import { CiderD, documentFrequency } from "../eval/cider.ts";
import { evaluatePaired } from "../eval/coco.ts";
import { ptbTokenize } from "../eval/ptb/tokenizer.ts";
import { meanOfOthersBaseline, scstBatch } from "./batch.ts";
import { TRAINER_STATE } from "./checkpoint.ts";
import { type CaptionEntry, permutation } from "./data.ts";
import type { StepReport, Trainer } from "./trainer.ts";

/** Rewards of `samples[i]` against `references[i]` (the captions of its image). */
export type RewardFn = (samples: string[], references: string[][]) => number[];

/**
 * Baselines `[N·K]` of rewards `[N·K]` (K per image, image-major); `greedy[n]` is the reward of
 * image n's greedy caption when the baseline asked for one.
 */
export type BaselineFn = (rewards: Float32Array, K: number, greedy?: Float32Array) => Float32Array;

/** The greedy baseline: each image's greedy-caption reward for all its K samples. */
export const greedyBaseline: BaselineFn = (
  rewards: Float32Array,
  K: number,
  greedy?: Float32Array,
): Float32Array => {
  if (!greedy || greedy.length * K !== rewards.length) {
    throw new WebcapError("BAD_SHAPE", "the greedy baseline needs one greedy reward per image");
  }
  return Float32Array.from(rewards, (_, i) => greedy[Math.floor(i / K)]);
};

/** The "new SCST" baseline: the mean reward of the image's other K − 1 samples. */
export const meanBaseline: BaselineFn = (rewards: Float32Array, K: number): Float32Array =>
  meanOfOthersBaseline(rewards, K);

/**
 * CIDEr-D rewards with document frequencies of the training references (`trainRefs[i]`: the
 * captions of training image i), PTB-tokenized as the COCO evaluation tokenizes them.
 */
export function ciderReward(trainRefs: readonly (readonly string[])[]): RewardFn {
  const df = documentFrequency(tokenizeRefs(trainRefs));
  return (samples, references) => {
    const cider = new CiderD(tokenizeRefs(references), { df });
    return ptbTokenize(samples).map((s, i) => cider.scoreOne(i, s));
  };
}

/** References per image PTB-tokenized in one pass (as the COCO evaluation tokenizes them). */
export function tokenizeRefs(refs: readonly (readonly string[])[]): string[][] {
  const flat = ptbTokenize(refs.flat());
  let at = 0;
  return refs.map((r) => flat.slice(at, at += r.length));
}

/** Options of {@link scstStep}. */
export interface ScstOptions {
  /** Samples per image, K (default 5). */
  samples?: number;
  /** "greedy" (default) or "mean" (of the other samples), or a baseline function. */
  baseline?: "greedy" | "mean" | BaselineFn;
  /** Rewards of the samples (default: CIDEr-D; {@link ciderReward}). */
  reward: RewardFn;
  /** Sampling temperature (default 1). */
  temperature?: number;
  /** Sample among the k most likely tokens; 0: all (default 0). */
  topK?: number;
  /** Longest sample, in tokens (default 20). */
  maxNewTokens?: number;
  /** Seed of this step's sampling. */
  seed?: number;
}

/** The configuration of an SCST run as one line. */
export function scstSignature(o: Omit<ScstOptions, "reward"> & { rewardName?: string }): string {
  const b = typeof o.baseline === "function" ? "custom" : o.baseline ?? "greedy";
  return `SCST K=${o.samples ?? 5} baseline=${b} reward=${o.rewardName ?? "CIDEr-D(train-df)"} ` +
    "eos=kept";
}

/** What one SCST step did. */
export interface ScstReport {
  /** The optimizer step (absent while gradients accumulate). */
  step?: StepReport;
  /** `[N·K]` sampled captions, image-major. */
  samples: string[];
  /** `[N·K]` their rewards. */
  rewards: Float32Array;
  /** `[N·K]` their baselines. */
  baselines: Float32Array;
  /** `[N·K]` each sample's Σ of the log-probabilities it was drawn with (end token included). */
  logprobs: number[];
  /** `[N·K]` each sample's token count (end token included): its mask's sum. */
  lengths: number[];
}

/** Generated sequences per image of `images` from the trainer's current weights. */
export async function generateFromTrainer(
  trainer: Trainer,
  images: readonly RgbImage[],
  options: GenerateOptions,
): Promise<GeneratedSequence[][]> {
  const model = trainer.captionModel(), { height: H, width: W } = trainer.preprocessor;
  const data = new Float32Array(images.length * 3 * H * W);
  images.forEach((img, i) => data.set(trainer.preprocessor.apply(img), i * 3 * H * W));
  const rec = new Recorder(trainer.gpu);
  const pixels = uploadTensor(trainer.gpu, data, [images.length, 3, H, W], "f32", "pixel_values");
  rec.releaseAfterSubmit(pixels);
  const enc = model.encode(rec, pixels);
  await rec.submit();
  try {
    const d = model.decoder;
    const start = [d.decoderStartTokenId];
    return await generateOnGpu(trainer.gpu, model, enc, images.map(() => start), {
      ...options,
      eosTokenId: d.eosTokenId,
      padTokenId: d.padTokenId,
    });
  } finally {
    enc.dispose();
  }
}

function textOf(trainer: Trainer, tokens: number[]): string {
  return trainer.tokenizer.decode(tokens, { skipSpecialTokens: true }).trim();
}

/**
 * `[R, T + 1]` sample rows (start token, tokens, end-token padding) and their `[R, T]` mask: 1
 * up to and including the end token (all generated tokens when the sample did not end).
 */
export function sampleRows(
  seqs: readonly number[][],
  startId: number,
  padId: number,
): { samples: Int32Array; mask: Float32Array } {
  const T = Math.max(...seqs.map((s) => s.length)), R = seqs.length;
  const samples = new Int32Array(R * (T + 1)).fill(padId), mask = new Float32Array(R * T);
  seqs.forEach((s, r) => {
    samples[r * (T + 1)] = startId;
    samples.set(s, r * (T + 1) + 1);
    mask.fill(1, r * T, r * T + s.length);
  });
  return { samples, mask };
}

/**
 * One SCST micro-batch: sample K captions per image, reward them against `references[n]` (the
 * captions of image n), subtract the baseline, and step the trainer on the weighted samples.
 */
export async function scstStep(
  trainer: Trainer,
  batch: { images: readonly RgbImage[]; keys?: readonly string[] },
  references: string[][],
  opts: ScstOptions,
): Promise<ScstReport> {
  const K = opts.samples ?? 5, N = batch.images.length;
  if (!Number.isInteger(K) || K < 1 || references.length !== N) {
    throw new WebcapError(
      "BAD_OPTION",
      `SCST: samples must be an integer ≥ 1 (got ${K}) with references for each of the ${N} images`,
    );
  }
  const baseline = opts.baseline === "mean"
    ? meanBaseline
    : opts.baseline === undefined || opts.baseline === "greedy"
    ? greedyBaseline
    : opts.baseline;
  const maxNewTokens = opts.maxNewTokens ?? 20;
  const drawn = await generateFromTrainer(trainer, batch.images, {
    doSample: true,
    numReturnSequences: K,
    temperature: opts.temperature ?? 1,
    topK: opts.topK ?? 0,
    maxNewTokens,
    seed: opts.seed,
  });
  const seqs = drawn.flat().map((q) => q.tokens);
  const samples = seqs.map((s) => textOf(trainer, s));
  const perSample = samples.map((_, i) => references[Math.floor(i / K)]);
  const rewards = Float32Array.from(opts.reward(samples, perSample));
  let greedy: Float32Array | undefined;
  if (baseline === greedyBaseline) {
    const g = await generateFromTrainer(trainer, batch.images, { maxNewTokens });
    greedy = Float32Array.from(
      opts.reward(g.map((s) => textOf(trainer, s[0].tokens)), references),
    );
  }
  const baselines = baseline(rewards, K, greedy);
  const d = trainer.captionModel().decoder;
  const rows = sampleRows(seqs, d.decoderStartTokenId, d.padTokenId);
  const tokens = scstBatch({ ...rows, rewards, baselines, N, K }, d.vocabSize);
  const step = await trainer.stepTokens(batch, tokens);
  const logprobs = drawn.flat().map((q) => q.logprobs.reduce((a, b) => a + b, 0));
  return { step, samples, rewards, baselines, logprobs, lengths: seqs.map((s) => s.length) };
}

/** Greedy captions of `images` (in chunks of `batchSize`) from the trainer's current weights. */
export async function greedyCaptions(
  trainer: Trainer,
  images: readonly RgbImage[],
  batchSize = 8,
  maxNewTokens = 20,
): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < images.length; i += batchSize) {
    const seqs = await generateFromTrainer(trainer, images.slice(i, i + batchSize), {
      maxNewTokens,
    });
    out.push(...seqs.map((s) => textOf(trainer, s[0].tokens)));
  }
  return out;
}

/**
 * COCO metrics (BLEU, METEOR, ROUGE-L, CIDEr-D; the names `deno task eval` prints) of the
 * greedy captions of `entries` (their decoded `images`; undefined: decoded `batchSize` at a
 * time from the entries' paths).
 */
export async function validate(
  trainer: Trainer,
  entries: readonly CaptionEntry[],
  images: readonly RgbImage[] | undefined,
  batchSize = 8,
): Promise<{ metrics: Record<string, number>; captions: string[] }> {
  const captions: string[] = [];
  for (let i = 0; i < entries.length; i += batchSize) {
    const idx = entries.slice(i, i + batchSize).map((_, j) => i + j);
    captions.push(...await greedyCaptions(trainer, await splitImages({ entries, images }, idx)));
  }
  const r = await evaluatePaired({
    ids: entries.map((e) => e.path),
    refs: entries.map((e) => e.captions),
    candidates: captions,
  }, { metrics: ["BLEU", "METEOR", "ROUGE_L", "CIDEr"] });
  return { metrics: r.metrics, captions };
}

/** A split: its entries, and their images decoded ahead or as they are needed. */
export interface LoadedSplit {
  /** The split's images and their references. */
  entries: readonly CaptionEntry[];
  /**
   * `entries[i]`'s image, decoded; absent: each batch is decoded from the entries' paths (the
   * next while the GPU works on this one), so a split larger than memory trains.
   */
  images?: readonly RgbImage[];
}

/** The images of `split` at `idx`: held, or decoded from their paths. */
function splitImages(split: LoadedSplit, idx: readonly number[]): Promise<RgbImage[]> {
  const held = split.images;
  if (held) return Promise.resolve(idx.map((i) => held[i]));
  return Promise.all(idx.map((i) => loadImage(split.entries[i].path)));
}

/** What {@link trainCaptioner}'s `onStep` sees. */
export interface LoopStep extends StepReport {
  /** Mean reward of the step's samples (SCST). */
  reward?: number;
  /** Epochs done: training images seen / training images. */
  epoch: number;
  /** Images per second of this step (its micro-batches, sampling included). */
  samplesPerSec: number;
}

/** Options of {@link trainCaptioner}. */
export interface TrainLoopOptions {
  /** "xe": cross-entropy on a reference caption per image; "scst": self-critical. */
  mode: "xe" | "scst";
  /** Optimizer steps to take in this call (or {@link epochs}; exactly one of the two). */
  steps?: number;
  /** Passes over the training split to make in this call: ⌈epochs · images / batchSize⌉ steps. */
  epochs?: number;
  /** Images per micro-batch. */
  batchSize: number;
  /** The SCST options (reward default: CIDEr-D with the training split's df). */
  scst?: Partial<ScstOptions>;
  /** Validate every this many steps (and always at the end). */
  valEvery?: number;
  /**
   * The images of each micro-batch (a curriculum; default {@link epochShuffle} of `batchSize`
   * and `seed`).
   */
  chooseBatch?: BatchChooser;
  /** Seed of the batch order and of the samples (default 0; a resumed run passes its own). */
  seed?: number;
  /** Save a checkpoint here every {@link saveEvery} steps and at the end. */
  saveTo?: string;
  /** Save every this many optimizer steps (with {@link saveTo}). */
  saveEvery?: number;
  /** Files of `saveTo` kept across its saves (e.g. a training log written into it). */
  carry?: readonly string[];
  /** Called after every step. */
  onStep?: (r: LoopStep) => void | Promise<void>;
  /** Called after every validation with the metrics and the greedy captions of `val`. */
  onEval?: (
    step: number,
    metrics: Record<string, number>,
    captions: string[],
  ) => void | Promise<void>;
  /** Called after every checkpoint. */
  onSave?: (step: number, dir: string) => void | Promise<void>;
}

/** What {@link trainCaptioner} keeps in a checkpoint's `trainer_state.json` to resume the run. */
export interface LoopState {
  /** The run's seed: batch order and sampling are functions of it and of the step. */
  seed: number;
  /** The mode that wrote the checkpoint. */
  mode: "xe" | "scst";
  /** Images per micro-batch. */
  batch_size: number;
}

/**
 * The loop state of checkpoint `dir` (written by {@link trainCaptioner}), or undefined when the
 * folder holds no trainer state or one written otherwise.
 * @throws WebcapError BAD_CONFIG when its trainer state is not JSON.
 */
export async function readLoopState(dir: string): Promise<LoopState | undefined> {
  let state: Record<string, unknown>;
  try {
    state = JSON.parse(await Deno.readTextFile(`${dir}/${TRAINER_STATE}`));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new WebcapError("BAD_CONFIG", `${dir}/${TRAINER_STATE}: ${(e as Error).message}`);
  }
  const loop = state.loop as LoopState | undefined;
  return Number.isInteger(loop?.seed) ? loop : undefined;
}

/** `[N, T]` labels from one tokenized row per caption (−100 past each). */
function joinLabels(rows: readonly Int32Array[]): Int32Array {
  const T = Math.max(...rows.map((r) => r.length));
  const out = new Int32Array(rows.length * T).fill(-100);
  rows.forEach((r, i) => out.set(r, i * T));
  return out;
}

/** Optimizer steps of this call: `steps`, or `epochs` passes; exactly one given. */
export function loopSteps(
  o: Pick<TrainLoopOptions, "steps" | "epochs" | "batchSize">,
  n: number,
  accumulate = 1,
): number {
  const { steps, epochs, batchSize: B } = o;
  const positiveInt = (v: number) => Number.isInteger(v) && v >= 1;
  if (!positiveInt(B)) {
    throw new WebcapError("BAD_OPTION", `batch size must be an integer ≥ 1, got ${B}`);
  }
  if ((steps === undefined) === (epochs === undefined)) {
    throw new WebcapError("BAD_OPTION", "give the length of training as steps or epochs, one");
  }
  if (steps !== undefined && !positiveInt(steps)) {
    throw new WebcapError("BAD_OPTION", `steps must be an integer ≥ 1, got ${steps}`);
  }
  if (epochs !== undefined && !(Number.isFinite(epochs) && epochs > 0)) {
    throw new WebcapError("BAD_OPTION", `epochs must be a number > 0, got ${epochs}`);
  }
  return steps ?? Math.ceil(epochs! * n / (B * accumulate));
}

/**
 * A curriculum: the indices into `entries` (the training split) of the images of micro-batch
 * `step` (counted from 0 over the whole run, resumed runs included). {@link trainCaptioner}
 * calls it once per micro-batch, one micro-batch ahead (while the previous one trains).
 */
export type BatchChooser = (step: number, entries: readonly CaptionEntry[]) => readonly number[];

/**
 * The default {@link BatchChooser}: micro-batch m is samples m·B … m·B + B − 1 of the stream
 * that visits every training image once per epoch, in a permutation per epoch seeded by
 * `seed` + epoch.
 */
export function epochShuffle(batchSize: number, seed: number): BatchChooser {
  return (m, entries) => {
    const n = entries.length, perms = new Map<number, number[]>();
    return Array.from({ length: batchSize }, (_, j) => {
      const g = m * batchSize + j, epoch = Math.floor(g / n);
      if (!perms.has(epoch)) perms.set(epoch, permutation(n, seed + epoch));
      return perms.get(epoch)![g % n];
    });
  };
}

/** `choose(m, entries)`, checked: a non-empty array of integer indices into `entries`. */
function chosenBatch(choose: BatchChooser, m: number, entries: readonly CaptionEntry[]): number[] {
  const idx = choose(m, entries);
  const n = entries.length;
  if (
    !Array.isArray(idx) || idx.length === 0 ||
    !idx.every((i) => Number.isInteger(i) && i >= 0 && i < n)
  ) {
    throw new WebcapError(
      "BAD_OPTION",
      `chooseBatch(${m}) must return a non-empty array of integer indices in [0, ${n}) into ` +
        `the training split, got ${JSON.stringify(idx)?.slice(0, 80)}`,
    );
  }
  return [...idx];
}

/** One micro-batch `m` of `idx` (their `images`); its report when the optimizer stepped. */
async function microBatch(
  trainer: Trainer,
  train: LoadedSplit,
  idx: number[],
  images: RgbImage[],
  m: number,
  ctx: { opts: TrainLoopOptions; labels: Int32Array[][]; reward: RewardFn; seed: number },
): Promise<(StepReport & { reward?: number }) | undefined> {
  const batch = {
    images,
    keys: idx.map((i) => train.entries[i].path),
  };
  if (ctx.opts.mode === "xe") {
    const rows = idx.map((i) => ctx.labels[i][m % ctx.labels[i].length]);
    return await trainer.step({ ...batch, labels: joinLabels(rows) });
  }
  const refs = idx.map((i) => train.entries[i].captions);
  const scst = { ...ctx.opts.scst, reward: ctx.reward, seed: ctx.seed + m };
  const r = await scstStep(trainer, batch, refs, scst);
  const mean = r.rewards.reduce((a, b) => a + b, 0) / r.rewards.length;
  return r.step && { ...r.step, reward: mean };
}

/**
 * Train with cross-entropy or SCST for `opts.steps` steps (or `opts.epochs` passes) over
 * `train`, validating on `val` (greedy captions, COCO metrics) every `valEvery` steps and at
 * the end, saving to `saveTo` every `saveEvery` steps and at the end. Micro-batch m (counted
 * from the optimizer's steps, so a resumed run continues the same order) takes the next
 * `batchSize` images of a seeded permutation per epoch (or those `chooseBatch` picks), and SCST
 * samples it with seed + m: a run
 * resumed from its checkpoint with the checkpoint's seed ({@link readLoopState}) follows the
 * trajectory of an uninterrupted one. Captions are tokenized once. Returns the last
 * validation's metrics.
 */
export async function trainCaptioner(
  trainer: Trainer,
  train: LoadedSplit,
  val: LoadedSplit,
  opts: TrainLoopOptions,
): Promise<Record<string, number>> {
  const { batchSize: B, seed = 0, saveTo, saveEvery } = opts, n = train.entries.length;
  const acc = trainer.optimizer.config.accumulate;
  const steps = loopSteps(opts, n, acc);
  if (saveEvery !== undefined && !(Number.isInteger(saveEvery) && saveEvery >= 1)) {
    throw new WebcapError("BAD_OPTION", `saveEvery must be an integer ≥ 1, got ${saveEvery}`);
  }
  const labels = opts.mode === "xe"
    ? train.entries.map((e) => e.captions.map((c) => trainer.labels([c])))
    : [];
  const reward = opts.scst?.reward ?? ciderReward(train.entries.map((e) => e.captions));
  const ctx = { opts, labels, reward, seed };
  const loop: LoopState = { seed, mode: opts.mode, batch_size: B };
  const save = async (step: number) => {
    await trainer.save(saveTo!, { loop }, opts.carry);
    await opts.onSave?.(step, saveTo!);
  };
  const end = trainer.optimizer.steps + steps;
  const choose = opts.chooseBatch ?? epochShuffle(B, seed);
  const prefetch = (m: number) => {
    const p = (async () => {
      const idx = chosenBatch(choose, m, train.entries);
      return { idx, images: await splitImages(train, idx) };
    })();
    p.catch(() => {}); // a failure surfaces where the batch is used, not as an unhandled rejection
    return p;
  };
  let metrics: Record<string, number> = {}, t0 = performance.now();
  let next: ReturnType<typeof prefetch> | undefined = prefetch(
    trainer.optimizer.steps * acc + trainer.optimizer.pending,
  );
  while (trainer.optimizer.steps < end) {
    const opt = trainer.optimizer, m = opt.steps * acc + opt.pending;
    const { idx, images } = await next!;
    next = m + 1 < end * acc ? prefetch(m + 1) : undefined;
    const r = await microBatch(trainer, train, idx, images, m, ctx);
    if (!r) continue;
    const seconds = (performance.now() - t0) / 1000;
    await opts.onStep?.({ ...r, epoch: (m + 1) * B / n, samplesPerSec: B * acc / seconds });
    const s = r.step, last = s === end;
    if (last || (opts.valEvery && s % opts.valEvery === 0)) {
      const v = await validate(trainer, val.entries, val.images, B);
      metrics = v.metrics;
      await opts.onEval?.(s, v.metrics, v.captions);
    }
    if (saveTo && (last || (saveEvery && s % saveEvery === 0))) await save(s);
    t0 = performance.now();
  }
  return metrics;
}
