// Image decoding: formats, PIL's convert("RGB") rules, EXIF orientation, and error codes.
// Every test image is built here (fast-png and jpeg-js encoders, BMP and GIF writers below),
// except the shared fixtures; pillow_fixtures_test.ts compares against Pillow itself.
import assert from "node:assert/strict";
import { encode as encodeJpegRgba } from "jpeg-js";
import { encode as encodePng } from "fast-png";
import { applyOrientation, decodeImage, loadImage, type RgbImage } from "../../src/image/decode.ts";
import { WebcapError } from "../../src/errors.ts";
import { assertRejectsCode } from "../util.ts";

const FIXTURES = new URL("../../../shared/fixtures/hf/preprocess/", import.meta.url);

/** Deterministic pattern, [h, w, channels]. */
function pattern(w: number, h: number, channels: number, seed = 7): Uint8Array {
  const data = new Uint8Array(w * h * channels);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 11 + (i >> 3) * 5) % 256;
  return data;
}

function rgbImage(w: number, h: number, seed = 7): RgbImage {
  return { width: w, height: h, data: pattern(w, h, 3, seed) };
}

function encodeRgbPng(img: RgbImage): Uint8Array {
  return encodePng({ width: img.width, height: img.height, data: img.data, channels: 3 });
}

function encodeJpeg(img: RgbImage, quality = 90): Uint8Array {
  const rgba = new Uint8Array(img.width * img.height * 4).fill(255);
  for (let i = 0; i < img.width * img.height; i++) {
    rgba.set(img.data.subarray(3 * i, 3 * i + 3), 4 * i);
  }
  return encodeJpegRgba({ width: img.width, height: img.height, data: rgba }, quality).data;
}

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A little-endian TIFF block whose first IFD holds Orientation = `o`. */
function exifOrientation(o: number): Uint8Array {
  const t = new Uint8Array(26);
  const v = new DataView(t.buffer);
  t.set([0x49, 0x49, 0x2a, 0x00]);
  v.setUint32(4, 8, true); // IFD0 offset
  v.setUint16(8, 1, true); // one entry
  v.setUint16(10, 0x0112, true); // Orientation
  v.setUint16(12, 3, true); // SHORT
  v.setUint32(14, 1, true); // count
  v.setUint16(18, o, true);
  return t; // next-IFD offset (bytes 22..25) = 0
}

/** Insert a PNG chunk right after IHDR. */
function withPngChunk(png: Uint8Array, type: string, payload: Uint8Array): Uint8Array {
  const chunk = new Uint8Array(12 + payload.length);
  const v = new DataView(chunk.buffer);
  v.setUint32(0, payload.length);
  chunk.set(new TextEncoder().encode(type), 4);
  chunk.set(payload, 8);
  v.setUint32(8 + payload.length, crc32(chunk.subarray(4, 8 + payload.length)));
  const at = 8 + 25; // signature + IHDR chunk
  return new Uint8Array([...png.subarray(0, at), ...chunk, ...png.subarray(at)]);
}

/** Insert an APP1 Exif segment right after a JPEG's SOI. */
function withExif(jpeg: Uint8Array, tiff: Uint8Array): Uint8Array {
  const body = new Uint8Array([...new TextEncoder().encode("Exif\0\0"), ...tiff]);
  const seg = new Uint8Array([0xff, 0xe1, (body.length + 2) >> 8, (body.length + 2) & 255]);
  return new Uint8Array([...jpeg.subarray(0, 2), ...seg, ...body, ...jpeg.subarray(2)]);
}

// Independent definitions of the EXIF orientations from three elementary moves.
const mirror = (im: RgbImage): RgbImage =>
  remap(im, im.width, im.height, (x, y) => [im.width - 1 - x, y]);
const flip = (im: RgbImage): RgbImage =>
  remap(im, im.width, im.height, (x, y) => [x, im.height - 1 - y]);
const transpose = (im: RgbImage): RgbImage => remap(im, im.height, im.width, (x, y) => [y, x]);

function remap(
  im: RgbImage,
  w: number,
  h: number,
  src: (x: number, y: number) => [number, number],
): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const [sx, sy] = src(x, y);
      data.set(
        im.data.subarray((sy * im.width + sx) * 3, (sy * im.width + sx) * 3 + 3),
        (y * w + x) * 3,
      );
    }
  }
  return { width: w, height: h, data };
}

const EXPECTED_ORIENTATION: Record<number, (im: RgbImage) => RgbImage> = {
  1: (im) => im,
  2: mirror,
  3: (im) => flip(mirror(im)),
  4: flip,
  5: transpose,
  6: (im) => mirror(transpose(im)), // 90° clockwise
  7: (im) => flip(mirror(transpose(im))),
  8: (im) => flip(transpose(im)), // 90° counter-clockwise
};

