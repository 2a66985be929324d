/**
 * Per-kernel timings at the shapes of ViT-B/16 and GPT-2 small: GPU time from timestamp queries
 * where the adapter has them (else wall time of submit-and-wait), GFLOP/s or GB/s, with the
 * adapter's name. Matmuls run at ViT-base's prefill shapes (M = 197) and GPT-2's decode shapes
 * (M = 1…8, and 24 for batch 8 × beam 3; up to the 50,257-column LM head) with the variant
 * {@link matmulPlan} chooses; on a CPU adapter matmul, attention and layernorm also run with the
 * GPU kernels, side by side, and the `variant` column names the kernel of each row. Last, the
 * fusion rows of `fusion.ts`, which decide the GPU class's plans on a lent GPU: the fused decode
 * attention against its separate dispatches (`decodeAttentionPlan`), the LayerNorm in the matmul
 * prologue against `layerNorm` + `matmul` (`matmulPlan`'s `fuseNorm`), and the reductions with
 * subgroups on and off (`gpu.useSubgroups`), in pairs, the plan's current choice marked `(plan)`
 * (at most 2 reps on a CPU adapter).
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import type { Tensor } from "../src/gpu/tensor.ts";
import { attention, attentionPlan } from "../src/shaders/attention.ts";
import { conv2d } from "../src/shaders/conv2d.ts";
import { binary, unary } from "../src/shaders/elementwise.ts";
import { layerNorm, layerNormPlan } from "../src/shaders/layernorm.ts";
import { matmul, matmulPlan, vec4Fits } from "../src/shaders/matmul.ts";
import { softmax } from "../src/shaders/softmax.ts";
import { topk } from "../src/shaders/topk.ts";
import { benchFusion } from "./fusion.ts";
import {
  type KernelRow,
  matmulVariant,
  perClass,
  timeIt,
  type Timing,
  type Upload,
  uploader,
} from "./kernel_timing.ts";

/** Run the kernel benchmarks. `reps` per case (median reported). */
export async function benchKernels(gpu: Gpu, reps = 3): Promise<KernelRow[]> {
  const rows: Timing[] = [];
  const dtypes: ("f32" | "f16")[] = gpu.hasF16 ? ["f32", "f16"] : ["f32"];
  const up = uploader(gpu);
  rows.push(...await benchMatmuls(gpu, up, dtypes, reps));
  {
    const [S, H, D] = [197, 12, 64];
    const qkv = up(S * 3 * H * D, [S, 3 * H * D], 3);
    const op = (offset: number) => ({
      t: qkv,
      offset,
      posStride: 3 * H * D,
      rowStride: S * 3 * H * D,
    });
    const args = {
      q: op(0),
      k: op(H * D),
      v: op(2 * H * D),
      batch: 1,
      queries: S,
      heads: H,
      headDim: D,
      keys: S,
      scale: 0.125,
    };
    rows.push(
      ...await perClass(gpu, async (cls) => {
        const { ms, timer } = await timeIt(gpu, (rec) => [attention(rec, args)], reps);
        return {
          name: "attention (fused, ViT-B/16)",
          shape: `${H}h x ${S}q x ${S}k x ${D}d`,
          variant: `${cls}: ${attentionPlan(cls, args)}`,
          ms,
          gflops: (4 * S * S * D * H) / ms / 1e6,
          timer,
        };
      }),
    );
    qkv.release();
  }
  {
    for (const R of [197, 1]) {
      const Dm = 768;
      const x = up(R * Dm, [R, Dm], 4), g = up(Dm, [Dm], 5), b = up(Dm, [Dm], 6);
      rows.push(
        ...await perClass(gpu, async (cls) => {
          const { ms, timer } = await timeIt(gpu, (rec) => [layerNorm(rec, x, g, b, 1e-5)], reps);
          return {
            name: "layernorm",
            shape: `${R}x${Dm}`,
            variant: `${cls}: ${layerNormPlan(cls, Dm)}`,
            ms,
            gbps: (3 * R * Dm * 4) / ms / 1e6,
            timer,
          };
        }),
      );
      for (const t of [x, g, b]) t.release();
    }
  }
  {
    const [R, V] = [5, 50257];
    const x = up(R * V, [R, V], 7);
    let r = await timeIt(gpu, (rec) => [softmax(rec, x, { log: true })], reps);
    rows.push({
      name: "log-softmax (vocab)",
      shape: `${R}x${V}`,
      ms: r.ms,
      gbps: (3 * R * V * 4) / r.ms / 1e6,
      timer: r.timer,
    });
    r = await timeIt(gpu, (rec) => {
      const t = topk(rec, x, 10);
      return [t.values, t.ids];
    }, reps);
    rows.push({
      name: "top-k k=10 (beam 5 step)",
      shape: `${R}x${V}`,
      ms: r.ms,
      gbps: (10 * R * V * 4) / r.ms / 1e6,
      timer: r.timer,
    });
    x.release();
  }
  {
    const x = up(3 * 224 * 224, [1, 3, 224, 224], 8);
    const w = up(768 * 3 * 16 * 16, [768, 3, 16, 16], 9);
    const b = up(768, [768], 10);
    const { ms, timer } = await timeIt(
      gpu,
      (rec) => [conv2d(rec, x, w, { stride: 16, bias: b })],
      reps,
    );
    rows.push({
      name: "conv2d patch embedding (ViT-B/16)",
      shape: "3x224x224 -> 768x14x14",
      ms,
      gflops: (2 * 196 * 768 * 768) / ms / 1e6,
      timer,
    });
    for (const t of [x, w, b]) t.release();
  }
  rows.push(...await benchBindGroups(gpu, up, reps));
  // a CPU adapter runs the GPU-class fusion rows slowly (~13 s a rep on lavapipe): at most 2
  // reps there keep `--kernels` near 2 minutes
  rows.push(
    ...await benchFusion(gpu, up, dtypes, gpu.adapterClass === "cpu" ? Math.min(reps, 2) : reps),
  );
  return rows.map((r) => ({ ...r, adapter: gpu.adapterName }));
}

