// The WebAssembly decoders (embedded package files, recovery after a libjpeg error exit), the
// CMYK path's lossless coefficient transcoding, and webcap's own BMP and GIF decoders against
// files written here.
import assert from "node:assert/strict";
import { decodeImage } from "../../src/image/decode.ts";
import { readCoefficients, writeJpeg } from "../../src/image/jpeg_cmyk.ts";
import { jpegDecoder } from "../../src/image/wasm_codecs.ts";
import { WebcapError } from "../../src/errors.ts";
import { fixture } from "../util.ts";
import { EMBEDDED, packageWasm } from "./embedded_wasm.ts";

const IMAGES = fixture("images/");

Deno.test("the embedded .wasm files are the npm packages' own bytes", async () => {
  for (const e of EMBEDDED) {
    const mod = await import(new URL(e.module, new URL("./", import.meta.url)).href);
    const embedded = Uint8Array.from(atob(mod[e.name]), (c) => c.charCodeAt(0));
    assert.deepEqual(embedded, await packageWasm(e.pkg), `${e.module}: regenerate it`);
  }
});

Deno.test("a libjpeg error exit is a named BAD_IMAGE and the next JPEG still decodes", async () => {
  const good = await Deno.readFile(`${IMAGES}baseline-420.jpg`);
  const want = await decodeImage(good, "good.jpg");
  const bad = good.slice();
  const sof = bad.findIndex((b, i) => b === 0xff && bad[i + 1] === 0xc0);
  bad[sof + 4] = 12; // 12-bit samples: this libjpeg build refuses them
  await assert.rejects(decodeImage(bad, "twelve.jpg"), (e: unknown) => {
    assert.ok(e instanceof WebcapError && e.code === "BAD_IMAGE", String(e));
    assert.match(e.message, /twelve\.jpg.*libjpeg: .*precision 12/);
    return true;
  });
  assert.deepEqual(await decodeImage(good, "again.jpg"), want);
});

Deno.test("coefficients re-written as a sequential JPEG decode to the same pixels", async () => {
  for (const name of ["progressive-420.jpg", "baseline-422.jpg", "odd-size-411.jpg"]) {
    const bytes = await Deno.readFile(IMAGES + name);
    const f = readCoefficients(bytes);
    const again = writeJpeg(f.width, f.height, f.comps, f.qt, 1);
    const [a, b] = [await jpegDecoder.decode(bytes), await jpegDecoder.decode(again)];
    assert.ok(typeof a !== "string" && typeof b !== "string", name);
    assert.deepEqual(b.data, a.data, name);
  }
});

// ---------------------------------------------------------------------------------------------
// BMP: files written here, expected pixels from Pillow's rules (bmp.ts).

const le = (v: number, n: number) => Array.from({ length: n }, (_, i) => (v >>> (8 * i)) & 255);

/** A BMP with a 40-byte header: `rows` are the stored rows (file order), unpadded. */
function bmpFile(o: {
  width: number;
  height: number;
  bits: number;
  rows: number[][];
  compression?: number;
  palette?: number[][];
  topDown?: boolean;
}): Uint8Array {
  const pal = (o.palette ?? []).flatMap(([r, g, b]) => [b, g, r, 0]);
  const pixels = o.compression
    ? o.rows.flat()
    : o.rows.flatMap((r) => [...r, ...Array((4 - (r.length % 4)) % 4).fill(0)]);
  const offset = 54 + pal.length;
  return Uint8Array.from([
    ..."BM".split("").map((c) => c.charCodeAt(0)),
    ...le(offset + pixels.length, 4),
    0,
    0,
    0,
    0,
    ...le(offset, 4),
    ...le(40, 4),
    ...le(o.width, 4),
    ...le(o.topDown ? -o.height : o.height, 4),
    ...le(1, 2),
    ...le(o.bits, 2),
    ...le(o.compression ?? 0, 4),
    ...le(pixels.length, 4),
    ...le(2835, 4),
    ...le(2835, 4),
    ...le(o.palette?.length ?? 0, 4),
    ...le(0, 4),
    ...pal,
    ...pixels,
  ]);
}

