import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { DTYPE_BYTES, numelOf } from "../../src/io/dtype.ts";
import { openSafetensors, parseSafetensorsHeader } from "../../src/io/safetensors.ts";
import { bf16ToF32, f16ToF32 } from "../../src/io/weights.ts";
import { concat, fixture, FIXTURES, safetensorsBytes } from "./checkpoint_writers.ts";

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walk(path);
    else if (e.name.endsWith(".safetensors")) yield path;
  }
}

Deno.test("every fixture .safetensors file loads, from a path and from bytes alike", async () => {
  let files = 0;
  for await (const path of walk(FIXTURES.pathname.replace(/\/$/, ""))) {
    files++;
    const fromFile = await openSafetensors(path);
    const fromBytes = await openSafetensors(await Deno.readFile(path));
    assert.ok(fromFile.names().length > 0, path);
    assert.deepEqual(fromBytes.names(), fromFile.names());
    for (const name of fromFile.names()) {
      const info = fromFile.info(name);
      const bytes = await fromFile.read(name);
      assert.equal(bytes.length, numelOf(info.shape) * DTYPE_BYTES[info.dtype], `${path} ${name}`);
      assert.deepEqual(await fromBytes.read(name), bytes);
      assert.equal((await fromFile.readF32(name)).length, numelOf(info.shape));
    }
    fromFile.close();
    fromBytes.close();
  }
  assert.ok(files >= 10, `found only ${files} fixture files`);
});

Deno.test("f16ToF32 matches Float16Array on all 65536 bit patterns", () => {
  const bits = new Uint16Array(65536).map((_, i) => i);
  const ours = f16ToF32(bits);
  const ref = new Float16Array(bits.buffer);
  for (let i = 0; i < bits.length; i++) {
    if (Number.isNaN(ref[i])) assert.ok(Number.isNaN(ours[i]), `bits ${i}`);
    else assert.ok(Object.is(ours[i], ref[i]), `bits ${i}: ${ours[i]} vs ${ref[i]}`);
  }
});

