import assert from "node:assert/strict";
import { join } from "node:path";
import { hubCacheDir, resolveModel, type ResolveModelOptions } from "../../src/io/hub.ts";
import { WebcapError } from "../../src/errors.ts";
import { openWeights } from "../../src/io/weights.ts";
import { MAX_TEXT_BYTES } from "../../src/io/model_files.ts";
import {
  type FixtureHub,
  type FixtureRepo,
  readFixtureRepo,
  startFixtureHub,
} from "./hub_server.ts";

const HF = new URL("../../../shared/fixtures/hf/", import.meta.url);
const VIT = "webcap-test/vit-gpt2";
const BLIP = "webcap-test/blip";
const CLIPCAP = "webcap-test/clipcap";
const vit = await readFixtureRepo(VIT, new URL("vit-gpt2/", HF));
const blip = await readFixtureRepo(BLIP, new URL("blip/", HF));
const clipcap = await readFixtureRepo(CLIPCAP, new URL("clipcap/", HF));
/** What a captioner needs from these repos; the rest (references, f16 copies, .bin) stays. */
const STANDARD = [
  "config.json",
  "generation_config.json",
  "preprocessor_config.json",
  "tokenizer.json",
  "model.safetensors",
];

/** A repo derived from vit-gpt2: `drop` files removed, `add` files added. */
function variant(
  id: string,
  drop: string[],
  add: Record<string, Uint8Array<ArrayBuffer>>,
): FixtureRepo {
  const files = new Map([...vit.files].filter(([name]) => !drop.includes(name)));
  for (const [name, bytes] of Object.entries(add)) files.set(name, bytes);
  return { id, files };
}

/** Run `body` with a fresh hub and an empty cache folder, then clean both up. */
async function withHub(
  repos: FixtureRepo[],
  body: (hub: FixtureHub, opts: ResolveModelOptions & { cacheDir: string }) => Promise<void>,
): Promise<void> {
  const cacheDir = await Deno.makeTempDir({ prefix: "webcap-hub-" });
  const hub = await startFixtureHub(repos);
  try {
    await body(hub, { endpoint: hub.endpoint, cacheDir, onProgress: () => {} });
  } finally {
    await hub.close();
    await Deno.remove(cacheDir, { recursive: true });
  }
}

/** Run `body` with environment variables set (undefined = unset), restoring them after. */
async function withEnv(vars: Record<string, string | undefined>, body: () => Promise<void>) {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      x === undefined ? Deno.env.delete(k) : Deno.env.set(k, x);
    }
  };
  apply(vars);
  try {
    await body();
  } finally {
    apply(saved);
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, ...words: string[]): Promise<string> {
  const err = await p.then(() => undefined, (e) => e);
  assert.ok(err instanceof WebcapError, `expected a WebcapError ${code}, got ${err}`);
  assert.equal(err.code, code, err.message);
  for (const w of words) assert.ok(err.message.includes(w), `"${w}" not in: ${err.message}`);
  return err.message;
}

async function assertSnapshot(dir: string, repo: FixtureRepo, files: string[]): Promise<void> {
  const present: string[] = [];
  for await (const e of Deno.readDir(dir)) present.push(e.name);
  const top = [...new Set(files.map((f) => f.split("/")[0]))];
  assert.deepEqual(present.sort(), top.sort());
  for (const f of files) assert.deepEqual(await Deno.readFile(join(dir, f)), repo.files.get(f));
}

