/**
 * Seeded mutation fuzzing of the checkpoint readers: flipped bytes, truncations and splices of
 * real fixture files must either load or fail with a WebcapError — never another exception,
 * a hang, or an allocation sized by garbage.
 */
import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { openPickleCheckpoint } from "../../src/io/pickle.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import type { WeightStore } from "../../src/io/weights.ts";
import { fixture, rng } from "../util.ts";

function mutate(src: Uint8Array, r: () => number): Uint8Array {
  const kind = Math.floor(r() * 4);
  if (kind === 0) return src.slice(0, Math.floor(r() * src.length)); // truncation
  const out = src.slice();
  if (kind === 1) { // a few random bytes, biased to the header/opcode region
    for (let i = 0; i < 1 + Math.floor(r() * 8); i++) {
      out[Math.floor(r() * Math.min(out.length, r() < 0.7 ? 4096 : out.length))] = Math.floor(
        r() * 256,
      );
    }
    return out;
  }
  if (kind === 2) { // an 8-byte little-endian field set to an extreme value
    const at = Math.floor(r() * Math.min(out.length - 8, 2048));
    new DataView(out.buffer).setBigUint64(
      at,
      r() < 0.5 ? 0xffffffffffffn : BigInt(Math.floor(r() * 2 ** 40)),
      true,
    );
    return out;
  }
  const a = Math.floor(r() * out.length), b = Math.floor(r() * out.length); // splice
  out.copyWithin(a, b, Math.min(out.length, b + 64));
  return out;
}

async function exercise(store: WeightStore): Promise<void> {
  for (const name of store.names().slice(0, 8)) await store.readF32(name);
  store.close();
}

async function fuzz(
  file: string,
  open: (b: Uint8Array) => Promise<WeightStore>,
  cases: number,
  seed: number,
) {
  const src = await Deno.readFile(file);
  const r = rng(seed);
  let loaded = 0, refused = 0;
  for (let i = 0; i < cases; i++) {
    const bytes = mutate(src, r);
    try {
      await exercise(await open(bytes));
      loaded++;
    } catch (e) {
      if (!(e instanceof WebcapError)) {
        throw new Error(
          `case ${i} of ${file}: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`,
        );
      }
      refused++;
    }
  }
  console.log(
    `  ${
      file.split("/").slice(-2).join("/")
    }: ${loaded} loaded, ${refused} refused with WebcapError`,
  );
}

Deno.test("fuzz: mutated safetensors files load or fail with WebcapError", async () => {
  await fuzz(fixture("hf/vit-gpt2/model.safetensors"), (b) => openSafetensors(b), 300, 1);
});

for (
  const rel of [
    "hf/vit-gpt2/pytorch_model.bin",
    "hf/vit-gpt2/pytorch_model-legacy.bin",
    "hf/clipcap/clipcap.pt",
  ]
) {
  Deno.test(`fuzz: mutated ${rel} loads or fails with WebcapError`, async () => {
    await fuzz(fixture(rel), (b) => openPickleCheckpoint(b), 300, 2);
  });
}

Deno.test("fuzz: mutated malicious pickles never run anything", async () => {
  const marker = "/tmp/webcap-pwned";
  await Deno.remove(marker).catch(() => {});
  for (const f of ["evil.bin", "evil-legacy.pt", "unknown-global.pt"]) {
    await fuzz(fixture(`hf/malicious/${f}`), (b) => openPickleCheckpoint(b), 100, 3);
  }
  await assert.rejects(Deno.stat(marker), Deno.errors.NotFound);
});

for (const rel of ["hf/preprocess/pattern.png", "hf/preprocess/pattern.jpg"]) {
  Deno.test(`fuzz: mutated ${rel} decodes or fails with WebcapError`, async () => {
    const { decodeImage } = await import("../../src/image/decode.ts");
    const src = await Deno.readFile(fixture(rel));
    const r = rng(4);
    let decoded = 0;
    for (let i = 0; i < 150; i++) {
      const bytes = mutate(src, r);
      try {
        const img = await decodeImage(bytes, `case ${i}`);
        assert.equal(img.data.length, img.width * img.height * 3);
        decoded++;
      } catch (e) {
        if (!(e instanceof WebcapError)) {
          throw new Error(
            `case ${i} of ${rel}: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`,
          );
        }
      }
    }
    console.log(`  ${rel}: ${decoded} of 150 decoded`);
  });
}
