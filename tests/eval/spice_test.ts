import assert from "node:assert/strict";
import { analyse, lemmatize } from "../../src/eval/spice/pos_lexicon.ts";
import { parseSceneGraph, type SceneGraph } from "../../src/eval/spice/scene_graph.ts";
import { SpiceScorer } from "../../src/eval/spice/spice.ts";
import { loadWordNet } from "../../src/eval/wordnet.ts";
import { WebcapError } from "../../src/errors.ts";

const FIXTURES = new URL("../../../shared/fixtures/eval/", import.meta.url);

interface CocoImage {
  kind: string;
  refs_tok: string[];
  candidate_tok: string;
}

function loadCoco(): CocoImage[] {
  const text = Deno.readTextFileSync(new URL("coco-public.json", FIXTURES));
  return (JSON.parse(text) as { images: CocoImage[] }).images;
}

/** Checks that every listed tuple is in the graph. */
function assertHas(g: SceneGraph, want: { o?: string[]; a?: string[][]; r?: string[][] }): void {
  for (const o of want.o ?? []) assert.ok(g.objects.includes(o), `object ${o} in ${g.objects}`);
  const attrs = g.attributes.map((x) => x.join("|"));
  for (const a of want.a ?? []) assert.ok(attrs.includes(a.join("|")), `attr ${a} in ${attrs}`);
  const rels = g.relations.map((x) => x.join("|"));
  for (const r of want.r ?? []) assert.ok(rels.includes(r.join("|")), `rel ${r} in ${rels}`);
}

const scorer = await SpiceScorer.create();

Deno.test("lexicon: WordNet morphology picks base forms", () => {
  assert.equal(lemmatize("men", "n"), "man");
  assert.equal(lemmatize("glasses", "n"), "glass");
  assert.equal(lemmatize("leaves", "n"), "leaf");
  assert.equal(lemmatize("buses", "n"), "bus");
  assert.equal(lemmatize("people", "n"), "people");
  assert.equal(lemmatize("sitting", "v"), "sit");
  assert.equal(lemmatize("bigger", "a"), "big");
  const riding = analyse("riding").map((a) => `${a.pos}:${a.lemma}:${a.form}`);
  assert.ok(riding.includes("v:ride:ing") && riding.includes("n:riding:base"));
  assert.ok(!analyse("bed").some((a) => a.lemma === "be"), "bed is not be + d");
  assert.deepEqual(analyse("qwzx"), []);
});

Deno.test("scene graph: verb and preposition relations", () => {
  const g = parseSceneGraph("a man riding a horse on a beach");
  assert.deepEqual(g.objects.toSorted(), ["beach", "horse", "man"]);
  assertHas(g, { r: [["man", "ride", "horse"], ["horse", "on", "beach"]] });
});

Deno.test("scene graph: attributes from adjectives, compounds, counts and copulas", () => {
  assertHas(parseSceneGraph("a man in a red shirt"), {
    r: [["man", "in", "shirt"]],
    a: [["shirt", "red"]],
  });
  assertHas(parseSceneGraph("two dogs playing in the grass"), {
    a: [["dog", "two"]],
    r: [["dog", "play in", "grass"]],
  });
  assertHas(parseSceneGraph("the sky is blue"), { o: ["sky"], a: [["sky", "blue"]] });
  assertHas(parseSceneGraph("a woman is smiling"), { a: [["woman", "smile"]] });
  assertHas(parseSceneGraph("a black and white cat"), { a: [["cat", "black"], ["cat", "white"]] });
  const hydrant = parseSceneGraph("a dog in front of a fire hydrant");
  assertHas(hydrant, { a: [["hydrant", "fire"]], r: [["dog", "in front of", "hydrant"]] });
  assert.ok(!hydrant.objects.includes("fire"), "a compound modifier is not an object");
});

Deno.test("scene graph: multi-word prepositions, coordination, lists", () => {
  assertHas(parseSceneGraph("a cat sitting next to a laptop"), {
    r: [["cat", "sit next to", "laptop"]],
  });
  assertHas(parseSceneGraph("a man and a woman sitting on a bench"), {
    r: [["man", "sit on", "bench"], ["woman", "sit on", "bench"]],
  });
  assertHas(parseSceneGraph("a kitchen with a stove a sink and a refrigerator"), {
    r: [["kitchen", "with", "stove"], ["kitchen", "with", "sink"], [
      "kitchen",
      "with",
      "refrigerator",
    ]],
  });
});

Deno.test("scene graph: of-phrases, quantities, possessives, passives", () => {
  const people = parseSceneGraph("a group of people standing in front of a building");
  assertHas(people, {
    r: [["group", "of", "people"], ["people", "stand in front of", "building"]],
  });
  const couple = parseSceneGraph("a couple of dogs running on the beach");
  assertHas(couple, { a: [["dog", "couple"]], r: [["dog", "run on", "beach"]] });
  assert.ok(!couple.objects.includes("couple"), "a quantity noun is not an object");
  assertHas(parseSceneGraph("the man 's hat is red"), {
    r: [["man", "have", "hat"]],
    a: [["hat", "red"]],
  });
  assertHas(parseSceneGraph("a girl brushing her teeth"), {
    r: [["girl", "have", "tooth"], ["girl", "brush", "tooth"]],
  });
  assertHas(parseSceneGraph("a table topped with plates of food"), {
    r: [["table", "top with", "plate"], ["plate", "of", "food"]],
  });
});

Deno.test("scene graph: lemmas and empty input", () => {
  assertHas(parseSceneGraph("men sitting on benches"), { r: [["man", "sit on", "bench"]] });
  assert.deepEqual(parseSceneGraph(""), { objects: [], attributes: [], relations: [] });
  assert.deepEqual(parseSceneGraph("   "), { objects: [], attributes: [], relations: [] });
});

