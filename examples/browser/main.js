/**
 * The browser demo: loads the webcap bundle (`../../dist/webcap.js`, from `deno task bundle`),
 * a model from the URL or hub id in the page with the chosen weights (f32, f16, q8 or q4: a
 * quantized folder from `deno task quantize` is read as stored), and captions the chosen image
 * file or a generated picture, printing captions and timings.
 *
 * For scripting (the headless test drives it): `globalThis.webcapDemo` holds `state` ("idle",
 * "running", "done" or "error"), `error`, `adapter` (and `hasF16`: whether it has
 * `shader-f16`), the last `image` (bytes or `ImageData`),
 * its `captions` and the `timings` in milliseconds.
 * @module
 */

const BUNDLE = new URL("../../dist/webcap.js", import.meta.url).href;
const $ = (id) => document.getElementById(id);

const demo = {
  state: "idle",
  error: undefined,
  adapter: undefined,
  hasF16: undefined,
  image: undefined,
  captions: undefined,
  timings: {},
};
globalThis.webcapDemo = demo;

/** The loaded model: the string it was loaded from, its weights dtype and its captioner. */
let loaded;

function log(line) {
  $("out").textContent += `${line}\n`;
}

function ms(t) {
  return `${t.toFixed(0)} ms`;
}

/** Draw a fixed picture (sky, sun, sea) on `canvas` and return its pixels as `ImageData`. */
function drawPicture(canvas) {
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const w = canvas.width = 192, h = canvas.height = 144, horizon = Math.round(h * 0.6);
  const sky = ctx.createLinearGradient(0, 0, 0, horizon);
  sky.addColorStop(0, "#1d4f91");
  sky.addColorStop(1, "#f2b36b");
  ctx.fillStyle = sky;
  ctx.fillRect(0, 0, w, horizon);
  ctx.fillStyle = "#ffd84a";
  ctx.beginPath();
  ctx.arc(w * 0.7, horizon - 10, 18, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillStyle = "#13406b";
  ctx.fillRect(0, horizon, w, h - horizon);
  ctx.fillStyle = "#4f86b8";
  for (let y = horizon + 4; y < h; y += 7) ctx.fillRect(20 + (y * 3) % 40, y, 90, 2);
  return ctx.getImageData(0, 0, w, h);
}

/** Show an image file on `canvas`. */
async function drawFile(canvas, file) {
  const bitmap = await createImageBitmap(file);
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
}

async function loadBundle() {
  try {
    return await import(BUNDLE);
  } catch (e) {
    throw new Error(`cannot load ${BUNDLE} (${e.message}); run "deno task bundle" first`);
  }
}

async function captionerFor(lib, model, dtype) {
  if (loaded?.model === model && loaded.dtype === dtype) return loaded.captioner;
  loaded?.captioner.dispose();
  loaded = undefined;
  const t0 = performance.now();
  const captioner = await lib.Captioner.fromPretrained(model, { dtype });
  demo.timings.load = performance.now() - t0;
  demo.adapter = captioner.gpu.adapterName;
  demo.hasF16 = captioner.gpu.hasF16;
  log(
    `loaded ${captioner.dir} (${dtype}) in ${ms(demo.timings.load)} ` +
      `(WebGPU adapter: ${demo.adapter})`,
  );
  loaded = { model, dtype, captioner };
  return captioner;
}

async function run() {
  demo.state = "running";
  demo.error = demo.captions = undefined;
  demo.timings = {};
  $("out").textContent = "";
  try {
    const lib = await loadBundle();
    const captioner = await captionerFor(lib, $("model").value.trim(), $("dtype").value);
    const file = $("file").files[0];
    if (file) await drawFile($("picture"), file);
    const image = file ? new Uint8Array(await file.arrayBuffer()) : drawPicture($("picture"));
    demo.image = image;
    const options = {
      numBeams: Number($("num-beams").value),
      maxNewTokens: Number($("max-new-tokens").value),
    };
    const t0 = performance.now();
    const [result] = await captioner.caption(image, options);
    demo.timings.caption = performance.now() - t0;
    if (result.error) throw result.error;
    demo.captions = result.captions;
    for (const c of result.captions) {
      log(
        `${JSON.stringify(c.text)}  score ${c.score.toFixed(3)}  tokens [${c.tokens.join(", ")}]`,
      );
    }
    const tokens = result.captions[0]?.tokens.length ?? 0;
    log(
      `captioned ${file ? file.name : "the generated picture"} in ${ms(demo.timings.caption)} ` +
        `(${tokens} tokens, ${(demo.timings.caption / Math.max(tokens, 1)).toFixed(1)} ms/token)`,
    );
    demo.state = "done";
  } catch (e) {
    demo.error = e?.code ? `${e.code}: ${e.message}` : String(e?.message ?? e);
    log(`error: ${demo.error}`);
    demo.state = "error";
  }
}

$("run").addEventListener("click", run);
$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) drawFile($("picture"), file).catch((e) => log(`cannot show ${file.name}: ${e}`));
  else drawPicture($("picture"));
});
drawPicture($("picture"));
