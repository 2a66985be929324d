import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { hubResolveUrl } from "../../src/io/hub.ts";
import { loadPreprocessor, loadTokenizer } from "../../src/arch/load.ts";
import { localFiles, MAX_TEXT_BYTES, subFolder, urlFiles } from "../../src/io/model_files.ts";
import { openModelFiles } from "../../src/io/model_source.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { openWeights, type WeightStore } from "../../src/io/weights.ts";
import { fixture, type RawTensor, writeSafetensors } from "./checkpoint_writers.ts";

const BASE = "http://models.test/repo/";

const isCode = (code: string, ...parts: string[]) => (e: unknown) => {
  assert.ok(e instanceof WebcapError, String(e));
  assert.equal(e.code, code, e.message);
  for (const p of parts) assert.ok(e.message.includes(p), `"${p}" not in: ${e.message}`);
  return true;
};

/** A fetch serving local folder `dir` at {@link BASE} (404 when absent), recording the paths asked. */
function folderFetch(dir: string): { fetch: typeof fetch; asked: string[] } {
  const asked: string[] = [];
  const fetchImpl = async (input: string | URL | Request) => {
    const url = new URL(input instanceof Request ? input.url : input);
    assert.ok(url.href.startsWith(BASE), url.href);
    const name = decodeURIComponent(url.href.slice(BASE.length));
    asked.push(name);
    try {
      return new Response(await Deno.readFile(`${dir}/${name}`));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      return new Response("Entry not found", { status: 404, statusText: "Not Found" });
    }
  };
  return { fetch: fetchImpl as typeof fetch, asked };
}

async function assertSameTensors(a: WeightStore, b: WeightStore): Promise<void> {
  assert.deepEqual(a.names().sort(), b.names().sort());
  for (const name of b.names()) {
    assert.deepEqual(a.info(name), b.info(name));
    assert.deepEqual(await a.read(name), await b.read(name), name);
  }
}

Deno.test("urlFiles: 404 is absent, other failures are DOWNLOAD_FAILED naming the URL", async () => {
  const { fetch: served, asked } = folderFetch(fixture("vit-gpt2"));
  const files = urlFiles(BASE.slice(0, -1), served); // the missing trailing "/" is added
  assert.equal(files.source, BASE);
  const config = JSON.parse((await files.text("config.json"))!);
  assert.equal(typeof config, "object");
  assert.equal(await files.text("config.json"), await files.text("config.json"));
  assert.deepEqual(asked, ["config.json"], "a text file is fetched once");
  assert.deepEqual(
    await files.bytes("tokenizer.json"),
    await Deno.readFile(fixture("vit-gpt2/tokenizer.json")),
  );
  assert.equal(await files.text("absent.json"), undefined);
  assert.equal(await files.bytes("absent.bin"), undefined);

  const status = (code: number) => () => Promise.resolve(new Response("no", { status: code }));
  await assert.rejects(
    urlFiles(BASE, status(401) as typeof fetch).text("config.json"),
    isCode("DOWNLOAD_FAILED", `${BASE}config.json`, "HTTP 401"),
  );
  assert.throws(() => urlFiles("http://"), isCode("BAD_OPTION", '"http://"', "not a valid URL"));
  const offline = () => Promise.reject(new TypeError("connection refused"));
  await assert.rejects(
    urlFiles(BASE, offline as typeof fetch).bytes("model.safetensors"),
    isCode("DOWNLOAD_FAILED", `${BASE}model.safetensors`, "connection refused"),
  );
});

