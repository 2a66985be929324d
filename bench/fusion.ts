/**
 * The `bench --kernels` rows that decide the GPU class's fusion choices, side by side at GPT-2
 * small's decode sizes ({@link GPT2_SMALL}); `(plan)` in the variant column marks what the plan
 * now chooses, and each row counts the dispatches one run records (in Deno each costs the host
 * ~11 µs on a GPU, outside the GPU timestamps):
 * - `decode self-attn fused` / `decode self-attn separate` (and `cross-attn`, GPT-2's pre-LN
 *   in×out projection and BERT's out×in one without a norm): `decodeAttentionPlan`. Fused is
 *   `selfAttention` / `crossAttention` of `src/nn/kv_cache.ts`, where the plan fuses; separate is
 *   what they record where it does not: the projection by `linear` (its LayerNorm in the matmul
 *   prologue or a `layerNorm` dispatch, as `matmulPlan` says), the cache append by `copy2d`,
 *   `attention`.
 * - `matmul norm fused` / `matmul norm separate`: `matmulPlan`'s `fuseNorm`, the LayerNorm in
 *   the matmul prologue against `layerNorm` + `matmul` (fused only where the plan can fuse).
 * - `<kernel> subgroups on` / `off`: `gpu.useSubgroups` for the reductions of layernorm,
 *   log-softmax, a decode step's attention and the fused decode step (only where the device has
 *   subgroups).
 * The GPU class always (forced on a CPU adapter, so the fused kernel and the GPU matmuls run
 * there too); a CPU adapter also times its own class's plan (the subgroup rows: GPU class only).
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { dtypeBytes, type Tensor } from "../src/gpu/tensor.ts";
import {
  type AttnInput,
  beginKvCache,
  cachedSelfAttention,
  crossAttention,
  disposeKvCache,
  imageCrossAttention,
  type KvCache,
  selfAttention,
} from "../src/nn/kv_cache.ts";
import { linear } from "../src/nn/modules.ts";
import { attention } from "../src/shaders/attention.ts";
import { decodeAttentionPlan } from "../src/shaders/attention/decode.ts";
import { layerNorm } from "../src/shaders/layernorm.ts";
import { matmul, matmulPlan, vec4Fits } from "../src/shaders/matmul.ts";
import { softmax } from "../src/shaders/softmax.ts";
import {
  asClass,
  matmulVariant,
  perClass,
  timeIt,
  type Timing,
  type Upload,
  withSubgroups,
} from "./kernel_timing.ts";

/** The sizes of the fusion rows. */
export interface FusionSizes {
  /** Decoder hidden size h. */
  hidden: number;
  heads: number;
  /** Positions already in the self-attention cache (a step sees past + 1 keys). */
  past: number;
  /** Image positions a cross-attention reads. */
  encSeq: number;
  /** Decode steps: `rows` (R) over `images` images (rows of an image adjacent, as beams are). */
  steps: { rows: number; images: number }[];
  /** LayerNorm-prologue matmuls `[M, K, N, transposeW]`. */
  norms: [number, number, number, boolean][];
  /** Rows of the subgroup rows' layernorm `[rows, hidden]` and log-softmax `[rows, vocab]`. */
  reduceRows: number[];
  vocab: number;
}

/**
 * GPT-2 small's decode: 20 keys in the cache, 197 image positions (ViT-B/16); greedy (1 row),
 * beam 3 (3), batch 8 (8), batch 8 × beam 3 (24); the pre-LN projections qkv (in×out 768×2304),
 * MLP fc (768×3072), the LM head (out×in, 50,257) and ViT's 197-row qkv (out×in).
 */
export const GPT2_SMALL: FusionSizes = {
  hidden: 768,
  heads: 12,
  past: 19,
  encSeq: 197,
  steps: [
    { rows: 1, images: 1 },
    { rows: 3, images: 1 },
    { rows: 8, images: 8 },
    { rows: 24, images: 8 },
  ],
  norms: [
    [1, 768, 2304, false],
    [8, 768, 3072, false],
    [24, 768, 2304, false],
    [197, 768, 2304, true],
    [1, 768, 50257, true],
  ],
  reduceRows: [1, 8],
  vocab: 50257,
};

