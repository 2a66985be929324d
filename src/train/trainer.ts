/**
 * Cross-entropy fine-tuning of every architecture (ViT-GPT2, BLIP, ClipCap, Show-Attend-Tell;
 * the per-architecture part is a `TrainModel` of `train_model.ts`): a {@link Trainer} takes a batch of images and tokenized
 * captions and records the forward, the loss, the backward and the optimizer step on ONE submit
 * with ONE readback (the loss and the gradient norm). A frozen encoder (`frozen: ["encoder."]`;
 * always for ClipCap's CLIP; for Show-Attend-Tell's ResNet unless `frozen` is given, then its
 * stages 2–4 train unless the prefixes cover them) is not back-propagated, and its
 * outputs are computed once per image key and cached on the GPU;
 * gradients accumulate over micro-batches; a loss or gradient norm that becomes NaN or infinite
 * stops with `NON_FINITE_LOSS` naming the step, whose update the GPU skipped (weights, optimizer
 * state and the last checkpoint stay as they were).
 *
 * ```ts
 * const trainer = await Trainer.fromPretrained("vit-gpt2/", {
 *   optimizer: { kind: "adamw", lr: 5e-5, maxGradNorm: 1 },
 *   frozen: ["encoder."],
 *   onStep: (r) => console.log(r.step, r.loss, r.lr, r.gradNorm),
 * });
 * const batch = { images, keys: paths, labels: trainer.labels(captions) };
 * await trainer.fit([batch], { steps: 100, saveTo: "ckpt/", saveEvery: 50 });
 * ```
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { CaptionModel } from "../arch/caption_model.ts";
import { loadPreprocessor, loadTokenizer } from "../arch/load.ts";
import { getGpu, type Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import { ownedTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import type { RgbImage } from "../image/decode.ts";
import type { Preprocessor } from "../image/preprocess.ts";
import { IGNORE_INDEX } from "../shaders/softmax.ts";
import type { Param } from "../nn/params.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import type { TokenBatch } from "./batch.ts";
import { loadOptimizerState, saveCheckpoint } from "./checkpoint.ts";
import { Optimizer, type OptimizerOptions } from "./optim.ts";
import { type ParamGroups, paramGroups } from "./param_groups.ts";
import { loadTrainModel, type TrainModel } from "./train_model.ts";
import type { EncoderInput } from "./vision_text.ts";
import type { TrainDropout } from "../nn/grads.ts";

/** Options of {@link Trainer.fromPretrained}. */
export interface TrainerOptions {
  /** The optimizer, its schedule, clipping and gradient accumulation. */
  optimizer: OptimizerOptions;
  /**
   * Name prefixes of parameters left as they are. `["encoder."]` freezes the ViT: it is not
   * back-propagated, and its outputs are cached per image key ({@link TrainBatch.keys}).
   * Show-Attend-Tell's ResNet is frozen when this is absent; given (e.g. `[]`), its stages 2–4
   * (`encoder.resnet.5.` to `.7.`) train, BatchNorm on its running statistics.
   */
  frozen?: readonly string[];
  /** Label smoothing of the cross-entropy, in [0, 1) (default: the model's, BLIP's config; else 0). */
  labelSmoothing?: number;
  /**
   * Dropout as each config sets it (GPT-2's `resid_pdrop`/`embd_pdrop`/`attn_pdrop`, ViT's and
   * BERT's `hidden_dropout_prob`/`attention_probs_dropout_prob`, Show-Attend-Tell's `dropout`),
   * masks drawn from {@link seed}; false: none (default true).
   */
  dropout?: boolean;
  /** Seed of the dropout masks (default 0): a seed gives the same masks on every adapter. */
  seed?: number;
  /** Called after every optimizer step. */
  onStep?: (report: StepReport) => void;
  /** Restore the optimizer's state and step from the checkpoint folder being loaded. */
  resume?: boolean;
  /** The GPU (default: `getGpu()`). */
  gpu?: Gpu;
}

/** One training batch: N images, one tokenized caption each. */
export interface TrainBatch {
  /** Decoded RGB images (`loadImage`, `decodeImage`); preprocessed as the model's processor does. */
  images: readonly RgbImage[];
  /**
   * A key per image (e.g. its path): with a frozen encoder its output is computed once per key
   * and kept on the GPU (ViT: `(1 + patches) · hidden · 4` bytes each) until {@link Trainer.dispose}.
   */
  keys?: readonly string[];
  /** `[N, T]` token ids, each caption ending with the end token, −100 after it ({@link Trainer.labels}). */
  labels: Int32Array;
}

