/**
 * Synthetic parameter lists for optimizer tests, laid out as models lay theirs out: a stacked
 * q/k/v matrix (one tensor, three parameters at offsets), its biases, a norm weight and bias,
 * and an encoder matrix to freeze; with float64 references of AdamW and SGD.
 */
import type { Gpu } from "../../src/gpu/device.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { numel, type Tensor, uploadTensor, writeTensor } from "../../src/gpu/tensor.ts";
import type { Param } from "../../src/nn/params.ts";
import type { Gradients } from "../../src/nn/grads.ts";
import { randomF32 } from "../util.ts";

/** Stored parameters: names, shapes, and which share one tensor. */
const LAYOUT: { names: string[]; shape: number[] }[] = [
  { names: ["encoder.patch.weight"], shape: [6, 5] },
  {
    names: ["decoder.attn.q.weight", "decoder.attn.k.weight", "decoder.attn.v.weight"],
    shape: [7, 9],
  },
  { names: ["decoder.attn.q.bias", "decoder.attn.k.bias", "decoder.attn.v.bias"], shape: [7] },
  { names: ["decoder.ln_1.weight"], shape: [9] },
  { names: ["decoder.ln_1.bias"], shape: [9] },
  { names: ["decoder.fc.weight"], shape: [13, 11] },
];

/** Fresh parameters with seeded values, as a model's `params` list. */
export function syntheticParams(gpu: Gpu, seed = 1): Param[] {
  const params: Param[] = [];
  LAYOUT.forEach(({ names, shape }, k) => {
    const each = numel(shape);
    const t = uploadTensor(
      gpu,
      randomF32(each * names.length, seed * 100 + k),
      [each * names.length],
      "f32",
      names.join("+"),
    );
    names.forEach((name, i) =>
      params.push({ name, shape, tensor: t, offset: i * each, trainable: true })
    );
  });
  return params;
}

/** Read every parameter back, by name. */
export async function readParams(
  gpu: Gpu,
  params: readonly Param[],
): Promise<Map<string, Float32Array>> {
  const rec = new Recorder(gpu);
  const reads = params.map((p) =>
    [p.name, rec.read(p.tensor.buffer, numel(p.shape) * 4, p.offset * 4)] as const
  );
  await rec.submit();
  const out = new Map<string, Float32Array>();
  for (const [name, buf] of reads) out.set(name, new Float32Array(await buf));
  return out;
}

/** Seeded gradients for the trainable parameters, by name. */
export function syntheticGrads(
  params: readonly Param[],
  seed: number,
  scale = 1,
): Map<string, Float32Array> {
  return new Map(params.map((p, i) => [p.name, randomF32(numel(p.shape), seed * 1000 + i, scale)]));
}

/** Write `g` into the gradient tensors (as a backward pass would). */
export function writeGrads(grads: Gradients, g: ReadonlyMap<string, Float32Array>): void {
  for (const p of grads.params) writeTensor(grads.of(p.tensor)!, g.get(p.name)!, p.offset);
}

/** Free the distinct tensors of `params`. */
export function releaseParams(params: readonly Param[]): void {
  for (const t of new Set<Tensor>(params.map((p) => p.tensor))) t.release();
}

/** Float64 AdamW (torch.optim.AdamW) state of one parameter. */
export class AdamW64 {
  m: Float64Array;
  v: Float64Array;
  p: Float64Array;
  t = 0;
  constructor(
    p: ArrayLike<number>,
    readonly o: { lr: number; b1: number; b2: number; eps: number; wd: number },
  ) {
    this.p = Float64Array.from(p);
    this.m = new Float64Array(p.length);
    this.v = new Float64Array(p.length);
  }
  /** One step with gradient `g` at learning rate `lr`. */
  step(g: ArrayLike<number>, lr = this.o.lr): void {
    const { b1, b2, eps, wd } = this.o;
    this.t++;
    const bc1 = 1 - b1 ** this.t, bc2 = 1 - b2 ** this.t;
    for (let i = 0; i < this.p.length; i++) {
      this.p[i] *= 1 - lr * wd;
      this.m[i] = b1 * this.m[i] + (1 - b1) * g[i];
      this.v[i] = b2 * this.v[i] + (1 - b2) * g[i] * g[i];
      this.p[i] -= (lr / bc1) * this.m[i] / (Math.sqrt(this.v[i]) / Math.sqrt(bc2) + eps);
    }
  }
}

/** Float64 SGD (torch.optim.SGD) state of one parameter. */
export class Sgd64 {
  p: Float64Array;
  buf: Float64Array | undefined;
  constructor(
    p: ArrayLike<number>,
    readonly o: { lr: number; momentum: number; dampening: number; wd: number; nesterov: boolean },
  ) {
    this.p = Float64Array.from(p);
  }
  /** One step with gradient `g`. */
  step(g: ArrayLike<number>): void {
    const { lr, momentum, dampening, wd, nesterov } = this.o;
    const d = Float64Array.from(g, (x, i) => x + wd * this.p[i]);
    if (momentum > 0) {
      const first = this.buf === undefined;
      this.buf ??= new Float64Array(d.length);
      for (let i = 0; i < d.length; i++) {
        this.buf[i] = first ? d[i] : momentum * this.buf[i] + (1 - dampening) * d[i];
        d[i] = nesterov ? d[i] + momentum * this.buf[i] : this.buf[i];
      }
    }
    for (let i = 0; i < d.length; i++) this.p[i] -= lr * d[i];
  }
}
