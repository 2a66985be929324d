/**
 * The data readers: the Karpathy split file of the shapes fixture (every entry, its split, its
 * image path and raw captions as the file holds them; images decode), a COCO captions file over
 * an image folder, Flickr8k / Flickr30k caption files (splits from the Flickr_8k lists, a
 * Karpathy split file, or seeded fractions), a folder of images with `.txt` captions, and bad
 * input (not JSON, no images, empty or non-UTF-8 captions, unknown split, missing image, empty
 * split) refused with named errors or skipped and counted by option.
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

function folder(file: string): string {
  return file.slice(0, file.lastIndexOf("/"));
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
  await rejects(
    readCaptionData(SHAPES, { images: "/elsewhere" }),
    "MISSING_FILE",
    "/elsewhere/images/",
    "missing",
  );
  const skipped = await readCaptionData(SHAPES, { images: "/elsewhere", missing: "skip" });
  const json = JSON.parse(await Deno.readTextFile(SHAPES));
  assert.equal(skipped.skipped.missingImages, json.images.length);
  assert.equal(skipped.train.length + skipped.val.length + skipped.test.length, 0);
  const imgs = await Deno.makeTempDir({ prefix: "webcap-imgs-" });
  for (const n of ["a.png", "b.png"]) await Deno.writeFile(`${imgs}/${n}`, new Uint8Array());
  const file = await tempJson({
    images: [{ id: 7, file_name: "a.png" }, { id: 9, file_name: "b.png" }],
    annotations: [
      { image_id: 9, caption: "a dog" },
      { image_id: 7, caption: "a cat" },
      { image_id: 7, caption: "one cat " },
    ],
  }, "captions_val2014.json");
  const coco = await readCaptionData(file, { images: imgs });
  assert.equal(coco.train.length, 0);
  assert.deepEqual(coco.val, [
    { path: `${imgs}/a.png`, captions: ["a cat", "one cat"] },
    { path: `${imgs}/b.png`, captions: ["a dog"] },
  ]);
  const asTrain = await readCaptionData(file, { split: "train", images: imgs });
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
  await rejects(readCaptionData(file), "MISSING_FILE", "x/a.png");
  await Deno.mkdir(`${folder(file)}/x`);
  await Deno.writeFile(`${folder(file)}/x/a.png`, new TextEncoder().encode("not a png"));
  const splits = await readCaptionData(file);
  await rejects(loadSplitImages(splits.train), "BAD_IMAGE");
  assert.throws(
    () => splitEntries(splits, "val", file),
    (e: Error & { code?: string }) =>
      e.code === "BAD_INPUT" && e.message.includes("val split has no images"),
  );
});

/** A temp folder with `files` (text, or bytes) written at their relative paths. */
async function tempTree(files: Record<string, string | Uint8Array>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webcap-data-" });
  for (const [name, body] of Object.entries(files)) {
    await Deno.mkdir(`${dir}/${name}`.replace(/\/[^/]*$/, ""), { recursive: true });
    const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
    await Deno.writeFile(`${dir}/${name}`, bytes);
  }
  return dir;
}

const NOT_UTF8 = new Uint8Array([0x61, 0x20, 0xff, 0xfe, 0x0a]);
const images = (...names: string[]) => Object.fromEntries(names.map((n) => [n, ""]));

Deno.test("Flickr8k token file: captions grouped by image, splits from the Flickr_8k lists beside it", async () => {
  const dir = await tempTree({
    "Flickr8k.token.txt": "a.jpg#0\tA dog runs .\na.jpg#1\ta brown dog\r\nb.jpg#0\tTwo cats\n" +
      "c.jpg#0\tA bird\nd.jpg#0\tA fish\n",
    "Flickr_8k.trainImages.txt": "a.jpg\nb.jpg\n",
    "Flickr_8k.devImages.txt": "c.jpg\n",
    "Flickr_8k.testImages.txt": "\n",
    ...images("a.jpg", "b.jpg", "c.jpg", "d.jpg"),
  });
  const s = await readCaptionData(`${dir}/Flickr8k.token.txt`);
  assert.deepEqual(s.train, [
    { path: `${dir}/a.jpg`, captions: ["A dog runs .", "a brown dog"] },
    { path: `${dir}/b.jpg`, captions: ["Two cats"] },
  ]);
  assert.deepEqual(s.val, [{ path: `${dir}/c.jpg`, captions: ["A bird"] }]);
  assert.equal(s.test.length, 0);
  assert.deepEqual(s.skipped, { missingImages: 0, emptyCaptions: 0, notUtf8: 0, unsplit: 1 });
});

Deno.test("Flickr caption file: splits from a Karpathy split file; no split named is refused", async () => {
  const dir = await tempTree({
    "results_20130124.token": "1.jpg#0\tone\n1.jpg#1\tuno\n2.jpg#0\ttwo\n3.jpg#0\tthree\n",
    "dataset_flickr30k.json": JSON.stringify({
      images: [
        { filename: "1.jpg", split: "restval" },
        { filename: "2.jpg", split: "test" },
        { filename: "3.jpg", split: "val" },
      ],
    }),
    ...images("1.jpg", "2.jpg", "3.jpg"),
  });
  const token = `${dir}/results_20130124.token`;
  const s = await readCaptionData(token, { splitFile: `${dir}/dataset_flickr30k.json` });
  assert.deepEqual(
    [s.train, s.val, s.test].map((e) => e.map((x) => x.captions)),
    [[["one", "uno"]], [["three"]], [["two"]]],
  );
  await rejects(readCaptionData(token), "BAD_OPTION", token, "names no splits", "--split");
  await rejects(readCaptionData(token, { split: [0.5, 0.6, 0] }), "BAD_OPTION", "summing to 1");
  await Deno.writeTextFile(token, "1.jpg\tone\n");
  await rejects(readCaptionData(token, { split: [1, 0, 0] }), "BAD_INPUT", "line 1");
});

