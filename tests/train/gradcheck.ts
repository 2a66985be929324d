/**
 * Whole-model gradient checks without a PyTorch reference: the directional derivative of the loss
 * along a random direction by central differences (five-point) (the parameters moved on the GPU), against
 * Σ grad·direction; and plain SGD steps on the host for "the loss falls".
 */
import type { Gpu } from "../../src/gpu/device.ts";
import { numel, writeTensor } from "../../src/gpu/tensor.ts";
import type { Param } from "../../src/nn/params.ts";
import { rng } from "../util.ts";
import { readParams } from "./synthetic.ts";

/** The loss and gradients by parameter name at the parameters' current values. */
export type LossFn = () => Promise<{ loss: number; grads: Map<string, Float32Array> }>;

function setParams(params: readonly Param[], at: Map<string, Float32Array>): void {
  for (const p of params) writeTensor(p.tensor, at.get(p.name)!, p.offset);
}

/**
 * Along a random ±1 direction over the parameters `which` selects, scaled by `step`:
 * `{ analytic: Σ grad·d, numeric }`, the derivative by the five-point stencil
 * `(8·(L(p + d) − L(p − d)) − (L(p + 2d) − L(p − 2d))) / 12`. Parameters are restored. With
 * `lean`, each sign is the gradient's with that probability (else the opposite): a signal
 * `(2·lean − 1)·Σ|grad|·step` instead of a sum that mostly cancels, for gradients too small for
 * a random direction to rise above the f32 rounding of the loss at a step small enough for ReLUs.
 */
export async function directional(
  gpu: Gpu,
  params: readonly Param[],
  f: LossFn,
  which: (name: string) => boolean,
  step: number,
  seed: number,
  lean?: number,
): Promise<{ analytic: number; numeric: number }> {
  const base = await readParams(gpu, params);
  const { grads } = await f();
  const r = rng(seed);
  const dir = new Map<string, Float32Array>();
  let analytic = 0;
  for (const p of params) {
    const d = new Float32Array(numel(p.shape));
    const g = grads.get(p.name)!;
    const sign = lean === undefined
      ? () => (r() < 0.5 ? -1 : 1)
      : (i: number) => (r() < lean ? 1 : -1) * (g[i] < 0 ? -1 : 1);
    if (which(p.name)) d.forEach((_, i) => d[i] = sign(i) * step);
    d.forEach((v, i) => analytic += v * g[i]);
    dir.set(p.name, d);
  }
  const moved = (sign: number) =>
    new Map(params.map((p) => {
      const b = base.get(p.name)!, d = dir.get(p.name)!;
      return [p.name, Float32Array.from(b, (v, i) => v + sign * d[i])];
    }));
  const at = async (k: number) => {
    setParams(params, moved(k));
    return (await f()).loss;
  };
  const [p1, m1, p2, m2] = [await at(1), await at(-1), await at(2), await at(-2)];
  setParams(params, base);
  return { analytic, numeric: (8 * (p1 - m1) - (p2 - m2)) / 12 };
}

/** `steps` SGD steps at learning rate `lr` on the host; the losses before each step and after. */
export async function sgdLosses(
  gpu: Gpu,
  params: readonly Param[],
  f: LossFn,
  lr: number,
  steps: number,
): Promise<number[]> {
  const losses: number[] = [];
  const base = await readParams(gpu, params);
  let at = base;
  for (let s = 0; s <= steps; s++) {
    const { loss, grads } = await f();
    losses.push(loss);
    if (s === steps) break;
    at = new Map(params.map((p) => {
      const g = grads.get(p.name)!;
      return [p.name, Float32Array.from(at.get(p.name)!, (v, i) => v - lr * g[i])];
    }));
    setParams(params, at);
  }
  setParams(params, base);
  return losses;
}