Deno.test("localFiles: absent files and folders are undefined, symlinks are followed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-files-" });
  try {
    await Deno.symlink(fixture("vit-gpt2/config.json"), `${dir}/config.json`);
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeTextFile(`${dir}/sub/a.txt`, "alpha");
    const files = localFiles(dir);
    assert.equal(
      await files.text("config.json"),
      await Deno.readTextFile(fixture("vit-gpt2/config.json")),
    );
    assert.equal(await files.text("absent.json"), undefined);
    assert.equal(await files.bytes("sub"), undefined, "a folder is not a file");
    assert.equal(await files.path!("config.json"), `${dir}/config.json`);
    assert.equal(await files.path!("sub"), undefined);
    assert.deepEqual(await files.list!(), ["config.json"]);
    const sub = subFolder(files, "sub");
    assert.equal(sub.source, `${dir}/sub`);
    assert.equal(await sub.text("a.txt"), "alpha");
    assert.deepEqual(await sub.list!(), ["a.txt"]);
    await assert.rejects(localFiles(`${dir}/absent`).list!(), isCode("MISSING_FILE", "absent"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openWeights over a URL fetches the first present name of the local order", async () => {
  const { fetch: served, asked } = folderFetch(fixture("vit-gpt2"));
  const store = await openWeights(urlFiles(BASE, served));
  assert.equal(store.source, `${BASE}model.safetensors`);
  assert.deepEqual(asked, ["model.safetensors"]);
  const ref = await openSafetensors(fixture("vit-gpt2/model.safetensors"));
  await assertSameTensors(store, ref);

  const dir = await Deno.makeTempDir({ prefix: "webcap-url-weights-" });
  try {
    const empty = folderFetch(dir);
    await assert.rejects(
      openWeights(urlFiles(BASE, empty.fetch)),
      isCode("MISSING_FILE", BASE, "model.safetensors", "pytorch_model.bin", "cannot list"),
    );
    assert.deepEqual(empty.asked, [
      "model.safetensors",
      "model.safetensors.index.json",
      "repo.safetensors",
      "pytorch_model.bin",
      "pytorch_model.bin.index.json",
    ]);
    await Deno.symlink(fixture("vit-gpt2/pytorch_model.bin"), `${dir}/pytorch_model.bin`);
    const pickled = folderFetch(dir);
    const bin = await openWeights(urlFiles(BASE, pickled.fetch));
    assert.equal(bin.source, `${BASE}pytorch_model.bin`);
    assert.deepEqual(pickled.asked, empty.asked.slice(0, 4));
    await assertSameTensors(bin, ref);
    bin.close();

    const names = ref.names();
    const shards = [new Map<string, RawTensor>(), new Map<string, RawTensor>()];
    const weightMap: Record<string, string> = {};
    for (const [i, name] of names.entries()) {
      const { dtype, shape } = ref.info(name);
      shards[i % 2].set(name, { dtype, shape, bytes: await ref.read(name) });
      weightMap[name] = `shard-${i % 2}.safetensors`;
    }
    for (const [i, shard] of shards.entries()) {
      await Deno.writeFile(`${dir}/shard-${i}.safetensors`, writeSafetensors(shard));
    }
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ weight_map: weightMap }),
    );
    const sharded = await openWeights(urlFiles(BASE, folderFetch(dir).fetch));
    assert.equal(sharded.source, `${BASE}model.safetensors.index.json`);
    await assertSameTensors(sharded, ref);
    sharded.close();
    await Deno.remove(`${dir}/shard-1.safetensors`);
    await assert.rejects(
      openWeights(urlFiles(BASE, folderFetch(dir).fetch)),
      isCode("MISSING_FILE", `${BASE}shard-1.safetensors`, "index.json"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    store.close();
    ref.close();
  }
});

Deno.test("the tokenizer and image processor load from a URL as from the folder", async () => {
  const sentence = "a cat sitting on a couch";
  for (const model of ["vit-gpt2", "blip", "clipcap"]) {
    const files = urlFiles(BASE, folderFetch(fixture(model)).fetch);
    const [urlTok, dirTok] = [await loadTokenizer(files), await loadTokenizer(fixture(model))];
    assert.deepEqual(urlTok.encode(sentence), dirTok.encode(sentence), model);
    const [urlPrep, dirPrep] = [
      await loadPreprocessor(files),
      await loadPreprocessor(fixture(model)),
    ];
    assert.deepEqual([urlPrep.height, urlPrep.width], [dirPrep.height, dirPrep.width], model);
  }
  const none = urlFiles(BASE, folderFetch(fixture("preprocess")).fetch);
  await assert.rejects(loadTokenizer(none), isCode("MISSING_FILE", BASE, "tokenizer.json"));
  await assert.rejects(loadPreprocessor(none), isCode("MISSING_FILE", BASE, "preprocessor_config"));
});

