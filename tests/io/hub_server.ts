/**
 * A fixture Hugging Face hub on 127.0.0.1 (a real `Deno.serve` on port 0) for download tests.
 * It speaks the hub's URL layout:
 * - `GET /api/models/{org}/{name}/revision/{rev}` → `{ id, sha, siblings: [{ rfilename }] }`
 * - `HEAD|GET /{org}/{name}/resolve/{rev}/{file}` → small files: 200 with `ETag` (git blob
 *   sha1), `X-Repo-Commit`; LFS-like files (`.safetensors`, `.bin`, `.pt`): 302 to
 *   `{cdn}/cdn/{sha256}` with `X-Linked-Etag`, `X-Linked-Size`, `X-Repo-Commit`
 * - `GET /cdn/{sha256}` on a second server (another origin, as the hub's CDN is another host) →
 *   the bytes, with `Range: bytes=N-` support (206)
 * - errors: 404 with `X-Error-Code` RepoNotFound / RevisionNotFound / EntryNotFound; 401 when
 *   a token is required and missing.
 * Knobs drop a file's connection after N bytes, require a token, ignore Range, redirect a file
 * elsewhere, leave out `X-Linked-Size` or serve wrong bytes; every request to either server is
 * logged.
 */

/** A repo to serve: its id and its files (repo path → bytes). */
export interface FixtureRepo {
  id: string;
  files: Map<string, Uint8Array<ArrayBuffer>>;
}

/** Behaviour switches, changeable while the server runs. */
export interface HubKnobs {
  /** Abort the body of `file` after `bytes` body bytes, for the next `times` responses. */
  drop?: { file: string; bytes: number; times: number };
  /** Answer 401 to API and resolve requests without `Authorization: Bearer <token>`. */
  token?: string;
  /** Answer ranged requests with 200 and the whole file, as servers without Range do. */
  noRange?: boolean;
  /**
   * Redirect the HEAD and GET of LFS file `file` of repo `id` to Location `to` (kept as given),
   * with the `X-Linked-*` headers unless `plain` (as the hub redirects a renamed repo).
   */
  redirect?: { id: string; file: string; to: string; plain?: boolean };
  /** Leave `X-Linked-Size` out of LFS answers. */
  noLinkedSize?: boolean;
  /**
   * The CDN serves `file` wrong: one byte changed (`flip`), or only its first half with a
   * matching Content-Length (`short`).
   */
  tamper?: { file: string; how: "flip" | "short" };
}

/** One request as the server saw it. */
export interface LoggedRequest {
  /** Which server answered it. */
  server: "hub" | "cdn";
  method: string;
  path: string;
  range: string | null;
  authorization: string | null;
}

/** A running fixture hub. */
export interface FixtureHub extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** The CDN's `http://127.0.0.1:<port>`, another origin than the hub. */
  cdnEndpoint: string;
  /** Every request so far, in order. */
  requests: LoggedRequest[];
  knobs: HubKnobs;
  /** The commit hash the repo's `main` points to. */
  commitOf(id: string): string;
  /** The ETag (without quotes) the hub gives a repo file: sha256 for LFS files, else sha1. */
  etagOf(id: string, file: string): string;
  /** Stop the server and wait for its connections to end. */
  close(): Promise<void>;
}

/** Read a fixture folder (recursively) as a repo. */
export async function readFixtureRepo(id: string, dir: URL): Promise<FixtureRepo> {
  const files = new Map<string, Uint8Array<ArrayBuffer>>();
  const walk = async (url: URL, prefix: string) => {
    for await (const entry of Deno.readDir(url)) {
      if (entry.isDirectory) await walk(new URL(`${entry.name}/`, url), `${prefix}${entry.name}/`);
      else files.set(prefix + entry.name, await Deno.readFile(new URL(entry.name, url)));
    }
  };
  await walk(dir, "");
  return { id, files };
}

