import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { numelOf } from "../../src/io/dtype.ts";
import { openPickleCheckpoint } from "../../src/io/pickle.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { bytesSource } from "../../src/io/tensor_source.ts";
import type { WeightStore } from "../../src/io/weights.ts";
import { readZipDirectory, readZipEntry } from "../../src/io/zip.ts";
import {
  concat,
  fixture,
  legacyCheckpoint,
  legacyStorageId,
  pickle,
  type Py,
  type RawStorage,
  tensorPy,
  writeZip,
  zipStorageId,
} from "./checkpoint_writers.ts";

/** Each fixture pickle and the safetensors file holding the same weights. */
const PAIRS = [
  ["vit-gpt2/pytorch_model.bin", "vit-gpt2/model.safetensors"],
  ["vit-gpt2/pytorch_model-legacy.bin", "vit-gpt2/model.safetensors"],
  ["clipcap/clipcap.pt", "clipcap/clipcap.safetensors"],
  ["show-attend-tell/checkpoint.pth.tar", "show-attend-tell/model.safetensors"],
];

/** Same names and shapes; F32 tensors bit-equal, F16 ones equal to the rounded reference. */
async function assertSameWeights(pkl: WeightStore, ref: WeightStore): Promise<void> {
  assert.deepEqual(pkl.names().sort(), ref.names().sort(), pkl.source);
  for (const name of ref.names()) {
    const info = pkl.info(name);
    assert.deepEqual(info.shape, ref.info(name).shape, name);
    const want = await ref.readF32(name);
    const got = await pkl.readF32(name);
    if (info.dtype === "F16") assert.deepEqual(got, want.map(Math.f16round), name);
    else {
      assert.equal(info.dtype, ref.info(name).dtype, name);
      assert.deepEqual(await pkl.read(name), await ref.read(name), name);
    }
  }
}

for (const [pkl, st] of PAIRS) {
  Deno.test(`${pkl} holds the tensors of ${st}, from a path and from bytes`, async () => {
    const ref = await openSafetensors(fixture(st));
    for (const source of [fixture(pkl), await Deno.readFile(fixture(pkl))]) {
      const store = await openPickleCheckpoint(source);
      await assertSameWeights(store, ref);
      store.close();
    }
    ref.close();
  });
}

Deno.test("the show-attend-tell checkpoint keeps its float16 tensors as F16", async () => {
  const store = await openPickleCheckpoint(fixture("show-attend-tell/checkpoint.pth.tar"));
  assert.ok(store.names().some((n) => store.info(n).dtype === "F16"));
  store.close();
});

Deno.test("a deflated zip64 archive of a checkpoint reads the same tensors", async () => {
  const src = bytesSource(await Deno.readFile(fixture("clipcap/clipcap.pt")));
  const entries: [string, Uint8Array][] = [];
  for (const e of (await readZipDirectory(src)).values()) {
    entries.push([e.name, await readZipEntry(src, e)]);
  }
  const ref = await openSafetensors(fixture("clipcap/clipcap.safetensors"));
  for (const opts of [{ deflate: true }, { zip64: true }, { deflate: true, zip64: true }]) {
    const store = await openPickleCheckpoint(await writeZip(entries, opts));
    await assertSameWeights(store, ref);
  }
  ref.close();
});

Deno.test("malicious pickles are refused with UNSAFE_PICKLE naming the global", async () => {
  const pwned = "/tmp/webcap-pwned";
  await Deno.remove(pwned).catch(() => {});
  const dir = fixture("malicious");
  let files = 0;
  for await (const e of Deno.readDir(dir)) {
    files++;
    const path = `${dir}/${e.name}`;
    const text = new TextDecoder("latin1").decode(await Deno.readFile(path));
    // The pickle GLOBAL opcode: "c" module "\n" name "\n".
    const [, module, name] = text.match(/c([A-Za-z_][\w.]*)\n([A-Za-z_]\w*)\n/)!;
    await assert.rejects(openPickleCheckpoint(path), (err: WebcapError) => {
      assert.ok(err instanceof WebcapError, String(err));
      assert.equal(err.code, "UNSAFE_PICKLE", err.message);
      assert.ok(err.message.includes(`${module}.${name}`), err.message);
      assert.ok(err.message.includes(path), err.message);
      return true;
    });
  }
  assert.ok(files >= 3);
  await assert.rejects(Deno.stat(pwned), Deno.errors.NotFound);
});