Deno.test("resolveModel downloads a repo into huggingface_hub's cache layout", async () => {
  await withHub([vit, blip], async (hub, opts) => {
    for (const repo of [vit, blip]) {
      const progress = new Map<string, [number, number]>();
      const dir = await resolveModel(repo.id, {
        ...opts,
        onProgress: (file, done, total) => progress.set(file, [done, total]),
      });
      const folder = join(opts.cacheDir, `models--${repo.id.replace("/", "--")}`);
      const commit = hub.commitOf(repo.id);
      assert.equal(dir, join(folder, "snapshots", commit));
      assert.equal(await Deno.readTextFile(join(folder, "refs", "main")), commit);
      const files = STANDARD.filter((f) => repo.files.has(f));
      await assertSnapshot(dir, repo, files);
      for (const f of files) {
        const link = await Deno.readLink(join(dir, f));
        assert.equal(link, join("..", "..", "blobs", hub.etagOf(repo.id, f)));
        const size = repo.files.get(f)!.length;
        assert.deepEqual(progress.get(f), [size, size]);
      }
      const blobs = [...Deno.readDirSync(join(folder, "blobs"))].map((e) => e.name);
      assert.ok(!blobs.some((b) => b.endsWith(".incomplete")));
    }
    const fetched = hub.requests.filter((r) => r.method === "GET").map((r) => r.path);
    assert.ok(vit.files.has("pytorch_model.bin"), "the fixture has both weight formats");
    assert.ok(!fetched.some((p) => p.endsWith("pytorch_model.bin")), "safetensors is preferred");
    const bin = hub.etagOf(VIT, "pytorch_model.bin");
    assert.ok(!fetched.includes(`/cdn/${bin}`));
  });
});

Deno.test("a second resolveModel hits the cache without any request", async () => {
  await withHub([vit], async (hub, opts) => {
    const first = await resolveModel(VIT, opts);
    const count = hub.requests.length;
    assert.ok(count > 0);
    assert.equal(await resolveModel(VIT, opts), first);
    assert.equal(await resolveModel(VIT, { ...opts, revision: hub.commitOf(VIT) }), first);
    assert.equal(hub.requests.length, count);
  });
});

Deno.test("a local directory is returned as is; bad ids and paths are BAD_OPTION", async () => {
  const dir = new URL("vit-gpt2", HF).pathname;
  assert.equal(await resolveModel(dir), dir);
  await rejectsWith(resolveModel(join(dir, "config.json")), "BAD_OPTION", "config.json", "file");
  await rejectsWith(resolveModel("./no/such/dir"), "BAD_OPTION", "./no/such/dir", "not exist");
  for (const id of ["justname", "a/b/c", "org/na me", "org/-x", "org/a--b", "org/a..b"]) {
    await rejectsWith(resolveModel(id, { endpoint: "http://127.0.0.1:9" }), "BAD_OPTION", id);
  }
  await rejectsWith(
    resolveModel(VIT, { endpoint: "http://127.0.0.1:9", revision: "../x", offline: true }),
    "BAD_OPTION",
    "revision",
  );
});

Deno.test("an unknown repo or revision is HUB_NOT_FOUND naming the id and endpoint", async () => {
  await withHub([vit], async (hub, opts) => {
    await rejectsWith(
      resolveModel("webcap-test/nope", opts),
      "HUB_NOT_FOUND",
      "webcap-test/nope",
      hub.endpoint,
    );
    await rejectsWith(resolveModel(VIT, { ...opts, revision: "v9" }), "HUB_NOT_FOUND", '"v9"', VIT);
  });
});

Deno.test("a private repo asks for HF_TOKEN, and HF_TOKEN is sent to the hub only", async () => {
  await withHub([vit], async (hub, opts) => {
    hub.knobs.token = "hf_fixture";
    await withEnv({ HF_TOKEN: undefined }, async () => {
      await rejectsWith(resolveModel(VIT, opts), "HUB_NOT_FOUND", VIT, "HF_TOKEN");
    });
    hub.requests.length = 0;
    await withEnv({ HF_TOKEN: "hf_fixture" }, async () => {
      await assertSnapshot(await resolveModel(VIT, opts), vit, STANDARD);
    });
    for (const r of hub.requests) {
      const cdn = r.path.startsWith("/cdn/");
      assert.equal(r.authorization, cdn ? null : "Bearer hf_fixture", r.path);
    }
  });
});

