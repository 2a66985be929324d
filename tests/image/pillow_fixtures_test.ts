/**
 * Every file of `../shared/fixtures/images/` (enumerated from its `images.json`, so another set of
 * the same layout runs too) decodes to exactly Pillow's pixels: `decoded.safetensors` holds
 * `Image.open(NAME).convert("RGB")`, and for EXIF-rotated files also the picture after
 * `ImageOps.exif_transpose`, which is what `decodeImage` returns.
 */
import assert from "node:assert/strict";
import { decodeImage } from "../../src/image/decode.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { fixture } from "../util.ts";

const DIR = fixture("images/");
const listing: { files: Record<string, { size: [number, number] }> } = JSON.parse(
  await Deno.readTextFile(`${DIR}images.json`),
);
const reference = await openSafetensors(`${DIR}decoded.safetensors`);

/** Largest per-channel difference and how many samples differ. */
function compare(got: Uint8Array, want: Uint8Array): { max: number; differ: number } {
  let max = 0, differ = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (d) differ++;
    max = Math.max(max, d);
  }
  return { max, differ };
}

for (const [name, { size }] of Object.entries(listing.files)) {
  Deno.test(`${name} decodes to Pillow's pixels exactly`, async () => {
    const img = await decodeImage(await Deno.readFile(DIR + name), name);
    const key = reference.has(`${name}:rgb_exif_transposed`)
      ? `${name}:rgb_exif_transposed`
      : `${name}:rgb`;
    const [h, w] = reference.info(key).shape;
    assert.deepEqual([img.width, img.height], [w, h]);
    if (key.endsWith(":rgb")) assert.deepEqual([img.width, img.height], size);
    const { max, differ } = compare(img.data, await reference.read(key));
    assert.equal(max, 0, `${name}: max |Δ| ${max}, ${differ} of ${img.data.length} samples differ`);
  });
}