/** A decode attention as a model records it. */
export interface DecodeKind {
  /** `self-attn` or `cross-attn`. */
  name: string;
  model: string;
  self: boolean;
  /** Whether its input is LayerNormed first (pre-LN). */
  norm: boolean;
  /** Whether its projection is in×out (GPT-2's Conv1D), else out×in (nn.Linear). */
  inOut: boolean;
}

/** GPT-2's self- and cross-attention (pre-LN, Conv1D), BERT's cross-attention (post-LN, Linear). */
export const DECODE_KINDS: DecodeKind[] = [
  { name: "self-attn", model: "GPT-2", self: true, norm: true, inOut: true },
  { name: "cross-attn", model: "GPT-2", self: false, norm: true, inOut: true },
  { name: "cross-attn", model: "BERT", self: false, norm: false, inOut: false },
];

/**
 * One row of a pair (before its shape): `record` timed, what it allocates released after each
 * run; `plan`, whether the plan chooses this variant (marked in the variant column).
 */
async function pairRow(
  gpu: Gpu,
  reps: number,
  record: (rec: Recorder) => Tensor,
  name: string,
  variant: string,
  plan: boolean,
) {
  const t = await timeIt(gpu, (rec) => [rec.scope(() => record(rec))], reps);
  const marked = `${variant}${plan ? " (plan)" : ""}`;
  return { name, variant: marked, ms: t.ms, dispatches: t.dispatches, timer: t.timer };
}

/** Run the fusion rows, `reps` runs each (median), per weight dtype in `dtypes`. */
export async function benchFusion(
  gpu: Gpu,
  up: Upload,
  dtypes: ("f32" | "f16")[],
  reps: number,
  sizes: FusionSizes = GPT2_SMALL,
): Promise<Timing[]> {
  const rows: Timing[] = [];
  for (const dtype of dtypes) {
    for (const kind of DECODE_KINDS) {
      for (const step of sizes.steps) {
        rows.push(...await benchDecodeStep(gpu, up, sizes, kind, dtype, step, reps));
      }
    }
  }
  for (const dtype of dtypes) {
    for (const shape of sizes.norms) {
      rows.push(...await benchNormPrologue(gpu, up, shape, dtype, reps));
    }
  }
  if (gpu.hasSubgroups) rows.push(...await benchSubgroups(gpu, up, sizes, reps));
  return rows;
}

/**
 * One layer's inputs of a decode step: rows `x [R, h]`, the projection, a one-layer cache, and
 * the tensors to release after (the cache's are its own).
 */
interface DecodeInputs {
  x: Tensor;
  input: AttnInput;
  st: KvCache;
  tensors: Tensor[];
}

function decodeInputs(
  gpu: Gpu,
  up: Upload,
  z: FusionSizes,
  kind: DecodeKind,
  dtype: "f32" | "f16",
  step: { rows: number; images: number },
): DecodeInputs {
  const h = z.hidden, N = kind.self ? 3 * h : h, R = step.rows;
  const [x, g, b] = [up(R * h, [R, h], 21), up(h, [h], 22), up(h, [h], 23)];
  const w = up(h * N, kind.inOut ? [h, N] : [N, h], 24, dtype), bias = up(N, [N], 25);
  const input: AttnInput = {
    norm: kind.norm ? { w: g, b, eps: 1e-5, params: [] } : undefined,
    proj: { w, b: bias, inOut: kind.inOut, params: [] },
  };
  const rowImage = Int32Array.from({ length: R }, (_, r) => Math.floor((r * step.images) / R));
  const cross = kind.self ? undefined : {
    kv: [up(step.images * z.encSeq * 2 * h, [step.images * z.encSeq, 2 * h], 26)],
    encSeq: z.encSeq,
  };
  const shape = { layers: 1, hidden: h, maxLength: z.past + 1 };
  const st = beginKvCache(new Recorder(gpu), shape, rowImage, cross); // records nothing
  st.length = z.past; // this step appends at position `past` (self-attention)
  return { x, input, st, tensors: [x, g, b, w, bias] };
}