Deno.test("Flickr30k results.csv: seeded fractional split, the same per seed; bad lines by option", async () => {
  const rows = Array.from({ length: 20 }, (_, i) => `${i}.jpg| 0| caption ${i}`);
  const dir = await tempTree({
    "results.csv": ["image_name| comment_number| comment", ...rows, "3.jpg| 1 second three"]
      .join("\n"),
    ...images(...Array.from({ length: 20 }, (_, i) => `${i}.jpg`)),
  });
  const csv = `${dir}/results.csv`;
  const a = await readCaptionData(csv, { split: [0.8, 0.1, 0.1], seed: 3 });
  const b = await readCaptionData(csv, { split: [0.8, 0.1, 0.1], seed: 3 });
  const c = await readCaptionData(csv, { split: [0.8, 0.1, 0.1], seed: 4 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.train, c.train);
  assert.deepEqual([a.train.length, a.val.length, a.test.length], [16, 2, 2]);
  const all = [...a.train, ...a.val, ...a.test];
  assert.deepEqual(
    all.map((e) => e.path).sort(),
    b.train.concat(b.val, b.test).map((e) => e.path).sort(),
  );
  assert.deepEqual(all.find((e) => e.path.endsWith("/3.jpg"))!.captions, [
    "caption 3",
    "second three",
  ]);
  const enc = (t: string) => new TextEncoder().encode(t);
  await Deno.writeTextFile(csv, `image_name| comment_number| comment\n0.jpg| 0| \n`);
  await rejects(readCaptionData(csv, { split: [1, 0, 0] }), "BAD_INPUT", "0.jpg", "caption 0");
  await Deno.writeFile(
    csv,
    new Uint8Array([
      ...enc(`image_name| comment_number| comment\n${rows[1]}\n0.jpg| 0| \n1.jpg| 0| `),
      ...NOT_UTF8,
    ]),
  );
  await rejects(readCaptionData(csv, { split: [1, 0, 0] }), "BAD_INPUT", "line 4 is not UTF-8");
  const skip = await readCaptionData(csv, { split: [1, 0, 0], badCaptions: "skip" });
  assert.deepEqual(skip.train.map((e) => e.captions), [["caption 1"]]);
  assert.deepEqual(skip.skipped, { missingImages: 0, emptyCaptions: 2, notUtf8: 1, unsplit: 0 });
});

Deno.test("image folder: a .txt of captions beside each image (recursively); missing, empty and non-UTF-8 by option", async () => {
  const dir = await tempTree({
    "a.png": "",
    "a.txt": "a red circle\n a blue square \n",
    "sub/b.jpg": "",
    "sub/b.txt": "a cat",
    "notes.md": "not an image",
  });
  const s = await readCaptionData(dir, { split: [1, 0, 0] });
  assert.deepEqual(s.train.map((e) => [e.path, e.captions]).sort(), [
    [`${dir}/a.png`, ["a red circle", "a blue square"]],
    [`${dir}/sub/b.jpg`, ["a cat"]],
  ]);
  await Deno.writeFile(`${dir}/c.png`, new Uint8Array());
  await rejects(readCaptionData(dir, { split: [1, 0, 0] }), "BAD_INPUT", "c.txt", "no captions");
  await Deno.writeFile(`${dir}/c.txt`, NOT_UTF8);
  await rejects(readCaptionData(dir, { split: [1, 0, 0] }), "BAD_INPUT", "c.txt", "not UTF-8");
  await Deno.writeTextFile(`${dir}/sub/b.txt`, "a cat\n\nan animal\n");
  await Deno.writeTextFile(`${dir}/c.txt`, "fine");
  await rejects(readCaptionData(dir, { split: [1, 0, 0] }), "BAD_INPUT", "b.jpg", "caption 1");
  await Deno.writeFile(`${dir}/c.txt`, NOT_UTF8);
  const skip = await readCaptionData(dir, { split: [1, 0, 0], badCaptions: "skip" });
  assert.equal(skip.train.length, 2);
  assert.deepEqual(skip.train.find((e) => e.path.endsWith("b.jpg"))!.captions, [
    "a cat",
    "an animal",
  ]);
  assert.deepEqual(skip.skipped, { missingImages: 0, emptyCaptions: 1, notUtf8: 1, unsplit: 0 });
});

Deno.test("missing images: an error naming the first and the count, or skipped and counted", async () => {
  const dir = await tempTree({
    "Flickr8k.token.txt": "a.jpg#0\tA dog\nb.jpg#0\tTwo cats\nc.jpg#0\tA bird\n",
    ...images("b.jpg"),
  });
  const file = `${dir}/Flickr8k.token.txt`;
  await rejects(readCaptionData(file, { split: [1, 0, 0] }), "MISSING_FILE", "a.jpg", "2 missing");
  const s = await readCaptionData(file, { split: [1, 0, 0], missing: "skip" });
  assert.deepEqual(s.train.map((e) => e.path), [`${dir}/b.jpg`]);
  assert.equal(s.skipped.missingImages, 2);
});