Deno.test("a dropped connection is resumed with a Range request", async () => {
  await withHub([vit], async (hub, opts) => {
    const size = vit.files.get("model.safetensors")!.length;
    const keep = Math.floor(size / 3);
    hub.knobs.drop = { file: "model.safetensors", bytes: keep, times: 1 };
    const dir = await resolveModel(VIT, opts);
    await assertSnapshot(dir, vit, STANDARD);
    const cdn = `/cdn/${hub.etagOf(VIT, "model.safetensors")}`;
    const gets = hub.requests.filter((r) => r.method === "GET" && r.path === cdn);
    assert.equal(gets.length, 2);
    assert.equal(gets[0].range, null);
    const from = Number(/^bytes=(\d+)-$/.exec(gets[1].range ?? "")?.[1]);
    assert.ok(from > 0 && from <= keep, `resumed from ${gets[1].range}`);
  });
});

Deno.test("a server that ignores Range makes the download restart cleanly", async () => {
  await withHub([vit], async (hub, opts) => {
    const size = vit.files.get("model.safetensors")!.length;
    hub.knobs.noRange = true;
    hub.knobs.drop = { file: "model.safetensors", bytes: Math.floor(size / 2), times: 1 };
    await assertSnapshot(await resolveModel(VIT, opts), vit, STANDARD);
  });
});

Deno.test("a connection that keeps dropping is DOWNLOAD_FAILED; running again resumes", async () => {
  await withHub([vit], async (hub, opts) => {
    const size = vit.files.get("model.safetensors")!.length;
    // each of the 4 tries keeps a tenth: the file stays incomplete
    hub.knobs.drop = { file: "model.safetensors", bytes: Math.floor(size / 10), times: Infinity };
    await rejectsWith(resolveModel(VIT, opts), "DOWNLOAD_FAILED", "model.safetensors", "resumes");
    const folder = join(opts.cacheDir, "models--webcap-test--vit-gpt2");
    const etag = hub.etagOf(VIT, "model.safetensors");
    const partial = (await Deno.stat(join(folder, "blobs", `${etag}.incomplete`))).size;
    assert.ok(partial > 0 && partial < size);
    const snapshot = join(folder, "snapshots", hub.commitOf(VIT));
    await assertSnapshot(snapshot, vit, STANDARD.filter((f) => f !== "model.safetensors"));
    await rejectsWith(resolveModel(VIT, { ...opts, offline: true }), "HUB_OFFLINE", VIT);

    hub.knobs.drop = undefined;
    hub.requests.length = 0;
    await assertSnapshot(await resolveModel(VIT, opts), vit, STANDARD);
    const gets = hub.requests.filter((r) => r.method === "GET" && r.path === `/cdn/${etag}`);
    assert.deepEqual(gets.map((r) => r.range), [`bytes=${partial}-`]);
  });
});

Deno.test("offline mode uses the cache or fails with HUB_OFFLINE", async () => {
  await withHub([vit], async (hub, opts) => {
    const message = await rejectsWith(
      resolveModel(VIT, { ...opts, offline: true }),
      "HUB_OFFLINE",
      VIT,
    );
    assert.match(message, /download/);
    await withEnv({ HF_HUB_OFFLINE: "1" }, async () => {
      await rejectsWith(resolveModel(VIT, opts), "HUB_OFFLINE", VIT);
    });
    assert.equal(hub.requests.length, 0);
    const dir = await resolveModel(VIT, opts);
    const count = hub.requests.length;
    await hub.close();
    await withEnv({ HF_HUB_OFFLINE: "1" }, async () => {
      assert.equal(await resolveModel(VIT, opts), dir);
    });
    assert.equal(await resolveModel(VIT, { ...opts, offline: true }), dir);
    assert.equal(hub.requests.length, count);
  });
});

