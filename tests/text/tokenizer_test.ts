// Tokenizers against ../shared/fixtures/hf/tokenizer-cases.json (ids from transformers 5.17),
// decoding semantics of transformers 5, word maps, and error codes. Every tokenizer.json test runs
// on both libraries (native `tokenizers` and pure-JS `@huggingface/tokenizers`).
import assert from "node:assert/strict";
import { assertCode } from "../util.ts";
import {
  Tokenizer,
  type TokenizerBackend,
  type TokenizerConfig,
} from "../../src/text/tokenizer.ts";
import { TOKENIZER_BACKENDS } from "../../src/text/library.ts";
import { WebcapError } from "../../src/errors.ts";

const HF = new URL("../../../shared/fixtures/hf/", import.meta.url);
const cases: Record<string, Record<string, number[]>> = JSON.parse(
  await Deno.readTextFile(new URL("tokenizer-cases.json", HF)),
);

type Load = (json: object | string, source: string, config?: TokenizerConfig) => Tokenizer;

/** `Tokenizer.fromJSON` on `backend`, checked to be the library asked for. */
function loader(backend: TokenizerBackend): Load {
  return (json, source, config) => {
    const tok = Tokenizer.fromJSON(json, source, config, { backend });
    assert.equal(tok.backend, backend);
    return tok;
  };
}

for (const backend of TOKENIZER_BACKENDS) {
  for (const name of Object.keys(cases)) fixtureTests(backend, name);
  semanticsTests(backend);
}

function fixtureTests(backend: TokenizerBackend, name: string): void {
  const load = loader(backend);
  const path = new URL(`${name}-tokenizer.json`, HF).pathname;
  const raw = Deno.readTextFileSync(path);
  const json = JSON.parse(raw);
  const lowercase = json.normalizer?.lowercase === true;

  Deno.test(`${backend} ${name}: fixture sentences: reference ids, and decode back`, () => {
    const tok = load(raw, path);
    for (const [text, ids] of Object.entries(cases[name])) {
      assert.deepEqual(tok.encode(text), ids, text);
      assert.equal(tok.decode(ids), lowercase ? text.toLowerCase() : text);
    }
  });

  Deno.test(`${backend} ${name}: vocabulary, special ids and id ↔ token maps`, () => {
    const tok = load(JSON.stringify(json), path);
    const vocab: Record<string, number> = json.model.vocab;
    assert.equal(tok.vocabSize, Math.max(...Object.values(vocab)) + 1);
    for (const [token, id] of Object.entries(vocab)) {
      assert.equal(tok.tokenToId(token), id);
      assert.equal(tok.idToToken(id), token);
    }
    const special = json.added_tokens.filter((t: { special: boolean }) => t.special)
      .map((t: { id: number }) => t.id).sort((a: number, b: number) => a - b);
    assert.deepEqual(tok.specialIds, special);
    assert.equal(tok.idToToken(tok.vocabSize + 3), undefined);
  });

  Deno.test(`${backend} ${name}: special tokens, unknown ids, empty input as transformers`, () => {
    const tok = load(json, path);
    const [text, ids] = Object.entries(cases[name])[0];
    const special = new Set(tok.specialIds);
    const body = ids.filter((id) => !special.has(id));
    assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), body);
    // Unknown ids are dropped, like the Rust tokenizer.
    assert.equal(tok.decode([...ids, tok.vocabSize + 7]), tok.decode(ids));
    assert.equal(tok.decode([]), "");
    // Special tokens are kept on request and dropped by default.
    const withSpecial = [tok.specialIds[0], ...body];
    assert.equal(tok.decode(withSpecial), tok.decode(body));
    assert.ok(
      tok.decode(withSpecial, { skipSpecialTokens: false }).includes(
        tok.idToToken(tok.specialIds[0])!,
      ),
    );
  });
}