/** What an optimizer step reports. */
export interface StepReport {
  /** Optimizer steps taken, this one included. */
  step: number;
  /** Mean cross-entropy over the step's micro-batches. */
  loss: number;
  /** The learning rate this step used. */
  lr: number;
  /** Global gradient norm (of the gradient averaged over micro-batches, before clipping). */
  gradNorm: number;
}

/** Options of {@link Trainer.fit}. */
export interface FitOptions {
  /** Stop after this many optimizer steps of this call (default: when the batches end). */
  steps?: number;
  /** Save a checkpoint into this folder at the end (and every `saveEvery` steps). */
  saveTo?: string;
  /** Save every this many optimizer steps. */
  saveEvery?: number;
}

function checkSmoothing(eps: number): number {
  if (!(Number.isFinite(eps) && eps >= 0 && eps < 1)) {
    throw new WebcapError("BAD_OPTION", `labelSmoothing must be a number in [0, 1), got ${eps}`);
  }
  return eps;
}

function checkSeed(seed: number): void {
  if (!(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 53)) {
    throw new WebcapError("BAD_OPTION", `seed must be an integer in [0, 2^53), got ${seed}`);
  }
}

/** Fine-tunes a captioner checkpoint with cross-entropy on the GPU. */
export class Trainer {
  /** Cached encoder outputs of one image (ViT `[S, h]`) by image key (frozen encoder only). */
  readonly #cache = new Map<string, Tensor>();
  #microLoss = 0;
  #micro = 0;
  #saved: { dir: string; step: number } | undefined;
  readonly #model: TrainModel;

  private constructor(
    readonly gpu: Gpu,
    /** The folder the model was loaded from (its config and tokenizer files go into checkpoints). */
    readonly source: string,
    model: TrainModel,
    /** Trainable and frozen parameters. */
    readonly groups: ParamGroups,
    /** The optimizer; its `grads` are what the backward accumulates into. */
    readonly optimizer: Optimizer,
    readonly preprocessor: Preprocessor,
    readonly tokenizer: Tokenizer,
    readonly options: TrainerOptions,
  ) {
    this.#model = model;
  }

  /** The model's parameters (f32 master weights on the GPU), by Hugging Face name. */
  get params(): readonly Param[] {
    return this.#model.params;
  }

  /**
   * Load a model folder of any architecture (or a checkpoint, with `resume` its optimizer state
   * too) for training.
   */
  static async fromPretrained(dir: string, opts: TrainerOptions): Promise<Trainer> {
    checkSmoothing(opts.labelSmoothing ?? 0);
    checkSeed(opts.seed ?? 0);
    const gpu = opts.gpu ?? await getGpu();
    const preprocessor = await loadPreprocessor(dir);
    const tokenizer = await loadTokenizer(dir);
    const model = await loadTrainModel(gpu, dir, { frozen: opts.frozen });
    let optimizer: Optimizer | undefined;
    try {
      const groups = paramGroups(model.params, { frozen: opts.frozen });
      optimizer = new Optimizer(groups, opts.optimizer);
      if (opts.resume) await loadOptimizerState(dir, optimizer);
      return new Trainer(gpu, dir, model, groups, optimizer, preprocessor, tokenizer, opts);
    } catch (e) {
      optimizer?.dispose();
      model.dispose();
      throw e;
    }
  }

  /**
   * The model being trained as a caption model over its live f32 weights (e.g. to sample
   * captions between steps); it owns nothing: its dispose does nothing.
   */
  captionModel(): CaptionModel {
    const live = this.#model.captionModel;
    if (!live) {
      throw new WebcapError(
        "UNSUPPORTED_ARCH",
        "decoding from the live weights while training is built for ViT-GPT2 only",
      );
    }
    return live();
  }

  /** Whether the whole encoder is frozen (then it runs without its backward, outputs cached). */
  get encoderFrozen(): boolean {
    const prefix = this.#model.encoder;
    return prefix === undefined || !this.groups.trainable.some((p) => p.name.startsWith(prefix));
  }

