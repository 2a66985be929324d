import assert from "node:assert/strict";
import { type Gpu, requestGpu } from "../../src/gpu/device.ts";
import { Kernel, readWrite } from "../../src/gpu/kernel.ts";
import { PipelineCache } from "../../src/gpu/pipeline.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { softmax } from "../../src/shaders/softmax.ts";
import { getGpu, randomF32, readAll, withSubgroups } from "../util.ts";

/** Whether `code` makes a compute pipeline on `device` without a validation error. */
async function compiles(device: GPUDevice, code: string): Promise<boolean> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  return (await device.popErrorScope()) === null;
}

const PROBE = `@compute @workgroup_size(8)
fn main(@builtin(subgroup_size) n: u32) { _ = subgroupAdd(f32(n)); }`;

Deno.test("device: subgroups requested even where the adapter does not list them; the probe decides the directive", async () => {
  const gpu = await getGpu();
  const adapter = (await navigator.gpu.requestAdapter())!;
  let granted = true;
  try {
    (await adapter.requestDevice({ requiredFeatures: ["subgroups"] })).destroy();
  } catch {
    granted = false;
  }
  assert.equal(gpu.device.features.has("subgroups"), granted);
  assert.equal(gpu.hasF16, adapter.features.has("shader-f16")); // the other features kept
  assert.equal(gpu.hasTimestamps, adapter.features.has("timestamp-query"));
  if (!granted) return assert.equal(gpu.subgroups, undefined);
  const device = gpu.device;
  const [withDirective, without] = [
    await compiles(device, `enable subgroups;\n${PROBE}`),
    await compiles(device, PROBE),
  ];
  const want = withDirective ? { enable: true } : without ? { enable: false } : undefined;
  assert.deepEqual(gpu.subgroups, want);
  assert.equal(gpu.hasSubgroups, want !== undefined);
  assert.equal(gpu.useSubgroups, gpu.hasSubgroups);
});

Deno.test("device: a refused subgroups request falls back to a device with the other features", async () => {
  const gpu = navigator.gpu;
  const requestAdapter = gpu.requestAdapter;
  const refusing = async (o?: GPURequestAdapterOptions) => {
    const adapter = (await requestAdapter.call(gpu, o))!;
    const requestDevice = adapter.requestDevice.bind(adapter);
    return new Proxy(adapter, {
      get: (t, k) =>
        k === "requestDevice"
          ? (d?: GPUDeviceDescriptor) =>
            [...(d?.requiredFeatures ?? [])].includes("subgroups")
              ? Promise.reject(new TypeError("subgroups: not supported"))
              : requestDevice(d)
          : Reflect.get(t, k, t),
    });
  };
  Object.defineProperty(gpu, "requestAdapter", { value: refusing, configurable: true });
  let fallback: Gpu;
  try {
    fallback = await requestGpu();
  } finally {
    delete (gpu as { requestAdapter?: unknown }).requestAdapter;
  }
  assert.equal(gpu.requestAdapter, requestAdapter);
  const adapter = (await navigator.gpu.requestAdapter())!;
  assert.equal(fallback.hasSubgroups, false);
  assert.equal(fallback.subgroups, undefined);
  assert.equal(fallback.useSubgroups, false);
  assert.equal(fallback.hasF16, adapter.features.has("shader-f16"));
  assert.equal(fallback.hasTimestamps, adapter.features.has("timestamp-query"));
  const x = uploadTensor(fallback, randomF32(300, 1), [3, 100], "f32");
  const rec = new Recorder(fallback);
  const [y] = await readAll(rec, [softmax(rec, x)]); // the fallback reduce runs there
  assert.ok(Math.abs(y.slice(0, 100).reduce((a, b) => a + b, 0) - 1) < 1e-5);
  fallback.device.destroy();
});

Deno.test("device: disableSubgroups leaves them off", async () => {
  const gpu = await requestGpu({ disableSubgroups: true });
  assert.equal(gpu.device.features.has("subgroups"), false);
  assert.deepEqual([gpu.hasSubgroups, gpu.subgroups, gpu.useSubgroups], [false, undefined, false]);
  gpu.device.destroy();
});

/** A kernel that writes what its body was told, and the subgroup size where it may use it. */
const told = (subgroups: boolean) =>
  new Kernel({
    name: `test_told_${subgroups}`,
    uniforms: {},
    storage: { Y: readWrite() },
    workgroupSize: [8],
    subgroups,
    body: (_v, _has, sg) => `
fn kernel(wg: vec3u, lid: vec3u) {
  if (lid.x == 0u) { Y[0] = ${sg.subgroups ? "f32(SG_SIZE)" : "-1.0"}; }
}`,
  });

async function runTold(
  gpu: Gpu,
  k: Kernel<Record<never, never>, { Y: ReturnType<typeof readWrite> }>,
) {
  const rec = new Recorder(gpu);
  const y = rec.output([1]);
  k.record(rec, { uniforms: {}, bind: { Y: y }, groups: 1 });
  const [got] = await readAll(rec, [y]);
  y.release();
  return got[0];
}

Deno.test("kernel schema: subgroups reach only kernels that declare them, on devices using them", async () => {
  const gpu = await getGpu();
  const [can, cannot] = [told(true), told(false)];
  const sizes = await withSubgroups(
    gpu,
    true,
    async () => [await runTold(gpu, can), await runTold(gpu, cannot)],
  );
  assert.equal(sizes[1], -1);
  if (gpu.hasSubgroups) assert.ok([4, 8, 16, 32, 64, 128].includes(sizes[0]), `size ${sizes[0]}`);
  else assert.equal(sizes[0], -1);
  const before = gpu.pipelines.size;
  assert.equal(await withSubgroups(gpu, false, () => runTold(gpu, can)), -1); // turned off
  assert.equal(gpu.pipelines.size, before + (gpu.hasSubgroups ? 1 : 0)); // its own variant
});

Deno.test("kernel schema: `enable subgroups;` heads a subgroup kernel where the device wants it", async () => {
  const gpu = await getGpu();
  if (!gpu.hasSubgroups) return;
  const modules: string[] = [];
  const real = gpu.device;
  // the device as seen by the kernel: records each module's WGSL, then compiles it as this device
  // takes it (the directive dropped where naga refuses it)
  const device = new Proxy(real, {
    get: (t, k) => {
      if (k !== "createShaderModule") {
        const v = Reflect.get(t, k, t);
        return typeof v === "function" ? v.bind(t) : v;
      }
      return (d: GPUShaderModuleDescriptor) => {
        modules.push(d.code);
        const code = gpu.subgroups!.enable ? d.code : d.code.replace("enable subgroups;", "");
        return t.createShaderModule({ ...d, code });
      };
    },
  });
  for (const enable of [true, false]) {
    const seen: Gpu = {
      ...gpu,
      device,
      subgroups: { enable },
      useSubgroups: true,
      pipelines: new PipelineCache(device),
    };
    modules.length = 0;
    assert.equal(
      await runTold(seen, told(true)),
      await withSubgroups(gpu, true, () => runTold(gpu, told(true))),
    );
    assert.equal(modules.length, 1);
    assert.equal(/^enable subgroups;$/m.test(modules[0]), enable);
  }
});