Deno.test("openModelFiles: URLs are fetched, folders read; hub resolve URLs are checked", async () => {
  const url = await openModelFiles(BASE);
  assert.equal(url.source, BASE);
  assert.equal(url.path, undefined, "a URL source has no local paths");
  const dir = await openModelFiles(fixture("vit-gpt2"));
  assert.equal(dir.source, fixture("vit-gpt2"));
  assert.ok(await dir.text("config.json"));

  assert.equal(
    hubResolveUrl("nlpconnect/vit-gpt2-image-captioning", { endpoint: "https://huggingface.co" }),
    "https://huggingface.co/nlpconnect/vit-gpt2-image-captioning/resolve/main/",
  );
  assert.equal(
    hubResolveUrl("org/name", { endpoint: "https://hub.test", revision: "refs/pr/1" }),
    "https://hub.test/org/name/resolve/refs%2Fpr%2F1/",
  );
  assert.equal(
    hubResolveUrl("org/name", { revision: "v1.0", endpoint: "http://127.0.0.1:9/hub/" }),
    "http://127.0.0.1:9/hub/org/name/resolve/v1.0/",
  );
  assert.throws(
    () => hubResolveUrl("not-an-id", {}, "an http(s) URL"),
    isCode("BAD_OPTION", "an http(s) URL"),
  );
  assert.throws(
    () => hubResolveUrl("org/name", { revision: "../x" }),
    isCode("BAD_OPTION", "revision"),
  );
});

