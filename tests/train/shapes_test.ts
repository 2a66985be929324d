/**
 * The demo's shapes generator: a seed gives the same folder byte for byte, another seed another
 * one; the folder reads as a Karpathy split file with its split sizes; every caption names the
 * colours that are drawn and no other.
 */
import assert from "node:assert/strict";
import { loadSplitImages, readCaptionData } from "../../src/train/data.ts";
import { generateShapes, writeShapes } from "../../src/train/demo/shapes.ts";
import { WebcapError } from "../../src/errors.ts";

const SIZES = { train: 6, val: 2, test: 1 };

async function folderBytes(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  out.set("dataset_shapes.json", await Deno.readFile(`${dir}/dataset_shapes.json`));
  for await (const e of Deno.readDir(`${dir}/images`)) {
    out.set(e.name, await Deno.readFile(`${dir}/images/${e.name}`));
  }
  return out;
}

Deno.test("shapes: the same seed writes the same bytes, another seed other ones", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-shapes-" });
  await writeShapes(`${tmp}/a`, { ...SIZES, seed: 7 });
  await writeShapes(`${tmp}/b`, { ...SIZES, seed: 7 });
  await writeShapes(`${tmp}/c`, { ...SIZES, seed: 8 });
  const [a, b, c] = await Promise.all(["a", "b", "c"].map((d) => folderBytes(`${tmp}/${d}`)));
  assert.equal(a.size, 1 + 9);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.get("dataset_shapes.json"), c.get("dataset_shapes.json"));
  assert.notDeepEqual(a.get("shapes_train_00000.png"), c.get("shapes_train_00000.png"));
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("shapes: the folder reads as a Karpathy split file; its images decode at the size asked", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-shapes-" });
  const file = await writeShapes(tmp, { ...SIZES, size: 48 });
  const splits = await readCaptionData(file);
  assert.deepEqual(
    [splits.train.length, splits.val.length, splits.test.length],
    [SIZES.train, SIZES.val, SIZES.test],
  );
  assert.ok(splits.train.every((e) => e.captions.length === 5));
  const [img] = await loadSplitImages(splits.val.slice(0, 1));
  assert.deepEqual([img.width, img.height], [48, 48]);
  await Deno.remove(tmp, { recursive: true });
});

const COLOURS: Record<string, number[]> = {
  red: [220, 40, 40],
  green: [30, 170, 60],
  blue: [40, 70, 220],
  yellow: [235, 215, 40],
  purple: [140, 50, 170],
};

Deno.test("shapes: every caption names the colours drawn, and the picture has no other", () => {
  for (const img of generateShapes({ train: 40, val: 0, test: 0, seed: 3 })) {
    const drawn = Object.keys(COLOURS).filter((name) => {
      const [r, g, b] = COLOURS[name];
      for (let i = 0; i < img.pixels.length; i += 3) {
        if (img.pixels[i] === r && img.pixels[i + 1] === g && img.pixels[i + 2] === b) return true;
      }
      return false;
    });
    assert.ok(drawn.length === 1 || drawn.length === 2, img.filename);
    for (const c of img.captions) {
      const named = Object.keys(COLOURS).filter((name) => c.split(" ").includes(name));
      assert.deepEqual(named.sort(), [...drawn].sort(), `${img.filename}: ${c}`);
    }
  }
});

Deno.test("shapes: bad sizes and seeds are refused", () => {
  for (const o of [{ ...SIZES, train: -1 }, { ...SIZES, size: 8 }, { ...SIZES, seed: 0.5 }]) {
    assert.throws(
      () => generateShapes(o),
      (e) => e instanceof WebcapError && e.code === "BAD_OPTION",
    );
  }
});
