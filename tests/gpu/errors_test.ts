/**
 * WebGPU errors and limits: every submit is checked (a validation error is a GPU_ERROR naming the
 * kernel, never garbage), and a tensor too large for the device is refused before allocation.
 */
import assert from "node:assert/strict";
import { type Binding, Params, Recorder } from "../../src/gpu/recorder.ts";
import { emptyTensor, ownedTensor, uploadTensor } from "../../src/gpu/tensor.ts";
import { WebcapError } from "../../src/errors.ts";
import { unary } from "../../src/shaders/elementwise.ts";
import { assertCode, getGpu, randomF32 } from "../util.ts";

const ADD_ONE = `@group(0) @binding(0) var<uniform> p: vec4u;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(1) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < p.x) { Y[id.x] = Y[id.x] + 1.0; }
}`;

/** Record `Y[i] += 1` for every f32 of `y` over `groups` workgroups (at most 65,535 are valid). */
function addOne(rec: Recorder, y: Binding, groups: number): void {
  const n = "shape" in y ? y.size : y.size / 4;
  rec.dispatch(rec.gpu.pipelines.get(ADD_ONE), new Params().u32(n), [y], [groups]);
}

/** Assert `p` rejects with a WebcapError of `code` whose message matches every pattern. */
async function rejectsWith(p: Promise<unknown>, code: string, ...mentions: RegExp[]) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof WebcapError, `expected WebcapError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const m of mentions) assert.match(e.message, m);
    return true;
  });
}

Deno.test("recorder: an invalid dispatch is a GPU_ERROR naming its kernel; readbacks reject, nothing leaks", async () => {
  const gpu = await getGpu();
  const y = uploadTensor(gpu, new Float32Array([0, 0, 0, 0]), [4], "f32", "counts");
  const rec = new Recorder(gpu);
  addOne(rec, y, 4);
  addOne(rec, y, 70_000); // past maxComputeWorkgroupsPerDimension (65,535)
  const read = rec.readTensor(y);
  const noOneAwaits = rec.readTensor(y); // rejected too, but no unhandled rejection
  await rejectsWith(
    rec.submit(),
    "GPU_ERROR",
    /validation error in kernel "addOne \(errors_test\.ts\)"/,
    /dispatch 2 of 2, workgroups \[70000,1,1\]/,
    /65535/,
  );
  await rejectsWith(read, "GPU_ERROR", /addOne/);
  void noOneAwaits;

  // the device, its error scopes and the tensor stay usable: the next submit computes
  const again = new Recorder(gpu);
  addOne(again, y, 4);
  const ok = again.readTensor(y);
  await again.submit();
  assert.deepEqual([...await ok], [1, 1, 1, 1], "the failed submission ran nothing");
  y.release();
});

Deno.test("recorder: concurrent submits each get their own errors", async () => {
  const gpu = await getGpu();
  const good = uploadTensor(gpu, new Float32Array(2), [2], "f32", "good");
  const bad = uploadTensor(gpu, new Float32Array(2), [2], "f32", "bad");
  const [a, b, c] = [new Recorder(gpu), new Recorder(gpu), new Recorder(gpu)];
  addOne(a, good, 2);
  addOne(b, bad, 1 << 17);
  addOne(c, good, 2);
  const reads = [a.readTensor(good), c.readTensor(good)];
  const results = await Promise.allSettled([a.submit(), b.submit(), c.submit()]);
  assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.deepEqual([...await reads[0]], [1, 1]);
  assert.deepEqual([...await reads[1]], [2, 2]);
  good.release();
  bad.release();
});

Deno.test("recorder: a real kernel on a destroyed buffer is a GPU_ERROR naming that kernel", async () => {
  const gpu = await getGpu();
  const x = uploadTensor(gpu, randomF32(64, 1), [64], "f32", "x");
  const rec = new Recorder(gpu);
  const y = unary(rec, x, "relu");
  x.buffer.destroy(); // behind the tensor's back: WebGPU refuses the submission
  const read = rec.readTensor(y);
  rec.releaseAfterSubmit(y);
  await rejectsWith(
    rec.submit(),
    "GPU_ERROR",
    /kernel "unary \(elementwise\.ts\)"/,
    /'x' label has been destroyed/,
    /results were discarded/,
  );
  await rejectsWith(read, "GPU_ERROR");
  gpu.pool.destroy(x.buffer);
});

Deno.test("recorder: an error while recording (outside the submit's scopes) is named as the cause", async () => {
  const gpu = await getGpu();
  const rec = new Recorder(gpu);
  const usage = GPUBufferUsage.STORAGE;
  const invalid = gpu.device.createBuffer({ size: 2 ** 40, usage, label: "too-big" }); // uncaptured
  addOne(rec, { buffer: invalid, offset: 0, size: 16 }, 1);
  await rejectsWith(
    rec.submit(),
    "GPU_ERROR",
    /kernel "addOne \(errors_test\.ts\)"/,
    /first reported: Buffer size 1099511627776 is greater than the maximum buffer size/,
  );
  assert.equal(gpu.uncaptured, undefined, "the cause is reported once");
  invalid.destroy();
});

Deno.test("tensors: too large for the device is refused before allocation, naming the limit", async () => {
  const gpu = await getGpu();
  const before = { live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes };
  const maxBuffer = gpu.device.limits.maxBufferSize;
  const huge = [Math.ceil(maxBuffer / 4) + 1024];
  assertCode(() => emptyTensor(gpu, huge), "BAD_SHAPE", `maxBufferSize \\(${maxBuffer} B\\)`);
  const rows = Math.ceil(gpu.maxBinding / (16 * 64 * 4)) + 1; // one binding < cache < one buffer
  assertCode(
    () => ownedTensor(gpu, [rows, 16, 64], "f32", "kv-cache-0"),
    "BAD_SHAPE",
    `tensor "kv-cache-0" \\[${rows},16,64\\] f32`,
    `maxStorageBufferBindingSize \\(${gpu.maxBinding} B\\)`,
    "fewer beams",
    "shorter max length",
  );
  assertCode(() => emptyTensor(gpu, [gpu.maxBinding / 4 + 1]), "BAD_SHAPE", "fewer images");
  assert.deepEqual({ live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes }, before);
});

Deno.test("pool: releaseOnThrow frees what a failed build took, keeps what a good one took", async () => {
  const gpu = await getGpu();
  const before = { live: gpu.pool.liveBytes, owned: gpu.pool.ownedBytes };
  const kept = emptyTensor(gpu, [16]);
  assert.throws(
    () =>
      gpu.pool.releaseOnThrow(() => {
        emptyTensor(gpu, [1000]);
        ownedTensor(gpu, [4, 8], "f32", "state");
        emptyTensor(gpu, [8]).release(); // given back already: not released twice
        throw new Error("half built");
      }),
    /half built/,
  );
  assert.equal(gpu.pool.liveBytes, before.live + kept.buffer.size);
  assert.equal(gpu.pool.ownedBytes, before.owned);
  const t = gpu.pool.releaseOnThrow(() => ownedTensor(gpu, [4], "f32", "state"));
  assert.ok(t.alive);
  assert.equal(gpu.pool.ownedBytes, before.owned + 16);
  t.release();
  kept.release();
});
