// The two libraries behind a tokenizer.json (native `tokenizers`, pure-JS
// `@huggingface/tokenizers`): the same ids and text on every caption of ../shared/fixtures/eval/,
// the native one by default in Deno, a quiet fallback where it cannot load, and clear errors.
import assert from "node:assert/strict";
import { assertCode, fixture, rng } from "../util.ts";
import { Tokenizer } from "../../src/text/tokenizer.ts";
import { TOKENIZER_BACKENDS } from "../../src/text/library.ts";

const CASES = JSON.parse(Deno.readTextFileSync(fixture("hf/tokenizer-cases.json")));
/** The fixture tokenizers by name (gpt2: byte-level BPE, bert: WordPiece). */
const NAMES = Object.keys(CASES);
const tokenizerPath = (name: string) => fixture(`hf/${name}-tokenizer.json`);
const GPT2 = tokenizerPath("gpt2");

interface EvalImage {
  refs: string[];
  candidate: string;
  refs_tok: string[];
  candidate_tok: string;
}

/** Every distinct caption of the eval fixtures, raw and PTB-tokenized. */
function evalCaptions(): string[] {
  const coco = JSON.parse(Deno.readTextFileSync(fixture("eval/coco-public.json")));
  const edge = JSON.parse(Deno.readTextFileSync(fixture("eval/edge-cases.json")));
  const images: EvalImage[] = [...coco.images, ...edge.cases];
  return [
    ...new Set(
      images.flatMap((im) => [...im.refs, im.candidate, ...im.refs_tok, im.candidate_tok]),
    ),
  ];
}

/** The tokenizer at `path` on each library: [native, JS]. */
function onBothLibraries(path: string): Tokenizer[] {
  const json = Deno.readTextFileSync(path);
  return TOKENIZER_BACKENDS.map((backend) => Tokenizer.fromJSON(json, path, {}, { backend }));
}

for (const name of NAMES) {
  const path = tokenizerPath(name);
  Deno.test(`${name}: both libraries give the same ids and text for every eval caption`, () => {
    const [native, js] = onBothLibraries(path);
    // Byte-level BPE loses nothing, so its text comes back exactly.
    const lossless = JSON.parse(Deno.readTextFileSync(path)).decoder?.type === "ByteLevel";
    const captions = evalCaptions();
    assert.ok(captions.length > 1000, `${captions.length} captions`);
    for (const caption of captions) {
      const ids = native.encode(caption);
      assert.deepEqual(js.encode(caption), ids, caption);
      const text = native.decode(ids);
      assert.equal(js.decode(ids), text, caption);
      if (lossless) assert.equal(text, caption);
    }
  });

  Deno.test(`${name}: both libraries decode random id sequences alike (broken UTF-8 too)`, () => {
    const [native, js] = onBothLibraries(path);
    const r = rng(14);
    for (let i = 0; i < 300; i++) {
      const ids = Array.from(
        { length: 1 + Math.floor(r() * 12) },
        () => Math.floor(r() * native.vocabSize),
      );
      for (const skipSpecialTokens of [true, false]) {
        const text = native.decode(ids, { skipSpecialTokens });
        assert.equal(js.decode(ids, { skipSpecialTokens }), text, `${ids}`);
      }
    }
  });
}

Deno.test("with -A a tokenizer.json runs natively; word maps and ids on no library", async () => {
  const tok = await Tokenizer.fromFile(GPT2);
  assert.equal(tok.backend, "tokenizers");
  assert.equal(
    Tokenizer.fromWordMap({ "<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 3 }).backend,
    undefined,
  );
  assert.equal(Tokenizer.fromIds(10, [0]).backend, undefined);
});

Deno.test("unknown backend: BAD_OPTION; a tokenizer.json a library rejects: BAD_TOKENIZER", () => {
  const json = Deno.readTextFileSync(GPT2);
  assertCode(
    () => Tokenizer.fromJSON(json, "t.json", {}, { backend: "rust" as never }),
    "BAD_OPTION",
    "t\\.json",
    '"rust"',
    "@huggingface/tokenizers",
  );
  const bad = { ...JSON.parse(json), normalizer: { type: "Mystery" } };
  for (const backend of TOKENIZER_BACKENDS) {
    assertCode(
      () => Tokenizer.fromJSON(bad, "t.json", {}, { backend }),
      "BAD_TOKENIZER",
      "t\\.json",
      "unsupported tokenizer\\.json",
    );
  }
});

/** Run print_backend.ts with `permissions` and `env`; its JSON line and stderr. */
async function printBackend(
  permissions: readonly string[],
  env: Record<string, string>,
  path: string,
  text: string,
) {
  const script = new URL("print_backend.ts", import.meta.url).pathname;
  const { success, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, script, path, text],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const err = new TextDecoder().decode(stderr);
  assert.ok(success, err);
  return { out: JSON.parse(new TextDecoder().decode(stdout)), err };
}

Deno.test("where the native library cannot load, the JS one takes over quietly", async () => {
  const [text, ids] = Object.entries(CASES.gpt2)[0];
  // No --allow-ffi; and a platform without a binding (the loader finds none at this path).
  const noBinding = { NAPI_RS_NATIVE_LIBRARY_PATH: "/nonexistent/tokenizers.node" };
  for (const [permissions, env] of [[["--allow-read"], {}], [["-A"], noBinding]] as const) {
    const { out, err } = await printBackend(permissions, env, GPT2, text);
    assert.equal(err, "", `${permissions}: nothing on stderr`);
    assert.equal(out.backend, "@huggingface/tokenizers");
    assert.equal(out.native, "BAD_OPTION");
    assert.deepEqual(out.ids, ids);
  }
});

Deno.test("with -A the native library loads, and nothing is printed", async () => {
  const [text, ids] = Object.entries(CASES.gpt2)[1];
  const { out, err } = await printBackend(["-A"], {}, GPT2, text);
  assert.equal(err, "");
  assert.equal(out.backend, "tokenizers");
  assert.equal(out.native, "");
  assert.deepEqual(out.ids, ids);
});
