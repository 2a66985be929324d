/**
 * A static server for the browser demo: the repository root at `/`, the fixture models of
 * `../shared/fixtures/hf/` (beside the repository) at `/fixtures/hf/`, and `/` redirects to the
 * demo page. Build the bundle first:
 *
 *   deno task bundle && deno run -A examples/browser/serve.ts [--port 8000]
 *
 * then open http://127.0.0.1:8000/ in a browser with WebGPU. 127.0.0.1 counts as a secure
 * context, which WebGPU needs.
 * @module
 */
import { parseArgs } from "node:util";

const REPO_ROOT = new URL("../../", import.meta.url);
const FIXTURES = new URL("../../../shared/fixtures/hf/", import.meta.url);
const DEMO_PATH = "/examples/browser/";
const BUNDLE_PATH = "/dist/webcap.js";

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  json: "application/json",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  css: "text/css",
};

/** Options of {@link serveDemo}. */
export interface ServeDemoOptions {
  /** Port (0: any free one). Default 8000. */
  port?: number;
  /** Interface. Default 127.0.0.1. */
  hostname?: string;
  /** Serve this file as `/dist/webcap.js` instead of the repository's `dist/webcap.js`. */
  bundle?: string;
  /** Local folders served under URL path prefixes (`{ "/models/": "/tmp/q4-models" }`). */
  folders?: Record<string, string>;
  /** Called once listening, with the address. */
  onListen?: (addr: Deno.NetAddr) => void;
}

/** The local file a URL path names, or undefined for a path outside the served folders. */
function fileFor(
  pathname: string,
  bundle: string | undefined,
  folders: Record<string, string>,
): URL | string | undefined {
  let path: string;
  try {
    path = decodeURIComponent(pathname);
  } catch {
    return undefined;
  }
  if (path.split("/").some((p) => p === ".." || p.includes("\\"))) return undefined;
  if (bundle && path === BUNDLE_PATH) return bundle;
  if (path.endsWith("/")) path += "index.html";
  const prefix = Object.keys(folders).find((p) => path.startsWith(p));
  if (prefix) return `${folders[prefix].replace(/\/$/, "")}/${path.slice(prefix.length)}`;
  if (path.startsWith("/fixtures/hf/")) {
    return new URL(path.slice("/fixtures/hf/".length), FIXTURES);
  }
  return new URL(path.slice(1), REPO_ROOT);
}

async function respond(req: Request, opts: ServeDemoOptions): Promise<Response> {
  const { pathname } = new URL(req.url);
  if (pathname === "/") return Response.redirect(new URL(DEMO_PATH, req.url), 302);
  const file = fileFor(pathname, opts.bundle, opts.folders ?? {});
  if (req.method !== "GET" && req.method !== "HEAD") return new Response(null, { status: 405 });
  try {
    const info = file ? await Deno.stat(file) : undefined;
    if (info?.isDirectory) return Response.redirect(new URL(`${pathname}/`, req.url), 302);
    if (!file || !info?.isFile) throw new Deno.errors.NotFound();
    const name = String(file);
    const ext = name.slice(name.lastIndexOf(".") + 1).toLowerCase();
    const body = req.method === "HEAD" ? null : (await Deno.open(file)).readable;
    return new Response(body, {
      headers: { "content-type": TYPES[ext] ?? "application/octet-stream" },
    });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return new Response("not found", { status: 404 });
    return new Response(`cannot read ${pathname}: ${(e as Error).message}`, { status: 500 });
  }
}

/** Serve the demo (see the module doc); stop it with `shutdown()`. */
export function serveDemo(opts: ServeDemoOptions = {}): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({
    port: opts.port ?? 8000,
    hostname: opts.hostname ?? "127.0.0.1",
    onListen: opts.onListen ?? (() => {}),
  }, (req) => respond(req, opts));
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { port: { type: "string" } } });
  serveDemo({
    port: Number(values.port ?? 8000),
    onListen: ({ hostname, port }) => console.log(`demo at http://${hostname}:${port}/`),
  });
}