function semanticsTests(backend: TokenizerBackend): void {
  const load = loader(backend);
  Deno.test(`${backend} gpt2: byte-level BPE round-trips any text; transformers' clean-up`, () => {
    const json = JSON.parse(Deno.readTextFileSync(new URL("gpt2-tokenizer.json", HF)));
    const tok = load(json, "gpt2");
    for (const text of ["héllo wörld 😀 ", "a  b\tc\n", "don't stop , ok ."]) {
      assert.equal(tok.decode(tok.encode(text)), text);
    }
    const ids = tok.encode("it 's a dog , is n't it ?");
    assert.equal(tok.decode(ids), "it 's a dog , is n't it ?"); // default: no clean-up
    assert.equal(tok.decode(ids, { cleanUpTokenizationSpaces: true }), "it's a dog, isn't it?");
    // A configured clean-up is ignored for BPE unless forced, as in transformers ≥ 5.
    const configured = load(json, "gpt2", { clean_up_tokenization_spaces: true });
    assert.equal(configured.decode(ids), "it 's a dog , is n't it ?");
    const forced = load(json, "gpt2", {
      clean_up_tokenization_spaces: true,
      clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: true,
    });
    assert.equal(forced.decode(ids), "it's a dog, isn't it?");
    // A literal special token in the text is matched as that token.
    const eos = tok.specialIds[0];
    assert.ok(tok.encode(`a${tok.idToToken(eos)}b`).includes(eos));
  });

  Deno.test(`${backend} bert: WordPiece joins ## pieces; decoder, configured clean-up`, () => {
    const path = new URL("bert-tokenizer.json", HF).pathname;
    const tok = load(Deno.readTextFileSync(path), path);
    const [text, ids] = Object.entries(cases.bert)[0];
    const pieces = ids.map((id) => tok.idToToken(id)!);
    assert.ok(pieces.some((p) => p.startsWith("##")), "the case should contain ## pieces");
    assert.equal(tok.decode(ids), text.toLowerCase());
    assert.equal(
      tok.decode(ids, { skipSpecialTokens: false }),
      pieces.join(" ").replaceAll(" ##", ""),
    );
    // The fixture vocabulary has no punctuation: add "." to see both clean-up stages.
    const json = JSON.parse(Deno.readTextFileSync(path));
    json.model.vocab["."] = tok.vocabSize;
    const dotted = load(json, "bert+dot");
    const ids2 = dotted.encode("a dog.");
    assert.equal(ids2.at(-2), tok.vocabSize);
    assert.equal(dotted.decode(ids2), "a dog."); // the WordPiece decoder's own cleanup: true
    json.decoder.cleanup = false;
    const raw = load(json, "bert+dot, no decoder cleanup");
    assert.equal(raw.decode(ids2), "a dog .");
    const configured = load(json, "bert+dot", { clean_up_tokenization_spaces: true });
    assert.equal(configured.decode(ids2), "a dog."); // not BPE: the configured clean-up applies
  });
}

Deno.test("word map: <start>/<end> added, unknown words → <unk>, specials skipped", () => {
  const map = { "<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 3, a: 4, dog: 5, on: 6, grass: 7 };
  const tok = Tokenizer.fromWordMap(map, "word_map.json");
  assert.deepEqual(tok.encode("A dog  on GRASS"), [1, 4, 5, 6, 7, 2]);
  assert.deepEqual(tok.encode("a cat", { addSpecialTokens: false }), [4, 3]);
  assert.equal(tok.decode([1, 4, 5, 3, 6, 7, 2, 0, 0]), "a dog on grass");
  assert.equal(
    tok.decode([1, 4, 5, 2, 0], { skipSpecialTokens: false }),
    "<start> a dog <end> <pad>",
  );
  assert.equal(tok.decode([4, 99, 5]), "a dog");
  assert.deepEqual(tok.specialIds, [0, 1, 2, 3]);
  assert.equal(tok.vocabSize, 8);
  assert.equal(tok.tokenToId("grass"), 7);
  assert.equal(tok.tokenToId("constructor"), undefined);
  assert.equal(tok.idToToken(5), "dog");
  // fromJSON recognises a word map too.
  assert.deepEqual(Tokenizer.fromJSON(JSON.stringify(map), "wm").encode("dog"), [1, 5, 2]);
  assertCode(
    () => Tokenizer.fromWordMap({ "<start>": 0, "<end>": 1 }, "wm.json"),
    "BAD_TOKENIZER",
    "wm\\.json",
    "<pad>",
    "<unk>",
  );
  assertCode(() => Tokenizer.fromWordMap({ ...map, cat: 5 }, "wm.json"), "BAD_TOKENIZER", "id 5");
});

Deno.test("unknown or malformed JSON is BAD_TOKENIZER; a missing file MISSING_FILE", async () => {
  assertCode(
    () => Tokenizer.fromJSON("{not json", "t.json"),
    "BAD_TOKENIZER",
    "t\\.json",
    "invalid JSON",
  );
  assertCode(() => Tokenizer.fromJSON([1, 2], "t.json"), "BAD_TOKENIZER", "object");
  assertCode(() => Tokenizer.fromJSON({ hello: 1 }, "t.json"), "BAD_TOKENIZER", "model");
  assertCode(
    () => Tokenizer.fromJSON({ model: { type: "Mystery", vocab: {} }, added_tokens: [] }, "t.json"),
    "BAD_TOKENIZER",
    "Mystery",
  );
  await assert.rejects(Tokenizer.fromFile("/nonexistent/tokenizer.json"), (e: unknown) => {
    assert.ok(e instanceof WebcapError);
    assert.equal(e.code, "MISSING_FILE");
    assert.match(e.message, /\/nonexistent\/tokenizer\.json/);
    return true;
  });
});

Deno.test("Tokenizer.fromIds: token ids as text both ways, specials skipped, bad ids refused", () => {
  const tok = Tokenizer.fromIds(300, [1, 2]);
  assert.equal(tok.kind, "ids");
  assert.deepEqual(tok.encode(" 22  7 299 ", { addSpecialTokens: false }), [22, 7, 299]);
  assert.equal(tok.decode([1, 22, 7, 2]), "22 7");
  assert.equal(tok.decode([1, 22, 2], { skipSpecialTokens: false }), "1 22 2");
  assert.throws(() => tok.encode("300"), /not a token id below 300/);
  assert.throws(() => tok.encode("dog"), /not a token id/);
});
