/**
 * Learning-rate schedules against transformers' formulas, and the memory plan: bytes by use,
 * refusal past a budget or a binding limit naming the largest batch that fits.
 */
import assert from "node:assert/strict";
import { planMemory } from "../../src/train/memory.ts";
import { Optimizer, resolveOptimizer } from "../../src/train/optim.ts";
import { paramGroups } from "../../src/train/param_groups.ts";
import { constantSchedule, cosineSchedule, linearSchedule } from "../../src/train/schedule.ts";
import { assertCode, getGpu } from "../util.ts";
import { releaseParams, syntheticParams } from "./synthetic.ts";

function close(a: number, b: number): boolean {
  return Math.abs(a - b) < 1e-12;
}

Deno.test("schedules: constant, linear and cosine with warm-up follow get_*_schedule_with_warmup", () => {
  const c = constantSchedule();
  assert.deepEqual([0, 5, 1000].map((s) => c.factor(s)), [1, 1, 1]);
  const lin = linearSchedule(10, 110);
  const linWant: [number, number][] = [
    [0, 0],
    [5, 0.5],
    [10, 1],
    [60, 0.5],
    [109, 0.01],
    [110, 0],
    [200, 0],
  ];
  for (const [s, f] of linWant) assert.ok(close(lin.factor(s), f), `linear ${s}: ${lin.factor(s)}`);
  const cos = cosineSchedule(10, 110);
  const cosWant: [number, number][] = [
    [3, 0.3],
    [10, 1],
    [35, 0.5 * (1 + Math.SQRT1_2)],
    [60, 0.5],
    [110, 0],
  ];
  for (const [s, f] of cosWant) assert.ok(close(cos.factor(s), f), `cosine ${s}: ${cos.factor(s)}`);
  const full = cosineSchedule(0, 100, 1); // one whole period: back to 1 at the end
  assert.ok(close(full.factor(50), 0) && close(full.factor(100), 1) && close(full.factor(0), 1));
  assert.ok(close(linearSchedule(0, 4).factor(0), 1), "no warm-up starts at the base rate");
  assertCode(() => cosineSchedule(1, 0), "BAD_OPTION", "totalSteps \\(0\\) an integer > 0");
  assertCode(() => cosineSchedule(1, 10, 0), "BAD_OPTION", "cycles");
});

Deno.test("memory plan: weights, gradients and state by use; frozen tensors get none", async () => {
  const gpu = await getGpu();
  const params = syntheticParams(gpu);
  const tensors = [...new Set(params.map((p) => p.tensor))];
  const all = tensors.reduce((s, t) => s + t.byteSize, 0);
  const adamw = resolveOptimizer({ kind: "adamw" });
  const plan = planMemory(gpu, params, paramGroups(params), { optimizer: adamw, batch: 4 });
  assert.deepEqual(
    [plan.weights, plan.gradients, plan.optimizerState, plan.activations, plan.total],
    [all, all, 2 * all, 0, 4 * all],
  );
  const frozen = paramGroups(params, { frozen: ["encoder."] });
  const enc = params.find((p) => p.name.startsWith("encoder."))!.tensor.byteSize;
  const sgd = resolveOptimizer({ kind: "sgd", momentum: 0.9 });
  const p2 = planMemory(gpu, params, frozen, { optimizer: sgd, batch: 1 });
  assert.deepEqual([p2.gradients, p2.optimizerState], [all - enc, all - enc]);
  // the plan is what training allocates
  const opt = new Optimizer(frozen, { kind: "sgd", momentum: 0.9 });
  assert.deepEqual([opt.grads.bytes, opt.stateBytes], [p2.gradients, p2.optimizerState]);
  opt.dispose();
  const plain = planMemory(gpu, params, frozen, {
    optimizer: resolveOptimizer({ kind: "sgd" }),
    batch: 1,
  });
  assert.equal(plain.optimizerState, 0);
  releaseParams(params);
});

Deno.test("memory plan: a batch past the budget or the binding limit is refused naming the largest that fits", async () => {
  const gpu = await getGpu();
  const params = syntheticParams(gpu);
  const groups = paramGroups(params);
  const optimizer = resolveOptimizer({ kind: "adamw" });
  const fixed = planMemory(gpu, params, groups, { optimizer, batch: 1 }).total;
  const perSample = 1000;
  const budgetBytes = fixed + 5.5 * perSample;
  const activations = { bytesPerSample: perSample };
  const ok = planMemory(gpu, params, groups, { optimizer, batch: 5, activations, budgetBytes });
  assert.equal(ok.largestBatch, 5);
  assert.equal(ok.total, fixed + 5 * perSample);
  assertCode(
    () => planMemory(gpu, params, groups, { optimizer, batch: 8, activations, budgetBytes }),
    "BAD_OPTION",
    "a batch of 8 needs .* over the budget .* the largest batch that fits is 5",
  );
  assertCode(
    () => planMemory(gpu, params, groups, { optimizer, batch: 1, budgetBytes: fixed - 1 }),
    "BAD_OPTION",
    "no batch fits: freeze more parameters",
  );
  const big = {
    bytesPerSample: perSample,
    largestBufferPerSample: Math.floor(gpu.maxBinding / 3) + 1,
  };
  assertCode(
    () => planMemory(gpu, params, groups, { optimizer, batch: 3, activations: big }),
    "BAD_OPTION",
    "largest buffer binding .* the largest batch that fits is 2",
  );
  assertCode(
    () => planMemory(gpu, params, groups, { optimizer, batch: 0 }),
    "BAD_OPTION",
    "batch must be an integer ≥ 1",
  );
  releaseParams(params);
});
