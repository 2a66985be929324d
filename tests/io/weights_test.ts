import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { openWeights, type WeightStore, withTiedWeights } from "../../src/io/weights.ts";
import { fixture, type RawTensor, writeSafetensors } from "./checkpoint_writers.ts";
import { writeSafetensors as writeSafetensorsFile } from "../../src/io/safetensors_write.ts";

const isCode = (code: string, ...parts: string[]) => (e: WebcapError) => {
  assert.ok(e instanceof WebcapError, String(e));
  assert.equal(e.code, code, e.message);
  for (const p of parts) assert.ok(e.message.includes(p), `"${p}" not in: ${e.message}`);
  return true;
};

async function assertSameTensors(a: WeightStore, b: WeightStore): Promise<void> {
  assert.deepEqual(a.names().sort(), b.names().sort());
  for (const name of b.names()) {
    assert.deepEqual(a.info(name), b.info(name));
    assert.deepEqual(await a.read(name), await b.read(name), name);
  }
}

Deno.test("openWeights picks the safetensors file of each fixture folder", async () => {
  for (
    const [dir, file] of [
      ["vit-gpt2", "vit-gpt2/model.safetensors"],
      ["show-attend-tell", "show-attend-tell/model.safetensors"],
      ["clipcap", "clipcap/clipcap.safetensors"],
      ["clipcap/clip-vision/", "clipcap/clip-vision/model.safetensors"],
    ]
  ) {
    const store = await openWeights(fixture(dir));
    assert.equal(store.source, fixture(file));
    store.close();
  }
  const direct = await openWeights(fixture("clipcap/clipcap.pt"));
  assert.ok(direct.has("clip_project.model.0.weight"));
  direct.close();
});

Deno.test("openWeights falls back to a pickle and explains what it looked for", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-weights-" });
  try {
    await assert.rejects(
      openWeights(dir),
      isCode("MISSING_FILE", "model.safetensors", "pytorch_model.bin", dir),
    );
    await Deno.symlink(fixture("show-attend-tell/checkpoint.pth.tar"), `${dir}/checkpoint.pth.tar`);
    const pkl = await openWeights(dir);
    const ref = await openSafetensors(fixture("show-attend-tell/model.safetensors"));
    assert.deepEqual(pkl.names().sort(), ref.names().sort());
    pkl.close();
    ref.close();
    await Deno.symlink(fixture("clipcap/clipcap.pt"), `${dir}/other.pt`);
    await assert.rejects(openWeights(dir), isCode("MISSING_FILE", "checkpoint.pth.tar, other.pt"));
    await Deno.symlink(fixture("vit-gpt2/pytorch_model.bin"), `${dir}/pytorch_model.bin`);
    const bin = await openWeights(dir);
    assert.equal(bin.source, `${dir}/pytorch_model.bin`);
    bin.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await assert.rejects(openWeights(`${dir}/absent`), isCode("MISSING_FILE", "absent"));
});

/** Split a store's tensors round-robin into `n` shard files plus an index, in `dir`. */
async function writeShards(
  store: WeightStore,
  dir: string,
  n: number,
): Promise<Record<string, string>> {
  const shards = Array.from({ length: n }, () => new Map<string, RawTensor>());
  const weightMap: Record<string, string> = {};
  for (const [i, name] of store.names().entries()) {
    const { dtype, shape } = store.info(name);
    shards[i % n].set(name, { dtype, shape, bytes: await store.read(name) });
    weightMap[name] = `model-0000${i % n + 1}-of-0000${n}.safetensors`;
  }
  for (const [i, shard] of shards.entries()) {
    await Deno.writeFile(
      `${dir}/model-0000${i + 1}-of-0000${n}.safetensors`,
      writeSafetensors(shard),
    );
  }
  await writeIndex(dir, weightMap);
  return weightMap;
}

function writeIndex(dir: string, weightMap: Record<string, string>): Promise<void> {
  const index = { metadata: { total_size: 0 }, weight_map: weightMap };
  return Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify(index));
}

Deno.test("a sharded checkpoint reads like the single file it was split from", async () => {
  const ref = await openSafetensors(fixture("vit-gpt2/model.safetensors"));
  const dir = await Deno.makeTempDir({ prefix: "webcap-shards-" });
  try {
    const weightMap = await writeShards(ref, dir, 3);
    const sharded = await openWeights(dir);
    assert.equal(sharded.source, `${dir}/model.safetensors.index.json`);
    await assertSameTensors(sharded, ref);
    sharded.close();

    const [first, second] = Object.keys(weightMap);
    await writeIndex(dir, { ...weightMap, [first]: weightMap[second] });
    await assert.rejects(
      openWeights(dir),
      isCode("BAD_WEIGHTS", first, weightMap[second], "does not contain"),
    );
    await writeIndex(dir, { ...weightMap, [first]: "../model.safetensors" });
    await assert.rejects(
      openWeights(dir),
      isCode("BAD_WEIGHTS", first, "../model.safetensors", "not a valid relative repo path"),
    );
    await Deno.remove(`${dir}/${weightMap[first]}`);
    await writeIndex(dir, weightMap);
    await assert.rejects(openWeights(dir), isCode("MISSING_FILE", weightMap[first], "index.json"));
  } finally {
    await Deno.remove(dir, { recursive: true });
    ref.close();
  }
});

