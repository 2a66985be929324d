import assert from "node:assert/strict";
import { Bleu } from "../../src/eval/bleu.ts";
import { CiderD, documentFrequency } from "../../src/eval/cider.ts";
import { RougeL } from "../../src/eval/rouge.ts";
import { WebcapError } from "../../src/errors.ts";
import {
  assertClose,
  type FixtureItem,
  loadCoco,
  loadEdge,
  SCORER_METRICS,
} from "./eval_fixtures.ts";

/** BLEU, ROUGE-L and CIDEr-D of tokenized fixture items, keyed like the fixtures. */
function scoreAll(items: FixtureItem[]) {
  const refs = items.map((it) => it.refs_tok), cands = items.map((it) => it.candidate_tok);
  const bleu = new Bleu(refs).score(cands);
  const rouge = new RougeL(refs).score(cands);
  const cider = new CiderD(refs).score(cands);
  const corpus: Record<string, number> = { ROUGE_L: rouge.corpus, CIDEr: cider.corpus };
  bleu.corpus.forEach((v, k) => corpus[`Bleu_${k + 1}`] = v);
  const perImage = items.map((_, i) => {
    const p: Record<string, number> = { ROUGE_L: rouge.perImage[i], CIDEr: cider.perImage[i] };
    bleu.perImage[i].forEach((v, k) => p[`Bleu_${k + 1}`] = v);
    return p;
  });
  return { corpus, perImage };
}

Deno.test("scorers: coco-public.json corpus and per-image scores within 1e-9", async () => {
  const fx = await loadCoco();
  const got = scoreAll(fx.images);
  for (const m of SCORER_METRICS) assertClose(got.corpus[m], fx.expected[m], `corpus ${m}`);
  fx.images.forEach((im, i) => {
    for (const m of SCORER_METRICS) {
      assertClose(got.perImage[i][m], fx.per_image[String(im.id)][m], `image ${im.id} ${m}`);
    }
  });
});

Deno.test("scorers: edge-cases.json as one set and each case alone, within 1e-9", async () => {
  const fx = await loadEdge();
  const set = scoreAll(fx.cases);
  for (const m of SCORER_METRICS) assertClose(set.corpus[m], fx.expected_set[m], `set ${m}`);
  fx.cases.forEach((c, i) => {
    const alone = scoreAll([c]);
    for (const m of SCORER_METRICS) {
      assertClose(set.perImage[i][m], c.expected_in_set![m], `${c.id} in set ${m}`);
      assertClose(alone.corpus[m], c.expected_alone![m], `${c.id} alone ${m}`);
    }
  });
});

Deno.test("bleu: closest reference length breaks ties toward the shorter one", () => {
  const bleu = new Bleu([["a b", "a b c d"]]);
  assert.equal(bleu.stats(0, "a b c").refLen, 2);
  assert.deepEqual(bleu.stats(0, "a a b").correct.slice(0, 2), [2, 1]);
  assert.deepEqual(bleu.scoreOne(0, ""), [0, 0, 0, 0]);
});

Deno.test("rouge: empty candidate scores 0; β = 1.2 weights recall", () => {
  const rouge = new RougeL([["a b c d"]]);
  assert.equal(rouge.scoreOne(0, ""), 0);
  const p = 1, r = 0.5, b2 = 1.2 ** 2;
  assert.equal(rouge.scoreOne(0, "a b"), ((1 + b2) * p * r) / (r + b2 * p));
});

Deno.test("cider: scoreOne equals the per-image scores; a one-image set scores 0", async () => {
  const fx = await loadCoco();
  const refs = fx.images.map((im) => im.refs_tok), cands = fx.images.map((im) => im.candidate_tok);
  const cider = new CiderD(refs);
  const all = cider.score(cands);
  for (const i of [0, 17, 199]) assert.equal(cider.scoreOne(i, cands[i]), all.perImage[i]);
  assert.equal(new CiderD([refs[0]]).scoreOne(0, refs[0][0]), 0);
});

Deno.test("cider: corpus document frequencies (SCST) change the IDF, same df = same scores", async () => {
  const fx = await loadCoco();
  const refs = fx.images.map((im) => im.refs_tok), cands = fx.images.map((im) => im.candidate_tok);
  const own = new CiderD(refs.slice(0, 20)).score(cands.slice(0, 20));
  const same = new CiderD(refs.slice(0, 20), { df: documentFrequency(refs.slice(0, 20)) })
    .score(cands.slice(0, 20));
  assert.deepEqual(same, own);
  const corpusDf = documentFrequency(refs);
  assert.equal(corpusDf.numDocs, 200);
  assert.equal(
    corpusDf.counts.get("a"),
    refs.filter((r) => r.some((s) => s.split(" ").includes("a"))).length,
  );
  const scst = new CiderD(refs.slice(0, 20), { df: corpusDf });
  const byCorpus = scst.score(cands.slice(0, 20));
  assert.notEqual(byCorpus.corpus, own.corpus);
  assert.equal(scst.scoreOne(3, cands[3]), byCorpus.perImage[3]);
});

Deno.test("scorers: bad shapes are refused with BAD_EVAL_INPUT", () => {
  const isBad = (e: unknown) => e instanceof WebcapError && e.code === "BAD_EVAL_INPUT";
  assert.throws(() => new CiderD([["a"], []]), isBad);
  assert.throws(() => new Bleu([["a", 3 as unknown as string]]), isBad);
  assert.throws(() => new RougeL([["a"]]).score(["a", "b"]), isBad);
  assert.throws(() => new CiderD([["a"]]).scoreOne(1, "a"), isBad);
  assert.throws(() => new Bleu([["a"]]).score([null as unknown as string]), isBad);
});

Deno.test("scorers: empty reference strings and empty candidates", () => {
  const refs = [["", "a dog runs"], ["two cats"]];
  const bleu = new Bleu(refs);
  assert.equal(bleu.stats(0, "").refLen, 0);
  assert.equal(bleu.stats(0, "a dog").refLen, 3);
  assert.deepEqual(bleu.score(["", ""]).corpus, [0, 0, 0, 0]);
  assert.equal(new RougeL(refs).scoreOne(0, "a dog runs"), 1);
  const cider = new CiderD(refs);
  assert.equal(cider.scoreOne(0, ""), 0);
  assert.ok(cider.scoreOne(0, "a dog runs") > 0);
});