/** The fused decode attention and the separate path of `kv_cache.ts`, per adapter class. */
async function benchDecodeStep(
  gpu: Gpu,
  up: Upload,
  z: FusionSizes,
  kind: DecodeKind,
  dtype: "f32" | "f16",
  step: { rows: number; images: number },
  reps: number,
): Promise<Timing[]> {
  const { x, input, st, tensors } = decodeInputs(gpu, up, z, kind, dtype, step);
  const { hidden: h, heads: H } = z, R = step.rows, scale = 1 / Math.sqrt(h / H);
  const keys = kind.self ? z.past + 1 : z.encSeq;
  const fused = (rec: Recorder) =>
    kind.self
      ? selfAttention(rec, st, 0, x, input, 1, H, scale)
      : crossAttention(rec, st, 0, x, input, 1, H, scale);
  const separate = (rec: Recorder) => {
    const y = linear(rec, x, input.proj, { norm: input.norm }); // [R, 3h] (self) or [R, h]
    return kind.self
      ? cachedSelfAttention(rec, st, 0, y, 1, H, scale)
      : imageCrossAttention(rec, st, 0, y, 1, H, scale);
  };
  // the projection's weight, then per row its keys and values, input and output
  const N = kind.self ? 3 * h : h;
  const bytes = N * h * dtypeBytes(dtype) + R * (keys * 2 * h + 2 * h) * 4;
  const rows = await perClass(gpu, async (cls) => {
    const plan = decodeAttentionPlan(gpu, R, input.proj.w);
    const time = async (what: "fused" | "separate", fn: (rec: Recorder) => Tensor) => {
      const name = `decode ${kind.name} ${what} (${kind.model}) ${dtype}`;
      const row = await pairRow(gpu, reps, fn, name, `${cls}: ${what}`, plan === what);
      return { ...row, gbps: bytes / row.ms / 1e6 };
    };
    // the fused kernel only where the plan can take it (R, bindings), and in the GPU class
    const out = cls === "gpu" && plan === "fused" ? [await time("fused", fused)] : [];
    return [...out, await time("separate", separate)];
  });
  for (const t of tensors) t.release();
  disposeKvCache(st);
  return rows.map((r) => ({ ...r, shape: `${R} rows x ${h}, ${H}h x ${keys}k` }));
}

/** A matmul with its LayerNorm in the prologue against `layerNorm` + `matmul`, per class. */
async function benchNormPrologue(
  gpu: Gpu,
  up: Upload,
  [M, K, N, transposeW]: [number, number, number, boolean],
  dtype: "f32" | "f16",
  reps: number,
): Promise<Timing[]> {
  const a = up(M * K, [M, K], 31), w = up(K * N, transposeW ? [N, K] : [K, N], 32, dtype);
  const norm = { w: up(K, [K], 33), b: up(K, [K], 34), eps: 1e-5 };
  const fused = (rec: Recorder) => matmul(rec, a, w, { transposeW, norm });
  const separate = (rec: Recorder) =>
    matmul(rec, layerNorm(rec, a, norm.w, norm.b, norm.eps), w, { transposeW });
  const rows = await perClass(gpu, async (cls) => {
    const plan = matmulPlan(cls, M, N, vec4Fits(w, K, N, transposeW), K);
    const time = (what: "fused" | "separate", fn: (rec: Recorder) => Tensor) => {
      const how = what === "fused" ? "LN prologue" : "layerNorm + matmul";
      const variant = `${matmulVariant(cls, plan)}, ${how}`;
      const chosen = plan.fuseNorm === (what === "fused");
      return pairRow(gpu, reps, fn, `matmul norm ${what} ${dtype}`, variant, chosen);
    };
    // matmul fuses the norm only where its plan does: elsewhere `fused` records `separate`
    const out = plan.fuseNorm ? [await time("fused", fused)] : [];
    return [...out, await time("separate", separate)];
  });
  for (const t of [a, w, norm.w, norm.b]) t.release();
  return rows.map((r) => ({ ...r, shape: `${M}x${K}x${N}`, gflops: (2 * M * N * K) / r.ms / 1e6 }));
}