Deno.test("an index that lists itself, another index or a non-weights file fails at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-index-cycle-" });
  try {
    const ref = await openSafetensors(fixture("vit-gpt2/model.safetensors"));
    const names = ref.names();
    ref.close();
    const mapAllTo = (shard: string) => Object.fromEntries(names.map((n) => [n, shard]));
    await Deno.writeTextFile(`${dir}/config.json`, "{}");
    await Deno.writeTextFile(
      `${dir}/b.safetensors.index.json`,
      JSON.stringify({ weight_map: mapAllTo("model.safetensors.index.json") }),
    );
    for (const shard of ["model.safetensors.index.json", "b.safetensors.index.json"]) {
      await writeIndex(dir, mapAllTo(shard));
      await assert.rejects(openWeights(dir), isCode("BAD_WEIGHTS", shard, "never indexes"));
    }
    await writeIndex(dir, mapAllTo("config.json"));
    await assert.rejects(openWeights(dir), isCode("BAD_WEIGHTS", "config.json", "not a weights"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shards in a subfolder of the index's folder load, as in transformers", async () => {
  const ref = await openSafetensors(fixture("vit-gpt2/model.safetensors"));
  const dir = await Deno.makeTempDir({ prefix: "webcap-shards-sub-" });
  try {
    await Deno.mkdir(`${dir}/sub`);
    const weightMap = await writeShards(ref, `${dir}/sub`, 2);
    await Deno.remove(`${dir}/sub/model.safetensors.index.json`);
    const inSub = Object.fromEntries(Object.entries(weightMap).map(([n, s]) => [n, `sub/${s}`]));
    await writeIndex(dir, inSub);
    const sharded = await openWeights(dir);
    await assertSameTensors(sharded, ref);
    sharded.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
    ref.close();
  }
});

Deno.test("withTiedWeights serves an absent tied tensor from its source", async () => {
  const base = await openWeights(fixture("vit-gpt2"));
  const head = "decoder.lm_head.weight";
  const wte = "decoder.transformer.wte.weight";
  assert.equal(base.has(head), false);
  const tied = withTiedWeights(base, { [head]: wte, "absent.alias": "absent.target", [wte]: head });
  assert.ok(tied.has(head) && tied.names().includes(head));
  assert.deepEqual(tied.info(head), { ...base.info(wte), name: head });
  assert.deepEqual(await tied.readF32(head), await base.readF32(wte));
  assert.deepEqual(await tied.read(wte), await base.read(wte));
  assert.equal(tied.has("absent.alias"), false);
  assert.throws(() => tied.info("absent.alias"), isCode("BAD_WEIGHTS", "absent.alias"));
  assert.equal(tied.names().length, base.names().length + 1);
  tied.close();
});

Deno.test("fileMetadata: each file's __metadata__ by file, per shard, {} for a pickle, through ties", async () => {
  const ref = await openSafetensors(fixture("vit-gpt2/model.safetensors"));
  const dir = await Deno.makeTempDir({ prefix: "webcap-metadata-" });
  try {
    const names = ref.names();
    const weightMap: Record<string, string> = {};
    for (const [i, half] of [names.slice(0, 5), names.slice(5)].entries()) {
      const file = `part-${i}.safetensors`;
      const tensors = half.map((name) => {
        weightMap[name] = file;
        return { ...ref.info(name), read: () => ref.read(name) };
      });
      await writeSafetensorsFile(`${dir}/${file}`, tensors, { format: "pt", part: String(i) });
    }
    await writeIndex(dir, weightMap);
    const sharded = await openWeights(dir);
    const got = [...sharded.fileMetadata()].map(([file, m]) => [file, { ...m }]);
    assert.deepEqual(got, [
      [`${dir}/part-0.safetensors`, { format: "pt", part: "0" }],
      [`${dir}/part-1.safetensors`, { format: "pt", part: "1" }],
    ]);
    const tied = withTiedWeights(sharded, { "decoder.lm_head.weight": names[0] });
    assert.equal(tied.fileMetadata(), sharded.fileMetadata());
    tied.close();
    const pickle = await openWeights(fixture("clipcap/clipcap.pt"));
    assert.deepEqual([...pickle.fileMetadata()], [[fixture("clipcap/clipcap.pt"), {}]]);
    pickle.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
    ref.close();
  }
});
