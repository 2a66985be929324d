/**
 * URLs from a server on 127.0.0.1 that answers some requests well and others badly: a 404 (not
 * retried), a stalled response and a dropped connection (retried, then failed), a connection
 * that drops once (the retry succeeds), and WebDataset tars streamed over http that end early or
 * stall. Each failure is its item's error line; everything else is captioned as from disk.
 */
import assert from "node:assert/strict";
import { caption } from "../cli/run.ts";
import { captionsByKey, images, outputLines, quick, samples, tar, writeFiles } from "./data.ts";

const files = images(12);
const img = (i: number) => files.get(`img${String(i).padStart(3, "0")}.png`)!;
const tarA = tar(samples(new Map([...files].slice(6, 10))));
const tarCut = tar(samples(new Map([...files].slice(10, 12))));
/** Where img011.png's data starts in tarCut: the drop comes 100 bytes into it. */
const cutAt = new TextDecoder("latin1").decode(tarCut).indexOf("img011.png") + 512;
const tarStall = tar(samples(new Map([["other.png", img(0)]])));

/** What the server does with a path: a body, a status, or a way to fail. */
type Answer =
  | { body: Uint8Array }
  | { status: number }
  | { partial: Uint8Array; then: "close" | "stall" };

function route(path: string, tries: number): Answer {
  const m = path.match(/^\/img\/(\d+)\.png$/);
  if (m) return { body: img(Number(m[1])) };
  if (path === "/flaky.png") {
    return tries === 1 ? { partial: img(5).slice(0, 40), then: "close" } : { body: img(5) };
  }
  if (path === "/drop.png") return { partial: img(0).slice(0, 40), then: "close" };
  if (path === "/stall.png") return { partial: img(0).slice(0, 40), then: "stall" };
  if (path === "/a.tar") return { body: tarA };
  if (path === "/cut.tar") return { partial: tarCut.slice(0, cutAt + 100), then: "close" };
  if (path === "/stall.tar") return { partial: tarStall.slice(0, 1024), then: "stall" };
  return { status: 404 };
}

/** A minimal HTTP/1.1 server on 127.0.0.1 counting requests per path. */
function serve() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tries = new Map<string, number>();
  const open = new Set<Deno.Conn>();
  const write = async (conn: Deno.Conn, bytes: Uint8Array) => {
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
  };
  const answer = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(4096);
    let req = "";
    while (!req.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) return;
      req += new TextDecoder().decode(buf.subarray(0, n));
    }
    const path = req.split(" ")[1];
    tries.set(path, (tries.get(path) ?? 0) + 1);
    const a = route(path, tries.get(path)!);
    const head = (status: string, length: number) =>
      new TextEncoder().encode(
        `HTTP/1.1 ${status}\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`,
      );
    if ("status" in a) return await write(conn, head("404 Not Found", 0));
    const full = "body" in a ? a.body : a.partial;
    await write(conn, head("200 OK", "body" in a ? full.length : full.length + 5000));
    await write(conn, full);
    if ("then" in a && a.then === "stall") await new Promise(() => {}); // until closed
  };
  (async () => {
    for await (const conn of listener) {
      open.add(conn);
      answer(conn).catch(() => {}).finally(() => {
        if (open.delete(conn)) conn.close();
      });
    }
  })().catch(() => {});
  const { port } = listener.addr as Deno.NetAddr;
  return {
    base: `http://127.0.0.1:${port}`,
    tries,
    close() {
      listener.close();
      for (const c of open) c.close();
      open.clear();
    },
  };
}

Deno.test({
  name: "urls: 404, stall and drop fail per item after bounded tries; the rest match disk",
  sanitizeOps: false, // the stalled answers are left pending until the server closes
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "webcap-urls-" });
    const server = serve();
    try {
      const b = server.base;
      const list = [0, 1, 2, 3, 4].map((i) => `${b}/img/${i}.png`);
      list.push(`${b}/flaky.png`, `${b}/missing.png`, `${b}/stall.png`, `${b}/drop.png`);
      await Deno.writeTextFile(`${dir}/urls.txt`, `# images on the server\n${list.join("\n")}\n`);
      const fetchFlags = ["--fetch-timeout", "1", "--retries", "1"];
      const inputs = [`${dir}/urls.txt`, `${b}/a.tar`, `${b}/cut.tar`, `${b}/stall.tar`];
      const out = `${dir}/out.jsonl`;
      const r = await caption([...inputs, ...quick, ...fetchFlags, "--output", out]);
      assert.equal(r.code, 1, r.stderr);
      const lines = await outputLines(out);
      const failed = new Map(
        lines.filter((l) => l.error).map((l) => [l.key.split("/").at(-1), l.error!]),
      );
      assert.equal(failed.get("missing.png")?.code, "DOWNLOAD_FAILED");
      assert.match(failed.get("missing.png")!.message, /missing\.png: HTTP 404/);
      assert.equal(server.tries.get("/missing.png"), 1, "a 404 is not retried");
      assert.match(failed.get("stall.png")!.message, /no answer within 1000 ms \(2 tries\)/);
      assert.match(failed.get("drop.png")!.message, /connection failed.*\(2 tries\)/);
      assert.equal(server.tries.get("/drop.png"), 2);
      assert.equal(server.tries.get("/flaky.png"), 2, "dropped once, then fetched");
      assert.match(r.stderr, /error DOWNLOAD_FAILED: .*cut\.tar: the connection dropped/);
      assert.match(r.stderr, /error DOWNLOAD_FAILED: .*stall\.tar: no data for 1000 ms/);

      // every image that arrived whole: the captions of the same files read from disk
      await writeFiles(`${dir}/imgs`, files);
      const disk = await caption([`${dir}/imgs`, ...quick, "--output", `${dir}/disk.jsonl`]);
      assert.equal(disk.code, 0, disk.stderr);
      const stem = (k: string) => k.replace(/^.*\//, "").replace(/\.png$/, "");
      const want = new Map([...captionsByKey(await outputLines(`${dir}/disk.jsonl`))]
        .map(([k, v]) => [stem(k), v]));
      const got = lines.filter((l) => !l.error).map((l) => [stem(l.key), l.captions![0].text]);
      const named = got.map((
        [k, v],
      ) => [k === "flaky" ? "img005" : k.replace(/^(\d)$/, "img00$1"), v]);
      assert.deepEqual(
        named.map(([k]) => k).sort(),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => `img${String(i).padStart(3, "0")}`),
      );
      for (const [k, v] of named) assert.equal(v, want.get(k), k);
      assert.match(r.stderr, /done 11, skipped 0, failed 5, 2 inputs not read through/);
      assert.equal(failed.get("img011")?.code, "DOWNLOAD_FAILED");
      assert.equal(failed.get("other")?.code, "DOWNLOAD_FAILED");
    } finally {
      server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
