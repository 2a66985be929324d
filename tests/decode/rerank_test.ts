import assert from "node:assert/strict";
import {
  LENGTH_RANGES,
  lengthControl,
  LexiconSentiment,
  rerank,
  type Reranker,
} from "../../src/decode/rerank.ts";
import { resolveOptions } from "../../src/decode/options.ts";

Deno.test("rerank: the lexicon scorer follows the wanted sentiment", () => {
  const pos = new LexiconSentiment("positive");
  const neg = new LexiconSentiment("negative");
  assert.ok(pos.score("A happy dog on a sunny beach") > 0);
  assert.ok(pos.score("a sad broken chair") < 0);
  assert.equal(pos.score("a dog on a beach"), 0);
  assert.equal(neg.score("a sad broken chair"), -pos.score("a sad broken chair"));
  const custom = new LexiconSentiment("positive", { shiny: 2 });
  assert.equal(custom.score("a shiny happy car"), 2);
});

Deno.test("rerank: combined score reorders, weight 0 keeps the model's order", () => {
  const candidates = [
    { text: "a dog on a beach", score: -1 },
    { text: "a happy dog on a sunny beach", score: -1.5 },
    { text: "a sad dog", score: -0.8 },
  ];
  const byModel = rerank(candidates, new LexiconSentiment(), 0).map((c) => c.text);
  assert.deepEqual(byModel, ["a sad dog", "a dog on a beach", "a happy dog on a sunny beach"]);
  const ranked = rerank(candidates, new LexiconSentiment("positive"), 2);
  assert.equal(ranked[0].text, "a happy dog on a sunny beach");
  assert.equal(ranked.at(-1)!.text, "a sad dog");
  for (const c of ranked) assert.equal(c.combinedScore, c.score + 2 * c.attributeScore);
  const byLength: Reranker = { score: (t) => -t.length };
  assert.equal(rerank(candidates, byLength, 10)[0].text, "a sad dog");
});

Deno.test("rerank: length control maps wishes to valid, ordered token ranges", () => {
  const short = lengthControl("short"), detailed = lengthControl("detailed");
  assert.ok(short.maxNewTokens! < detailed.minNewTokens!);
  for (const wish of Object.keys(LENGTH_RANGES) as (keyof typeof LENGTH_RANGES)[]) {
    const r = resolveOptions(lengthControl(wish));
    assert.ok(r.minNewTokens <= r.maxNewTokens);
  }
});
