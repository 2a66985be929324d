import assert from "node:assert/strict";
import { PTB_PUNCTUATION, ptbTokenize, ptbTokenizeOne } from "../../src/eval/ptb/tokenizer.ts";
import { ptbLex } from "../../src/eval/ptb/lexer.ts";
import { type FixtureItem, loadCoco, loadEdge } from "./eval_fixtures.ts";

/** Tokenize as pycocoevalcap does: all references in one call, all candidates in another. */
function checkFixture(items: FixtureItem[], file: string): void {
  const refs = ptbTokenize(items.flatMap((it) => it.refs));
  const want = items.flatMap((it) => it.refs_tok);
  assert.equal(refs.length, want.length);
  refs.forEach((r, i) => assert.equal(r, want[i], `${file} reference ${i}`));
  const cands = ptbTokenize(items.map((it) => it.candidate));
  cands.forEach((c, i) => assert.equal(c, items[i].candidate_tok, `${file} candidate ${i}`));
}

Deno.test("ptb: every caption of coco-public.json tokenizes like the reference", async () => {
  checkFixture((await loadCoco()).images, "coco-public.json");
});

Deno.test("ptb: every caption of edge-cases.json tokenizes like the reference", async () => {
  checkFixture((await loadEdge()).cases, "edge-cases.json");
});

Deno.test("ptb: documented PTBTokenizer 3.4.1 behaviours (fixtures NOTES §1)", () => {
  const cases: [string, string][] = [
    ["A dog on a surfboard.", "a dog on a surfboard"],
    ["The U.S. flag and Dr. Who at 3.5 a.m.", "the u.s. flag and dr. who at 3.5 a.m."],
    ["isn't it, can't, won't, it's, cannot, gonna", "is n't it ca n't wo n't it 's can not gon na"],
    ["the dogs' bowls at 5 o'clock", "the dogs bowls at 5 o'clock"],
    ['a \u201Cquoted\u201D and "plain" word', "a quoted and plain word"],
    ["x \u2014 y \u2013 z -- w", "x y z w"],
    [
      "an e-mail, a two-story house, 5-6 dogs, -5 degrees",
      "an e-mail a two-story house 5-6 dogs -5 degrees",
    ],
    ["wait\u2026 and... \u0085 end", "wait and end"],
    [
      "$20 \u00A35 \u20AC3 5\u00A2 \u00BD 50% 3:30pm &amp;",
      "$ 20 # 5 $ 3 5 cents 1/2 50 % 3:30 pm &",
    ],
    ["colour grey theatre", "colour grey theatre"],
    ["(a) [b] {c}", "-lrb- a -rrb- -lsb- b -rsb- -lcb- c -rcb-"],
    ["wow!!! what?! a & b # c * d", "wow !!! what ?! a & b # c * d"],
    ["caf\u00E9 \u732B \uD83D\uDE3A cat", "caf\u00E9 \u732B cat"],
    ["  spaced\t\tout  ", "spaced out"],
    ["...", ""],
    ["", ""],
  ];
  const got = ptbTokenize(cases.map((c) => c[0]));
  cases.forEach(([raw, want], i) => assert.equal(got[i], want, JSON.stringify(raw)));
});

Deno.test("ptb: a caption's last token can depend on the next caption, as in one Java call", () => {
  // An acronym before a sentence-starting word loses its period ("C." -> "C" + ".").
  assert.deepEqual(ptbTokenize(["vitamin C.", "A dog"]), ["vitamin c", "a dog"]);
  assert.deepEqual(ptbTokenize(["vitamin C.", "dogs"]), ["vitamin c.", "dogs"]);
  assert.equal(ptbTokenizeOne("vitamin C."), "vitamin c.");
});

Deno.test("ptb: \\r, \\v, \\f, U+2028/2029 act as spaces and never shift later captions", () => {
  for (const brk of ["\r", "\r\n", "\u000B", "\u000C", "\u2028", "\u2029", "\n"]) {
    const got = ptbTokenize([`a dog${brk}running`, "two cats"]);
    assert.deepEqual(got, ["a dog running", "two cats"], JSON.stringify(brk));
  }
  // The scanner itself still reports them as line breaks.
  assert.equal(ptbLex("a\rb").filter((t) => typeof t !== "string").length, 1);
});

Deno.test("ptb: long captions, empty input, punctuation list", () => {
  const words = Array.from({ length: 2000 }, (_, i) => `w${i}`);
  assert.equal(ptbTokenizeOne(words.join(" ") + "."), words.join(" "));
  assert.deepEqual(ptbTokenize([]), []);
  assert.equal(PTB_PUNCTUATION.size, 17);
  assert.equal(ptbTokenizeOne(". ? ! , : ; - -- ... ` `` ' ''"), "");
});