/** `[name, M, K, N, transposeW]`: ViT-base prefill (197 tokens) and GPT-2 decode steps. */
const MATMULS: [string, number, number, number, boolean][] = [
  ["matmul qkv (ViT)", 197, 768, 2304, false],
  ["matmul attn proj (ViT)", 197, 768, 768, false],
  ["matmul attn proj (ViT, nn.Linear out×in)", 197, 768, 768, true],
  ["matmul mlp fc (ViT)", 197, 768, 3072, false],
  ["matmul mlp proj (ViT)", 197, 3072, 768, false],
  ...[1, 2, 5, 8, 24].map((M): [string, number, number, number, boolean] => [
    `matmul qkv (GPT-2 decode, ${M} rows)`,
    M,
    768,
    2304,
    false,
  ]),
  ["matmul mlp proj (GPT-2 decode, 5 rows)", 5, 3072, 768, false],
  ["matmul lm_head (GPT-2 decode, 1 row)", 1, 768, 50257, true],
  ["matmul lm_head (GPT-2 decode, 8 rows)", 8, 768, 50257, true],
];

/** Matmul GFLOP/s at {@link MATMULS}, per weight dtype, with this adapter's class (and the GPU one). */
async function benchMatmuls(
  gpu: Gpu,
  up: Upload,
  dtypes: ("f32" | "f16")[],
  reps: number,
): Promise<Timing[]> {
  const rows: Timing[] = [];
  for (const dtype of dtypes) {
    for (const [name, M, K, N, transposeW] of MATMULS) {
      const a = up(M * K, [M, K], 1);
      const w = up(K * N, transposeW ? [N, K] : [K, N], 2, dtype);
      rows.push(
        ...await perClass(gpu, async (cls) => {
          const r = await timeIt(gpu, (rec) => [matmul(rec, a, w, { transposeW })], reps);
          return {
            name: `${name} ${dtype}`,
            shape: `${M}x${K}x${N}`,
            variant: matmulVariant(cls, matmulPlan(cls, M, N, vec4Fits(w, K, N, transposeW), K)),
            ms: r.ms,
            gflops: (2 * M * N * K) / r.ms / 1e6,
            timer: r.timer,
          };
        }),
      );
      a.release();
      w.release();
    }
  }
  return rows;
}

/**
 * CPU time to record a decode step of 12 GPT-2-small blocks (layernorm, matmul + GELU, residual
 * add; 5 rows) with every bind group built (cache cleared before each step) and with the bind
 * groups of the previous step reused. The shape column counts the groups built per step.
 */
export async function benchBindGroups(
  gpu: Gpu,
  up: (n: number, shape: number[], seed: number) => Tensor,
  reps: number,
): Promise<Timing[]> {
  const [R, Dm, layers] = [5, 768, 12];
  const x = up(R * Dm, [R, Dm], 11), w = up(Dm * Dm, [Dm, Dm], 12);
  const g = up(Dm, [Dm], 13), b = up(Dm, [Dm], 14);
  const step = (rec: Recorder) => {
    for (let l = 0; l < layers; l++) {
      const [n, h, a, y] = [0, 1, 2, 3].map(() => rec.temp([R, Dm]));
      layerNorm(rec, x, g, b, 1e-5, n);
      matmul(rec, n, w, { bias: b, out: h });
      unary(rec, h, "gelu_new", a);
      binary(rec, x, a, "add", y);
    }
  };
  const rows: Timing[] = [];
  for (const cached of [false, true]) {
    const times: number[] = [];
    let built = 0;
    for (let i = 0; i <= reps; i++) {
      if (!cached) gpu.bindGroups.clear();
      const before = gpu.bindGroups.created;
      const rec = new Recorder(gpu);
      const t0 = performance.now();
      step(rec);
      const ms = performance.now() - t0;
      await rec.submit();
      await gpu.device.queue.onSubmittedWorkDone();
      if (i > 0) times.push(ms);
      built = gpu.bindGroups.created - before;
    }
    times.sort((p, q) => p - q);
    rows.push({
      name: `record decode step, bind groups ${cached ? "cached" : "built every step"}`,
      shape: `${layers * 4} dispatches, ${built} groups built`,
      ms: times[Math.floor(times.length / 2)],
      timer: "wall",
    });
  }
  for (const t of [x, w, g, b]) t.release();
  return rows;
}
