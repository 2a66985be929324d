/**
 * AdamW and SGD on the GPU against their float64 formulas (several steps, weight decay, bias
 * correction, momentum, nesterov), global-norm clipping against the float64 norm, gradient
 * accumulation, frozen parameters bit for bit, windows past one binding, and bad options.
 */
import assert from "node:assert/strict";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { Optimizer, type OptimizerOptions } from "../../src/train/optim.ts";
import { noWeightDecay, paramGroups } from "../../src/train/param_groups.ts";
import { linearSchedule } from "../../src/train/schedule.ts";
import { assertCode, getGpu, relL2 } from "../util.ts";
import {
  AdamW64,
  readParams,
  releaseParams,
  Sgd64,
  syntheticGrads,
  syntheticParams,
  writeGrads,
} from "./synthetic.ts";

/** Run `steps` optimizer steps on synthetic parameters; returns start, end and the gradients used. */
async function train(
  opts: OptimizerOptions,
  steps: number,
  frozen: string[] = [],
  gradScale = 1,
) {
  const gpu = await getGpu();
  const params = syntheticParams(gpu);
  const groups = paramGroups(params, { frozen });
  const opt = new Optimizer(groups, opts);
  const start = await readParams(gpu, params);
  const used: Map<string, Float32Array>[] = [];
  const lrs: number[] = [];
  const norms: number[] = [];
  for (let s = 0; s < steps; s++) {
    const g = syntheticGrads(groups.trainable, s + 1, gradScale);
    used.push(g);
    lrs.push(opt.lr);
    writeGrads(opt.grads, g);
    const rec = new Recorder(gpu);
    assert.equal(opt.step(rec), true);
    const norm = opt.gradNorm(rec);
    await rec.submit();
    norms.push(await norm);
  }
  const end = await readParams(gpu, params);
  opt.dispose();
  releaseParams(params);
  return { groups, start, end, used, lrs, norms };
}

/** Largest relative L2 error over trainable parameters of the updates `end - start` vs `ref - start`. */
function worstUpdateError(
  run: Awaited<ReturnType<typeof train>>,
  ref: (name: string) => Float64Array,
): number {
  let worst = 0;
  for (const p of run.groups.trainable) {
    const s = run.start.get(p.name)!, e = run.end.get(p.name)!, r = ref(p.name);
    const got = e.map((x, i) => x - s[i]), want = r.map((x, i) => x - s[i]);
    worst = Math.max(worst, relL2(got, want));
  }
  return worst;
}

Deno.test("AdamW: 4 steps with weight decay and a linear schedule equal the float64 formula", async () => {
  const o = { lr: 0.05, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1 };
  const run = await train({
    kind: "adamw",
    lr: o.lr,
    betas: [o.b1, o.b2],
    eps: o.eps,
    weightDecay: o.wd,
    schedule: linearSchedule(2, 6),
  }, 4);
  assert.deepEqual(run.lrs, [0, 0.5, 1, 0.75].map((f) => f * o.lr));
  const err = worstUpdateError(run, (name) => {
    const p = run.groups.trainable.find((q) => q.name === name)!;
    const wd = noWeightDecay(name) ? 0 : o.wd;
    const ref = new AdamW64(run.start.get(name)!, { ...o, wd });
    run.used.forEach((g, s) => ref.step(g.get(p.name)!, run.lrs[s]));
    return ref.p;
  });
  assert.ok(err < 1e-5, `AdamW update rel L2 ${err}`);
});

Deno.test("AdamW defaults are torch.optim.AdamW's (lr 1e-3, betas 0.9/0.999, eps 1e-8, wd 0.01)", async () => {
  const run = await train({ kind: "adamw" }, 3);
  const err = worstUpdateError(run, (name) => {
    const wd = noWeightDecay(name) ? 0 : 0.01;
    const ref = new AdamW64(run.start.get(name)!, { lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, wd });
    for (const g of run.used) ref.step(g.get(name)!);
    return ref.p;
  });
  // updates of ~3e-3 on weights up to 1: storing p in f32 (ulp 6e-8) alone is ~2e-5 of them
  assert.ok(err < 1e-4, `AdamW update rel L2 ${err}`);
});

