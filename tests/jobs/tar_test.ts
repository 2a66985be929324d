/** WebDataset tars read as streams: samples by key, skipped data, bad members. */
import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import {
  type ByteSource,
  fileSource,
  keyAndExtension,
  streamSource,
  type TarSample,
  tarSamples,
} from "../../src/jobs/tar.ts";
import { images, samples, tar } from "./data.ts";

/** A stream of `bytes` in chunks of `size`. */
function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let off = 0;
  return new ReadableStream({
    pull(ctl) {
      if (off >= bytes.length) return ctl.close();
      ctl.enqueue(bytes.slice(off, off += size));
    },
  });
}

async function collect(src: ByteSource, select = (_: string) => true) {
  const out: TarSample[] = [];
  let thrown: unknown;
  try {
    for await (const s of tarSamples(src, "t.tar", select)) out.push(s);
  } catch (e) {
    thrown = e;
  }
  await src.close();
  return { out, thrown };
}

Deno.test("tar: samples by key with their image, from a file and from a stream of odd chunks", async () => {
  const files = images(5);
  const bytes = tar(samples(files));
  const path = await Deno.makeTempFile({ suffix: ".tar" });
  await Deno.writeFile(path, bytes);
  for (const src of [await fileSource(path), streamSource(chunked(bytes, 777), "t.tar", 5000)]) {
    const { out, thrown } = await collect(src, (k) => k !== "img002");
    assert.equal(thrown, undefined);
    assert.deepEqual(out.map((s) => s.key), ["img000", "img001", "img003", "img004"]);
    for (const s of out) {
      assert.deepEqual(s.image, files.get(`${s.key}.png`));
      assert.equal(s.source, `t.tar:${s.key}.png`);
    }
  }
  await Deno.remove(path);
});

Deno.test("tar: a sample with no image member is an error of that sample only", async () => {
  const [a, b] = samples(images(2)).filter(([n]) => n.endsWith(".png"));
  const text = new TextEncoder().encode("words");
  const bytes = tar([a, ["lonely.txt", text], ["lonely.json", text], b]);
  const { out, thrown } = await collect(streamSource(chunked(bytes, 4096), "t.tar", 5000));
  assert.equal(thrown, undefined);
  assert.deepEqual(out.map((s) => s.key), ["img000", "lonely", "img001"]);
  assert.equal(out[1].error?.code, "BAD_INPUT");
  assert.match(out[1].error!.message, /sample "lonely" has no image member.*lonely\.txt/);
});

Deno.test("tar: a truncated member ends the tar with an error naming it; earlier samples stand", async () => {
  const bytes = tar(samples(images(3)));
  const at = new TextDecoder("latin1").decode(bytes).indexOf("img002.png");
  const cut = bytes.subarray(0, at + 512 + 100); // 100 bytes into the last sample's image
  const { out, thrown } = await collect(streamSource(chunked(cut, 1000), "t.tar", 5000));
  assert.deepEqual(out.map((s) => [s.key, !!s.image]), [["img000", true], ["img001", true], [
    "img002",
    false,
  ]]);
  assert.match(out[2].error!.message, /t\.tar: the tar ends inside img002\.png.*truncated/);
  assert.ok(thrown instanceof WebcapError && thrown.code === "BAD_INPUT");
  const inJson = await collect(
    streamSource(chunked(bytes.subarray(0, bytes.length - 1500), 999), "t.tar", 5000),
  );
  assert.deepEqual(inJson.out.map((s) => [s.key, !!s.image]), [["img000", true], ["img001", true], [
    "img002",
    true,
  ]], "an image read whole before the cut is kept");
  assert.match((inJson.thrown as Error).message, /ends inside img002\.json/);
});

Deno.test("tar: a file that is not a tar is refused", async () => {
  const junk = new Uint8Array(2048).fill(65);
  const { out, thrown } = await collect(streamSource(chunked(junk, 512), "t.tar", 5000));
  assert.equal(out.length, 0);
  assert.match((thrown as Error).message, /not a tar header/);
});

Deno.test("tar: keys are the path up to the first dot of the file name", () => {
  assert.deepEqual(keyAndExtension("a/b/000123.jpg"), ["a/b/000123", "jpg"]);
  assert.deepEqual(keyAndExtension("x.seg.PNG"), ["x", "seg.png"]);
  assert.equal(keyAndExtension("dir.v2/README"), undefined);
});

const gnuTar = await new Deno.Command("tar", { args: ["--version"], stdout: "null" }).output()
  .then((r) => r.success, () => false);

Deno.test({
  name: "tar: archives of GNU tar with long (pax and GNU) names",
  ignore: !gnuTar,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const long = `${"d".repeat(60)}/${"k".repeat(70)}`;
    await Deno.mkdir(`${dir}/${long.split("/")[0]}`);
    await Deno.writeFile(`${dir}/${long}.png`, images(1).get("img000.png")!);
    for (const format of ["pax", "gnu"]) {
      const out = `${dir}/${format}.tar`;
      const r = await new Deno.Command("tar", {
        args: [`--format=${format}`, "-cf", out, "-C", dir, `${long}.png`],
      }).output();
      assert.ok(r.success);
      const { out: got } = await collect(await fileSource(out));
      assert.deepEqual(got.map((s) => s.key), [long], format);
    }
    await Deno.remove(dir, { recursive: true });
  },
});