/** Random float32 values from a fixed-seed LCG. */
function randomF32(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

const f32Values = randomF32(24, 1);
const f16Values = new Float16Array(randomF32(6, 2));
const STORAGES: RawStorage[] = [
  { type: "FloatStorage", key: "0", numel: 24, bytes: new Uint8Array(f32Values.buffer) },
  { type: "HalfStorage", key: "1", numel: 6, bytes: new Uint8Array(f16Values.buffer) },
  {
    type: "LongStorage",
    key: "2",
    numel: 3,
    bytes: new Uint8Array(new BigInt64Array([7n, -2n, 40n]).buffer),
  },
];
const STORAGE_VALUES = [f32Values, Float32Array.from(f16Values), new Float32Array([7, -2, 40])];

/** A tensor of the synthetic checkpoint: a view of storage `s`. */
interface View {
  s: number;
  offset: number;
  shape: number[];
  stride: number[];
}

const VIEWS: Record<string, View> = {
  "enc.contiguous": { s: 0, offset: 4, shape: [2, 3], stride: [3, 1] },
  "enc.transposed": { s: 0, offset: 0, shape: [4, 3], stride: [1, 4] },
  "enc.stepped": { s: 0, offset: 1, shape: [2, 2], stride: [6, 2] },
  "enc.broadcast": { s: 0, offset: 2, shape: [3, 2], stride: [0, 1] },
  "dec.scalar": { s: 0, offset: 5, shape: [], stride: [] },
  "dec.empty": { s: 0, offset: 0, shape: [0, 3], stride: [3, 1] },
  "dec.half_transposed": { s: 1, offset: 0, shape: [2, 3], stride: [1, 2] },
  "dec.ids": { s: 2, offset: 0, shape: [3], stride: [1] },
};

/** Values of a view computed straight from the index formula: offset + Σ index·stride. */
function expectedValues(v: View): Float32Array {
  const out = new Float32Array(numelOf(v.shape));
  for (let i = 0; i < out.length; i++) {
    let rest = i;
    let at = v.offset;
    for (let d = v.shape.length - 1; d >= 0; d--) {
      at += (rest % v.shape[d]) * v.stride[d];
      rest = Math.floor(rest / v.shape[d]);
    }
    out[i] = STORAGE_VALUES[v.s][at];
  }
  return out;
}

/** The synthetic checkpoint object; `id` makes the storage persistent ids of one format. */
function checkpointPy(id: (s: RawStorage) => Py): Py {
  const t = (v: View) => tensorPy(id(STORAGES[v.s]), v.offset, v.shape, v.stride);
  const module = (prefix: string) =>
    new Map(
      Object.entries(VIEWS)
        .filter(([n]) => n.startsWith(prefix))
        .map(([n, v]) => [n.slice(prefix.length), t(v)]),
    );
  const param: Py = {
    call: { global: "torch._utils._rebuild_parameter" },
    args: [t({ s: 0, offset: 2, shape: [5], stride: [1] }), true, new Map()],
  };
  const dec = module("dec.");
  dec.set("param", param);
  const model = new Map<string, Py>([
    ["enc", module("enc.")],
    // An OrderedDict with object state, as module.state_dict() pickles its _metadata.
    ["dec", { build: dec, state: new Map([["_metadata", new Map()]]) }],
  ]);
  const ema = new Map([["w", t({ s: 0, offset: 0, shape: [2], stride: [1] })]]);
  return new Map<string, Py>([["epoch", 7], ["best", 0.25], ["model", model], ["ema", ema]]);
}

async function assertSynthetic(store: WeightStore): Promise<void> {
  const names = [...Object.keys(VIEWS), "dec.param"].sort();
  assert.deepEqual(store.names().sort(), names);
  for (const [name, v] of Object.entries(VIEWS)) {
    assert.deepEqual(store.info(name).shape, v.shape, name);
    assert.deepEqual(await store.readF32(name), expectedValues(v), name);
  }
  assert.equal(store.info("dec.half_transposed").dtype, "F16");
  assert.equal(store.info("dec.ids").dtype, "I64");
  const param = { s: 0, offset: 2, shape: [5], stride: [1] };
  assert.deepEqual(await store.readF32("dec.param"), expectedValues(param));
}

function zipCheckpoint(py: Py, opts: { deflate?: boolean } = {}): Promise<Uint8Array> {
  return writeZip([
    ["archive/data.pkl", pickle(py)],
    ["archive/byteorder", new TextEncoder().encode("little")],
    ...STORAGES.map((s): [string, Uint8Array] => [`archive/data/${s.key}`, s.bytes]),
  ], opts);
}

Deno.test("strided views, storage offsets, nested dicts and parameters (legacy and zip)", async () => {
  const legacy = legacyCheckpoint(checkpointPy((s) => legacyStorageId(s)), STORAGES);
  await assertSynthetic(await openPickleCheckpoint(legacy));
  await assertSynthetic(
    await openPickleCheckpoint(await zipCheckpoint(checkpointPy(zipStorageId))),
  );
  const deflated = await zipCheckpoint(checkpointPy(zipStorageId), { deflate: true });
  await assertSynthetic(await openPickleCheckpoint(deflated));

  const ema = await openPickleCheckpoint(legacy, { stateDictKey: "ema" });
  assert.deepEqual(ema.names(), ["w"]);
  assert.deepEqual(await ema.readF32("w"), f32Values.subarray(0, 2));
  await assert.rejects(
    openPickleCheckpoint(legacy, { stateDictKey: "optimizer" }),
    (e: WebcapError) =>
      e.code === "BAD_OPTION" && /optimizer.*epoch, best, model, ema/.test(e.message),
  );
});

Deno.test("legacy storage views (view_metadata) offset into the root storage", async () => {
  const view: Py = { tuple: ["v", 3, 10] };
  const main = new Map([["w", tensorPy(legacyStorageId(STORAGES[0], view), 1, [2, 4], [4, 1])]]);
  const store = await openPickleCheckpoint(legacyCheckpoint(main, [STORAGES[0]]));
  assert.deepEqual(await store.readF32("w"), f32Values.subarray(4, 12));
});

async function rejectsWith(source: Uint8Array, code: string, ...parts: string[]): Promise<void> {
  await assert.rejects(openPickleCheckpoint(source), (e: WebcapError) => {
    assert.ok(e instanceof WebcapError, String(e));
    assert.equal(e.code, code, e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `"${p}" not in: ${e.message}`);
    return true;
  });
}

Deno.test("malformed or disallowed pickles give specific errors", async () => {
  const one = (py: Py) => legacyCheckpoint(py, [STORAGES[0]]);
  const w = (shape: number[]) =>
    new Map([["w", tensorPy(legacyStorageId(STORAGES[0]), 0, shape, [1])]]);
  await rejectsWith(one(w([30])), "BAD_PICKLE", "reaches element 29 of a 24-element storage");
  const good = one(w([24]));
  await rejectsWith(good.subarray(0, good.length - 8), "BAD_PICKLE", "truncated");
  await rejectsWith(good.subarray(0, 200), "BAD_PICKLE", "ends unexpectedly");
  await rejectsWith(
    new Uint8Array([0x80, 2, 0x50, 0x2e]),
    "BAD_PICKLE",
    "unsupported pickle opcode 0x50",
  );
  await rejectsWith(pickle(new Map([["w", 1]])), "BAD_PICKLE", "magic number missing");
  await rejectsWith(one(new Map([["epoch", 1]])), "BAD_WEIGHTS", "no tensors found", "epoch");
  await rejectsWith(
    one({ call: { global: "torch.FloatStorage" }, args: [] }),
    "UNSAFE_PICKLE",
    "torch.FloatStorage",
  );
  // Protocol 4: SHORT_BINUNICODE "builtins", SHORT_BINUNICODE "eval", STACK_GLOBAL.
  const te = new TextEncoder();
  const stackGlobal = new Uint8Array([
    0x80,
    4,
    0x8c,
    8,
    ...te.encode("builtins"),
    0x8c,
    4,
    ...te.encode("eval"),
    0x93,
    0x2e,
  ]);
  await rejectsWith(stackGlobal, "UNSAFE_PICKLE", "builtins.eval");
  const st = await Deno.readFile(fixture("clipcap/clipcap.safetensors"));
  await assert.rejects(openPickleCheckpoint(st), (e: WebcapError) => e.code === "BAD_PICKLE");
});

/** A legacy checkpoint whose main pickle is `main` (raw pickle bytes) and has no storages. */
function legacyWithMain(main: Uint8Array): Uint8Array {
  const legacy = legacyCheckpoint(null, []);
  const nonePickle = pickle(null);
  // legacyCheckpoint(null) holds magic, protocol, sys info, `None`, `[]`: swap `None` for `main`
  const at = legacy.length - pickle([]).length - nonePickle.length;
  return concat([legacy.subarray(0, at), main, legacy.subarray(at + nonePickle.length)]);
}

Deno.test("dicts nested past the call stack, or inside themselves, are BAD_PICKLE", async () => {
  const depth = 200_000; // recursion over this many dicts overflows the stack
  const main = [0x80, 2, 0x7d]; // EMPTY_DICT
  for (let i = 0; i < depth; i++) main.push(0x58, 1, 0, 0, 0, 0x61, 0x7d); // "a", EMPTY_DICT
  for (let i = 0; i < depth; i++) main.push(0x73); // SETITEM: d[i]["a"] = d[i + 1]
  main.push(0x2e);
  await rejectsWith(legacyWithMain(new Uint8Array(main)), "BAD_PICKLE", "nested deeper than");
  // d = {}; d["a"] = d (EMPTY_DICT, BINPUT 0, "a", BINGET 0, SETITEM, STOP)
  const loop = [0x80, 2, 0x7d, 0x71, 0, 0x58, 1, 0, 0, 0, 0x61, 0x68, 0, 0x73, 0x2e];
  await rejectsWith(legacyWithMain(new Uint8Array(loop)), "BAD_PICKLE", 'dict "a" contains itself');
});
