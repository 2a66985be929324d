/**
 * WebGPU errors and limits: every submit is checked (a validation error is a GPU_ERROR naming the
 * kernel, never garbage), and a tensor too large for the device is refused before allocation.
 */
import assert from "node:assert/strict";
import type { CompiledKernel } from "../../src/gpu/pipeline.ts";
import { type Binding, Recorder } from "../../src/gpu/recorder.ts";
import { emptyTensor, ownedTensor, Tensor, uploadTensor } from "../../src/gpu/tensor.ts";
import { WebcapError } from "../../src/errors.ts";
import { unary } from "../../src/shaders/elementwise.ts";
import { assertCode, getGpu, randomF32 } from "../util.ts";

const ADD_ONE = `@group(0) @binding(0) var<uniform> p: vec4u;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(1) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < p.x) { Y[id.x] = Y[id.x] + 1.0; }
}`;

const addOneKernels = new WeakMap<GPUDevice, CompiledKernel>();

/**
 * `Y[i] += 1` compiled by hand, outside the kernel schema: the schema folds every grid within
 * the limit, and these tests need a dispatch that WebGPU refuses.
 */
function addOneKernel(device: GPUDevice): CompiledKernel {
  let k = addOneKernels.get(device);
  if (k) return k;
  const compute = GPUShaderStage.COMPUTE;
  const layout = device.createBindGroupLayout({
    entries: [
      { binding: 0, visibility: compute, buffer: { type: "uniform", hasDynamicOffset: true } },
      { binding: 1, visibility: compute, buffer: { type: "storage" } },
    ],
  });
  const pipeline = device.createComputePipeline({
    label: "addOne",
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module: device.createShaderModule({ code: ADD_ONE }), entryPoint: "main" },
  });
  k = { label: "addOne", pipeline, layout, uniformBytes: 16 };
  addOneKernels.set(device, k);
  return k;
}

/** Record `Y[i] += 1` for every f32 of `y` over `groups` workgroups (at most 65,535 are valid). */
function addOne(rec: Recorder, y: Binding, groups: number): void {
  const n = "shape" in y ? y.size : y.size / 4;
  const uniforms = new Uint8Array(16);
  new DataView(uniforms.buffer).setUint32(0, n, true);
  rec.dispatch(addOneKernel(rec.gpu.device), uniforms, [y], [groups, 1, 1]);
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
    /validation error in kernel "addOne"/,
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
    /kernel "unary\|/,
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
  addOne(rec, new Tensor(gpu, invalid, [4], "f32", "owned"), 1);
  await rejectsWith(
    rec.submit(),
    "GPU_ERROR",
    /kernel "addOne"/,
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