Deno.test("HF_ENDPOINT, HF_HUB_CACHE and HF_HOME are honoured", async () => {
  await withHub([vit], async (hub, opts) => {
    await withEnv({ HF_ENDPOINT: `${hub.endpoint}/`, HF_HUB_CACHE: opts.cacheDir }, async () => {
      const dir = await resolveModel(VIT, { onProgress: opts.onProgress });
      assert.ok(dir.startsWith(opts.cacheDir));
      await assertSnapshot(dir, vit, STANDARD);
    });
    assert.ok(hub.requests.length > 0);
  });
  const env = { HF_HUB_CACHE: undefined, HF_HOME: undefined, XDG_CACHE_HOME: undefined };
  await withEnv({ ...env, HOME: "/home/x" }, () => {
    assert.equal(hubCacheDir(), "/home/x/.cache/huggingface/hub");
    return Promise.resolve();
  });
  await withEnv({ ...env, HF_HOME: "/data/hf" }, () => {
    assert.equal(hubCacheDir(), "/data/hf/hub");
    return Promise.resolve();
  });
  await withEnv({ ...env, HF_HOME: "/data/hf", HF_HUB_CACHE: "/fast/hub" }, () => {
    assert.equal(hubCacheDir(), "/fast/hub");
    return Promise.resolve();
  });
});

Deno.test("explicit files fetch a clipcap-style repo, nested paths included", async () => {
  await withHub([clipcap], async (_hub, opts) => {
    await rejectsWith(resolveModel(CLIPCAP, opts), "MISSING_FILE", CLIPCAP, "config.json", "files");
    const files = [
      "clipcap-config.json",
      "clipcap.safetensors",
      "tokenizer.json",
      "clip-vision/config.json",
    ];
    const dir = await resolveModel(CLIPCAP, { ...opts, files });
    await assertSnapshot(dir, clipcap, files);
    await rejectsWith(
      resolveModel(CLIPCAP, { ...opts, files: ["nope.json"] }),
      "MISSING_FILE",
      "nope.json",
    );
  });
});

Deno.test("sharded safetensors come with all shards; a .bin-only repo gets pytorch_model.bin", async () => {
  const weights = vit.files.get("model.safetensors")!;
  const half = weights.length >> 1;
  const shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
  const index = { metadata: {}, weight_map: { a: shards[0], b: shards[1], c: shards[1] } };
  const sharded = variant("webcap-test/sharded", ["model.safetensors"], {
    "model.safetensors.index.json": new TextEncoder().encode(JSON.stringify(index)),
    [shards[0]]: weights.subarray(0, half),
    [shards[1]]: weights.subarray(half),
  });
  const binOnly = variant("webcap-test/bin-only", ["model.safetensors"], {});
  await withHub([sharded, binOnly], async (hub, opts) => {
    const dir = await resolveModel(sharded.id, opts);
    const small = STANDARD.filter((f) => f !== "model.safetensors");
    await assertSnapshot(dir, sharded, [...small, "model.safetensors.index.json", ...shards]);
    const count = hub.requests.length;
    assert.equal(await resolveModel(sharded.id, opts), dir);
    assert.equal(hub.requests.length, count);
    // a snapshot missing one shard is incomplete; its blob is relinked without a download
    await Deno.remove(join(dir, shards[1]));
    await rejectsWith(resolveModel(sharded.id, { ...opts, offline: true }), "HUB_OFFLINE");
    hub.requests.length = 0;
    await assertSnapshot(await resolveModel(sharded.id, opts), sharded, [
      ...small,
      "model.safetensors.index.json",
      ...shards,
    ]);
    assert.deepEqual(hub.requests.map((r) => r.method), ["GET", "HEAD"], "listing and HEAD");
    await assertSnapshot(await resolveModel(binOnly.id, opts), binOnly, [
      ...small,
      "pytorch_model.bin",
    ]);
  });
});

