/**
 * The Snowball English ("Porter2") stemmer, written from the algorithm's published description
 * (snowballstem.org, "The English (Porter2) stemming algorithm", the version with the exception
 * lists `skis`…`andes` and `inning`…`succeed` and the R1 prefixes `gener`, `commun`, `arsen`).
 * This is the stemmer Meteor 1.5 uses for its stem module. Input is expected in lowercase.
 * @module
 */

/** Whole-word exceptions checked before anything else. */
const EXCEPTIONS_1: ReadonlyMap<string, string> = new Map([
  ["skis", "ski"],
  ["skies", "sky"],
  ["dying", "die"],
  ["lying", "lie"],
  ["tying", "tie"],
  ["idly", "idl"],
  ["gently", "gentl"],
  ["ugly", "ugli"],
  ["early", "earli"],
  ["only", "onli"],
  ["singly", "singl"],
  ["sky", "sky"],
  ["news", "news"],
  ["howe", "howe"],
  ["atlas", "atlas"],
  ["cosmos", "cosmos"],
  ["bias", "bias"],
  ["andes", "andes"],
]);

/** Words left alone once Step 1a has run. */
const EXCEPTIONS_2: ReadonlySet<string> = new Set([
  "inning",
  "outing",
  "canning",
  "herring",
  "earring",
  "proceed",
  "exceed",
  "succeed",
]);

const R1_PREFIXES = ["gener", "commun", "arsen"];
const DOUBLES = new Set(["bb", "dd", "ff", "gg", "mm", "nn", "pp", "rr", "tt"]);
const LI_ENDINGS = "cdeghkmnrt";

/** Step 2 suffixes and replacements; `ogi` and `li` have extra conditions. */
const STEP2: ReadonlyArray<readonly [string, string]> = [
  ["tional", "tion"],
  ["enci", "ence"],
  ["anci", "ance"],
  ["abli", "able"],
  ["entli", "ent"],
  ["izer", "ize"],
  ["ization", "ize"],
  ["ational", "ate"],
  ["ation", "ate"],
  ["ator", "ate"],
  ["alism", "al"],
  ["aliti", "al"],
  ["alli", "al"],
  ["fulness", "ful"],
  ["ousli", "ous"],
  ["ousness", "ous"],
  ["iveness", "ive"],
  ["iviti", "ive"],
  ["biliti", "ble"],
  ["bli", "ble"],
  ["ogi", "og"],
  ["fulli", "ful"],
  ["lessli", "less"],
  ["li", ""],
];

/** Step 3 suffixes and replacements; `ative` needs R2. */
const STEP3: ReadonlyArray<readonly [string, string]> = [
  ["tional", "tion"],
  ["ational", "ate"],
  ["alize", "al"],
  ["icate", "ic"],
  ["iciti", "ic"],
  ["ical", "ic"],
  ["ful", ""],
  ["ness", ""],
  ["ative", ""],
];

const STEP4 = [
  "al",
  "ance",
  "ence",
  "er",
  "ic",
  "able",
  "ible",
  "ant",
  "ement",
  "ment",
  "ent",
  "ism",
  "ate",
  "iti",
  "ous",
  "ive",
  "ize",
  "ion",
];

function isVowel(c: string | undefined): boolean {
  return c === "a" || c === "e" || c === "i" || c === "o" || c === "u" || c === "y";
}

/** Longest suffix of `w` among `list`, or undefined. */
function longestSuffix<T>(w: string, list: readonly T[], key: (t: T) => string): T | undefined {
  let best: T | undefined;
  for (const t of list) {
    const s = key(t);
    if (w.endsWith(s) && (best === undefined || s.length > key(best).length)) best = t;
  }
  return best;
}

const ident = (s: string) => s;

/**
 * A short syllable ends `w`: non-vowel, vowel, non-vowel other than w, x or Y; or `w` is exactly a
 * vowel followed by a non-vowel.
 */
function endsShortSyllable(w: string): boolean {
  const n = w.length;
  if (n === 2) return isVowel(w[0]) && !isVowel(w[1]);
  if (n < 3) return false;
  const last = w[n - 1];
  return !isVowel(w[n - 3]) && isVowel(w[n - 2]) && !isVowel(last) &&
    last !== "w" && last !== "x" && last !== "Y";
}

/** Drop a leading apostrophe and mark y as a consonant (Y) at the start and after a vowel. */
function prelude(word: string): { w: string; yFound: boolean } {
  const chars = (word.startsWith("'") ? word.slice(1) : word).split("");
  let yFound = false;
  for (let i = 0; i < chars.length; i++) {
    if (chars[i] === "y" && (i === 0 || isVowel(chars[i - 1]))) {
      chars[i] = "Y";
      yFound = true;
    }
  }
  return { w: chars.join(""), yFound };
}

