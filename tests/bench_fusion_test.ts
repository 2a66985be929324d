/**
 * The `bench --kernels` fusion rows at tiny sizes: every pair is there, in the GPU class (and the
 * CPU class on a CPU adapter), each row records the dispatches its path has by construction
 * (fused decode attention 1; separate: the projection — with a `layerNorm` dispatch before it
 * where `matmulPlan` does not fuse the norm — then the cache append for self-attention, then
 * `attention`), exactly the plan's choice is marked, and the adapter class and subgroup setting
 * are the device's own again afterwards.
 */
import assert from "node:assert/strict";
import { benchFusion, DECODE_KINDS, type FusionSizes } from "../bench/fusion.ts";
import { benchClasses, uploader } from "../bench/kernel_timing.ts";
import type { AdapterClass, Gpu } from "../src/gpu/device.ts";
import { uploadTensor } from "../src/gpu/tensor.ts";
import { decodeAttentionPlan } from "../src/shaders/attention/decode.ts";
import { matmulPlan } from "../src/shaders/matmul.ts";
import { asAdapterClass, getGpu } from "./util.ts";

/** Tiny sizes: 33 rows exceed the fused kernel; K = 256 is where the CPU class stops fusing a norm. */
const TINY: FusionSizes = {
  hidden: 32,
  heads: 4,
  past: 3,
  encSeq: 5,
  steps: [{ rows: 1, images: 1 }, { rows: 3, images: 1 }, { rows: 33, images: 2 }],
  norms: [[1, 32, 96, false], [3, 32, 128, false], [17, 32, 96, true], [2, 256, 64, false]],
  reduceRows: [1, 2],
  vocab: 100,
};

type Want = { name: string; variant: string; dispatches: number };

/** `variant` with the plan's mark. */
const mark = (variant: string, plan: boolean) => `${variant}${plan ? " (plan)" : ""}`;

/** The decode rows of one kind, dtype and step in class `cls`, from the plans. */
async function decodeWants(
  gpu: Gpu,
  kind: (typeof DECODE_KINDS)[number],
  dtype: string,
  R: number,
  cls: AdapterClass,
): Promise<Want[]> {
  const h = TINY.hidden, N = kind.self ? 3 * h : h;
  const w = uploadTensor(gpu, new Float32Array(h * N), kind.inOut ? [h, N] : [N, h], "f32");
  const plan = await asAdapterClass(
    gpu,
    cls,
    () => Promise.resolve(decodeAttentionPlan(gpu, R, w)),
  );
  w.release();
  const fuseNorm = matmulPlan(cls, R, N, true, h).fuseNorm;
  const project = kind.norm && !fuseNorm ? 2 : 1;
  const name = (what: string) => `decode ${kind.name} ${what} (${kind.model}) ${dtype}`;
  const separate = {
    name: name("separate"),
    variant: mark(`${cls}: separate`, plan === "separate"),
    dispatches: project + (kind.self ? 2 : 1),
  };
  const fused = { name: name("fused"), variant: mark(`${cls}: fused`, true), dispatches: 1 };
  return cls === "gpu" && plan === "fused" ? [fused, separate] : [separate];
}

/** The LayerNorm-prologue rows of one shape in class `cls` (whether each is the plan's), from `matmulPlan`. */
function normWants([M, K, N]: FusionSizes["norms"][number], dtype: string, cls: AdapterClass) {
  const fuse = matmulPlan(cls, M, N, true, K).fuseNorm;
  const separate = { name: `matmul norm separate ${dtype}`, dispatches: 2, plan: !fuse };
  const fused = { name: `matmul norm fused ${dtype}`, dispatches: 1, plan: true };
  return fuse ? [fused, separate] : [separate];
}

Deno.test("bench fusion rows: every pair, the dispatches of each path, the plan's choice marked", async () => {
  const gpu = await getGpu();
  const own = { cls: gpu.adapterClass, subgroups: gpu.useSubgroups };
  const dtypes: ("f32" | "f16")[] = gpu.hasF16 ? ["f32", "f16"] : ["f32"];
  const rows = await benchFusion(gpu, uploader(gpu), dtypes, 1, TINY);
  assert.deepEqual({ cls: gpu.adapterClass, subgroups: gpu.useSubgroups }, own);
  for (const r of rows) assert.ok(Number.isFinite(r.ms) && r.ms >= 0, `${r.name}: ${r.ms} ms`);

  const want: Want[] = [];
  for (const dtype of dtypes) {
    for (const kind of DECODE_KINDS) {
      for (const { rows: R } of TINY.steps) {
        for (const cls of benchClasses(gpu)) {
          want.push(...await decodeWants(gpu, kind, dtype, R, cls));
        }
      }
    }
  }
  const decode = rows.filter((r) => r.name.startsWith("decode "));
  assert.deepEqual(
    decode.map(({ name, variant, dispatches }) => ({ name, variant, dispatches })),
    want,
  );
  assert.ok(decode.some((r) => r.variant === "gpu: fused (plan)"), "the fused kernel ran");
  assert.ok(
    decode.some((r) => r.shape.startsWith("33 rows") && r.variant === "gpu: separate (plan)"),
  );

  const norms = rows.filter((r) => r.name.startsWith("matmul norm "));
  const normWant = dtypes.flatMap((dtype) =>
    TINY.norms.flatMap((s) => benchClasses(gpu).flatMap((cls) => normWants(s, dtype, cls)))
  );
  assert.deepEqual(
    norms.map(({ name, variant, dispatches }) => ({
      name,
      dispatches,
      plan: variant!.endsWith(" (plan)"),
    })),
    normWant,
  );
  for (const r of norms) {
    assert.match(r.variant!, r.name.includes("fused") ? /, LN prologue/ : /, layerNorm \+ matmul/);
  }

  const sub = rows.filter((r) => r.name.includes(" subgroups "));
  const cases = [
    ...TINY.reduceRows.map(() => "layernorm"),
    ...TINY.reduceRows.map(() => "log-softmax"),
    "attention (decode)",
    "fused decode step (GPT-2 self-attn)",
  ];
  const subWant = (gpu.hasSubgroups ? cases : []).flatMap((c) =>
    [true, false].map((on) => ({
      name: `${c} subgroups ${on ? "on" : "off"}`,
      variant: mark(`gpu: ${on ? "subgroup ops" : "workgroup tree"}`, on === own.subgroups),
      dispatches: 1,
    }))
  );
  assert.deepEqual(
    sub.map(({ name, variant, dispatches }) => ({ name, variant, dispatches })),
    subWant,
  );
  assert.equal(rows.length, decode.length + norms.length + sub.length);
});