Deno.test("SPICE-ts: identical caption scores 1, disjoint caption scores 0", () => {
  const cap = "a man riding a horse on a beach";
  const same = scorer.score([[cap]], [cap]);
  assert.equal(same.perImage[0], 1);
  const other = scorer.score([[cap]], ["two airplanes flying over snowy mountains"]);
  assert.equal(other.perImage[0], 0);
  assert.equal(other.corpus, 0);
});

Deno.test("SPICE-ts: references merge into one graph; precision and recall are per side", () => {
  const refs = ["a dog on the grass", "a brown dog on the grass"];
  const res = scorer.score([refs], ["a dog on the grass"], { detail: true });
  const d = res.detail![0];
  const refTuples = d.tuples.refs.map((t) => t.tuple.join("|"));
  assert.equal(refTuples.filter((t) => t === "dog").length, 1, "one dog node across refs");
  assert.ok(refTuples.includes("dog|brown"));
  assert.equal(d.pr, 1);
  const matched = d.tuples.refs.filter((t) => t.matched).length;
  assert.equal(d.re, matched / d.tuples.refs.length);
  assert.ok(d.re < 1);
  assert.equal(d.f, (2 * d.pr * d.re) / (d.pr + d.re));
});

Deno.test("SPICE-ts: plurals and inflections match through lemmas", () => {
  const res = scorer.score([["a dog is sitting on the grass"]], ["dogs sit on the grass"], {
    detail: true,
  });
  const cand = res.detail![0].tuples.cand;
  assert.ok(cand.some((t) => t.tuple.join("|") === "dog" && t.matched));
  assert.ok(cand.some((t) => t.tuple.join("|") === "dog|sit on|grass" && t.matched));
});

Deno.test("SPICE-ts: WordNet synonyms match exactly when the dictionary says so", async () => {
  const wn = await loadWordNet();
  const share = (a: string, b: string) => {
    const sb = wn.allSynsets(b);
    return [...wn.allSynsets(a)].some((s) => sb.has(s));
  };
  const noSyn = await SpiceScorer.create({ synonyms: false });
  for (const [a, b] of [["couch", "sofa"], ["man", "guy"], ["bike", "bicycle"]]) {
    const refs = [[`a cat on a ${a}`]];
    const cand = [`a cat on a ${b}`];
    const f = scorer.score(refs, cand).perImage[0];
    assert.equal(f === 1, share(a, b), `${a}/${b}: f=${f}, shared synset=${share(a, b)}`);
    assert.ok(noSyn.score(refs, cand).perImage[0] < 1, `${a}/${b} without synonyms`);
  }
  assert.ok(share("couch", "sofa"), "WordNet lists couch and sofa as synonyms");
});

Deno.test("SPICE-ts: empty candidates and references do not crash", () => {
  const res = scorer.score([["a red bus on a street"], [""]], ["", "a bus"]);
  assert.deepEqual(res.perImage, [0, 0]);
  assert.equal(scorer.score([], []).perImage.length, 0);
});

Deno.test("SPICE-ts: bad input throws BAD_EVAL_INPUT", () => {
  assert.throws(
    () => scorer.score([["a cat"]], ["a cat", "a dog"]),
    (e) => e instanceof WebcapError && e.code === "BAD_EVAL_INPUT",
  );
  assert.throws(
    () => scorer.score([[]], ["a cat"]),
    (e) => e instanceof WebcapError && e.code === "BAD_EVAL_INPUT",
  );
});

Deno.test("SPICE-ts on COCO: bounded scores, mean corpus, human > mismatched", () => {
  const images = loadCoco();
  const res = scorer.score(images.map((i) => i.refs_tok), images.map((i) => i.candidate_tok));
  assert.equal(res.perImage.length, images.length);
  for (const f of res.perImage) assert.ok(f >= 0 && f <= 1, `score ${f} in [0, 1]`);
  const mean = res.perImage.reduce((a, b) => a + b, 0) / res.perImage.length;
  assert.ok(Math.abs(res.corpus - mean) < 1e-12);
  const meanOf = (kind: string) => {
    const fs = res.perImage.filter((_, i) => images[i].kind === kind);
    assert.ok(fs.length > 0, `fixture has ${kind} images`);
    return fs.reduce((a, b) => a + b, 0) / fs.length;
  };
  const human = meanOf("human_loo");
  const mismatched = meanOf("mismatched");
  assert.ok(human > mismatched, `human_loo ${human} > mismatched ${mismatched}`);
});

Deno.test("SPICE-ts: Meteor's own WordNet resources give the same synonym decisions", async () => {
  const viaMeteor = await SpiceScorer.create({
    wordnetOptions: { resourceDir: new URL("meteor-resources/", FIXTURES) },
  });
  const refs = [["a cat sleeping on a sofa"], ["a kid riding a bicycle"]];
  const cands = ["a cat sleeping on a couch", "a child riding a bike"];
  assert.deepEqual(viaMeteor.score(refs, cands).perImage, scorer.score(refs, cands).perImage);
});

Deno.test("scene graph: 5,000 captions parse in seconds", () => {
  const caps = loadCoco().flatMap((i) => [...i.refs_tok, i.candidate_tok]);
  const t0 = performance.now();
  let n = 0;
  while (n < 5000) for (const c of caps) n += parseSceneGraph(c).objects.length >= 0 ? 1 : 0;
  const seconds = (performance.now() - t0) / 1000;
  assert.ok(seconds < 10, `${n} captions took ${seconds.toFixed(2)} s`);
});
