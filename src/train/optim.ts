/**
 * Optimizers on the GPU over f32 master weights: AdamW and SGD with momentum, with PyTorch's
 * semantics and defaults (`torch.optim.AdamW`, `torch.optim.SGD`), global-norm gradient clipping
 * (`torch.nn.utils.clip_grad_norm_`, the norm computed on the GPU), gradient accumulation over
 * micro-batches and a learning-rate schedule. One update dispatch per span of a distinct trainable
 * tensor (a whole tensor unless its parameters differ in weight decay), windowed past one binding.
 * A step whose gradient norm (or a guard value, e.g. the loss) is not finite is skipped on the GPU:
 * weights and state stay as they were.
 *
 * ```ts
 * const groups = paramGroups(model.params, { frozen: ["encoder."] });
 * const opt = new Optimizer(groups, { kind: "adamw", lr: 5e-5, maxGradNorm: 1, accumulate: 4 });
 * // per micro-batch: record the backward into `opt.grads`, then
 * opt.step(rec); // every 4th call: clip, update, zero the gradients
 * ```
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Recorder } from "../gpu/recorder.ts";
import { numel, ownedTensor, type Tensor, writeTensor } from "../gpu/tensor.ts";
import { Gradients } from "../nn/grads.ts";
import {
  adamwUpdate,
  bindWindow,
  gradCoef,
  sgdUpdate,
  sumSquares,
  sumSquaresGroups,
  type Window,
  windows,
} from "../shaders/optim.ts";
import type { ParamGroups, Segment } from "./param_groups.ts";
import { constantSchedule, type Schedule, type ScheduleConfig } from "./schedule.ts";

/** AdamW (`torch.optim.AdamW`): decoupled weight decay, bias correction, eps outside the root. */
export interface AdamWOptions {
  /** Which optimizer. */
  kind: "adamw";
  /** Base learning rate, > 0 (default 1e-3). */
  lr?: number;
  /** Moment decay rates, each in [0, 1) (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the root of the second moment, ≥ 0 (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay `p -= lr·wd·p`, ≥ 0 (default 0.01). */
  weightDecay?: number;
}

/** SGD (`torch.optim.SGD`): weight decay added to the gradient, momentum, dampening, nesterov. */
export interface SgdOptions {
  /** Which optimizer. */
  kind: "sgd";
  /** Base learning rate, > 0 (default 1e-3). */
  lr?: number;
  /** Momentum factor, ≥ 0 (default 0: no momentum buffer). */
  momentum?: number;
  /** Dampening of the momentum, ≥ 0 (default 0). */
  dampening?: number;
  /** L2 penalty added to the gradient, ≥ 0 (default 0). */
  weightDecay?: number;
  /** Nesterov momentum (needs momentum > 0 and dampening 0). */
  nesterov?: boolean;
}

/** Settings common to both optimizers. */
export interface StepOptions {
  /** Learning-rate schedule (default constant). */
  schedule?: Schedule;
  /** Clip the global gradient norm to this (> 0); unset: no clipping. */
  maxGradNorm?: number;
  /**
   * Micro-batches per optimizer step (default 1). Gradients are summed over them and used
   * divided by this count, as `loss / gradient_accumulation_steps` in transformers' Trainer.
   */
  accumulate?: number;
}

/** An optimizer's settings. */
export type OptimizerOptions = (AdamWOptions | SgdOptions) & StepOptions;

/** Settings with defaults filled in, as saved in `trainer_state.json`. */
export type OptimizerConfig =
  | (Required<AdamWOptions> & ResolvedStep)
  | (Required<SgdOptions> & ResolvedStep);

/** Options of every optimizer, resolved: schedule, clipping, accumulation. */
export interface ResolvedStep {
  /** The learning-rate schedule. */
  schedule: ScheduleConfig;
  /** Global gradient-norm clipping threshold; null: no clipping. */
  maxGradNorm: number | null;
  /** Micro-batches accumulated per optimizer step. */
  accumulate: number;
}

