/**
 * Parity on every fixture model folder under ../shared/fixtures/hf (any folder with
 * reference.safetensors and generate.json): every reference tensor within 1e-4 relative L2 and
 * every generate case sequence-identical (cases without a reference: properties hold).
 */
import assert from "node:assert/strict";
import { getGpu } from "../../src/gpu/device.ts";
import { runParity } from "../../src/captioner/parity.ts";
import { WebcapError } from "../../src/errors.ts";
import { fixture } from "../util.ts";

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

Deno.test("parity: f16 storage stays within 1e-2 on vit-gpt2", async () => {
  const gpu = await getGpu();
  if (!gpu.hasF16) return console.log("skipped: adapter has no shader-f16");
  const r = await runParity(gpu, `${root}/vit-gpt2`, { dtype: "f16" });
  for (const t of r.tensors) console.log(`  ${t.name}: rel L2 ${t.relL2.toExponential(2)}`);
  assert.deepEqual(r.tensors.filter((t) => !t.pass), []);
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
