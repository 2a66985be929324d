/**
 * The library in a browser: bundle mod.ts (`deno bundle --platform=browser`), serve the demo page
 * and the fixture models, open the page in headless Chromium with WebGPU on SwiftShader (the CPU
 * Vulkan device Chromium ships), caption the vit-gpt2 fixture from its URL, and compare the
 * page's greedy tokens with those Deno's Captioner gives for the same images; then the same from
 * q8 and q4 folders written by `deno task quantize` (SwiftShader has no `shader-f16`: the F16
 * scales are read as u32 pairs, the F16 float tensors converted on the host).
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { Captioner, type ImageInput } from "../src/captioner/captioner.ts";
import { serveDemo } from "../examples/browser/serve.ts";
import { quantizeFolder } from "../examples/quantize.ts";
import type { WeightDtype } from "../src/nn/params.ts";
import { buildBundle, fixture, getGpu } from "./util.ts";

const CHROMIUM = "/usr/bin/chromium";
/** WebGPU on SwiftShader in headless Chromium, without a GPU or a sandbox (CI runs as root). */
const CHROMIUM_ARGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu-sandbox",
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-angle=swiftshader",
];
const MAX_NEW_TOKENS = 12;

interface DemoState {
  state: string;
  error?: string;
  adapter?: string;
  hasF16?: boolean;
  captions?: { tokens: number[] }[];
  timings: Record<string, number>;
}

async function requireChromium(): Promise<void> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    assert.fail(
      `${CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium; .ci/run does)`,
    );
  }
}

/** Press Caption and wait for the page to finish; the state it ends in. */
async function caption(page: Page, problems: string[]): Promise<DemoState> {
  await page.click("#run");
  await page.waitForFunction(
    () => ["done", "error"].includes((globalThis as { webcapDemo?: DemoState }).webcapDemo!.state),
    null,
    { timeout: 180_000 }, // SwiftShader on a loaded 2-core machine can take minutes
  );
  const demo = await page.evaluate(() => (globalThis as { webcapDemo?: DemoState }).webcapDemo!);
  assert.equal(demo.state, "done", `${demo.error}\n${problems.join("\n")}`);
  return demo;
}

/** The generated picture's `ImageData` as the page made it. */
async function pagePicture(page: Page): Promise<ImageInput> {
  const { width, height, data } = await page.evaluate(() => {
    const img = (globalThis as { webcapDemo?: { image: ImageData } }).webcapDemo!.image;
    return { width: img.width, height: img.height, data: Array.from(img.data) };
  });
  return { width, height, data: Uint8ClampedArray.from(data) };
}

/** Greedy tokens Deno's Captioner gives for each image (the model folder `dir` as `dtype`). */
async function denoTokens(
  images: ImageInput[],
  dir = fixture("hf/vit-gpt2"),
  dtype: WeightDtype = "f32",
): Promise<number[][]> {
  const captioner = await Captioner.fromPretrained(dir, { gpu: await getGpu(), dtype });
  try {
    const results = await captioner.caption(images, { maxNewTokens: MAX_NEW_TOKENS });
    return results.map((r) => {
      assert.equal(r.error, undefined, r.source);
      return r.captions[0].tokens;
    });
  } finally {
    captioner.dispose();
  }
}

/** The page captions the generated picture from quantized folder `/models/<dtype>/` as Deno does. */
async function captionQuantized(
  page: Page,
  problems: string[],
  picture: ImageInput,
  models: string,
  dtype: "q8" | "q4",
): Promise<void> {
  await page.fill("#model", `../../models/${dtype}/`);
  await page.selectOption("#dtype", dtype);
  const demo = await caption(page, problems);
  const [expected] = await denoTokens([picture], `${models}/${dtype}`, dtype);
  assert.deepEqual(demo.captions![0].tokens, expected, `${dtype} folder`);
  console.log(
    `${dtype} folder (shader-f16: ${demo.hasF16}): load ${demo.timings.load.toFixed(0)} ms, ` +
      `tokens [${expected}]`,
  );
}

Deno.test("browser: the demo page captions the fixture model from its URL as Deno does", async () => {
  await requireChromium();
  const tmp = await Deno.makeTempDir({ prefix: "webcap-browser-" });
  const models = `${tmp}/models`;
  const served: string[] = [];
  const server = serveDemo({
    port: 0,
    bundle: `${tmp}/webcap.js`,
    folders: { "/models/": models },
  });
  let browser: Browser | undefined;
  try {
    await buildBundle(`${tmp}/webcap.js`);
    for (const dtype of ["q8", "q4"] as const) {
      await quantizeFolder(fixture("hf/vit-gpt2"), `${models}/${dtype}`, dtype);
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" && !/status of 404/.test(m.text())) problems.push(m.text());
    });
    await page.goto(`http://127.0.0.1:${server.addr.port}/examples/browser/`);
    await page.fill("#max-new-tokens", String(MAX_NEW_TOKENS));
    const generated = await caption(page, problems);
    const picture = await pagePicture(page);
    const png = fixture("hf/preprocess/pattern.png");
    await page.setInputFiles("#file", png);
    const fromFile = await caption(page, problems);
    assert.deepEqual(problems, []);
    console.log(
      `adapter ${generated.adapter}; load ${generated.timings.load.toFixed(0)} ms; caption ` +
        `${generated.timings.caption.toFixed(0)} ms (generated), ` +
        `${fromFile.timings.caption.toFixed(0)} ms (pattern.png)`,
    );
    const expected = await denoTokens([picture, await Deno.readFile(png)]);
    assert.deepEqual(generated.captions![0].tokens, expected[0], "generated picture (ImageData)");
    assert.deepEqual(fromFile.captions![0].tokens, expected[1], "pattern.png (file bytes)");
    assert.ok(expected.every((t) => t.length > 0), "some tokens were generated");

    await page.setInputFiles("#file", []); // back to the generated picture
    page.on("request", (r) => served.push(new URL(r.url()).pathname));
    for (const dtype of ["q8", "q4"] as const) {
      await captionQuantized(page, problems, picture, models, dtype);
    }
    assert.ok(served.includes("/models/q4/model.safetensors"), served.join(", "));
    assert.deepEqual(problems, []);
  } finally {
    await browser?.close();
    await server.shutdown();
    await Deno.remove(tmp, { recursive: true });
  }
});