Deno.test("PNG RGB decodes exactly", async () => {
  const img = rgbImage(13, 7);
  const out = await decodeImage(encodeRgbPng(img), "rgb.png");
  assert.equal(out.width, 13);
  assert.equal(out.height, 7);
  assert.deepEqual(out.data, img.data);
});

Deno.test("PNG RGBA drops alpha without compositing, as PIL convert('RGB')", async () => {
  const rgba = pattern(5, 4, 4);
  for (let i = 3; i < rgba.length; i += 8) rgba[i] = 0; // fully transparent pixels keep their RGB
  const out = await decodeImage(
    encodePng({ width: 5, height: 4, data: rgba, channels: 4, depth: 8 }),
    "a.png",
  );
  const rgb = rgba.filter((_, i) => i % 4 !== 3);
  assert.deepEqual(out.data, rgb);
});

Deno.test("PNG gray, gray+alpha and low bit depths replicate and scale like PIL", async () => {
  const gray = pattern(6, 3, 1);
  const g = await decodeImage(
    encodePng({ width: 6, height: 3, data: gray, channels: 1, depth: 8 }),
    "g.png",
  );
  assert.deepEqual(g.data, Uint8Array.from([...gray].flatMap((v) => [v, v, v])));
  const ga = pattern(6, 3, 2);
  const la = await decodeImage(
    encodePng({ width: 6, height: 3, data: ga, channels: 2, depth: 8 }),
    "la.png",
  );
  assert.deepEqual(
    la.data,
    Uint8Array.from([...ga].filter((_, i) => i % 2 === 0).flatMap((v) => [v, v, v])),
  );
  for (const depth of [1, 2, 4] as const) {
    const w = 11, h = 2, max = (1 << depth) - 1;
    const values = Array.from({ length: w * h }, (_, i) => (i * 5) % (max + 1));
    const rowBytes = Math.ceil((w * depth) / 8);
    const packed = new Uint8Array(rowBytes * h);
    values.forEach((v, i) => {
      const y = Math.floor(i / w), bit = (i % w) * depth;
      packed[y * rowBytes + (bit >> 3)] |= v << (8 - depth - (bit & 7));
    });
    const out = await decodeImage(
      encodePng({ width: w, height: h, data: packed, channels: 1, depth }),
      `g${depth}.png`,
    );
    assert.deepEqual(
      out.data,
      Uint8Array.from(values.flatMap((v) => Array(3).fill(Math.round((v * 255) / max)))),
      `depth ${depth}`,
    );
  }
});

Deno.test("PNG palette looks colours up", async () => {
  const palette = [[200, 10, 20], [0, 255, 0], [5, 6, 7]];
  const idx = new Uint8Array([0, 1, 2, 1, 0, 2]);
  const out = await decodeImage(
    encodePng({ width: 3, height: 2, data: idx, depth: 8, channels: 1, palette }),
    "p.png",
  );
  assert.deepEqual(out.data, Uint8Array.from([...idx].flatMap((i) => palette[i])));
});

Deno.test("16-bit PNG: colour keeps the high byte, gray clamps at 255 (PIL I;16 → RGB)", async () => {
  const rgb16 = Uint16Array.from({ length: 4 * 3 }, (_, i) => i * 5471);
  const c = await decodeImage(
    encodePng({ width: 4, height: 1, data: rgb16, channels: 3, depth: 16 }),
    "c16.png",
  );
  assert.deepEqual(c.data, Uint8Array.from(rgb16, (v) => v >> 8));
  const gray16 = Uint16Array.from([0, 100, 255, 256, 1000, 65535]);
  const g = await decodeImage(
    encodePng({ width: 6, height: 1, data: gray16, channels: 1, depth: 16 }),
    "g16.png",
  );
  assert.deepEqual(
    g.data,
    Uint8Array.from([...gray16].flatMap((v) => Array(3).fill(Math.min(v, 255)))),
  );
});

Deno.test("JPEG decodes close to the encoded pixels", async () => {
  const img = rgbImage(40, 24);
  const out = await decodeImage(encodeJpeg(img, 100), "x.jpg");
  assert.equal(out.width, 40);
  assert.equal(out.height, 24);
  let err = 0;
  for (let i = 0; i < img.data.length; i++) err += Math.abs(img.data[i] - out.data[i]);
  assert.ok(err / img.data.length < 25, `mean JPEG error ${err / img.data.length}`); // 4:2:0
});

