import assert from "node:assert/strict";
import { snowballEnglishStem } from "../../src/eval/meteor/snowball_english.ts";

/** Words and stems grouped by the rule of the published algorithm that decides them. */
const CASES: Record<string, [string, string][]> = {
  "exceptions and short words": [
    ["skies", "sky"],
    ["skis", "ski"],
    ["dying", "die"],
    ["news", "news"],
    ["us", "us"],
    ["by", "by"],
    ["inning", "inning"],
    ["innings", "inning"],
    ["succeed", "succeed"],
    ["proceeded", "proceed"],
  ],
  "apostrophes (step 0, prelude)": [["dog's", "dog"], ["dogs'", "dog"], ["'tis", "tis"]],
  "step 1a": [
    ["caresses", "caress"],
    ["cries", "cri"],
    ["ties", "tie"],
    ["gas", "gas"],
    ["gaps", "gap"],
    ["kiwis", "kiwi"],
  ],
  "step 1b": [
    ["feed", "feed"],
    ["agreed", "agre"],
    ["hopping", "hop"],
    ["hoping", "hope"],
    ["filing", "file"],
    ["luxuriating", "luxuri"],
    ["owed", "owe"],
    ["yelling", "yell"],
  ],
  "step 1c and y handling": [
    ["happy", "happi"],
    ["cry", "cri"],
    ["sayings", "say"],
    ["played", "play"],
    ["toy", "toy"],
    ["bly", "bli"],
  ],
  "R1 prefixes": [["generously", "generous"], ["communism", "communism"], ["arsenal", "arsenal"]],
  "step 2": [
    ["traditional", "tradit"],
    ["relational", "relat"],
    ["rationalize", "ration"],
    ["radically", "radic"],
    ["sensibility", "sensibl"],
    ["geology", "geolog"],
    ["analogi", "analog"],
    ["fluently", "fluentli"],
  ],
  "step 3": [["hopeful", "hope"], ["goodness", "good"], ["formative", "format"]],
  "step 4": [
    ["revival", "reviv"],
    ["allowance", "allow"],
    ["inference", "infer"],
    ["airliner", "airlin"],
    ["gyroscopic", "gyroscop"],
    ["adjustable", "adjust"],
    ["defensible", "defens"],
    ["irritant", "irrit"],
    ["replacement", "replac"],
    ["adjustment", "adjust"],
    ["dependent", "depend"],
    ["adoption", "adopt"],
    ["homologism", "homolog"],
    ["communicate", "communic"],
    ["effective", "effect"],
    ["bowdlerize", "bowdler"],
  ],
  "step 5": [
    ["probate", "probat"],
    ["rate", "rate"],
    ["cease", "ceas"],
    ["controll", "control"],
    ["roll", "roll"],
  ],
  "whole words": [
    ["consign", "consign"],
    ["consigned", "consign"],
    ["consignment", "consign"],
    ["consistency", "consist"],
    ["consolation", "consol"],
    ["consolatory", "consolatori"],
    ["generate", "generat"],
    ["running", "run"],
  ],
};

for (const [rule, pairs] of Object.entries(CASES)) {
  Deno.test(`snowball english: ${rule}`, () => {
    for (const [word, stem] of pairs) assert.equal(snowballEnglishStem(word), stem, word);
  });
}

Deno.test("snowball english: non-letters pass through, y marking is undone", () => {
  assert.equal(snowballEnglishStem("-lrb-"), "-lrb-");
  assert.equal(snowballEnglishStem("3:30"), "3:30");
  assert.equal(snowballEnglishStem("yelling"), "yell");
  assert.equal(snowballEnglishStem("youth"), "youth");
});