async function rgb(bytes: Uint8Array, name: string): Promise<number[][]> {
  const img = await decodeImage(bytes, name);
  return Array.from(
    { length: img.width * img.height },
    (_, i) => [...img.data.subarray(3 * i, 3 * i + 3)],
  );
}

Deno.test("BMP 24/32/16-bit, bottom-up and top-down, as Pillow reads them", async () => {
  const px = [[10, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120]]; // 2×2, top row first
  const bgr = (p: number[]) => [p[2], p[1], p[0]];
  const bottomUp = [[...bgr(px[2]), ...bgr(px[3])], [...bgr(px[0]), ...bgr(px[1])]];
  assert.deepEqual(
    await rgb(bmpFile({ width: 2, height: 2, bits: 24, rows: bottomUp }), "24.bmp"),
    px,
  );
  const topDown = [[...bgr(px[0]), 0, ...bgr(px[1]), 0], [...bgr(px[2]), 0, ...bgr(px[3]), 0]];
  assert.deepEqual(
    await rgb(bmpFile({ width: 2, height: 2, bits: 32, rows: topDown, topDown: true }), "32.bmp"),
    px,
  );
  const v = (r: number, g: number, b: number) => le((r << 10) | (g << 5) | b, 2);
  const b16 = bmpFile({
    width: 2,
    height: 1,
    bits: 16,
    rows: [[...v(31, 0, 1), ...v(15, 16, 30)]],
  });
  const f = (x: number) => Math.trunc((x * 255) / 31);
  assert.deepEqual(await rgb(b16, "16.bmp"), [[255, 0, f(1)], [f(15), f(16), f(30)]]);
});

Deno.test("BMP palettes (8/4/1-bit, short palette → gray ramp) and RLE8/RLE4", async () => {
  const palette = [[200, 0, 0], [0, 200, 0], [0, 0, 200]];
  const look = (i: number) => palette[i] ?? [i, i, i];
  const b8 = bmpFile({ width: 4, height: 1, bits: 8, palette, rows: [[0, 1, 2, 77]] });
  assert.deepEqual(await rgb(b8, "8.bmp"), [0, 1, 2, 77].map(look));
  const b4 = bmpFile({ width: 3, height: 1, bits: 4, palette, rows: [[0x21, 0x90]] });
  assert.deepEqual(await rgb(b4, "4.bmp"), [2, 1, 9].map(look));
  const b1 = bmpFile({ width: 3, height: 1, bits: 1, palette, rows: [[0b10100000]] });
  assert.deepEqual(await rgb(b1, "1.bmp"), [1, 0, 1].map(look));
  // RLE8, 4×2 stored bottom-up: row 0 (bottom) = run of 3 × index 1 then end of line;
  // row 1 = absolute run [2, 0, 1] (padded to a word), one more pixel, end of bitmap.
  const rle8 = [3, 1, 0, 0, 0, 3, 2, 0, 1, 0, 1, 2, 0, 1];
  const r8 = bmpFile({ width: 4, height: 2, bits: 8, palette, compression: 1, rows: [rle8] });
  assert.deepEqual(await rgb(r8, "rle8.bmp"), [2, 0, 1, 2, 1, 1, 1, 0].map(look));
  // RLE4, 4×1: run of 4 alternating 2,1.
  const r4 = bmpFile({
    width: 4,
    height: 1,
    bits: 4,
    palette,
    compression: 2,
    rows: [[4, 0x21, 0, 1]],
  });
  assert.deepEqual(await rgb(r4, "rle4.bmp"), [2, 1, 2, 1].map(look));
  const cut = bmpFile({
    width: 4,
    height: 2,
    bits: 8,
    palette,
    compression: 1,
    rows: [[3, 1, 0, 1]],
  });
  await assert.rejects(decodeImage(cut, "cut.bmp"), /cut\.bmp.*not enough image data/);
});

// ---------------------------------------------------------------------------------------------
// GIF: files written here (uncompressed LZW: literals, a clear code before the table grows).