Deno.test("EXIF orientation 1..8 from a PNG eXIf chunk matches exif_transpose", async () => {
  const img = rgbImage(5, 3);
  const png = encodeRgbPng(img);
  const plain = await decodeImage(png, "plain.png");
  for (let o = 1; o <= 8; o++) {
    const out = await decodeImage(withPngChunk(png, "eXIf", exifOrientation(o)), `o${o}.png`);
    assert.deepEqual(out, EXPECTED_ORIENTATION[o](plain), `orientation ${o}`);
    assert.deepEqual(applyOrientation(plain, o), out);
  }
  // Orientation 6 means "rotate 90° clockwise to view": the stored top-left lands top-right.
  const six = await decodeImage(withPngChunk(png, "eXIf", exifOrientation(6)), "six.png");
  assert.deepEqual(
    six.data.subarray((six.width - 1) * 3, six.width * 3),
    plain.data.subarray(0, 3),
  );
});

Deno.test("EXIF orientation from a JPEG APP1 segment", async () => {
  const jpeg = encodeJpeg(rgbImage(16, 8));
  const plain = await decodeImage(jpeg, "plain.jpg");
  for (const o of [3, 6, 8]) {
    const out = await decodeImage(withExif(jpeg, exifOrientation(o)), `o${o}.jpg`);
    assert.deepEqual(out, EXPECTED_ORIENTATION[o](plain), `orientation ${o}`);
  }
});

Deno.test("truncated and corrupt files are BAD_IMAGE naming the file", async () => {
  const jpeg = encodeJpeg(rgbImage(32, 32));
  for (const keep of [jpeg.length - 2, Math.floor(jpeg.length * 0.6), 300]) {
    await assertRejectsCode(
      decodeImage(jpeg.subarray(0, keep), "cut.jpg"),
      "BAD_IMAGE",
      "cut\\.jpg",
      "truncated",
    );
  }
  const png = encodeRgbPng(rgbImage(32, 32));
  await assertRejectsCode(
    decodeImage(png.subarray(0, png.length - 40), "cut.png"),
    "BAD_IMAGE",
    "cut\\.png",
  );
  await assertRejectsCode(decodeImage(png.subarray(0, 20), "head.png"), "BAD_IMAGE", "truncated");
  await assertRejectsCode(
    decodeImage(new TextEncoder().encode("hello, world"), "a.txt"),
    "BAD_IMAGE",
    "a\\.txt",
    "not an image",
  );
  await assertRejectsCode(decodeImage(new Uint8Array(), "empty.png"), "BAD_IMAGE", "empty");
  const webp = new TextEncoder().encode("RIFF\x10\0\0\0WEBPVP8 ");
  await assertRejectsCode(decodeImage(webp, "x.webp"), "BAD_IMAGE", "WebP");
});

Deno.test("header size checks: 0×0 is BAD_IMAGE, too many pixels IMAGE_TOO_LARGE", async () => {
  const png = encodeRgbPng(rgbImage(4, 4));
  const withSize = (w: number, h: number) => {
    const b = png.slice();
    new DataView(b.buffer).setUint32(16, w);
    new DataView(b.buffer).setUint32(20, h);
    return b;
  };
  await assertRejectsCode(
    decodeImage(withSize(0, 0), "zero.png"),
    "BAD_IMAGE",
    "zero\\.png",
    "no pixels",
  );
  // 100000² pixels would need 30 GB: refused from the header alone.
  await assertRejectsCode(
    decodeImage(withSize(100000, 100000), "huge.png"),
    "IMAGE_TOO_LARGE",
    "100000×100000",
    "maxPixels",
  );
  await assertRejectsCode(
    decodeImage(png, "small.png", { maxPixels: 15 }),
    "IMAGE_TOO_LARGE",
    "16 pixels",
  );
  assert.equal((await decodeImage(png, "ok.png", { maxPixels: 16 })).width, 4);
  const jpeg = encodeJpeg(rgbImage(8, 8));
  await assertRejectsCode(decodeImage(jpeg, "s.jpg", { maxPixels: 63 }), "IMAGE_TOO_LARGE", "8×8");
});

Deno.test("maxPixels NaN, infinite, negative, fractional or not a number is BAD_OPTION", async () => {
  const png = encodePng({ width: 4, height: 4, data: new Uint8Array(48), channels: 3 });
  for (const maxPixels of [NaN, Infinity, -Infinity, -1, 0, 2.5, "16"]) {
    await assertRejectsCode(
      decodeImage(png, "p.png", { maxPixels: maxPixels as number }),
      "BAD_OPTION",
      "maxPixels",
      String(maxPixels),
    );
  }
});

Deno.test("loadImage reads files and names a missing one", async () => {
  const fixture = await loadImage(new URL("pattern.png", FIXTURES).pathname);
  const bytes = await Deno.readFile(new URL("pattern.png", FIXTURES));
  assert.deepEqual(fixture, await decodeImage(bytes, "pattern.png"));
  await assert.rejects(loadImage("/nonexistent/dir/cat.jpg"), (e: unknown) => {
    assert.ok(e instanceof WebcapError);
    assert.equal(e.code, "MISSING_FILE");
    assert.match(e.message, /\/nonexistent\/dir\/cat\.jpg/);
    return true;
  });
});
