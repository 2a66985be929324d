import assert from "node:assert/strict";
import { LongestMatcher, MacroTable } from "../../src/eval/ptb/regex.ts";

const CLASSES = { letter: (c: number) => /\p{L}/u.test(String.fromCharCode(c)) };

function matcher(patterns: string[], caseless = false, macros: Record<string, string> = {}) {
  const table = new MacroTable(macros, CLASSES, caseless);
  return new LongestMatcher(patterns.map((p) => table.parse(p)));
}

Deno.test("ptb_regex: longest match wins, ties go to the earlier pattern", () => {
  const m = matcher(["ab", "a|abc", "[a-c]+"]);
  assert.deepEqual(m.longest("abcx", 0), [3, 1]);
  assert.deepEqual(m.longest("ab", 0), [2, 0]);
  assert.deepEqual(m.longest("cab", 0), [3, 2]);
  assert.deepEqual(m.longest("xyz", 0), [0, -1]);
  assert.deepEqual(m.longest("xab", 1), [2, 0]);
});

Deno.test("ptb_regex: caseless applies to literals, never to classes", () => {
  const m = matcher(["dr\\.", "[a]b"], true);
  assert.deepEqual(m.longest("DR.", 0), [3, 0]);
  assert.deepEqual(m.longest("aB", 0), [2, 1]);
  assert.deepEqual(m.longest("AB", 0), [0, -1]);
});

Deno.test("ptb_regex: repetition bounds, macros, negated and any-char classes, escapes", () => {
  const m = matcher(["{D}{2,3}x", "[^ab]+", "\\u00e9[^]"], false, { D: "[0-9]" });
  assert.deepEqual(m.longest("12x", 0), [3, 0]);
  assert.deepEqual(m.longest("1234x", 0), [5, 1]); // four digits: only [^ab]+ fits
  assert.deepEqual(m.longest("\u00e9a", 0), [2, 2]); // [^] matches any code unit
  const named = matcher(["[:letter:]+"]);
  assert.deepEqual(named.longest("caf\u00e9!", 0), [4, 0]);
});

Deno.test("ptb_regex: acceptingEnds and matchesExactly (used to split trailing context)", () => {
  const m = matcher(["a+"]);
  assert.deepEqual(m.acceptingEnds("aab", 0, 3), [false, true, true, false]);
  assert.equal(m.matchesExactly("xaa", 1, 3), true);
  assert.equal(m.matchesExactly("xab", 1, 3), false);
});