  /**
   * `[N, T]` labels of `captions`: each one's tokens and the end token, −100 after it up to the
   * longest. An empty caption is refused.
   */
  labels(captions: readonly string[]): Int32Array {
    const rows = captions.map((c, i) => {
      const ids = typeof c === "string"
        ? this.tokenizer.encode(c, { addSpecialTokens: false })
        : [];
      if (ids.length === 0) {
        throw new WebcapError("BAD_OPTION", `caption ${i} is empty: ${JSON.stringify(c)}`);
      }
      return [...ids, this.#model.eosId];
    });
    const T = Math.max(...rows.map((r) => r.length));
    const out = new Int32Array(rows.length * T).fill(IGNORE_INDEX);
    rows.forEach((r, i) => out.set(r, i * T));
    return out;
  }

  /** `pixel_values [n, 3, H, W]` of the images at `which`. */
  #pixels(images: readonly RgbImage[], which: number[]): Tensor {
    const { height: H, width: W } = this.preprocessor;
    const data = new Float32Array(which.length * 3 * H * W);
    which.forEach((i, j) => data.set(this.preprocessor.apply(images[i]), j * 3 * H * W));
    return uploadTensor(this.gpu, data, [which.length, 3, H, W], "f32", "pixel_values");
  }

  /** What the encoder gives this batch: pixels to train it on, or (frozen) its outputs. */
  #encoderInput(rec: Recorder, batch: Omit<TrainBatch, "labels">): EncoderInput {
    const N = batch.images.length, all = batch.images.map((_, i) => i);
    if (!this.encoderFrozen) {
      const pixels = this.#pixels(batch.images, all);
      rec.releaseAfterSubmit(pixels);
      return { pixels };
    }
    const keys = batch.keys;
    const missing = keys ? all.filter((i) => !this.#cache.has(keys[i])) : all;
    const fresh = missing.length ? this.#encode(rec, batch.images, missing) : undefined;
    if (!keys) return { states: fresh!, N };
    const one = fresh?.shape.slice(1);
    missing.forEach((i, j) => {
      if (this.#cache.has(keys[i])) return; // a key twice in one batch
      const t = ownedTensor(this.gpu, one!, "f32", `encoder:${keys[i]}`);
      rec.copy(fresh!.buffer, j * t.byteSize, t.buffer, 0, t.byteSize);
      this.#cache.set(keys[i], t);
    });
    const first = this.#cache.get(keys[0])!;
    const states = rec.temp([N, ...first.shape]);
    keys.forEach((k, i) =>
      rec.copy(this.#cache.get(k)!.buffer, 0, states.buffer, i * first.byteSize, first.byteSize)
    );
    return { states, N };
  }

  /** Frozen encoder outputs `[n, …]` of the images at `which` (released after the submit). */
  #encode(rec: Recorder, images: readonly RgbImage[], which: number[]): Tensor {
    const pixels = this.#pixels(images, which);
    const states = this.#model.encode(rec, pixels);
    rec.releaseAfterSubmit(pixels, states);
    return states;
  }

  #checkBatch(batch: TrainBatch): void {
    const N = batch.images?.length;
    if (!N) throw new WebcapError("BAD_OPTION", "a training batch needs at least one image");
    if (batch.keys && batch.keys.length !== N) {
      throw new WebcapError(
        "BAD_SHAPE",
        `batch sizes disagree: ${batch.keys.length} keys for ${N} images`,
      );
    }
    if (!(batch.labels instanceof Int32Array) || batch.labels.length % N) {
      throw new WebcapError(
        "BAD_SHAPE",
        `batch sizes disagree: ${batch.labels?.length} labels do not split into ${N} captions ` +
          "(labels are [N, T] token ids in an Int32Array)",
      );
    }
  }