/** bfloat16 round-to-nearest-even of float32 values, widened back to float32. */
function bf16Round(x: Float32Array): Float32Array {
  const u = new Uint32Array(x.slice().buffer);
  const r = u.map((b) => (((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) << 16) >>> 0);
  return new Float32Array(r.buffer);
}

Deno.test("F16 and BF16 fixtures equal the F32 weights rounded to nearest even", async () => {
  const f32 = await openSafetensors(fixture("vit-gpt2/model.safetensors"));
  const ref = new Map<string, Float32Array>();
  for (const name of f32.names()) ref.set(name, await f32.readF32(name));
  for (
    const [file, dtype, round] of [["f16", "F16", (x: Float32Array) => x.map(Math.f16round)], [
      "bf16",
      "BF16",
      bf16Round,
    ]] as const
  ) {
    const store = await openSafetensors(fixture(`vit-gpt2/model-${file}.safetensors`));
    assert.equal(store.names().length, ref.size);
    for (const name of store.names()) {
      assert.equal(store.info(name).dtype, dtype);
      const got = await store.readF32(name);
      const bits = new Uint16Array((await store.read(name)).slice().buffer);
      assert.deepEqual(dtype === "F16" ? f16ToF32(bits) : bf16ToF32(bits), got);
      // Same name, or (the files name some ViT tensors differently) some tensor of the same values.
      const candidates = ref.has(name) ? [ref.get(name)!] : [...ref.values()];
      const match = candidates.some((r) =>
        r.length === got.length && round(r).every((v, i) => Object.is(v, got[i]))
      );
      assert.ok(match, `${file} ${name} is no rounding of a float32 tensor`);
    }
    store.close();
  }
  f32.close();
});

Deno.test("a file path reads only the header, then each tensor on demand", async () => {
  const path = fixture("vit-gpt2/model.safetensors");
  const bytes = await Deno.readFile(path);
  const store = await openSafetensors(path);
  const header = parseSafetensorsHeader(bytes, path);
  // Concurrent reads share one file handle and must not interleave.
  const names = store.names();
  const reads = await Promise.all(names.map((n) => store.read(n)));
  names.forEach((n, i) => {
    const t = header.tensors.get(n)!;
    const expected = bytes.subarray(header.headerBytes + t.begin, header.headerBytes + t.end);
    assert.deepEqual(reads[i], expected, n);
  });
  store.close();
  const prefix = bytes.subarray(0, header.headerBytes);
  assert.deepEqual(parseSafetensorsHeader(prefix, path, bytes.length).tensors, header.tensors);
  assert.equal(header.metadata.format, "pt");
});

/** The header and data section of a fixture, for building malformed variants. */
async function fixtureParts() {
  const bytes = await Deno.readFile(fixture("vit-gpt2/model.safetensors"));
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  type Entry = { dtype: string; shape: number[]; data_offsets: number[] };
  const entries = Object.entries(header).filter(([k]) => k !== "__metadata__") as [string, Entry][];
  entries.sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  return { bytes, header, entries, data: bytes.subarray(8 + n) };
}

async function rejectsWith(bytes: Uint8Array, ...parts: (string | RegExp)[]): Promise<void> {
  const err = await openSafetensors(bytes).then(
    () => assert.fail("malformed file was accepted"),
    (e) => e,
  );
  assert.ok(err instanceof WebcapError, String(err));
  assert.equal(err.code, "BAD_SAFETENSORS", err.message);
  for (const p of parts) {
    assert.match(err.message, typeof p === "string" ? new RegExp(RegExp.escape(p)) : p);
  }
}

Deno.test("malformed safetensors each give a specific BAD_SAFETENSORS error", async () => {
  const { bytes, header, entries, data } = await fixtureParts();
  const [first, second] = entries;
  const last = entries[entries.length - 1];
  const variant = (edit: (h: typeof header) => void, d: Uint8Array = data) => {
    const h = structuredClone(header);
    edit(h);
    return safetensorsBytes(h, d);
  };
  const lengthPrefix = (n: bigint, rest: Uint8Array) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, n, true);
    return concat([b, rest]);
  };

  await rejectsWith(bytes.subarray(0, 5), "shorter than the 8-byte header length");
  await rejectsWith(bytes.subarray(0, bytes.length - 10), "truncated", last[0]);
  await rejectsWith(lengthPrefix(BigInt(bytes.length), bytes.subarray(8)), "runs past the end");
  await rejectsWith(lengthPrefix(1n << 40n, bytes.subarray(8)), "exceeds the 100000000-byte limit");
  await rejectsWith(lengthPrefix(5n, new TextEncoder().encode("{nope")), "not valid JSON");
  await rejectsWith(lengthPrefix(2n, new Uint8Array([0xc3, 0x28])), "not valid UTF-8");
  await rejectsWith(
    safetensorsBytes([1, 2], new Uint8Array()),
    "must be a JSON object, got an array",
  );
  await rejectsWith(
    variant((
      h,
    ) => (h[second[0]].data_offsets = [
      first[1].data_offsets[0],
      second[1].data_offsets[1] - first[1].data_offsets[1],
    ])),
    "overlaps",
    second[0],
    first[0],
  );
  await rejectsWith(
    variant((h) => (h[last[0]].data_offsets = last[1].data_offsets.map((o) => o + 64))),
    "run past",
    last[0],
  );
  await rejectsWith(
    variant((h) => (h[first[0]].dtype = "F8_E4M3")),
    'unsupported dtype "F8_E4M3"',
    first[0],
  );
  await rejectsWith(variant((h) => (h[first[0]].shape = [...first[1].shape, 2])), "span", first[0]);
  await rejectsWith(variant((h) => (h[first[0]].shape = [-1])), "non-negative integers", first[0]);
  await rejectsWith(variant((h) => (h[first[0]].shape = [1.5])), "non-negative integers", first[0]);
  await rejectsWith(
    variant((h) => (h[first[0]].data_offsets = [8, 4])),
    "begin 8 > end 4",
    first[0],
  );
  await rejectsWith(variant((h) => delete h[second[0]]), "holes", entries[2][0]);
  await rejectsWith(
    variant(() => {}, concat([data, new Uint8Array(4)])),
    "4 bytes after the last tensor",
  );
  await rejectsWith(variant((h) => (h.__metadata__ = { n: 1 })), "__metadata__", "must be strings");
  await rejectsWith(
    safetensorsBytes(JSON.parse('{"__proto__": {"polluted": true}}'), new Uint8Array()),
    'tensor "__proto__": entry must be an object with dtype, shape and data_offsets',
  );
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("a tensor named __proto__ is an ordinary name and pollutes nothing", async () => {
  const { header, entries, data } = await fixtureParts();
  const h = structuredClone(header);
  const [name, entry] = entries[0];
  delete h[name];
  const text = JSON.stringify(h).replace(/^\{/, `{"__proto__":${JSON.stringify(entry)},`);
  const store = await openSafetensors(safetensorsBytes(JSON.parse(text), data));
  assert.ok(store.has("__proto__"));
  assert.deepEqual(store.info("__proto__").shape, entry.shape);
  assert.equal(({} as Record<string, unknown>).dtype, undefined);
  assert.equal(store.has("constructor"), false);
  assert.throws(
    () => store.info("constructor"),
    (e) => e instanceof WebcapError && e.code === "BAD_WEIGHTS",
  );
});

Deno.test("an absent tensor is a BAD_WEIGHTS error naming it and similar names", async () => {
  const store = await openSafetensors(fixture("vit-gpt2/model.safetensors"));
  const name = "decoder.transformer.h.9.attn.c_attn.bias";
  await assert.rejects(store.read(name), (e: WebcapError) => {
    assert.equal(e.code, "BAD_WEIGHTS");
    assert.match(e.message, new RegExp(RegExp.escape(name)));
    assert.match(e.message, /similar names: .*c_attn\.bias/);
    return true;
  });
  store.close();
});
