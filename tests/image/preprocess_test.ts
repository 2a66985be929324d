// Preprocessing against transformers 5.17's pixel_values (torchvision backend, libjpeg-turbo
// decode) in ../shared/fixtures/hf/preprocess, plus unit checks of resizing and config parsing.
//
// Every input is bit-exact (max abs error 0; the test allows 1e-6), every processor: decoding
// is libjpeg-turbo's / Pillow's to the pixel (see decode.ts), and resizing and the fused float32
// normalisation reproduce torchvision's uint8 kernels exactly. (With jpeg-js's IDCT, before
// webcap decoded JPEG with libjpeg-turbo, JPEG inputs were up to 6 uint8 levels off.)
import assert from "node:assert/strict";
import { loadImage, type RgbImage } from "../../src/image/decode.ts";
import { preprocessorFromConfig, resizeRgb } from "../../src/image/preprocess.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { WebcapError } from "../../src/errors.ts";
import { assertCode } from "../util.ts";

const HF = new URL("../../../shared/fixtures/hf/", import.meta.url);
const PRE = new URL("preprocess/", HF);

/** processors.json stores tuples as Python reprs, "(0.5, 0.5, 0.5)": turn them into arrays. */
function jsonConfig(config: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(config).map(([k, v]) => [
      k,
      typeof v === "string" && /^\(.*\)$/.test(v) ? JSON.parse(`[${v.slice(1, -1)}]`) : v,
    ]),
  );
}

const processors: Record<string, { config: Record<string, unknown>; shape: number[] }> = JSON
  .parse(await Deno.readTextFile(new URL("processors.json", PRE)));
const reference = await openSafetensors(new URL("reference.safetensors", PRE).pathname);

for (const [key, entry] of Object.entries(processors)) {
  const file = key.slice(key.indexOf(":") + 1);
  Deno.test(
    `preprocess ${key} matches transformers (bit-exact, ≤ 1e-6)`,
    async () => {
      const config = jsonConfig(entry.config);
      const pre = preprocessorFromConfig(config, `processors.json ${key}`);
      const shape = reference.info(key).shape;
      assert.deepEqual([1, 3, pre.height, pre.width], shape);
      const out = pre.apply(await loadImage(new URL(file, PRE).pathname));
      const ref = await reference.readF32(key);
      assert.equal(out.length, ref.length);
      const std = config.image_std as number[];
      const plane = pre.height * pre.width;
      let maxAbs = 0, maxLevels = 0, sumLevels = 0;
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(out[i] - ref[i]);
        const lv = d * std[Math.floor(i / plane)] * 255;
        maxAbs = Math.max(maxAbs, d);
        maxLevels = Math.max(maxLevels, lv);
        sumLevels += lv;
      }
      const meanLevels = sumLevels / ref.length;
      console.log(
        `  ${key}: max abs error ${maxAbs.toExponential(3)} (${maxLevels.toFixed(2)} levels), ` +
          `mean ${meanLevels.toFixed(3)} levels`,
      );
      assert.ok(maxAbs <= 1e-6, `max abs error ${maxAbs}`);
    },
  );
}

const cubicFilter = (x: number) => {
  x = Math.abs(x); // Keys, a = -0.5
  return x < 1
    ? 1.5 * x ** 3 - 2.5 * x ** 2 + 1
    : x < 2
    ? -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2
    : 0;
};
const triangleFilter = (x: number) => Math.max(0, 1 - Math.abs(x));

/** Antialiased 1-D resampling in float64: the kernel widens by the downscale factor. */
function resample1d(line: number[], m: number, filter: (x: number) => number): number[] {
  const n = line.length, scale = n / m, widen = Math.max(scale, 1);
  return Array.from({ length: m }, (_, i) => {
    const center = (i + 0.5) * scale;
    let acc = 0, total = 0;
    for (let j = 0; j < n; j++) {
      const w = filter((j + 0.5 - center) / widen);
      acc += w * line[j];
      total += w;
    }
    return Math.min(255, Math.max(0, Math.round(acc / total)));
  });
}

/** Rows, then columns, rounding to uint8 in between (the PIL model). */
function referenceResize(img: RgbImage, outW: number, outH: number, filter: (x: number) => number) {
  const px = (d: ArrayLike<number>, w: number, x: number, y: number, c: number) =>
    d[(y * w + x) * 3 + c];
  const mid = new Array(outW * img.height * 3);
  for (let y = 0; y < img.height; y++) {
    for (let c = 0; c < 3; c++) {
      const row = Array.from({ length: img.width }, (_, x) => px(img.data, img.width, x, y, c));
      resample1d(row, outW, filter).forEach((v, x) => (mid[(y * outW + x) * 3 + c] = v));
    }
  }
  const out = new Uint8Array(outW * outH * 3);
  for (let x = 0; x < outW; x++) {
    for (let c = 0; c < 3; c++) {
      const col = Array.from({ length: img.height }, (_, y) => px(mid, outW, x, y, c));
      resample1d(col, outH, filter).forEach((v, y) => (out[(y * outW + x) * 3 + c] = v));
    }
  }
  return out;
}