function bad(what: string): WebcapError {
  return new WebcapError("BAD_OPTION", `optimizer: ${what}`);
}

function checkRange(name: string, v: number, lo: number, hi = Infinity, hiOpen = false): void {
  const ok = Number.isFinite(v) && v >= lo && (hiOpen ? v < hi : v <= hi);
  if (!ok) {
    const range = hi === Infinity ? `≥ ${lo}` : `in [${lo}, ${hi}${hiOpen ? ")" : "]"}`;
    throw bad(`${name} must be a finite number ${range}, got ${v}`);
  }
}

function checkLr(lr: number): void {
  if (!(Number.isFinite(lr) && lr > 0)) {
    throw bad(`lr (learning rate) must be a finite number > 0, got ${lr}`);
  }
}

function resolveStep(o: StepOptions): ResolvedStep {
  const { maxGradNorm, accumulate = 1 } = o;
  if (maxGradNorm !== undefined && !(Number.isFinite(maxGradNorm) && maxGradNorm > 0)) {
    throw bad(`maxGradNorm must be a finite number > 0, got ${maxGradNorm}`);
  }
  if (!(Number.isInteger(accumulate) && accumulate >= 1)) {
    throw bad(`accumulate (micro-batches per step) must be an integer ≥ 1, got ${accumulate}`);
  }
  return {
    schedule: (o.schedule ?? constantSchedule()).config,
    maxGradNorm: maxGradNorm ?? null,
    accumulate,
  };
}

/** `o` with PyTorch's defaults filled in, every value checked. */
export function resolveOptimizer(o: OptimizerOptions): OptimizerConfig {
  const step = resolveStep(o);
  const lr = o.lr ?? 1e-3;
  checkLr(lr);
  if (o.kind === "adamw") {
    const { betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0.01 } = o;
    betas.forEach((b, i) => checkRange(`betas[${i}]`, b, 0, 1, true));
    checkRange("eps", eps, 0);
    checkRange("weightDecay", weightDecay, 0);
    return { kind: "adamw", lr, betas: [betas[0], betas[1]], eps, weightDecay, ...step };
  }
  if (o.kind === "sgd") {
    const { momentum = 0, dampening = 0, weightDecay = 0, nesterov = false } = o;
    checkRange("momentum", momentum, 0);
    checkRange("dampening", dampening, 0);
    checkRange("weightDecay", weightDecay, 0);
    if (nesterov && (momentum <= 0 || dampening !== 0)) {
      throw bad("nesterov momentum needs momentum > 0 and dampening 0");
    }
    return { kind: "sgd", lr, momentum, dampening, weightDecay, nesterov, ...step };
  }
  throw bad(`kind must be "adamw" or "sgd", got ${JSON.stringify((o as { kind: unknown }).kind)}`);
}

/** Names of the state tensors per parameter, as PyTorch's optimizer state dict. */
function stateNames(c: OptimizerConfig): string[] {
  if (c.kind === "adamw") return ["exp_avg", "exp_avg_sq"];
  return c.momentum > 0 ? ["momentum_buffer"] : [];
}

/** AdamW or SGD over the trainable parameters of {@link ParamGroups}, with their gradients. */
export class Optimizer {
  /** The gradients the backward passes accumulate into and {@link step} uses (owned). */
  readonly grads: Gradients;
  /** The settings, defaults filled in. */
  readonly config: OptimizerConfig;
  readonly #schedule: Schedule;
  /** Per trainable tensor: its state tensors in {@link stateNames} order (same layout). */
  readonly #state = new Map<Tensor, Tensor[]>();
  /** `[norm, factor, skipped]` of the last step's gradients. */
  readonly #coef: Tensor;
  readonly #partial: Tensor;
  #steps = 0;
  #micro = 0;

