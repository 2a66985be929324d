/**
 * Parity on every fixture model folder under ../shared/fixtures/hf (any folder with
 * reference.safetensors and generate.json): every reference tensor within its bound (relative L2
 * 1e-3 for logits, 1e-4 for the rest; f16 weights: the rounding floor plus that bound) and every
 * generate case sequence-identical (cases without a reference: properties hold).
 */
import assert from "node:assert/strict";
import { getGpu } from "../../src/gpu/device.ts";
import { runParity } from "../../src/captioner/parity.ts";
import { WebcapError } from "../../src/errors.ts";
import { parseSafetensorsHeader } from "../../src/io/safetensors.ts";
import { asAdapterClass, fixture } from "../util.ts";

const root = fixture("hf");
const dirs = [...Deno.readDirSync(root)]
  .filter((e) => e.isDirectory)
  .map((e) => e.name)
  .filter((name) => {
    try {
      Deno.statSync(`${root}/${name}/reference.safetensors`);
      Deno.statSync(`${root}/${name}/generate.json`);
      return true;
    } catch {
      return false;
    }
  })
  .sort();

Deno.test("parity: the fixture set holds the four architectures", () => {
  assert.ok(dirs.length >= 4, `found ${dirs}`);
});

for (const name of dirs) {
  Deno.test(`parity: ${name} tensors and generate cases match the reference`, async () => {
    const r = await runParity(await getGpu(), `${root}/${name}`);
    for (const t of r.tensors) console.log(`  ${t.name}: rel L2 ${t.relL2.toExponential(2)}`);
    for (const c of r.cases) console.log(`  ${c.name}: ${c.status} ${c.detail}`);
    assert.ok(r.tensors.length > 0, "at least one reference tensor compared");
    assert.deepEqual(r.tensors.filter((t) => !t.pass), []);
    assert.deepEqual(r.cases.filter((c) => c.status === "fail"), []);
  });
}

// On GPUs the kernels differ (tiled and GEMV matmuls with the LayerNorm prologue, the fused decode
// attention, workgroup reductions): forced here, so a machine without a GPU checks them end to end.
for (const name of dirs) {
  Deno.test(`parity: ${name} with the GPU adapter class's kernels matches the reference`, async () => {
    const gpu = await getGpu();
    const r = await asAdapterClass(gpu, "gpu", () => runParity(gpu, `${root}/${name}`));
    assert.deepEqual(r.tensors.filter((t) => !t.pass), []);
    assert.deepEqual(r.cases.filter((c) => c.status === "fail"), []);
  });
}

Deno.test("parity: f16 weights are held to the rounding floor of each tensor", async () => {
  const gpu = await getGpu();
  if (!gpu.hasF16) return console.log("skipped: adapter has no shader-f16");
  const f32 = await runParity(gpu, `${root}/vit-gpt2`);
  const r = await runParity(gpu, `${root}/vit-gpt2`, { dtype: "f16" });
  for (const t of r.tensors) {
    console.log(
      `  ${t.name}: rel L2 ${t.relL2.toExponential(2)} floor ${t.floor?.toExponential(2)}`,
    );
    const exact = f32.tensors.find((x) => x.name === t.name)!;
    assert.ok(t.floor! > 10 * exact.relL2, `${t.name}: the floor is f16 rounding, not float32`);
    assert.equal(t.pass, t.relL2 <= t.floor! + t.bound);
    assert.ok(t.pass, `${t.name}: ${t.relL2} above ${t.floor} + ${t.bound}`);
  }
});

/** A copy of fixture `name` whose reference tensors are scaled by 1 ± `rel` (alternating signs). */
async function driftedFixture(name: string, drift: Record<string, number>): Promise<string> {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-parity-" });
  for (const e of Deno.readDirSync(`${root}/${name}`)) {
    if (e.name !== "reference.safetensors") {
      Deno.symlinkSync(`${root}/${name}/${e.name}`, `${tmp}/${e.name}`);
    }
  }
  const bytes = await Deno.readFile(`${root}/${name}/reference.safetensors`);
  const header = parseSafetensorsHeader(bytes, name);
  const view = new DataView(bytes.buffer);
  for (const [tensor, rel] of Object.entries(drift)) {
    const t = header.tensors.get(tensor)!;
    for (let at = header.headerBytes + t.begin, i = 0; at < header.headerBytes + t.end; at += 4) {
      view.setFloat32(at, view.getFloat32(at, true) * (1 + (i++ % 2 ? rel : -rel)), true);
    }
  }
  await Deno.writeFile(`${tmp}/reference.safetensors`, bytes);
  return tmp;
}

Deno.test("parity: logits are bounded at 1e-3 and hidden states at 1e-4; drift fails", async () => {
  const gpu = await getGpu();
  const cases: [Record<string, number>, Record<string, boolean>][] = [
    [{ logits: 5e-4, encoder_last_hidden_state: 5e-5 }, { logits: true, hidden: true }],
    [{ logits: 2e-3, encoder_last_hidden_state: 3e-4 }, { logits: false, hidden: false }],
  ];
  for (const [drift, want] of cases) {
    const dir = await driftedFixture("vit-gpt2", drift);
    try {
      const r = await runParity(gpu, dir);
      const by = (n: string) => r.tensors.find((t) => t.name === n)!;
      assert.equal(by("logits").bound, 1e-3);
      assert.equal(by("encoder_last_hidden_state").bound, 1e-4);
      assert.equal(by("logits").pass, want.logits, `logits drifted by ${drift.logits}`);
      assert.equal(
        by("encoder_last_hidden_state").pass,
        want.hidden,
        `hidden drifted by ${drift.encoder_last_hidden_state}`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("parity: a folder without generate.json is MISSING_FILE, with no model left loaded", async () => {
  const gpu = await getGpu();
  const tmp = await Deno.makeTempDir();
  try {
    for (const e of Deno.readDirSync(`${root}/vit-gpt2`)) {
      if (e.name !== "generate.json") {
        Deno.symlinkSync(`${root}/vit-gpt2/${e.name}`, `${tmp}/${e.name}`);
      }
    }
    const owned = gpu.pool.ownedBytes;
    await assert.rejects(
      runParity(gpu, tmp),
      (e) =>
        e instanceof WebcapError && e.code === "MISSING_FILE" &&
        e.message.includes("generate.json"),
    );
    assert.equal(gpu.pool.ownedBytes, owned);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