  /**
   * One micro-batch on one submit: forward, loss, backward into the optimizer's gradients and,
   * on the last micro-batch of a step, the optimizer step. Returns the step's report when it
   * stepped (also given to `onStep`).
   * @throws WebcapError NON_FINITE_LOSS when the loss or the gradient norm is NaN or infinite:
   *   the step was not applied and its accumulated gradients are dropped.
   */
  async step(batch: TrainBatch): Promise<StepReport | undefined> {
    this.#checkBatch(batch);
    const tokens = this.#model.batch(batch.labels, batch.images.length);
    return await this.#run(
      batch,
      tokens,
      this.options.labelSmoothing ?? this.#model.labelSmoothing,
    );
  }

  /**
   * One micro-batch of per-position weighted tokens over `batch.images` (its `labels` unused),
   * as {@link step}: the loss is Σ weight·(−log p(target)), e.g. SCST's `scstBatch`, whose rows
   * name their image in `tokens.rowImage`. No label smoothing.
   */
  async stepTokens(
    batch: Omit<TrainBatch, "labels">,
    tokens: TokenBatch,
  ): Promise<StepReport | undefined> {
    this.#checkBatch({ ...batch, labels: new Int32Array(batch.images?.length ?? 0) });
    return await this.#run(batch, tokens, 0);
  }

  async #run(
    batch: Omit<TrainBatch, "labels">,
    tokens: TokenBatch,
    eps: number,
  ): Promise<StepReport | undefined> {
    const m = this.#model, opt = this.optimizer;
    const stepNo = opt.steps + 1, lr = opt.lr;
    const rec = new Recorder(this.gpu);
    const input = this.#encoderInput(rec, batch);
    const lossSums = m.record(rec, input, tokens, opt.grads, eps, this.#dropout());
    const stepped = opt.step(rec, lossSums);
    const stats = rec.temp([5]); // lossSums, then the optimizer's [norm, factor, skipped]
    rec.copy(lossSums.buffer, 0, stats.buffer, 0, 8);
    rec.copy(opt.coef.buffer, 0, stats.buffer, 8, 12);
    const read = rec.read(stats.buffer, 20);
    await rec.submit();
    const [, loss, gradNorm, , skipped] = new Float32Array(await read);
    if (!Number.isFinite(loss) || (stepped && skipped !== 0)) {
      await this.#drop();
      throw this.#nonFinite(stepNo, loss, stepped ? gradNorm : undefined);
    }
    this.#microLoss += loss;
    this.#micro++;
    if (!stepped) return undefined;
    const report = { step: opt.steps, loss: this.#microLoss / this.#micro, lr, gradNorm };
    this.#microLoss = this.#micro = 0;
    this.options.onStep?.(report);
    return report;
  }

  /** The dropout key of the next micro-batch: the seed, and micro-batches trained so far. */
  #dropout(): TrainDropout | undefined {
    if (this.options.dropout === false) return undefined;
    const opt = this.optimizer;
    return { seed: this.options.seed ?? 0, step: opt.steps * opt.config.accumulate + opt.pending };
  }

  /** Forget the failed step and its micro-batches (the GPU did not apply it). */
  async #drop(): Promise<void> {
    const rec = new Recorder(this.gpu);
    this.optimizer.skipped(rec);
    await rec.submit();
    this.#microLoss = this.#micro = 0;
  }

  #nonFinite(step: number, loss: number, gradNorm: number | undefined): WebcapError {
    const norm = gradNorm === undefined ? "" : ` (gradient norm ${gradNorm})`;
    const saved = this.#saved
      ? `; the last checkpoint, ${this.#saved.dir}, holds step ${this.#saved.step}`
      : "";
    return new WebcapError(
      "NON_FINITE_LOSS",
      `step ${step}: the loss is ${loss}${norm}; the step was not applied (weights and ` +
        `optimizer state are those after step ${step - 1})${saved}. Lower the learning rate or ` +
        "clip gradients (maxGradNorm)",
    );
  }

  /**
   * Train on `batches` (each a micro-batch) until they end or `opts.steps` optimizer steps are
   * taken, saving checkpoints as asked. Returns the reports of the steps taken.
   */
  async fit(
    batches: Iterable<TrainBatch> | AsyncIterable<TrainBatch>,
    opts: FitOptions = {},
  ): Promise<StepReport[]> {
    const { steps = Infinity, saveTo, saveEvery } = opts;
    const positive = (v: number | undefined) => v === undefined || (Number.isInteger(v) && v > 0);
    if (!(positive(saveEvery) && (steps === Infinity || positive(steps)))) {
      throw new WebcapError(
        "BAD_OPTION",
        `fit: steps (${steps}) and saveEvery (${saveEvery}) must be integers ≥ 1`,
      );
    }
    const reports: StepReport[] = [];
    for await (const batch of batches) {
      if (reports.length >= steps) break;
      const r = await this.step(batch);
      if (!r) continue;
      reports.push(r);
      if (saveTo && saveEvery && r.step % saveEvery === 0) await this.save(saveTo);
    }
    if (saveTo && this.#saved?.step !== this.optimizer.steps) await this.save(saveTo);
    return reports;
  }

  /**
   * Save the model and the optimizer state as a checkpoint folder (atomically; see
   * `saveCheckpoint`; `carry`: files of the folder kept). Between steps only: no micro-batch
   * pending.
   */
  async save(
    dir: string,
    state: Record<string, unknown> = {},
    carry?: readonly string[],
  ): Promise<void> {
    await saveCheckpoint(dir, this.#model, {
      source: this.source,
      optimizer: this.optimizer,
      state,
      layout: this.#model.layout,
      carry,
    });
    this.#saved = { dir, step: this.optimizer.steps };
  }

  /** Free the model, the optimizer, its gradients and the encoder cache. */
  dispose(): void {
    for (const t of this.#cache.values()) t.release();
    this.#cache.clear();
    this.optimizer.dispose();
    this.#model.dispose();
  }
}
