/**
 * The data readers: the Karpathy split file of the shapes fixture (every entry, its split, its
 * image path and raw captions as the file holds them; images decode), a COCO captions file over
 * an image folder, and bad input (not JSON, no images, empty captions, unknown split, missing
 * image, empty split) refused with named errors.
 */
import assert from "node:assert/strict";
import { loadSplitImages, readCaptionData, splitEntries } from "../../src/train/data.ts";
import { fixture } from "../util.ts";

const SHAPES = fixture("shapes/dataset_shapes.json");

async function rejects(p: Promise<unknown>, code: string, ...mentions: string[]) {
  await assert.rejects(p, (e: Error & { code?: string }) => {
    assert.equal(e.code, code, e.message);
    for (const m of mentions) assert.ok(e.message.includes(m), `${e.message} lacks ${m}`);
    return true;
  });
}

async function tempJson(value: unknown, name = "data.json"): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webcap-data-" });
  await Deno.writeTextFile(`${dir}/${name}`, JSON.stringify(value));
  return `${dir}/${name}`;
}

Deno.test("Karpathy reader: every entry of the shapes file in its split, image at IMAGES/filepath/filename", async () => {
  const json = JSON.parse(await Deno.readTextFile(SHAPES));
  const splits = await readCaptionData(SHAPES);
  const dir = SHAPES.slice(0, SHAPES.lastIndexOf("/"));
  for (const split of ["train", "val", "test"] as const) {
    const want = json.images.filter((i: { split: string }) => i.split === split);
    assert.ok(want.length > 0);
    assert.deepEqual(
      splits[split].map((e) => e.path),
      want.map((i: { filepath: string; filename: string }) => `${dir}/${i.filepath}/${i.filename}`),
    );
    assert.deepEqual(
      splits[split].map((e) => e.captions),
      want.map((i: { sentences: { raw: string }[] }) => i.sentences.map((s) => s.raw)),
    );
  }
  const images = await loadSplitImages(splits.val.slice(0, 3));
  assert.ok(images.every((im) => im.width > 0 && im.data.length === im.width * im.height * 3));
});

Deno.test("--images overrides the data file's folder; COCO captions file over an image folder", async () => {
  const splits = await readCaptionData(SHAPES, { images: "/elsewhere" });
  assert.ok(splits.train[0].path.startsWith("/elsewhere/images/"));
  const file = await tempJson({
    images: [{ id: 7, file_name: "a.png" }, { id: 9, file_name: "b.png" }],
    annotations: [
      { image_id: 9, caption: "a dog" },
      { image_id: 7, caption: "a cat" },
      { image_id: 7, caption: "one cat " },
    ],
  }, "captions_val2014.json");
  const coco = await readCaptionData(file, { images: "/imgs" });
  assert.equal(coco.train.length, 0);
  assert.deepEqual(coco.val, [
    { path: "/imgs/a.png", captions: ["a cat", "one cat"] },
    { path: "/imgs/b.png", captions: ["a dog"] },
  ]);
  const asTrain = await readCaptionData(file, { split: "train" });
  assert.equal(asTrain.train.length, 2);
});

Deno.test("bad data: not JSON, no images, empty caption, unknown split, missing image, empty split", async () => {
  const entry = { filepath: "x", filename: "a.png", split: "train", sentences: [{ raw: "a" }] };
  await rejects(readCaptionData("/no/such/data.json"), "MISSING_FILE", "/no/such/data.json");
  const notJson = await tempJson(0);
  await Deno.writeTextFile(notJson, "{oops");
  await rejects(readCaptionData(notJson), "BAD_INPUT", "not JSON");
  await rejects(readCaptionData(await tempJson({ foo: 1 })), "BAD_INPUT", '"images"');
  const empty = { ...entry, sentences: [{ raw: "  " }] };
  await rejects(
    readCaptionData(await tempJson({ images: [empty] })),
    "BAD_INPUT",
    "a.png",
    "caption 0",
  );
  const none = { ...entry, sentences: [] };
  await rejects(readCaptionData(await tempJson({ images: [none] })), "BAD_INPUT", "no captions");
  const split = { ...entry, split: "dev" };
  await rejects(readCaptionData(await tempJson({ images: [split] })), "BAD_INPUT", '"dev"');
  const file = await tempJson({ images: [entry] });
  const splits = await readCaptionData(file);
  await rejects(loadSplitImages(splits.train), "MISSING_FILE", "x/a.png");
  assert.throws(
    () => splitEntries(splits, "val", file),
    (e: Error & { code?: string }) =>
      e.code === "BAD_INPUT" && e.message.includes("val split has no images"),
  );
});
