/**
 * What training updates: a model's {@link Param} list split into frozen and trainable parts (by
 * name prefix), trainable ones with or without weight decay (transformers' convention: none on
 * biases and norm weights), laid out as spans of the GPU tensors that hold them; and the
 * {@link Gradients}, one zeroed f32 tensor per distinct trainable tensor, that a backward pass
 * accumulates into.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { type Binding, type Recorder, tensorWindow } from "../gpu/recorder.ts";
import { numel, ownedTensor, type Tensor } from "../gpu/tensor.ts";
import type { Param } from "../nn/params.ts";
import { fill, type Span } from "../shaders/optim.ts";

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

/** f16 and quantized parameters cannot be trained: there is no f32 master copy to accumulate small updates. */
function checkMasterDtype(p: Param): void {
  if (p.tensor.dtype !== "f32" || p.quant) {
    const stored = p.quant ? `quantized to ${p.quant.scheme}` : `stored in ${p.tensor.dtype}`;
    throw new WebcapError(
      "BAD_DTYPE",
      `cannot train "${p.name}": it is ${stored}; training updates f32 master ` +
        `weights: load the model with dtype f32, or freeze it`,
    );
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
  trainable.forEach(checkMasterDtype);
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

/** Elements per binding window: 256-byte aligned starts (64 f32). */
const ALIGN = 64;

/** One window of a span: bind elements from `first`, then work on `[off, off + n)` of it. */
export interface Window extends Span {
  readonly first: number;
}

/** Windows covering elements `[start, start + count)` of f32 tensors, each within `maxBinding`. */
export function windows(start: number, count: number, maxBinding: number): Window[] {
  const step = Math.floor(maxBinding / 4 / ALIGN) * ALIGN - ALIGN;
  const out: Window[] = [];
  for (let s = start; s < start + count; s += step) {
    const first = s - (s % ALIGN);
    out.push({ first, off: s - first, n: Math.min(step, start + count - s) });
  }
  return out;
}

/** The window `w` of tensor `t` as a binding. */
export function bindWindow(t: Tensor, w: Window): Binding {
  return tensorWindow(t, w.first, w.off + w.n);
}

/**
 * Gradients of the trainable parameters: one f32 tensor per distinct trainable tensor, in that
 * tensor's layout (a stacked q/k/v gradient is one tensor, each part at its parameter's offset).
 * A backward pass adds into them; {@link zero} clears them between optimizer steps.
 */
export class Gradients {
  readonly #grads = new Map<Tensor, Tensor>();
  /** Zeroed f32 gradients for every trainable tensor of `groups`. */
  constructor(readonly gpu: Gpu, readonly groups: ParamGroups) {
    for (const { tensor } of groups.tensors) {
      this.#grads.set(
        tensor,
        ownedTensor(gpu, tensor.shape, "f32", `grad:${tensor.buffer.label}`, {
          windowed: true,
        }),
      );
    }
  }

  /** The gradient of a parameter tensor, or undefined when nothing in it is trained. */
  get(paramTensor: Tensor): Tensor | undefined {
    return this.#grads.get(paramTensor);
  }

  /** The gradient tensor of a trainable parameter; its elements start at `p.offset`. */
  of(p: Param): Tensor {
    const g = this.#grads.get(p.tensor);
    if (!g || !this.groups.trainable.includes(p)) {
      throw new WebcapError("BAD_OPTION", `"${p.name}" is frozen: it has no gradient`);
    }
    return g;
  }

  /** Bytes held. */
  get bytes(): number {
    let b = 0;
    for (const g of this.#grads.values()) b += g.byteSize;
    return b;
  }

  /** Record zeroing every gradient. */
  zero(rec: Recorder): void {
    for (const g of this.#grads.values()) {
      for (const w of windows(0, g.size, this.gpu.maxBinding)) fill(rec, bindWindow(g, w), w, 0);
    }
  }

  /** Free the gradients. */
  dispose(): void {
    for (const g of this.#grads.values()) if (g.alive) g.release();
    this.#grads.clear();
  }
}
