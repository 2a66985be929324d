import assert from "node:assert/strict";
import {
  defaultEnglishPrefixes,
  javaTrim,
  meteorNormalize,
  parseNonbreakingPrefixes,
} from "../../src/eval/meteor/normalize.ts";

/** Inputs and Meteor `-norm` outputs for the rules of fixtures NOTES §8.4. */
const CASES: [string, string][] = [
  ["costs $5 or 50% !!!", "costs $ 5 or 50 % ! ! !"],
  ["10,000 people, a,b", "10,000 people , a , b"],
  ["a two-story house -- e-mail", "a two story house - e mail"],
  ["don't it's 1990's dogs' toys", "don 't it 's 1990 's dogs ' toys"],
  ["the u.s. army", "the us army"],
  ["wait... what", "wait ... what"],
  ["Dr. Smith. the end.", "dr. smith. the end ."],
  ["No. 5 and no. 5", "no. 5 and no . 5"],
  ["Bob vs. Alice", "bob vs. alice"],
  ["\u201Cquoted\u201D \u2018single\u2019 `tick", "\" quoted \" ' single ' ' tick"],
  ["a \u2013 b", "a - b"],
  ["a -lrb- b -rrb-", "a -lrb- b -rrb-"],
  ["  spaced\u00A0\u2003out\t ", "spaced out"],
  ["", ""],
];

Deno.test("meteor normalize: punctuation, quotes, dashes, contractions, dots", () => {
  for (const [input, want] of CASES) assert.equal(meteorNormalize(input), want, input);
});

Deno.test("meteor normalize: prefix list decides whether a final dot splits", () => {
  const none = parseNonbreakingPrefixes("");
  assert.equal(meteorNormalize("Bob vs. Alice", none), "bob vs . alice");
  const custom = parseNonbreakingPrefixes("# comment\n\nFig #NUMERIC_ONLY#\nvs\n");
  assert.deepEqual([...custom], [["Fig", "numeric_only"], ["vs", "any"]]);
  assert.equal(meteorNormalize("Fig. 3 Fig. A", custom), "fig. 3 fig . a");
  assert.equal(defaultEnglishPrefixes().get("No"), "numeric_only");
  assert.equal(defaultEnglishPrefixes().get("Mr"), "any");
});

Deno.test("meteor normalize: java trim keeps non-ASCII spaces", () => {
  assert.equal(javaTrim("\t a b \u0001"), "a b");
  assert.equal(javaTrim("\u00A0a\u00A0"), "\u00A0a\u00A0");
});