Deno.test("resizeRgb agrees with a float64 antialiased reference within 2 levels", () => {
  const w = 23, h = 17;
  const data = Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 97 + (i % 7) * 31) % 256);
  const img = { width: w, height: h, data };
  for (const [ow, oh] of [[9, 5], [40, 31], [23, 8], [7, 17]]) {
    for (const [resample, filter] of [[2, triangleFilter], [3, cubicFilter]] as const) {
      const got = resizeRgb(img, ow, oh, resample);
      const want = referenceResize(img, ow, oh, filter);
      let max = 0;
      for (let i = 0; i < want.length; i++) max = Math.max(max, Math.abs(got.data[i] - want[i]));
      assert.ok(max <= 2, `${w}×${h} → ${ow}×${oh} resample ${resample}: ${max} levels`);
    }
  }
});

Deno.test("nearest is torchvision's NEAREST_EXACT; lanczos keeps a constant image constant", () => {
  // Columns hold 0, 10, 20, 30.
  const data = Uint8Array.from({ length: 4 * 3 }, (_, i) => Math.floor(i / 3) * 10);
  const out = resizeRgb({ width: 4, height: 1, data }, 2, 1, 0);
  assert.deepEqual([...out.data], [10, 10, 10, 30, 30, 30]); // floor((i + 0.5) · 2) = 1, 3
  const flat = { width: 9, height: 6, data: new Uint8Array(9 * 6 * 3).fill(77) };
  for (const [w, h] of [[4, 3], [20, 11]]) {
    assert.ok(resizeRgb(flat, w, h, 1).data.every((v) => v === 77));
  }
});

Deno.test("center crop larger than the image pads with zeros (torchvision backend)", () => {
  const config = {
    image_processor_type: "CLIPImageProcessor",
    size: { shortest_edge: 4 },
    crop_size: { height: 6, width: 6 },
  };
  const pre = preprocessorFromConfig(config, "crop");
  const img = { width: 4, height: 4, data: new Uint8Array(4 * 4 * 3).fill(200) };
  const out = pre.apply(img);
  const [mean, std] = [[0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]];
  for (let c = 0; c < 3; c++) {
    const at = (y: number, x: number) => out[c * 36 + y * 6 + x];
    assert.ok(
      Math.abs(at(0, 0) - (0 - mean[c]) / std[c]) < 1e-5,
      "padding is zero before normalising",
    );
    assert.ok(Math.abs(at(5, 5) - (0 - mean[c]) / std[c]) < 1e-5);
    assert.ok(Math.abs(at(1, 1) - (200 / 255 - mean[c]) / std[c]) < 1e-5, "image starts at (1, 1)");
    assert.ok(Math.abs(at(4, 4) - (200 / 255 - mean[c]) / std[c]) < 1e-5);
  }
});

Deno.test("every model folder's preprocessor_config.json gives its stated size", async () => {
  for (const dir of ["vit-gpt2", "blip", "clipcap/clip-vision"]) {
    const path = new URL(`${dir}/preprocessor_config.json`, HF);
    const config = JSON.parse(await Deno.readTextFile(path));
    const pre = preprocessorFromConfig(config, path.pathname);
    const size = config.do_center_crop ? config.crop_size : config.size;
    assert.deepEqual([pre.height, pre.width], [size.height, size.width], dir);
    const out = pre.apply({ width: 50, height: 30, data: new Uint8Array(50 * 30 * 3).fill(9) });
    assert.equal(out.length, 3 * pre.height * pre.width);
  }
});

Deno.test("legacy integer sizes, class defaults and rescale/normalize switches", () => {
  const vit = preprocessorFromConfig(
    { feature_extractor_type: "ViTFeatureExtractor", size: 7 },
    "v",
  );
  assert.deepEqual([vit.height, vit.width], [7, 7]);
  const clip = preprocessorFromConfig(
    { feature_extractor_type: "CLIPFeatureExtractor", size: 8, crop_size: 6, do_center_crop: true },
    "c",
  );
  assert.deepEqual([clip.height, clip.width], [6, 6]);
  const blip = preprocessorFromConfig({ image_processor_type: "BlipImageProcessorFast" }, "b");
  assert.deepEqual([blip.height, blip.width], [384, 384]); // transformers' class default
  const img = { width: 2, height: 1, data: Uint8Array.from([0, 51, 255, 102, 153, 204]) };
  const base = { image_processor_type: "ViTImageProcessor", size: { height: 1, width: 2 } };
  const raw = preprocessorFromConfig({ ...base, do_rescale: false, do_normalize: false }, "r");
  assert.deepEqual([...raw.apply(img)], [0, 102, 51, 153, 255, 204]);
  const scaled = preprocessorFromConfig({ ...base, do_normalize: false }, "s");
  const want = [0, 102, 51, 153, 255, 204].map((v) => v / 255);
  scaled.apply(img).forEach((v, i) =>
    assert.ok(Math.abs(v - want[i]) < 1e-7, `${v} vs ${want[i]}`)
  );
});