for (const nesterov of [false, true]) {
  Deno.test(`SGD momentum${nesterov ? " nesterov" : " with dampening"}: 3 steps equal the float64 formula`, async () => {
    const o = { lr: 0.1, momentum: 0.9, dampening: nesterov ? 0 : 0.3, wd: 0.05, nesterov };
    const run = await train({
      kind: "sgd",
      lr: o.lr,
      momentum: o.momentum,
      dampening: o.dampening,
      weightDecay: o.wd,
      nesterov,
    }, 3);
    const err = worstUpdateError(run, (name) => {
      const ref = new Sgd64(run.start.get(name)!, { ...o, wd: noWeightDecay(name) ? 0 : o.wd });
      for (const g of run.used) ref.step(g.get(name)!);
      return ref.p;
    });
    assert.ok(err < 1e-5, `SGD update rel L2 ${err}`);
  });
}

Deno.test("clipping: the global norm equals the float64 norm and scales every gradient", async () => {
  const maxNorm = 0.5;
  const run = await train({ kind: "sgd", lr: 1, maxGradNorm: maxNorm }, 1, [], 3);
  let sq = 0;
  for (const g of run.used[0].values()) for (const x of g) sq += x * x;
  const norm = Math.sqrt(sq);
  assert.ok(Math.abs(run.norms[0] - norm) / norm < 1e-5, `${run.norms[0]} vs ${norm}`);
  const coef = Math.min(1, maxNorm / (norm + 1e-6));
  assert.ok(coef < 0.1, "the test's gradients must be clipped");
  const err = worstUpdateError(
    run,
    (name) =>
      Float64Array.from(run.start.get(name)!, (x, i) => x - coef * run.used[0].get(name)![i]),
  );
  assert.ok(err < 1e-5, `clipped update rel L2 ${err}`);
});

Deno.test("accumulation: N micro-batches make one step with the mean gradient, then zeroed gradients", async () => {
  const gpu = await getGpu();
  const params = syntheticParams(gpu);
  const groups = paramGroups(params);
  const opt = new Optimizer(groups, { kind: "sgd", lr: 0.5, accumulate: 3 });
  const start = await readParams(gpu, params);
  const sum = syntheticGrads(groups.trainable, 7);
  const stepped: boolean[] = [];
  for (let i = 0; i < 3; i++) {
    if (i === 2) writeGrads(opt.grads, sum); // what a backward summing three micro-batches leaves
    const rec = new Recorder(gpu);
    stepped.push(opt.step(rec));
    await rec.submit();
  }
  assert.deepEqual(stepped, [false, false, true]);
  assert.equal(opt.steps, 1);
  const end = await readParams(gpu, params);
  for (const p of groups.trainable) {
    const want = start.get(p.name)!.map((x, i) => x - 0.5 * sum.get(p.name)![i] / 3);
    assert.ok(relL2(end.get(p.name)!, want) < 1e-6, p.name);
  }
  const rec = new Recorder(gpu);
  const zeroed = groups.tensors.map((t) => rec.readTensor(opt.grads.of(t.tensor)!));
  await rec.submit();
  for (const z of zeroed) assert.ok((await z).every((x) => x === 0));
  opt.dispose();
  const half = uploadTensor(gpu, new Uint16Array(4), [4], "f16", "half");
  const f16Param = {
    name: "decoder.half.weight",
    shape: [4],
    tensor: half,
    offset: 0,
    trainable: true,
  };
  assertCode(
    () => paramGroups([...params, f16Param]),
    "BAD_DTYPE",
    'cannot train "decoder.half.weight": it is stored in f16.*load the model with dtype f32',
  );
  assert.equal(
    paramGroups([...params, f16Param], { frozen: ["decoder.half."] }).trainable.length,
    params.length,
  );
  half.release();
  releaseParams(params);
});

Deno.test("frozen parameters stay identical bit for bit, also inside a stacked tensor; the rest change", async () => {
  const frozen = ["encoder.", "decoder.attn.k."];
  const run = await train({ kind: "adamw", lr: 0.01 }, 3, frozen);
  const frozenNames = run.groups.frozen.map((p) => p.name);
  assert.deepEqual(frozenNames, [
    "encoder.patch.weight",
    "decoder.attn.k.weight",
    "decoder.attn.k.bias",
  ]);
  for (const name of frozenNames) {
    const a = new Uint32Array(run.start.get(name)!.buffer),
      b = new Uint32Array(run.end.get(name)!.buffer);
    assert.deepEqual(b, a, name);
  }
  for (const p of run.groups.trainable) {
    const s = run.start.get(p.name)!, e = run.end.get(p.name)!;
    assert.ok(e.every((x, i) => x !== s[i]), `${p.name} did not change everywhere`);
  }
});

