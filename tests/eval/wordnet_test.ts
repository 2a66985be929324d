import assert from "node:assert/strict";
import { loadWordNet, parseMeteorWordNet, type WordNet } from "../../src/eval/wordnet.ts";

const FIX = new URL("../../../shared/fixtures/eval/", import.meta.url);
const REF_DIR = new URL("meteor-resources/", FIX);

/** Every token of the COCO fixture captions, plus a few inflected forms. */
async function fixtureVocabulary(): Promise<string[]> {
  const coco = JSON.parse(await Deno.readTextFile(new URL("coco-public.json", FIX)));
  const words = new Set<string>(["mice", "geese", "better", "ran", "children", "glass"]);
  for (const im of coco.images) {
    for (const s of [...im.refs_tok, im.candidate_tok]) for (const w of s.split(" ")) words.add(w);
  }
  return [...words].filter((w) => w !== "").sort();
}

/** For each word, the sorted words of `vocab` sharing a synset with it (Meteor's relation). */
function synonymClasses(wn: WordNet, vocab: string[]): Map<string, string> {
  const byId = new Map<number, string[]>();
  for (const w of vocab) {
    for (const id of wn.allSynsets(w)) byId.set(id, [...(byId.get(id) ?? []), w]);
  }
  const out = new Map<string, string>();
  for (const w of vocab) {
    const syn = new Set<string>();
    for (const id of wn.allSynsets(w)) for (const v of byId.get(id)!) syn.add(v);
    out.set(w, [...syn].sort().join(" "));
  }
  return out;
}

Deno.test("wordnet: built-in data gives Meteor's synonym relation on the COCO vocabulary", async () => {
  const [builtin, reference] = await Promise.all([
    loadWordNet(),
    loadWordNet({ resourceDir: REF_DIR }),
  ]);
  assert.equal(builtin.size, reference.size);
  const vocab = await fixtureVocabulary();
  const a = synonymClasses(builtin, vocab);
  const b = synonymClasses(reference, vocab);
  const differ = vocab.filter((w) => a.get(w) !== b.get(w));
  assert.deepEqual(differ, [], `words whose synonyms differ: ${differ.slice(0, 10).join(", ")}`);
  const bases = (wn: WordNet, w: string) => [...new Set(wn.baseForms(w))].sort();
  for (const w of vocab) assert.deepEqual(bases(builtin, w), bases(reference, w), w);
});

Deno.test("wordnet: base forms from exceptions, suffix rules, and short words", async () => {
  const wn = await loadWordNet();
  assert.deepEqual(wn.baseForms("mice"), ["mouse"]);
  assert.deepEqual(wn.baseForms("dogs"), ["dog"]);
  assert.deepEqual(wn.baseForms("running"), ["run"]);
  assert.deepEqual(wn.baseForms("glass"), ["glass"]);
  assert.deepEqual(wn.baseForms("xyzzyq"), []);
  const share = (x: string, y: string) =>
    [...wn.allSynsets(x)].some((id) => wn.allSynsets(y).has(id));
  assert.ok(share("car", "automobile"));
  assert.ok(share("mice", "mouse"));
  assert.ok(!share("car", "banana"));
  assert.deepEqual(wn.synsets("notaword"), []);
});

Deno.test("wordnet: parses Meteor-format text", () => {
  const wn = parseMeteorWordNet("big\n1 2\nlarge\n00000002\nmouse\n7\n", "mouse\nmice\n");
  assert.equal(wn.size, 3);
  assert.deepEqual([...wn.allSynsets("large")], [2]);
  assert.deepEqual([...wn.stemSynsets("mice")], [7]);
  assert.deepEqual(wn.baseForms("mice"), ["mouse"]);
  assert.throws(() => parseMeteorWordNet("big\nx y\n", ""), /english.synsets line 2/);
});