  /** An optimizer of the trainable parameters of `groups`; its state and gradients start at zero. */
  constructor(readonly groups: ParamGroups, opts: OptimizerOptions) {
    this.config = resolveOptimizer(opts);
    this.#schedule = opts.schedule ?? constantSchedule();
    const gpu = groups.tensors[0].tensor.gpu;
    this.grads = new Gradients(gpu, groups.trainable);
    const names = stateNames(this.config);
    for (const { tensor } of groups.tensors) {
      const label = tensor.buffer.label;
      this.#state.set(
        tensor,
        names.map((n) =>
          ownedTensor(gpu, tensor.shape, "f32", `${n}:${label}`, { windowed: true })
        ),
      );
    }
    const slots = this.#spans().reduce((s, x) => s + sumSquaresGroups(x.w.n), 0);
    this.#coef = ownedTensor(gpu, [3], "f32", "grad-coef");
    this.#partial = ownedTensor(gpu, [Math.max(1, slots)], "f32", "grad-sumsq");
  }

  /** Optimizer steps taken. */
  get steps(): number {
    return this.#steps;
  }

  /** Micro-batches accumulated since the last step. */
  get pending(): number {
    return this.#micro;
  }

  /** Learning rate of the next step (base · schedule factor). */
  get lr(): number {
    return this.config.lr * this.#schedule.factor(this.#steps);
  }

  /** Bytes of optimizer state held. */
  get stateBytes(): number {
    let b = 0;
    for (const ts of this.#state.values()) for (const t of ts) b += t.byteSize;
    return b;
  }

  /** Every window of every segment to update, with its tensor. */
  #spans(): { tensor: Tensor; seg: Segment; w: Window }[] {
    const max = this.grads.gpu.maxBinding;
    return this.groups.tensors.flatMap(({ tensor, segments }) =>
      segments.flatMap((seg) => windows(seg.start, seg.count, max).map((w) => ({ tensor, seg, w })))
    );
  }

  /**
   * Count one micro-batch whose gradients were recorded into `grads`; on the `accumulate`-th,
   * record the step: the gradient norm and factor (1/accumulate, clipped to `maxGradNorm`), the
   * update of every trainable span — skipped on the GPU when the norm or a value of `guard` (e.g.
   * the loss) is not finite — and zeroing the gradients. Returns whether it stepped.
   */
  step(rec: Recorder, guard?: Tensor): boolean {
    if (++this.#micro < this.config.accumulate) return false;
    this.#recordCoef(rec, guard);
    const t = this.#steps + 1;
    for (const { tensor, seg, w } of this.#spans()) this.#update(rec, tensor, seg, w, t);
    this.grads.zero(rec);
    this.#steps = t;
    this.#micro = 0;
    return true;
  }

  /** The global norm of the last step's gradients (as averaged over micro-batches), read after `rec` is submitted. */
  gradNorm(rec: Recorder): Promise<number> {
    return rec.read(this.#coef.buffer, 4).then((b) => new Float32Array(b)[0]);
  }

  /**
   * `[norm, factor, skipped]` of the last recorded step on the GPU (f32; skipped is 1 when the
   * update was not applied), for a caller that reads it with other values in one readback.
   */
  get coef(): Tensor {
    return this.#coef;
  }

  /**
   * The step or micro-batch recorded last was not applied (its loss or gradient norm is not
   * finite; the GPU skipped the update): count it back, drop the micro-batches accumulated since
   * the last step and record zeroing the gradients on `rec`.
   */
  skipped(rec: Recorder): void {
    if (this.#micro === 0) this.#steps--;
    this.#micro = 0;
    this.grads.zero(rec);
  }

  #recordCoef(rec: Recorder, guard?: Tensor): void {
    const scale = 1 / this.config.accumulate;
    const maxNorm = this.config.maxGradNorm ?? 0;
    let slot = 0;
    for (const { tensor, w } of this.#spans()) {
      sumSquares(rec, bindWindow(this.grads.of(tensor)!, w), w, this.#partial, slot);
      slot += sumSquaresGroups(w.n);
    }
    gradCoef(rec, this.#partial, slot, scale, maxNorm, this.#coef, guard);
  }

  #update(
    rec: Recorder,
    tensor: Tensor,
    seg: Segment,
    w: Window,
    t: number,
  ): void {
    const c = this.config, lr = this.lr;
    const wd = seg.decay ? c.weightDecay : 0;
    const state = this.#state.get(tensor)!.map((s) => bindWindow(s, w));
    const P = bindWindow(tensor, w), G = bindWindow(this.grads.of(tensor)!, w);
    if (c.kind === "adamw") {
      const [beta1, beta2] = c.betas;
      adamwUpdate(rec, { P, G, M: state[0], V: state[1], coef: this.#coef }, w, {
        decay: 1 - lr * wd,
        beta1,
        beta2,
        stepSize: lr / (1 - beta1 ** t),
        sqrtBc2: Math.sqrt(1 - beta2 ** t),
        eps: c.eps,
      });
    } else {
      sgdUpdate(rec, { P, G, M: state[0], coef: this.#coef }, w, {
        lr,
        weightDecay: wd,
        momentum: c.momentum,
        dampening: c.dampening,
        first: t === 1 ? 1 : 0,
      }, c.nesterov);
    }
  }

  /**
   * The state of every trainable parameter, by `<param name>.<state name>` (PyTorch's names:
   * `exp_avg`, `exp_avg_sq`, `momentum_buffer`), unstacked by offset.
   */
  async readState(): Promise<Map<string, { shape: readonly number[]; data: Float32Array }>> {
    const names = stateNames(this.config);
    const rec = new Recorder(this.grads.gpu);
    const reads: [string, readonly number[], Promise<ArrayBuffer>][] = [];
    for (const p of this.groups.trainable) {
      const bytes = numel(p.shape) * 4;
      this.#state.get(p.tensor)!.forEach((s, i) => {
        reads.push([`${p.name}.${names[i]}`, p.shape, rec.read(s.buffer, bytes, p.offset * 4)]);
      });
    }
    await rec.submit();
    const out = new Map<string, { shape: readonly number[]; data: Float32Array }>();
    for (const [name, shape, buf] of reads) {
      out.set(name, { shape, data: new Float32Array(await buf) });
    }
    return out;
  }

  /**
   * Restore state saved by {@link readState} after `steps` steps: every trainable parameter's
   * state must be present with its shape. Nothing is written unless all of it is.
   */
  loadState(state: ReadonlyMap<string, Float32Array>, steps: number, where: string): void {
    if (!(Number.isInteger(steps) && steps >= 0)) {
      throw new WebcapError("BAD_CONFIG", `${where}: step ${steps} is not an integer ≥ 0`);
    }
    const names = stateNames(this.config);
    const writes: [Tensor, Float32Array, number][] = [];
    for (const p of this.groups.trainable) {
      this.#state.get(p.tensor)!.forEach((s, i) => {
        const key = `${p.name}.${names[i]}`, data = state.get(key);
        if (!data || data.length !== numel(p.shape)) {
          throw new WebcapError(
            "BAD_WEIGHTS",
            `${where}: optimizer state "${key}" is ${
              data ? `${data.length} values` : "missing"
            }; expected ${
              numel(p.shape)
            } (a ${this.config.kind} state of this model's trainable parameters)`,
          );
        }
        writes.push([s, data, p.offset]);
      });
    }
    for (const [s, data, offset] of writes) writeTensor(s, data, offset);
    this.#steps = steps;
    this.#micro = 0;
  }

  /** Free the state and the gradients. */
  dispose(): void {
    this.grads.dispose();
    for (const ts of this.#state.values()) for (const t of ts) if (t.alive) t.release();
    this.#state.clear();
    for (const t of [this.#coef, this.#partial]) if (t.alive) t.release();
  }
}
