import assert from "node:assert/strict";
import { meanOfOthersBaseline, scstBatch, teacherForcing } from "../../src/train/batch.ts";
import { runTrainParity } from "../../src/train/parity_train.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { assertCode, fixture, getGpu } from "../util.ts";

const DIR = fixture("hf/vit-gpt2");

Deno.test("parity --train: ViT-GPT2 CE and SCST gradients of every parameter equal PyTorch's", async () => {
  const gpu = await getGpu();
  const r = await runTrainParity(gpu, DIR);
  const ref = await openSafetensors(`${DIR}/train-reference.safetensors`);
  const grads = ref.names().filter((n) => n.includes(".grad."));
  ref.close();
  for (const n of grads) assert.ok(r.tensors.some((t) => t.name === n), `${n} compared`);
  const bad = r.tensors.filter((t) => !t.pass).map((t) => `${t.name} ${t.relL2}`);
  assert.deepEqual(bad, []);
  assert.ok(r.losses.ce.pass && r.losses.scst.pass, JSON.stringify(r.losses));
});

Deno.test("teacher forcing shifts labels right behind the start token; -100 read as pad", () => {
  const b = teacherForcing(Int32Array.from([7, 8, -100, 9, -100, -100]), 2, {
    startId: 1,
    padId: 0,
    vocab: 10,
  });
  assert.deepEqual([...b.ids], [1, 7, 8, 1, 9, 0]);
  assert.deepEqual([...b.weights].map((w) => Math.round(w * 3)), [1, 1, 0, 1, 0, 0]);
});

Deno.test("bad training input: labels outside the vocabulary, empty captions, disagreeing sizes", () => {
  const ids = { startId: 0, padId: 0, vocab: 10 };
  assertCode(
    () => teacherForcing(Int32Array.from([3, 10]), 1, ids),
    "BAD_OPTION",
    "10",
    "vocabulary",
  );
  assertCode(() => teacherForcing(Int32Array.from([3, -1]), 1, ids), "BAD_OPTION", "is -1");
  assertCode(
    () => teacherForcing(Int32Array.from([3, 4, -100, -100]), 2, ids),
    "BAD_OPTION",
    "caption 1 is empty",
  );
  assertCode(
    () => teacherForcing(Int32Array.from([3, 4]), 1, ids, Int32Array.from([0])),
    "BAD_SHAPE",
    "disagree",
  );
  const s = {
    samples: Int32Array.from([0, 1, 2, 0, 3, 4]),
    mask: Float32Array.from([1, 1, 1, 0]),
    rewards: Float32Array.from([1, 2, 3]),
    baselines: Float32Array.from([0, 0]),
    N: 1,
    K: 2,
  };
  assertCode(() => scstBatch(s, 10), "BAD_SHAPE", "3 rewards");
  const empty = { ...s, rewards: Float32Array.from([1, 2]), mask: Float32Array.from([1, 1, 0, 0]) };
  assertCode(() => scstBatch(empty, 10), "BAD_OPTION", "sample 1 is empty");
});

Deno.test("mean-of-others baseline equals the reference's", async () => {
  const ref = await openSafetensors(`${DIR}/train-reference.safetensors`);
  const info = JSON.parse(await Deno.readTextFile(`${DIR}/train.json`));
  const got = meanOfOthersBaseline(await ref.readF32("scst.rewards"), info.K);
  const want = await ref.readF32("scst.baseline_mean_of_others");
  ref.close();
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-6, `${v} vs ${want[i]}`));
});
