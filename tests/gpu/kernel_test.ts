import assert from "node:assert/strict";
import { foldGrid, Kernel, optional, read, readWrite } from "../../src/gpu/kernel.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { assertCode, getGpu, poisoned } from "../util.ts";

Deno.test("kernel schema: u32, i32 and f32 uniforms reach the shader as declared, in any field order", async () => {
  const gpu = await getGpu();
  const echo = new Kernel({
    name: "test_echo_uniforms",
    uniforms: { a: "u32", b: "i32", c: "f32", d: "u32" },
    storage: { Y: readWrite() },
    workgroupSize: [1],
    body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  Y[0] = f32(p.a); Y[1] = f32(p.b); Y[2] = p.c; Y[3] = f32(p.d);
}`,
  });
  const y = poisoned(gpu, [4]);
  const rec = new Recorder(gpu);
  echo.record(rec, {
    uniforms: { d: 7, c: -2.5, b: -123456, a: 4000000000 },
    bind: { Y: y },
    groups: 1,
  });
  const got = rec.readTensor(y);
  rec.releaseAfterSubmit(y);
  await rec.submit();
  assert.deepEqual([...await got], [4000000000, -123456, -2.5, 7]);
});

Deno.test("kernel schema: one build and one pipeline per variant (variant keys, element types, optional bindings)", async () => {
  const gpu = await getGpu();
  const built: string[] = [];
  const scale = new Kernel({
    name: "test_scale",
    uniforms: { n: "u32", s: "f32" },
    storage: { X: read(), Y: readWrite(), B: optional(read()) },
    workgroupSize: [64],
    body: (v: { neg: boolean }, has) => {
      built.push(`${v.neg}/${has.B}`);
      return `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.n) { return; }
  var v = ${v.neg ? "-" : ""}f32(X[i]) * p.s;
  ${has.B ? "v += f32(B[i]);" : ""}
  Y[i] = Y_t(v);
}`;
    },
  });
  const n = 100;
  const x = uploadTensor(gpu, Float32Array.from({ length: n }, (_, i) => i), [n], "f32");
  const b = uploadTensor(gpu, new Float32Array(n).fill(0.5), [n], "f32");
  const outs = [poisoned(gpu, [n]), poisoned(gpu, [n]), poisoned(gpu, [n]), poisoned(gpu, [n])];
  const before = gpu.pipelines.size;
  const rec = new Recorder(gpu);
  const call = (neg: boolean, out: number, s: number, B?: typeof b) =>
    scale.record(rec, {
      variant: { neg },
      uniforms: { n, s },
      bind: { X: x, Y: outs[out], B },
      groups: Math.ceil(n / 64),
    });
  call(false, 0, 2);
  call(false, 1, 3); // same variant, other uniforms: no new build
  call(true, 2, 2);
  call(false, 3, 2, b); // the optional binding makes another variant
  assert.deepEqual(built, ["false/false", "true/false", "false/true"]);
  assert.equal(gpu.pipelines.size, before + 3);
  const reads = outs.map((o) => rec.readTensor(o));
  rec.releaseAfterSubmit(x, b, ...outs);
  await rec.submit();
  const [o0, o1, o2, o3] = await Promise.all(reads);
  for (let i = 0; i < n; i++) {
    assert.deepEqual([o0[i], o1[i], o2[i], o3[i]], [2 * i, 3 * i, -2 * i, 2 * i + 0.5]);
  }
});

Deno.test("kernel schema: a binding of the wrong element type is refused before anything is recorded", async () => {
  const gpu = await getGpu();
  const copy = new Kernel({
    name: "test_copy_ids",
    uniforms: { n: "u32" },
    storage: { ids: read("i32"), Y: readWrite() },
    workgroupSize: [64],
    body: () => "fn kernel(wg: vec3u, lid: vec3u) { Y[lid.x] = Y_t(f32(ids[lid.x])); }",
  });
  const f = uploadTensor(gpu, new Float32Array(4), [4], "f32");
  const u = uploadTensor(gpu, new Uint32Array(4), [4], "u32");
  const rec = new Recorder(gpu);
  const live = gpu.pool.liveBytes;
  assertCode(
    () => copy.record(rec, { uniforms: { n: 4 }, bind: { ids: f, Y: f }, groups: 1 }),
    "BAD_DTYPE",
    "test_copy_ids: ids is f32, wants i32",
  );
  assertCode(
    () => copy.record(rec, { uniforms: { n: 4 }, bind: { ids: u, Y: u }, groups: 1 }),
    "BAD_DTYPE",
    "ids is u32, wants i32",
  );
  assert.equal(rec.dispatches, 0);
  assert.equal(gpu.pool.liveBytes, live);
  await rec.submit();
  f.release();
  u.release();
});

Deno.test("kernel schema: grids past 65,535 workgroups are folded, each logical workgroup runs once", async () => {
  assert.deepEqual(foldGrid(1), [1, 1, 1]);
  assert.deepEqual(foldGrid(65535), [65535, 1, 1]);
  assert.deepEqual(foldGrid(65536), [65535, 2, 1]);
  assert.deepEqual(foldGrid(65535 * 65535 + 1), [65535, 65535, 2]);
  const gpu = await getGpu();
  const ids = new Kernel({
    name: "test_group_ids",
    uniforms: {},
    storage: { Y: readWrite("u32") },
    workgroupSize: [1],
    body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = (wg.z * p.grid_y + wg.y) * p.grid_x + wg.x;
  Y[i] = Y[i] + 1u;
}`, // counts the runs of each logical workgroup
  });
  const [X, Yd, Z] = [5, 3, 4700]; // 70,500 workgroups: past one dimension
  const n = X * Yd * Z;
  const y = uploadTensor(gpu, new Uint32Array(n), [n], "u32");
  const rec = new Recorder(gpu);
  ids.record(rec, { uniforms: {}, bind: { Y: y }, groups: [X, Yd, Z] });
  const got = rec.readTensor(y);
  rec.releaseAfterSubmit(y);
  await rec.submit();
  const missed = (await got).findIndex((v) => v !== 1);
  assert.equal(missed, -1, `logical workgroup ${missed} did not run exactly once`);
  assertCode(
    () => ids.record(new Recorder(gpu), { uniforms: {}, bind: { Y: y }, groups: [65536, 65536] }),
    "BAD_SHAPE",
    "test_group_ids: 4294967296 workgroups exceed",
  );
});