/**
 * Layernorm, log-softmax, a decode step's attention and the fused decode step with subgroups on
 * and off, GPU class.
 */
async function benchSubgroups(
  gpu: Gpu,
  up: Upload,
  z: FusionSizes,
  reps: number,
): Promise<Timing[]> {
  const { hidden: h, heads: H, vocab: V } = z, L = z.past + 1;
  const inputs: Tensor[] = [];
  const keep = (t: Tensor) => (inputs.push(t), t);
  const g = keep(up(h, [h], 41)), b = keep(up(h, [h], 42));
  const cases: { name: string; shape: string; bytes: number; fn: (rec: Recorder) => Tensor }[] = [];
  const rowOps: [string, number, number, (rec: Recorder, x: Tensor) => Tensor][] = [
    ["layernorm", h, 43, (rec, x) => layerNorm(rec, x, g, b, 1e-5)],
    ["log-softmax", V, 44, (rec, x) => softmax(rec, x, { log: true })],
  ];
  for (const [name, D, seed, op] of rowOps) { // rows x [R, D]: read, written, read again
    for (const R of z.reduceRows) {
      const x = keep(up(R * D, [R, D], seed));
      cases.push({ name, shape: `${R}x${D}`, bytes: 3 * R * D * 4, fn: (rec) => op(rec, x) });
    }
  }
  { // a decode step's attention over the cache, as `cachedSelfAttention` records it
    const q = keep(up(h, [1, h], 45)), kv = keep(up(L * 2 * h, [1, L, 2 * h], 46));
    const kvOp = (offset: number) => ({ t: kv, offset, posStride: 2 * h, rowStride: L * 2 * h });
    const args = {
      q: { t: q, offset: 0, posStride: h, rowStride: h },
      k: kvOp(0),
      v: kvOp(h),
      batch: 1,
      queries: 1,
      heads: H,
      headDim: h / H,
      keys: L,
      causal: { past: z.past },
      scale: 1 / Math.sqrt(h / H),
    };
    const bytes = (2 * h + 2 * L * h) * 4;
    cases.push({
      name: "attention (decode)",
      shape: `${H}h x 1q x ${L}k`,
      bytes,
      fn: (rec) => attention(rec, args),
    });
  }
  // the GPUs' decode step: the fused kernel, ~4 reductions per row in each head's workgroup
  const d = decodeInputs(gpu, up, z, DECODE_KINDS[0], "f32", { rows: 1, images: 1 });
  inputs.push(...d.tensors);
  cases.push({
    name: "fused decode step (GPT-2 self-attn)",
    shape: `1 row x ${h}, ${H}h x ${L}k`,
    bytes: 3 * h * h * 4 + (2 * L * h + 2 * h) * 4,
    fn: (rec) => selfAttention(rec, d.st, 0, d.x, d.input, 1, H, 1 / Math.sqrt(h / H)),
  });
  const plan = gpu.useSubgroups;
  const rows: Timing[] = [];
  await asClass(gpu, "gpu", async () => {
    for (const c of cases) {
      for (const on of [true, false]) {
        const name = `${c.name} subgroups ${on ? "on" : "off"}`;
        const variant = `gpu: ${on ? "subgroup ops" : "workgroup tree"}`;
        const row = await withSubgroups(
          gpu,
          on,
          () => pairRow(gpu, reps, c.fn, name, variant, on === plan),
        );
        rows.push({ ...row, shape: c.shape, gbps: c.bytes / row.ms / 1e6 });
      }
    }
  });
  for (const t of inputs) t.release();
  disposeKvCache(d.st);
  return rows;
}
