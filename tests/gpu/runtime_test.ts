import assert from "node:assert/strict";
import { Kernel, readWrite } from "../../src/gpu/kernel.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { bucketSize } from "../../src/gpu/pool.ts";
import { emptyTensor, type Tensor, uploadTensor, writeTensor } from "../../src/gpu/tensor.ts";
import { WebcapError } from "../../src/errors.ts";
import { binary, unary } from "../../src/shaders/elementwise.ts";
import { matmul } from "../../src/shaders/matmul.ts";
import { adapterClassOf, requestGpu } from "../../src/gpu/device.ts";
import { assertCode, getGpu, randomF32 } from "../util.ts";

Deno.test("no adapter: a clear NO_ADAPTER error that says how to get one", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { requestGpu } from "${new URL("../../src/gpu/device.ts", import.meta.url)}";
      try { await requestGpu(); console.log("adapter"); } catch (e) { console.log(e.code + ": " + e.message); }`,
    ],
    env: { DENO_WEBGPU_BACKEND: "dx12", XDG_RUNTIME_DIR: "/tmp" }, // no DirectX 12 on Linux: no adapter
    stdout: "piped",
    stderr: "null",
  });
  const out = new TextDecoder().decode((await child.output()).stdout);
  assert.match(out, /^NO_ADAPTER: .*mesa-vulkan-drivers/);
});

Deno.test("device: full limits and optional features are requested", async () => {
  const gpu = await getGpu();
  const adapter = await navigator.gpu.requestAdapter();
  assert.equal(
    gpu.device.limits.maxStorageBufferBindingSize,
    adapter!.limits.maxStorageBufferBindingSize,
  );
  assert.equal(
    gpu.device.limits.maxComputeWorkgroupStorageSize,
    adapter!.limits.maxComputeWorkgroupStorageSize,
  );
  assert.equal(gpu.hasF16, adapter!.features.has("shader-f16"));
  assert.equal(gpu.hasTimestamps, adapter!.features.has("timestamp-query"));
});

Deno.test("pool: buckets, reuse of released buffers, double release refused", async () => {
  const gpu = await getGpu();
  assert.equal(bucketSize(1), 256);
  assert.equal(bucketSize(1000), 1024);
  assert.equal(bucketSize((1 << 20) + 1), 2 << 20);
  const a = emptyTensor(gpu, [1000]);
  const buf = a.buffer;
  a.release();
  const b = emptyTensor(gpu, [900]); // same 4 KiB bucket: the same buffer comes back
  assert.equal(b.buffer, buf);
  b.view([30, 30]).release(); // a view frees its base once
  assert.throws(() => b.release(), /released twice/);
});

Deno.test("pipeline cache: one pipeline per kernel variant, reused by later calls", async () => {
  const gpu = await getGpu();
  const a = uploadTensor(gpu, randomF32(8 * 4, 1), [8, 4], "f32");
  const w = uploadTensor(gpu, randomF32(4 * 5, 2), [4, 5], "f32");
  const rec = new Recorder(gpu);
  matmul(rec, a, w); // compile once
  const before = gpu.pipelines.size;
  const outs = [matmul(rec, a, w), matmul(rec, a, w), matmul(rec, a, w)];
  assert.equal(gpu.pipelines.size, before);
  rec.releaseAfterSubmit(...outs, a, w);
  await rec.submit();
});

Deno.test("recorder: many dispatches in one compute pass, uniforms past one arena, readback and timestamps", async () => {
  const gpu = await getGpu();
  const accumulate = new Kernel({
    name: "test_accumulate",
    uniforms: { v: "f32" },
    storage: { Y: readWrite() },
    workgroupSize: [1],
    body: () => "fn kernel(wg: vec3u, lid: vec3u) { Y[0] = Y[0] + p.v; }",
  });
  const y = uploadTensor(gpu, new Float32Array([0]), [1], "f32");
  const rec = new Recorder(gpu, { timestamps: true });
  const n = 600; // 600 × 256 B of uniforms spans three 64 KiB arenas
  for (let i = 1; i <= n; i++) {
    accumulate.record(rec, { uniforms: { v: i }, bind: { Y: y }, groups: 1 });
  }
  assert.equal(rec.dispatches, n);
  const read = rec.readTensor(y);
  const ms = await rec.submit();
  assert.equal(
    (await read)[0],
    (n * (n + 1)) / 2,
    "dispatches ran in order, each with its own uniforms",
  );
  if (gpu.hasTimestamps) {
    assert.equal(ms.length, 1, "all dispatches were recorded into a single compute pass");
    assert.ok(ms[0] >= 0);
  }
  y.release();
});

Deno.test("recorder: a binding larger than maxStorageBufferBindingSize is refused with BAD_SHAPE", async () => {
  const gpu = await getGpu();
  const x = uploadTensor(gpu, randomF32(1024, 3), [1024], "f32");
  const y = emptyTensor(gpu, [1024]);
  const saved = gpu.maxBinding;
  const rec = new Recorder(gpu);
  try {
    gpu.maxBinding = 1024;
    assert.throws(
      () => unary(rec, x, "relu", y),
      (e) =>
        e instanceof WebcapError && e.code === "BAD_SHAPE" &&
        /tensor \[1024\] of 4096 B exceeds .*maxStorageBufferBindingSize 1024 B/.test(e.message),
    );
    assert.equal(rec.dispatches, 0);
  } finally {
    gpu.maxBinding = saved;
  }
  unary(rec, x, "relu", y); // the recorder stays usable
  const read = rec.readTensor(y);
  rec.releaseAfterSubmit(x, y);
  await rec.submit();
  assert.ok(((await read) as Float32Array).every((v) => v >= 0));
});

Deno.test("writeTensor: f16 writes keep to 4-byte words (even start; odd end only at the tensor's end)", async () => {
  const gpu = await getGpu();
  const t = emptyTensor(gpu, [4], "f16");
  const odd = emptyTensor(gpu, [3], "f16");
  writeTensor(t, Uint16Array.of(1, 2, 3, 4));
  const bad = (e: unknown) => e instanceof WebcapError && e.code === "BAD_SHAPE";
  assert.throws(() => writeTensor(t, Uint16Array.of(9, 9, 9)), bad); // would zero element 3
  assert.throws(() => writeTensor(t, Uint16Array.of(9, 9), 1), bad); // misaligned for WebGPU
  writeTensor(t, Uint16Array.of(5, 6), 2);
  writeTensor(odd, Uint16Array.of(7, 8, 9));
  const rec = new Recorder(gpu);
  const [pt, po] = [rec.readTensor(t), rec.readTensor(odd)];
  rec.releaseAfterSubmit(t, odd);
  await rec.submit();
  assert.deepEqual([...await pt], [1, 2, 5, 6]);
  assert.deepEqual([...await po], [7, 8, 9]);
});

Deno.test("bind groups: a repeated step builds none; a destroyed buffer's groups are dropped", async () => {
  const gpu = await getGpu();
  const w = uploadTensor(gpu, randomF32(4 * 5, 4), [4, 5], "f32");
  const x = uploadTensor(gpu, randomF32(2 * 4, 5), [2, 4], "f32");
  const step = async () => {
    const rec = new Recorder(gpu);
    const h = matmul(rec, x, w, { act: "relu" });
    const y = unary(rec, h, "tanh");
    const read = rec.readTensor(y);
    rec.releaseAfterSubmit(h, y);
    await rec.submit();
    return [...await read];
  };
  const first = await step();
  const created = gpu.bindGroups.created;
  assert.deepEqual(await step(), first);
  assert.equal(gpu.bindGroups.created, created, "the second step reused every bind group");
  const size = gpu.bindGroups.size;
  w.release(); // destroys the weight's buffer
  assert.equal(gpu.bindGroups.size, size - 1, "the matmul's group went with its weight");
  x.release();
});

Deno.test("recorder temporaries: released when the recorder is submitted, usable until then", async () => {
  const gpu = await getGpu();
  const live = gpu.pool.liveBytes;
  const rec = new Recorder(gpu);
  const x = rec.upload(Float32Array.of(-1, 2, -3, 4), [4], "f32");
  const y = rec.temp([4]);
  unary(rec, x, "relu", y);
  const read = rec.readTensor(y);
  assert.ok(gpu.pool.liveBytes > live);
  await rec.submit();
  assert.deepEqual([...await read], [0, 2, 0, 4]);
  assert.equal(gpu.pool.liveBytes, live);
  assert.ok(!x.alive && !y.alive);
});

Deno.test("a recorder holding only readbacks submits on a device that never dispatched", async () => {
  const gpu = await requestGpu(); // a fresh device: no uniform arena was ever taken on it
  const t = uploadTensor(gpu, Float32Array.of(1, 2, 3), [3], "f32");
  const rec = new Recorder(gpu);
  const read = rec.readTensor(t);
  await rec.submit();
  assert.deepEqual([...await read], [1, 2, 3]);
  t.release();
  gpu.device.destroy();
});

Deno.test("recorder scopes: what a scope does not return or keep is released after the submit", async () => {
  const gpu = await getGpu();
  const live = gpu.pool.liveBytes;
  const x = uploadTensor(gpu, Float32Array.of(-1, 2, -3, 4), [4], "f32");
  const rec = new Recorder(gpu);
  let inner: Tensor | undefined, dropped: Tensor | undefined, kept: Tensor | undefined;
  const out = rec.scope(() => {
    const y = rec.scope(() => {
      inner = unary(rec, x, "relu"); // [0, 2, 0, 4]
      kept = rec.keep(unary(rec, inner, "tanh"));
      return unary(rec, inner, "relu").view([2, 2]); // a view: its tensor moves out
    });
    dropped = unary(rec, y, "relu");
    return { y, also: [unary(rec, y, "tanh")] }; // plain objects and arrays are searched
  });
  const read = rec.readTensor(out.y);
  await rec.submit();
  assert.deepEqual([...await read], [0, 2, 0, 4]);
  assert.ok(!inner!.alive && !dropped!.alive, "intermediates are released after the submit");
  assert.ok(out.y.alive && out.also[0].alive && kept!.alive, "returned and kept: the caller's");
  const late = new Recorder(gpu);
  assertCode(() => late.scope(() => unary(late, inner!, "relu")), "DISPOSED", "was released");
  await late.submit();
  for (const t of [out.y, out.also[0], kept!, x]) t.release();
  assert.equal(gpu.pool.liveBytes, live);
});

Deno.test("recorder scopes: a throwing scope still releases its tensors; releasing one twice is once", async () => {
  const gpu = await getGpu();
  const live = gpu.pool.liveBytes;
  const x = uploadTensor(gpu, Float32Array.of(1, 2), [2], "f32");
  const rec = new Recorder(gpu);
  assert.throws(() =>
    rec.scope(() => {
      unary(rec, x, "relu");
      throw new Error("mid-layer");
    }), /mid-layer/);
  rec.scope(() => rec.releaseAfterSubmit(unary(rec, x, "relu"))); // already the scope's: once
  const outside = unary(rec, x, "relu"); // outside every scope: the caller's
  await assert.rejects(rec.scope(() => rec.submit()), /submit inside a scope/);
  await rec.submit();
  assert.ok(outside.alive);
  outside.release();
  x.release();
  assert.equal(gpu.pool.liveBytes, live);
});

Deno.test("recorder: recycle hands a scope's dead buffers to the next outputs of the submission, never to uploads", async () => {
  const gpu = await getGpu();
  const rec = new Recorder(gpu);
  const acc = rec.upload(Float32Array.of(1, 2, 3, 4), [4], "f32");
  const seen: { up: GPUBuffer; t1: GPUBuffer; t2: GPUBuffer }[] = [];
  const reads = Array.from({ length: 3 }, (_, i) =>
    rec.recycle(() => {
      const up = rec.upload(Float32Array.of(i, i, i, i), [4], "f32");
      const t1 = binary(rec, acc, up, "add");
      const t2 = binary(rec, t1, t1, "add"); // (acc + i) · 2, dead after its readback is recorded
      seen.push({ up: up.buffer, t1: t1.buffer, t2: t2.buffer });
      return rec.readTensor(t2);
    }));
  await rec.submit();
  for (const [i, r] of reads.entries()) {
    assert.deepEqual([...(await r) as Float32Array], [1, 2, 3, 4].map((x) => (x + i) * 2));
  }
  assert.equal(seen[1].t1, seen[0].t1, "the second step reuses the first step's output buffer");
  assert.equal(seen[2].t2, seen[0].t2);
  const recycled = new Set(seen.flatMap((s) => [s.t1, s.t2]));
  assert.ok(seen.every((s) => !recycled.has(s.up)), "an upload got a recycled buffer");
});

Deno.test("adapterClassOf: software adapters are cpu, the rest gpu", () => {
  const cls = (info: Partial<GPUAdapterInfo>) => adapterClassOf(info);
  assert.equal(cls({ description: "llvmpipe (LLVM 15.0.6, 256 bits)" }), "cpu");
  assert.equal(cls({ vendor: "google", architecture: "swiftshader" }), "cpu");
  assert.equal(cls({ description: "Microsoft Basic Render Driver" }), "cpu");
  assert.equal(
    cls({ vendor: "nvidia", description: "NVIDIA H100", isFallbackAdapter: true }),
    "cpu",
  );
  assert.equal(cls({ vendor: "nvidia", description: "NVIDIA H100 80GB HBM3" }), "gpu");
  assert.equal(cls({ vendor: "amd", architecture: "rdna-3" }), "gpu");
});