Deno.test("parameter groups: no weight decay on biases and norm weights (transformers' convention)", () => {
  const no = [
    "decoder.transformer.h.0.ln_1.weight",
    "decoder.transformer.ln_f.weight",
    "encoder.encoder.layer.0.layernorm_before.weight",
    "text_decoder.bert.embeddings.LayerNorm.weight",
    "vision_model.encoder.layers.0.layer_norm1.weight",
    "vision_model.post_layernorm.weight",
    "decoder.attn.c_attn.bias",
  ];
  const yes = ["decoder.transformer.wte.weight", "encoder.embeddings.cls_token", "fc.weight"];
  for (const n of no) assert.equal(noWeightDecay(n), true, n);
  for (const n of yes) assert.equal(noWeightDecay(n), false, n);
});

Deno.test("AdamW over tensors larger than one binding (windows) equals the unwindowed result", async () => {
  const gpu = await getGpu();
  const full = await train({ kind: "adamw", lr: 0.01, maxGradNorm: 1 }, 2, ["decoder.attn.k."]);
  const saved = gpu.maxBinding;
  gpu.maxBinding = 512; // 64-element windows: every tensor here spans several, at unaligned offsets
  try {
    const windowed = await train({ kind: "adamw", lr: 0.01, maxGradNorm: 1 }, 2, [
      "decoder.attn.k.",
    ]);
    assert.ok(Math.abs(windowed.norms[1] - full.norms[1]) / full.norms[1] < 1e-6);
    for (const [name, e] of full.end) assert.ok(relL2(windowed.end.get(name)!, e) < 1e-7, name);
  } finally {
    gpu.maxBinding = saved;
  }
});

Deno.test("bad optimizer options and f16 parameters are named errors", async () => {
  const gpu = await getGpu();
  const params = syntheticParams(gpu);
  const groups = paramGroups(params);
  const bad: [OptimizerOptions, string][] = [
    [{ kind: "adamw", lr: 0 }, "lr \\(learning rate\\) must be a finite number > 0, got 0"],
    [{ kind: "sgd", lr: -1 }, "lr .* got -1"],
    [{ kind: "adamw", lr: NaN }, "got NaN"],
    [{ kind: "adamw", betas: [0.9, 1] }, "betas\\[1\\] must be a finite number in \\[0, 1\\)"],
    [{ kind: "adamw", betas: [-0.1, 0.9] }, "betas\\[0\\]"],
    [{ kind: "adamw", eps: -1 }, "eps"],
    [{ kind: "sgd", weightDecay: Infinity }, "weightDecay"],
    [{ kind: "sgd", nesterov: true }, "nesterov momentum needs momentum > 0"],
    [{ kind: "adamw", maxGradNorm: 0 }, "maxGradNorm"],
    [{ kind: "adamw", accumulate: 1.5 }, "accumulate"],
  ];
  for (const [o, msg] of bad) assertCode(() => new Optimizer(groups, o), "BAD_OPTION", msg);
  assertCode(() => linearSchedule(-1, 10), "BAD_OPTION", "warmupSteps");
  assertCode(
    () => paramGroups(params, { frozen: ["encodr."] }),
    "BAD_OPTION",
    'no parameter name starts with "encodr."',
  );
  assertCode(
    () => paramGroups(params, { frozen: ["encoder.", "decoder."] }),
    "BAD_OPTION",
    "every parameter is frozen",
  );
  const half = uploadTensor(gpu, new Uint16Array(4), [4], "f16", "half");
  const f16Param = {
    name: "decoder.half.weight",
    shape: [4],
    tensor: half,
    offset: 0,
    trainable: true,
  };
  assertCode(
    () => paramGroups([...params, f16Param]),
    "BAD_DTYPE",
    'cannot train "decoder.half.weight": it is stored in f16.*load the model with dtype f32',
  );
  assert.equal(
    paramGroups([...params, f16Param], { frozen: ["decoder.half."] }).trainable.length,
    params.length,
  );
  half.release();
  releaseParams(params);
});