function lzwLiterals(indices: number[], minCodeSize: number): Uint8Array {
  const clear = 1 << minCodeSize, size = minCodeSize + 1, out: number[] = [];
  let acc = 0, n = 0;
  const put = (code: number) => {
    acc |= code << n;
    for (n += size; n >= 8; n -= 8, acc >>= 8) out.push(acc & 255);
  };
  indices.forEach((v, i) => {
    if (i % (clear - 2) === 0) put(clear);
    put(v);
  });
  put(clear + 1);
  if (n > 0) out.push(acc & 255);
  const blocks: number[] = [];
  for (let i = 0; i < out.length; i += 255) {
    blocks.push(Math.min(255, out.length - i), ...out.slice(i, i + 255));
  }
  return Uint8Array.from([minCodeSize, ...blocks, 0]);
}

function gifFile(o: {
  screen: [number, number];
  frame: [number, number, number, number];
  indices: number[];
  global?: number[][];
  local?: number[][];
  transparent?: number;
  interlaced?: boolean;
}): Uint8Array {
  const table = (p: number[][]) => {
    const bits = Math.max(1, Math.ceil(Math.log2(p.length)));
    return {
      flag: 0x80 | (bits - 1),
      bytes: [...p, ...Array((1 << bits) - p.length).fill([0, 0, 0])].flat(),
    };
  };
  const g = o.global ? table(o.global) : undefined, l = o.local ? table(o.local) : undefined;
  const gce = o.transparent === undefined ? [] : [0x21, 0xf9, 4, 1, 0, 0, o.transparent, 0];
  return Uint8Array.from([
    ..."GIF89a".split("").map((c) => c.charCodeAt(0)),
    ...le(o.screen[0], 2),
    ...le(o.screen[1], 2),
    g?.flag ?? 0,
    0,
    0,
    ...(g?.bytes ?? []),
    ...gce,
    0x2c,
    ...o.frame.flatMap((v) => le(v, 2)),
    (l?.flag ?? 0) | (o.interlaced ? 0x40 : 0),
    ...(l?.bytes ?? []),
    ...lzwLiterals(o.indices, 8),
    0x3b,
  ]);
}

Deno.test("GIF first frame: canvas fill, transparent index kept, local palette, interlace", async () => {
  const global = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]];
  // 2×2 frame at (1, 1) on a 3×3 screen; outside it the transparent index 2 (its colour).
  const gif = gifFile({
    screen: [3, 3],
    frame: [1, 1, 2, 2],
    indices: [1, 2, 3, 9],
    global,
    transparent: 2,
  });
  const t = global[2], look = (i: number) => global[i] ?? [i, i, i];
  assert.deepEqual(await rgb(gif, "t.gif"), [
    t,
    t,
    t,
    t,
    ...[1, 2].map(look),
    t,
    ...[3, 9].map(look),
  ]);
  // No transparency: index 0 outside the frame; a local palette wins over the global one.
  const local = [[9, 9, 9], [8, 8, 8]];
  const l = gifFile({ screen: [2, 1], frame: [1, 0, 1, 1], indices: [1], global, local });
  assert.deepEqual(await rgb(l, "l.gif"), [local[0], local[1]]);
  // Interlaced 1×5: stored rows 0, 4, 2, 1, 3.
  const i = gifFile({
    screen: [1, 5],
    frame: [0, 0, 1, 5],
    indices: [0, 1, 2, 3, 0],
    global,
    interlaced: true,
  });
  assert.deepEqual(await rgb(i, "i.gif"), [0, 3, 2, 0, 1].map(look));
  // A frame past the screen grows the canvas, as Pillow does.
  const big = gifFile({ screen: [1, 1], frame: [1, 0, 1, 1], indices: [3], global });
  assert.deepEqual(await rgb(big, "big.gif"), [global[0], global[3]]);
  const cut = gif.slice(0, gif.length - 8);
  await assert.rejects(decodeImage(cut, "cut.gif"), /cut\.gif.*truncated/);
});
