/**
 * What training updates: a model's {@link Param} list split into frozen and trainable parts (by
 * name prefix), trainable ones with or without weight decay (transformers' convention: none on
 * biases and norm weights), laid out as spans of the GPU tensors that hold them.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { numel, type Tensor } from "../gpu/tensor.ts";
import { checkTrainable } from "../nn/grads.ts";
import type { Param } from "../nn/params.ts";

/** Options of {@link paramGroups}. */
export interface ParamGroupOptions {
  /** Name prefixes of parameters left as they are, e.g. `["encoder."]` for the whole encoder. */
  frozen?: readonly string[];
  /** Which trainable parameters get no weight decay; default {@link noWeightDecay}. */
  noDecay?: (name: string) => boolean;
}

/**
 * transformers' convention (`Trainer.get_decay_parameter_names`): no weight decay on biases and
 * on the weights of norm layers (`LayerNorm`, `layernorm_before`, `ln_1`, `ln_f`, `layer_norm1`,
 * `post_layernorm`, `norm`, …).
 */
export function noWeightDecay(name: string): boolean {
  if (name.endsWith("bias")) return true;
  const parts = name.split(".");
  const module = (parts.at(-2) ?? "").toLowerCase();
  return module.includes("norm") || module === "ln" || module.startsWith("ln_");
}

/** Consecutive trainable parameters of one tensor with the same decay: one update dispatch. */
export interface Segment {
  /** First element in the tensor. */
  readonly start: number;
  /** Elements. */
  readonly count: number;
  /** Whether weight decay applies. */
  readonly decay: boolean;
  /** The parameters, in order. */
  readonly params: readonly Param[];
}

/** A GPU tensor holding trainable parameters, and its spans to update. */
export interface TrainTensor {
  /** The GPU tensor (stacked q/k/v and tied tensors are one). */
  readonly tensor: Tensor;
  /** The spans of it that are trainable parameters, with their groups' settings. */
  readonly segments: readonly Segment[];
}

/** A model's parameters as training sees them. */
export interface ParamGroups {
  /** Parameters an optimizer updates, in model order. */
  readonly trainable: readonly Param[];
  /** Parameters left unchanged (frozen by name, or not trainable at all). */
  readonly frozen: readonly Param[];
  /** Distinct tensors holding trainable parameters, each with its update spans. */
  readonly tensors: readonly TrainTensor[];
  /** Whether a trainable parameter gets weight decay. */
  decays(p: Param): boolean;
}

function checkPrefixes(params: readonly Param[], frozen: readonly string[]): void {
  for (const prefix of frozen) {
    if (typeof prefix !== "string" || prefix === "") {
      throw new WebcapError("BAD_OPTION", `frozen: ${JSON.stringify(prefix)} is not a name prefix`);
    }
    if (!params.some((p) => p.name.startsWith(prefix))) {
      throw new WebcapError(
        "BAD_OPTION",
        `frozen: no parameter name starts with "${prefix}" (names look like "${params[0]?.name}")`,
      );
    }
  }
}

/** Split `params` into frozen and trainable parts and lay the trainable ones out by tensor. */
export function paramGroups(params: readonly Param[], opts: ParamGroupOptions = {}): ParamGroups {
  const frozenPrefixes = opts.frozen ?? [];
  checkPrefixes(params, frozenPrefixes);
  const noDecay = opts.noDecay ?? noWeightDecay;
  const isFrozen = (p: Param) => !p.trainable || frozenPrefixes.some((f) => p.name.startsWith(f));
  const trainable = params.filter((p) => !isFrozen(p));
  if (trainable.length === 0) {
    throw new WebcapError("BAD_OPTION", "nothing to train: every parameter is frozen");
  }
  trainable.forEach(checkTrainable);
  const byTensor = new Map<Tensor, Param[]>();
  for (const p of trainable) byTensor.set(p.tensor, [...byTensor.get(p.tensor) ?? [], p]);
  const tensors = [...byTensor].map(([tensor, ps]) => ({
    tensor,
    segments: segmentsOf(ps, noDecay),
  }));
  return {
    trainable,
    frozen: params.filter(isFrozen),
    tensors,
    decays: (p) => !noDecay(p.name),
  };
}

/** Parameters of one tensor merged into runs that are adjacent and share their decay. */
function segmentsOf(ps: Param[], noDecay: (name: string) => boolean): Segment[] {
  const sorted = [...ps].sort((a, b) => a.offset - b.offset);
  const out: { start: number; count: number; decay: boolean; params: Param[] }[] = [];
  for (const p of sorted) {
    const decay = !noDecay(p.name), count = numel(p.shape);
    const last = out.at(-1);
    if (last && last.decay === decay && last.start + last.count === p.offset) {
      last.count += count;
      last.params.push(p);
    } else out.push({ start: p.offset, count, decay, params: [p] });
  }
  return out;
}