Deno.test("bad configs and images are rejected with the right code", () => {
  const bad = (config: object, ...mentions: string[]) =>
    assert.throws(() => preprocessorFromConfig(config, "cfg.json"), (e: unknown) => {
      assert.ok(e instanceof WebcapError);
      assert.equal(e.code, "BAD_CONFIG");
      for (const m of ["cfg\\.json", ...mentions]) assert.match(e.message, new RegExp(m));
      return true;
    });
  bad({ image_processor_type: "DetrImageProcessor" }, "DetrImageProcessor");
  bad({ image_processor_type: "ViTImageProcessor", resample: 4 }, "resample");
  bad({ image_processor_type: "CLIPImageProcessor", do_center_crop: false }, "center crop");
  bad({ image_processor_type: "ViTImageProcessor", image_mean: [0.5, 0.5] }, "image_mean");
  bad(
    { image_processor_type: "ViTImageProcessor", size: { height: 0, width: 3 } },
    "size\\.height",
  );
  const pre = preprocessorFromConfig({ image_processor_type: "ViTImageProcessor" }, "v");
  assert.throws(
    () => pre.apply({ width: 2, height: 2, data: new Uint8Array(5) }),
    (e: unknown) => e instanceof WebcapError && e.code === "BAD_IMAGE",
  );
});

Deno.test("image_std 0, non-finite mean/std/rescale and absurd sizes are BAD_CONFIG", () => {
  const vit = { image_processor_type: "ViTImageProcessor", size: 4 };
  assertCode(
    () => preprocessorFromConfig({ ...vit, image_std: 0 }, "p.json"),
    "BAD_CONFIG",
    "image_std",
  );
  assertCode(
    () => preprocessorFromConfig({ ...vit, image_std: [0.5, 0, 0.5] }, "p.json"),
    "BAD_CONFIG",
    "p\\.json",
    "image_std",
  );
  // without normalization the std divides nothing
  preprocessorFromConfig({ ...vit, image_std: 0, do_normalize: false }, "p.json");
  for (const x of [NaN, Infinity, JSON.parse("-1e999")]) {
    assertCode(
      () => preprocessorFromConfig({ ...vit, image_mean: x }, "p.json"),
      "BAD_CONFIG",
      "image_mean",
    );
    assertCode(
      () => preprocessorFromConfig({ ...vit, image_std: [1, x, 1] }, "p.json"),
      "BAD_CONFIG",
      "image_std",
    );
  }
  assertCode(
    () => preprocessorFromConfig({ ...vit, rescale_factor: Infinity }, "p.json"),
    "BAD_CONFIG",
    "rescale_factor",
  );
  assertCode(
    () => preprocessorFromConfig({ ...vit, size: 1e9 }, "p.json"),
    "BAD_CONFIG",
    "size",
    "16384",
  );
  const clip = { image_processor_type: "CLIPImageProcessor", crop_size: 2 };
  assertCode(
    () => preprocessorFromConfig({ ...clip, size: { shortest_edge: 2 ** 40 } }, "p.json"),
    "BAD_CONFIG",
    "size\\.shortest_edge",
  );
  assertCode(
    () => preprocessorFromConfig({ ...clip, crop_size: { height: 2 ** 31, width: 2 } }, "p.json"),
    "BAD_CONFIG",
    "crop_size\\.height",
  );
});

Deno.test("a shortest-edge resize too large to allocate is IMAGE_TOO_LARGE, not a RangeError", () => {
  const clip = preprocessorFromConfig(
    { image_processor_type: "CLIPImageProcessor", size: { shortest_edge: 4096 }, crop_size: 2 },
    "p.json",
  );
  const strip: RgbImage = { width: 1 << 16, height: 1, data: new Uint8Array(3 << 16) };
  assertCode(() => clip.apply(strip), "IMAGE_TOO_LARGE", "65536×1", "aspect");
});

Deno.test("fractional RGB width or height is BAD_IMAGE", () => {
  const pre = preprocessorFromConfig({ image_processor_type: "ViTImageProcessor", size: 2 }, "v");
  // 1.5 × 2 × 3 = 9 bytes: the length check alone passes
  assertCode(() => pre.apply({ width: 1.5, height: 2, data: new Uint8Array(9) }), "BAD_IMAGE");
});