/** Local folder `dir` served at `{url}` on 127.0.0.1 (paths outside `/repo/` are 404), logged. */
function serveFolder(dir: string) {
  const asked: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    asked.push(path);
    if (!path.startsWith("/repo/")) return new Response("not here", { status: 404 });
    try {
      return new Response(await Deno.readFile(`${dir}/${decodeURIComponent(path.slice(6))}`));
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/repo/`,
    asked,
    close: () => server.shutdown(),
  };
}

/** A TCP port on 127.0.0.1 that counts and drops connections: "another host". */
function otherHost() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = { port: listener.addr.port, connections: 0, close: () => listener.close() };
  (async () => {
    for await (const conn of listener) {
      state.connections++;
      conn.close();
    }
  })().catch(() => {});
  return state;
}

Deno.test("a URL folder's index cannot name local files, other hosts or the parent", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-url-escape-" });
  const outside = await Deno.makeTempDir({ prefix: "webcap-url-outside-" });
  const folder = serveFolder(dir);
  const other = otherHost();
  try {
    const secret = `${outside}/secret.bin`;
    await Deno.writeTextFile(secret, "SECRET-BYTES-OF-A-LOCAL-FILE");
    const weights = `${outside}/model.safetensors`;
    await Deno.copyFile(fixture("vit-gpt2/model.safetensors"), weights);
    const local = await openSafetensors(weights);
    const names = local.names();
    local.close();
    const shards = [
      `file:${encodeURIComponent(weights)}`,
      `file:${encodeURIComponent(secret)}`,
      `file://${weights}`,
      `https:127.0.0.1:${other.port}/x.safetensors`,
      `//127.0.0.1:${other.port}/x.safetensors`,
      `/\\127.0.0.1:${other.port}/x.safetensors`,
      `%2e%2e/secret.safetensors`,
      `sub/../../secret.safetensors`,
      `/abs.safetensors`,
    ];
    for (const shard of shards) {
      const weightMap = Object.fromEntries(names.map((n) => [n, shard]));
      await Deno.writeTextFile(
        `${dir}/model.safetensors.index.json`,
        JSON.stringify({ weight_map: weightMap }),
      );
      folder.asked.length = 0;
      const err = await openWeights(urlFiles(folder.url)).then(() => undefined, (e) => e);
      isCode("BAD_WEIGHTS", JSON.stringify(shard).slice(1, -1), "index.json")(err);
      assert.ok(!err.message.includes("SECRET"), err.message);
      assert.deepEqual(folder.asked, [
        "/repo/model.safetensors",
        "/repo/model.safetensors.index.json",
      ]);
    }
    assert.equal(other.connections, 0, "no connection to another host");
    // any other name of a URL folder is refused before a request
    const files = urlFiles(folder.url);
    folder.asked.length = 0;
    for (const name of [`file://${secret}`, "../x.json", "%2e%2e/x.json", "//127.0.0.1:9/x"]) {
      await assert.rejects(files.text(name), isCode("BAD_OPTION", folder.url));
      await assert.rejects(files.bytes(name), isCode("BAD_OPTION", folder.url));
    }
    assert.deepEqual(folder.asked, []);
  } finally {
    other.close();
    await folder.close();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("a URL folder's shards may lie in subfolders, as in transformers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-url-sub-" });
  const folder = serveFolder(dir);
  try {
    const ref = await openSafetensors(fixture("vit-gpt2/model.safetensors"));
    await Deno.mkdir(`${dir}/sub`);
    await Deno.copyFile(fixture("vit-gpt2/model.safetensors"), `${dir}/sub/x.safetensors`);
    const weightMap = Object.fromEntries(ref.names().map((n) => [n, "sub/x.safetensors"]));
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ weight_map: weightMap }),
    );
    const store = await openWeights(urlFiles(folder.url));
    await assertSameTensors(store, ref);
    assert.ok(folder.asked.includes("/repo/sub/x.safetensors"));
    store.close();
    ref.close();
  } finally {
    await folder.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("text files above MAX_TEXT_BYTES are FILE_TOO_LARGE before being read whole", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-big-text-" });
  try {
    for (const name of ["tokenizer.json", "config.json", "preprocessor_config.json"]) {
      await Deno.writeFile(`${dir}/${name}`, new Uint8Array(0));
      await Deno.truncate(`${dir}/${name}`, MAX_TEXT_BYTES + 1); // sparse: no disk used
    }
    const tooLarge = (name: string) => isCode("FILE_TOO_LARGE", `${dir}/${name}`, "64 MiB");
    await assert.rejects(localFiles(dir).text("config.json"), tooLarge("config.json"));
    await assert.rejects(loadTokenizer(dir), tooLarge("tokenizer.json"));
    await assert.rejects(loadPreprocessor(dir), tooLarge("preprocessor_config.json"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  // over HTTP: by Content-Length before any byte, else while streaming, never the whole body
  let pulled = 0;
  const endless = () =>
    new ReadableStream<Uint8Array>({
      pull(c) {
        pulled++;
        c.enqueue(new Uint8Array(2 ** 20).fill(0x20));
      },
    });
  const announced = (() =>
    Promise.resolve(
      new Response(endless(), { headers: { "content-length": String(2 ** 40) } }),
    )) as typeof fetch;
  await assert.rejects(
    urlFiles(BASE, announced).text("tokenizer.json"),
    isCode("FILE_TOO_LARGE", `${BASE}tokenizer.json`, String(2 ** 40)),
  );
  pulled = 0;
  const unannounced = (() => Promise.resolve(new Response(endless()))) as typeof fetch;
  await assert.rejects(
    urlFiles(BASE, unannounced).text("config.json"),
    isCode("FILE_TOO_LARGE", `${BASE}config.json`),
  );
  assert.ok(pulled <= MAX_TEXT_BYTES / 2 ** 20 + 4, `${pulled} MiB pulled`);
});
