/**
 * The browser bundle decodes every file of `../shared/fixtures/images/` to the same pixels as
 * Deno (and so as Pillow): the WebAssembly decoders are embedded in the bundle and run in
 * headless Chromium. The bundle and the images are served on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { decodeImage } from "../../src/image/decode.ts";
import { buildBundle, fixture } from "../util.ts";

const CHROMIUM = "/usr/bin/chromium";
const DIR = fixture("images/");

/** Serve the bundle at /webcap.js, an empty page at /, and the fixture images by name. */
function serve(bundlePath: string, names: string[]): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const name = decodeURIComponent(new URL(req.url).pathname.slice(1));
    if (name === "") {
      return new Response("<!doctype html>", { headers: { "content-type": "text/html" } });
    }
    if (name === "webcap.js") {
      return new Response(await Deno.readFile(bundlePath), {
        headers: { "content-type": "text/javascript" },
      });
    }
    if (!names.includes(name)) return new Response(null, { status: 404 });
    return new Response(await Deno.readFile(DIR + name));
  });
}

Deno.test("browser bundle: every fixture image decodes to Deno's pixels", async () => {
  await Deno.stat(CHROMIUM);
  const names = Object.keys(JSON.parse(await Deno.readTextFile(`${DIR}images.json`)).files);
  const tmp = await Deno.makeTempDir({ prefix: "webcap-decode-" });
  const server = serve(`${tmp}/webcap.js`, names);
  const browser = await (async () => {
    await buildBundle(`${tmp}/webcap.js`);
    return await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless=new", "--no-sandbox"],
    });
  })();
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.addr.port}/`);
    const decoded = await page.evaluate(async (files: string[]) => {
      const { decodeImage } = await import("/webcap.js");
      const out: Record<string, { width: number; height: number; data: number[] } | string> = {};
      for (const f of files) {
        try {
          const bytes = new Uint8Array(await (await fetch(`/${f}`)).arrayBuffer());
          const img = await decodeImage(bytes, f);
          out[f] = { width: img.width, height: img.height, data: Array.from(img.data) };
        } catch (e) {
          out[f] = String(e);
        }
      }
      return out;
    }, names);
    for (const name of names) {
      const want = await decodeImage(await Deno.readFile(DIR + name), name);
      const got = decoded[name];
      assert.ok(typeof got !== "string", `${name}: ${got}`);
      assert.deepEqual([got.width, got.height], [want.width, want.height], name);
      assert.ok(
        Uint8Array.from(got.data).every((v, i) => v === want.data[i]),
        `${name}: pixels differ`,
      );
    }
  } finally {
    await browser.close();
    await server.shutdown();
    await Deno.remove(tmp, { recursive: true });
  }
});