/** Start of the region after the first non-vowel following a vowel, searching from `from`. */
function regionStart(w: string, from: number): number {
  let i = from;
  while (i < w.length && !isVowel(w[i])) i++;
  while (i < w.length && isVowel(w[i])) i++;
  return Math.min(i + 1, w.length);
}

/** R1 and R2 start positions. */
function markRegions(w: string): [number, number] {
  const prefix = R1_PREFIXES.find((p) => w.startsWith(p));
  const p1 = prefix ? prefix.length : regionStart(w, 0);
  return [p1, regionStart(w, p1)];
}

function step0(w: string): string {
  const s = longestSuffix(w, ["'s'", "'s", "'"], ident);
  return s ? w.slice(0, -s.length) : w;
}

function step1a(w: string): string {
  const s = longestSuffix(w, ["sses", "ied", "ies", "s", "us", "ss"], ident);
  const stem = s ? w.slice(0, -s.length) : w;
  if (s === "sses") return stem + "ss";
  if (s === "ied" || s === "ies") return stem + (stem.length > 1 ? "i" : "ie");
  if (s === "s" && [...stem.slice(0, -1)].some(isVowel)) return stem;
  return w;
}

function step1b(w: string, p1: number): string {
  const s = longestSuffix(w, ["eed", "eedly", "ed", "edly", "ing", "ingly"], ident);
  if (!s) return w;
  const stem = w.slice(0, -s.length);
  if (s === "eed" || s === "eedly") return stem.length >= p1 ? stem + "ee" : w;
  if (![...stem].some(isVowel)) return w;
  const end = stem.slice(-2);
  if (end === "at" || end === "bl" || end === "iz") return stem + "e";
  if (DOUBLES.has(end)) return stem.slice(0, -1);
  if (stem.length === p1 && endsShortSyllable(stem)) return stem + "e";
  return stem;
}

function step1c(w: string): string {
  const n = w.length;
  if (n > 2 && (w[n - 1] === "y" || w[n - 1] === "Y") && !isVowel(w[n - 2])) {
    return w.slice(0, -1) + "i";
  }
  return w;
}

function step2(w: string, p1: number): string {
  const rule = longestSuffix(w, STEP2, (r) => r[0]);
  if (!rule) return w;
  const stem = w.slice(0, -rule[0].length);
  if (stem.length < p1) return w;
  if (rule[0] === "ogi" && !stem.endsWith("l")) return w;
  if (rule[0] === "li" && !LI_ENDINGS.includes(stem.slice(-1) || "_")) return w;
  return stem + rule[1];
}

function step3(w: string, p1: number, p2: number): string {
  const rule = longestSuffix(w, STEP3, (r) => r[0]);
  if (!rule) return w;
  const stem = w.slice(0, -rule[0].length);
  if (stem.length < p1 || (rule[0] === "ative" && stem.length < p2)) return w;
  return stem + rule[1];
}

function step4(w: string, p2: number): string {
  const s = longestSuffix(w, STEP4, ident);
  if (!s) return w;
  const stem = w.slice(0, -s.length);
  if (stem.length < p2) return w;
  if (s === "ion" && !(stem.endsWith("s") || stem.endsWith("t"))) return w;
  return stem;
}

function step5(w: string, p1: number, p2: number): string {
  const stem = w.slice(0, -1);
  if (w.endsWith("e")) {
    const inR2 = stem.length >= p2;
    const inR1 = stem.length >= p1;
    return inR2 || (inR1 && !endsShortSyllable(stem)) ? stem : w;
  }
  if (w.endsWith("l") && stem.length >= p2 && stem.endsWith("l")) return stem;
  return w;
}

/**
 * Stem one lowercase English word with Snowball's English (Porter2) algorithm.
 * Words of fewer than 3 characters are returned unchanged.
 */
export function snowballEnglishStem(word: string): string {
  const exception = EXCEPTIONS_1.get(word);
  if (exception !== undefined) return exception;
  if (word.length < 3) return word;
  const marked = prelude(word);
  let w = marked.w;
  const [p1, p2] = markRegions(w);
  w = step1a(step0(w));
  if (!EXCEPTIONS_2.has(w)) {
    w = step1c(step1b(w, p1));
    w = step5(step4(step3(step2(w, p1), p1, p2), p2), p1, p2);
  }
  return marked.yFound ? w.replaceAll("Y", "y") : w;
}