/** The blob and snapshot paths of `file` of `id` in the cache. */
function cachePaths(hub: FixtureHub, cacheDir: string, id: string, file: string) {
  const folder = join(cacheDir, `models--${id.replace("/", "--")}`);
  return {
    blob: join(folder, "blobs", hub.etagOf(id, file)),
    pointer: join(folder, "snapshots", hub.commitOf(id), file),
  };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("the token goes to the hub's origin only, whatever form a redirect takes", async () => {
  const renamed = { id: "webcap-test/renamed", files: vit.files };
  await withHub([vit, renamed], async (hub, opts) => {
    hub.knobs.token = "hf_fixture";
    const etag = hub.etagOf(VIT, "model.safetensors");
    const cdn = hub.cdnEndpoint.replace("http:", "");
    const redirects = [
      { to: `${cdn}/cdn/${etag}` }, // scheme-relative: another host
      { to: `/\\${cdn.slice(2)}/cdn/${etag}` }, // read as //host by URL parsers
      { to: "/webcap-test/renamed/resolve/main/model.safetensors", plain: true }, // followed
    ];
    await withEnv({ HF_TOKEN: "hf_fixture" }, async () => {
      for (const { to, plain } of redirects) {
        hub.knobs.redirect = { id: VIT, file: "model.safetensors", to, plain };
        hub.requests.length = 0;
        const cacheDir = await Deno.makeTempDir({ prefix: "webcap-hub-redirect-" });
        try {
          await assertSnapshot(await resolveModel(VIT, { ...opts, cacheDir }), vit, STANDARD);
        } finally {
          await Deno.remove(cacheDir, { recursive: true });
        }
        assert.ok(hub.requests.some((r) => r.server === "cdn"), to);
        for (const r of hub.requests) {
          assert.equal(r.authorization, r.server === "hub" ? "Bearer hf_fixture" : null, to);
        }
      }
    });
  });
});

Deno.test("a redirect to anything but http(s) is DOWNLOAD_FAILED naming the file", async () => {
  await withHub([vit], async (hub, opts) => {
    const local = new URL("vit-gpt2/model.safetensors", HF).href; // the very bytes the hub names
    for (const to of [local, "data:,x", "blob:x", "ftp://127.0.0.1:9/x"]) {
      hub.knobs.redirect = { id: VIT, file: "model.safetensors", to };
      await rejectsWith(resolveModel(VIT, opts), "DOWNLOAD_FAILED", "model.safetensors", to);
      const { blob, pointer } = cachePaths(hub, opts.cacheDir, VIT, "model.safetensors");
      assert.ok(!await exists(blob) && !await exists(pointer), to);
    }
  });
});

Deno.test("an LFS download whose sha256 is not its ETag is refused and dropped", async () => {
  await withHub([vit], async (hub, opts) => {
    const { blob, pointer } = cachePaths(hub, opts.cacheDir, VIT, "model.safetensors");
    const cases = [
      { how: "flip" as const, noLinkedSize: false },
      { how: "short" as const, noLinkedSize: true }, // Content-Length agrees with the short body
      { how: "short" as const, noLinkedSize: false }, // shorter than X-Linked-Size
    ];
    for (const { how, noLinkedSize } of cases) {
      hub.knobs.tamper = { file: "model.safetensors", how };
      hub.knobs.noLinkedSize = noLinkedSize;
      await rejectsWith(resolveModel(VIT, opts), "DOWNLOAD_FAILED", "model.safetensors");
      for (const path of [blob, `${blob}.incomplete`, pointer]) {
        assert.ok(!await exists(path), `${how}, ${noLinkedSize}: ${path}`);
      }
      await rejectsWith(resolveModel(VIT, { ...opts, offline: true }), "HUB_OFFLINE");
    }
    hub.knobs.tamper = undefined;
    await assertSnapshot(await resolveModel(VIT, opts), vit, STANDARD);
  });
});

Deno.test("a resumed download is hashed from its first byte", async () => {
  await withHub([vit], async (hub, opts) => {
    const size = vit.files.get("model.safetensors")!.length;
    hub.knobs.drop = { file: "model.safetensors", bytes: Math.floor(size / 10), times: Infinity };
    await rejectsWith(resolveModel(VIT, opts), "DOWNLOAD_FAILED", "resumes");
    const { blob } = cachePaths(hub, opts.cacheDir, VIT, "model.safetensors");
    const partial = await Deno.readFile(`${blob}.incomplete`);
    partial[0] ^= 0xff; // the kept bytes went bad between runs
    await Deno.writeFile(`${blob}.incomplete`, partial);
    hub.knobs.drop = undefined;
    await rejectsWith(resolveModel(VIT, opts), "DOWNLOAD_FAILED", "sha256");
    assert.ok(!await exists(`${blob}.incomplete`));
    await assertSnapshot(await resolveModel(VIT, opts), vit, STANDARD);
  });
});

Deno.test("a cached weights file that fails to load is checked, dropped and downloaded again", async () => {
  await withHub([vit], async (hub, opts) => {
    const dir = await resolveModel(VIT, opts);
    const { blob, pointer } = cachePaths(hub, opts.cacheDir, VIT, "model.safetensors");
    await Deno.truncate(blob, 100); // damaged on disk, or by a tool that does not verify
    await rejectsWith(openWeights(dir), "DOWNLOAD_FAILED", "model.safetensors", "sha256", "again");
    assert.ok(!await exists(blob) && !await exists(pointer));
    hub.requests.length = 0;
    assert.equal(await resolveModel(VIT, opts), dir);
    assert.ok(hub.requests.some((r) => r.server === "cdn"), "downloaded again");
    const store = await openWeights(dir);
    assert.ok(store.names().length > 0);
    store.close();
    // a file that fails to load though its blob is intact keeps its error and its blob
    const bin = cachePaths(hub, opts.cacheDir, VIT, "pytorch_model.bin");
    await resolveModel(VIT, { ...opts, files: ["pytorch_model.bin"] });
    await Deno.rename(bin.pointer, `${bin.pointer}.safetensors`);
    await rejectsWith(openWeights(`${bin.pointer}.safetensors`), "BAD_SAFETENSORS");
    assert.ok(await exists(bin.blob));
  });
});

/** vit-gpt2 with its weights in one shard named by an index mapping every tensor to `shard`. */
function indexed(id: string, shard: string, shardFile = shard): FixtureRepo {
  const weights = vit.files.get("model.safetensors")!;
  const header = Number(new DataView(weights.buffer).getBigUint64(0, true));
  const names = Object.keys(JSON.parse(new TextDecoder().decode(weights.subarray(8, 8 + header))))
    .filter((n) => n !== "__metadata__");
  const index = { weight_map: Object.fromEntries(names.map((n) => [n, shard])) };
  return variant(id, ["model.safetensors", "pytorch_model.bin"], {
    "model.safetensors.index.json": new TextEncoder().encode(JSON.stringify(index)),
    [shardFile]: weights,
  });
}

Deno.test("a hub index naming itself or another index fails at once; subfolder shards load", async () => {
  const self = indexed("webcap-test/self", "model.safetensors.index.json", "x.safetensors");
  const other = indexed("webcap-test/other", "b.safetensors.index.json");
  const sub = indexed("webcap-test/sub", "sub/x.safetensors");
  await withHub([self, other, sub], async (hub, opts) => {
    await rejectsWith(resolveModel(self.id, opts), "BAD_WEIGHTS", "never indexes");
    await rejectsWith(resolveModel(other.id, opts), "BAD_WEIGHTS", "b.safetensors.index.json");
    assert.ok(!hub.requests.some((r) => r.server === "cdn"), "no shard was downloaded");
    const dir = await resolveModel(sub.id, opts);
    const store = await openWeights(dir);
    assert.equal(store.source, join(dir, "model.safetensors.index.json"));
    assert.ok(store.names().length > 0);
    store.close();
  });
});

Deno.test("a control character in a model id is BAD_OPTION, not a raw EINVAL", async () => {
  for (const id of ["org/a\0b", "./x\0", "org/a\nb", "org/\x7f"]) {
    await rejectsWith(
      resolveModel(id, { endpoint: "http://127.0.0.1:9", offline: true }),
      "BAD_OPTION",
      "control character",
    );
  }
});

Deno.test("a hub text file above MAX_TEXT_BYTES is FILE_TOO_LARGE before its download", async () => {
  const big = variant("webcap-test/big", [], {
    "tokenizer.json": new Uint8Array(MAX_TEXT_BYTES + 1),
  });
  await withHub([big], async (hub, opts) => {
    await rejectsWith(resolveModel(big.id, opts), "FILE_TOO_LARGE", "tokenizer.json", big.id);
    const gets = hub.requests.filter((r) =>
      r.method === "GET" && r.path.endsWith("tokenizer.json")
    );
    assert.deepEqual(gets, []);
  });
});