interface Served {
  repo: FixtureRepo;
  commit: string;
  etags: Map<string, string>;
}

const LFS = /\.(safetensors|bin|pt|pth|tar)$/;

async function hex(algo: "SHA-1" | "SHA-256", bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest(algo, bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The hub's ETag: sha256 of LFS files, git's blob sha1 of the others. */
async function etagFor(name: string, bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  if (LFS.test(name)) return await hex("SHA-256", bytes);
  const header = new TextEncoder().encode(`blob ${bytes.length}\0`);
  const all = new Uint8Array(header.length + bytes.length);
  all.set(header);
  all.set(bytes, header.length);
  return await hex("SHA-1", all);
}

async function prepare(repo: FixtureRepo): Promise<Served> {
  const etags = new Map<string, string>();
  for (const [name, bytes] of repo.files) etags.set(name, await etagFor(name, bytes));
  const summary = [repo.id, ...[...etags].sort().map(([n, e]) => `${n}:${e}`)].join("\n");
  const commit = await hex("SHA-1", new TextEncoder().encode(summary));
  return { repo, commit, etags };
}

/** Start the hub serving `repos`, and its CDN. */
export async function startFixtureHub(repos: FixtureRepo[]): Promise<FixtureHub> {
  const served = new Map<string, Served>();
  for (const repo of repos) served.set(repo.id, await prepare(repo));
  const requests: LoggedRequest[] = [];
  const knobs: HubKnobs = {};
  const serve = (server: "hub" | "cdn", answer: (req: Request, path: string) => Response) =>
    Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      requests.push({
        server,
        method: req.method,
        path,
        range: req.headers.get("range"),
        authorization: req.headers.get("authorization"),
      });
      return answer(req, path);
    });
  const cdn = serve("cdn", (req, path) => cdnFile(req, path, served, knobs));
  const cdnEndpoint = `http://127.0.0.1:${cdn.addr.port}`;
  const hub = serve("hub", (req, path) => route(req, path, served, knobs, cdnEndpoint));
  const endpoint = `http://127.0.0.1:${hub.addr.port}`;
  const find = (id: string) => {
    const s = served.get(id);
    if (!s) throw new Error(`fixture hub does not serve ${id}`);
    return s;
  };
  let closing: Promise<void> | undefined;
  const close = () => closing ??= Promise.all([hub.shutdown(), cdn.shutdown()]).then(() => {});
  return {
    endpoint,
    cdnEndpoint,
    requests,
    knobs,
    commitOf: (id) => find(id).commit,
    etagOf: (id, file) => find(id).etags.get(file) ?? "",
    close,
    [Symbol.asyncDispose]: close,
  };
}

function route(
  req: Request,
  path: string,
  served: Map<string, Served>,
  knobs: HubKnobs,
  cdn: string,
): Response {
  const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(path);
  if (api) return guarded(req, knobs, () => listing(served, api[1], api[2]));
  const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
  if (resolve) {
    const [, id, rev, file] = resolve;
    return guarded(req, knobs, () => resolveFile(req, served, knobs, cdn, id, rev, file));
  }
  return error(404, "EntryNotFound");
}

/** The CDN: `/cdn/{sha256}` → that blob's bytes, tampered with when the knob says so. */
function cdnFile(req: Request, path: string, served: Map<string, Served>, knobs: HubKnobs) {
  const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(path);
  for (const s of cdn ? served.values() : []) {
    for (const [name, etag] of s.etags) {
      if (etag !== cdn![1]) continue;
      let bytes = s.repo.files.get(name)!;
      if (knobs.tamper?.file === name && knobs.tamper.how === "short") {
        bytes = bytes.slice(0, bytes.length >> 1);
      } else if (knobs.tamper?.file === name) {
        bytes = bytes.slice();
        bytes[bytes.length >> 1] ^= 0xff;
      }
      return body(req, name, bytes, {}, knobs);
    }
  }
  return error(404, "EntryNotFound");
}

