/**
 * The memory plan of training, made before anything is allocated: bytes of the weights, the
 * gradients (one f32 tensor per distinct trainable tensor), the optimizer state (AdamW: two
 * tensors of that size; SGD: one with momentum, none without) and the saved activations of a
 * batch (the caller's estimate per sample). A plan that does not fit the adapter is refused with
 * the largest batch that would fit.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { Param } from "../nn/params.ts";
import type { OptimizerConfig } from "./optim.ts";
import type { ParamGroups } from "./param_groups.ts";

/** Options of {@link planMemory}. */
export interface MemoryPlanOptions {
  /** The optimizer's settings (`Optimizer.config` or `resolveOptimizer(…)`). */
  optimizer: OptimizerConfig;
  /** Samples per micro-batch. */
  batch: number;
  /** Saved activations per sample: all of them, and the largest single buffer. */
  activations?: { bytesPerSample: number; largestBufferPerSample?: number };
  /** Bytes training may use in all (default: unlimited; WebGPU does not tell the memory size). */
  budgetBytes?: number;
}

/** Bytes by use. */
export interface MemoryPlan {
  /** Bytes of the parameters on the GPU. */
  weights: number;
  /** Bytes of the gradients (f32, one per trainable tensor). */
  gradients: number;
  /** Bytes of the optimizer's state (moments, momentum buffers). */
  optimizerState: number;
  /** Bytes of the activations saved for the backward pass (the caller's estimate). */
  activations: number;
  /** The sum of the above. */
  total: number;
  /** Largest batch within every limit (Infinity when activations are not estimated). */
  largestBatch: number;
}

function distinctBytes(tensors: Iterable<Tensor>): number {
  let b = 0;
  for (const t of new Set(tensors)) b += t.byteSize;
  return b;
}

function stateTensors(c: OptimizerConfig): number {
  if (c.kind === "adamw") return 2;
  return c.momentum > 0 ? 1 : 0;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function checkCount(name: string, v: number | undefined, integer: boolean): void {
  if (v === undefined) return;
  const ok = Number.isFinite(v) && v >= 0 && (!integer || Number.isInteger(v));
  if (!ok || (integer && v === 0)) {
    throw new WebcapError(
      "BAD_OPTION",
      `memory plan: ${name} must be ${integer ? "an integer ≥ 1" : "a number ≥ 0"}, got ${v}`,
    );
  }
}

/**
 * The bytes training `groups` of `params` with a batch of `opts.batch` needs; refused (BAD_OPTION,
 * naming the largest batch that fits) past `budgetBytes`, or when a buffer of the plan exceeds
 * the adapter's `maxBufferSize` or one activation buffer its `maxStorageBufferBindingSize`.
 */
export function planMemory(
  gpu: Gpu,
  params: readonly Param[],
  groups: ParamGroups,
  opts: MemoryPlanOptions,
): MemoryPlan {
  const act = opts.activations;
  checkCount("batch", opts.batch, true);
  checkCount("activations.bytesPerSample", act?.bytesPerSample, false);
  checkCount("activations.largestBufferPerSample", act?.largestBufferPerSample, false);
  checkCount("budgetBytes", opts.budgetBytes, false);
  const weights = distinctBytes(params.map((p) => p.tensor));
  const trainBytes = distinctBytes(groups.tensors.map((t) => t.tensor));
  const gradients = trainBytes;
  const optimizerState = trainBytes * stateTensors(opts.optimizer);
  const fixed = weights + gradients + optimizerState;
  const perSample = act?.bytesPerSample ?? 0;
  const largestPerSample = act?.largestBufferPerSample ?? 0;
  const limits = gpu.device.limits;
  const bufferLimit = Math.min(limits.maxBufferSize, gpu.maxBinding);
  const room = opts.budgetBytes === undefined ? Infinity : opts.budgetBytes - fixed;
  const byBudget = room < 0 ? 0 : perSample === 0 ? Infinity : Math.floor(room / perSample);
  const byBuffer = largestPerSample === 0 ? Infinity : Math.floor(bufferLimit / largestPerSample);
  const largestBatch = Math.max(0, Math.min(byBudget, byBuffer));
  const plan = {
    weights,
    gradients,
    optimizerState,
    activations: perSample * opts.batch,
    total: fixed + perSample * opts.batch,
    largestBatch,
  };
  const largestTrain = Math.max(...groups.tensors.map((t) => t.tensor.byteSize));
  if (largestTrain > limits.maxBufferSize) {
    throw new WebcapError(
      "BAD_OPTION",
      `memory plan: a gradient of ${mib(largestTrain)} exceeds this adapter's maxBufferSize ` +
        `(${mib(limits.maxBufferSize)}); freeze that parameter`,
    );
  }
  const overBudget = opts.budgetBytes !== undefined && plan.total > opts.budgetBytes;
  if (overBudget || opts.batch > largestBatch) {
    throw new WebcapError("BAD_OPTION", refusal(plan, opts, bufferLimit, overBudget));
  }
  return plan;
}

function refusal(
  plan: MemoryPlan,
  opts: MemoryPlanOptions,
  bufferLimit: number,
  overBudget: boolean,
): string {
  const parts = `weights ${mib(plan.weights)}, gradients ${mib(plan.gradients)}, optimizer ` +
    `state ${mib(plan.optimizerState)}, activations ${mib(plan.activations)}`;
  const why = overBudget
    ? `needs ${mib(plan.total)} (${parts}), over the budget of ${mib(opts.budgetBytes!)}`
    : `needs an activation buffer of ${
      mib(opts.batch * opts.activations!.largestBufferPerSample!)
    }, over this adapter's largest buffer binding (${mib(bufferLimit)})`;
  const fit = plan.largestBatch > 0
    ? `the largest batch that fits is ${plan.largestBatch}`
    : overBudget
    ? "no batch fits: freeze more parameters, use SGD or raise the budget"
    : "no batch fits: one sample's activations alone exceed it";
  return `memory plan: a batch of ${opts.batch} ${why}; ${fit}`;
}