function guarded(req: Request, knobs: HubKnobs, answer: () => Response): Response {
  if (knobs.token && req.headers.get("authorization") !== `Bearer ${knobs.token}`) {
    return new Response("Invalid credentials", { status: 401 });
  }
  return answer();
}

function error(status: number, code: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ error: code }), {
    status,
    headers: { "x-error-code": code, ...headers },
  });
}

/** The served repo at `rev` (main or its commit), or the hub's 404. */
function lookup(served: Map<string, Served>, id: string, rev: string): Served | Response {
  const s = served.get(id);
  if (!s) return error(404, "RepoNotFound");
  if (rev !== "main" && rev !== s.commit) return error(404, "RevisionNotFound");
  return s;
}

function listing(served: Map<string, Served>, id: string, rev: string): Response {
  const s = lookup(served, id, rev);
  if (s instanceof Response) return s;
  const siblings = [...s.repo.files.keys()].sort().map((rfilename) => ({ rfilename }));
  return Response.json({ id, sha: s.commit, siblings });
}

function resolveFile(
  req: Request,
  served: Map<string, Served>,
  knobs: HubKnobs,
  cdn: string,
  id: string,
  rev: string,
  file: string,
): Response {
  const s = lookup(served, id, rev);
  if (s instanceof Response) return s;
  const bytes = s.repo.files.get(file);
  if (!bytes) return error(404, "EntryNotFound", { "x-repo-commit": s.commit });
  const etag = s.etags.get(file)!;
  const headers = { "x-repo-commit": s.commit, etag: `"${etag}"` };
  if (!LFS.test(file)) return body(req, file, bytes, headers, {});
  const redirect = knobs.redirect?.id === id && knobs.redirect.file === file
    ? knobs.redirect
    : undefined;
  const location = redirect?.to ?? `${cdn}/cdn/${etag}`;
  const out: Record<string, string> = { ...headers, location };
  if (redirect?.plain) return new Response(null, { status: 307, headers: out });
  out["x-linked-etag"] = `"${etag}"`;
  if (!knobs.noLinkedSize) out["x-linked-size"] = String(bytes.length);
  return new Response(null, { status: 302, headers: out });
}

/** The file's bytes (or the requested range), cut off early when the drop knob says so. */
function body(
  req: Request,
  name: string,
  bytes: Uint8Array<ArrayBuffer>,
  headers: Record<string, string>,
  knobs: HubKnobs,
): Response {
  const range = knobs.noRange ? null : /^bytes=(\d+)-(\d*)$/.exec(req.headers.get("range") ?? "");
  let slice = bytes;
  let status = 200;
  const out: Record<string, string> = { ...headers, "accept-ranges": "bytes" };
  if (range) {
    const start = Number(range[1]);
    const end = range[2] ? Math.min(Number(range[2]), bytes.length - 1) : bytes.length - 1;
    if (start >= bytes.length) {
      return new Response(null, {
        status: 416,
        headers: { "content-range": `bytes */${bytes.length}` },
      });
    }
    slice = bytes.subarray(start, end + 1);
    status = 206;
    out["content-range"] = `bytes ${start}-${end}/${bytes.length}`;
  }
  out["content-length"] = String(slice.length);
  if (req.method === "HEAD") return new Response(null, { status, headers: out });
  const drop = knobs.drop;
  if (!drop || drop.file !== name || drop.times <= 0) {
    return new Response(slice, { status, headers: out });
  }
  drop.times--;
  return new Response(droppingStream(slice, drop.bytes), { status, headers: out });
}

/**
 * A body that sends the first `keep` bytes and then ends, short of its Content-Length, so the
 * server aborts the connection.
 */
function droppingStream(slice: Uint8Array, keep: number): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream({
    pull(controller) {
      if (sent) {
        controller.close();
        return;
      }
      sent = true;
      controller.enqueue(slice.slice(0, Math.min(keep, slice.length)));
    },
  });
}
