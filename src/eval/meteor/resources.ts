/**
 * Language resources of Meteor 1.5 for English: the function-word list, the non-breaking prefixes
 * of the normalizer and the WordNet synonym dictionary. They come from a Meteor resource directory
 * (`english.words`, `english.synsets`, `english.exceptions`, optionally `english.prefixes`), from
 * texts passed in (browsers), or from the built-in copies.
 * @module
 */

import {
  defaultEnglishPrefixes,
  type NonbreakingPrefixes,
  parseNonbreakingPrefixes,
} from "./normalize.ts";
import {
  readOptionalResourceText,
  readResourceText,
  type ResourceLocation,
  resourcePath,
} from "../resource_text.ts";
import { loadBuiltinWordNet, parseMeteorWordNet, type WordNet } from "../wordnet.ts";

/**
 * The 93 English function words of Meteor 1.5 (`resources/function/english.words`, Meteor's
 * LGPL-2.1 data): frequent words and punctuation, weighted by 1−δ instead of δ.
 */
export const ENGLISH_FUNCTION_WORDS: readonly string[] = Object.freeze([
  ..."the , . to of and a in that for \" is on 's it with was as said at he by be from have has"
    .split(" "),
  ..."are his but an this not i will \u2019 they ) -rrb- ( -lrb- who their had we which were been"
    .split(" "),
  ..."more or s its would about new one after you : also up when there than $ all out her people"
    .split(" "),
  ..."she year two - can if last first \u201C over other \u201D into some what so -- no time years"
    .split(" "),
  ..."could ? 't \u2014 '".split(" "),
]);

/** Resource file texts, e.g. fetched by a browser app. Omitted ones use the built-in copies. */
export interface MeteorResourceTexts {
  /** `english.words`: one function word per line. */
  functionWords?: string;
  /** `english.prefixes`: Moses/Meteor non-breaking prefix file. */
  prefixes?: string;
  /** `english.synsets` (needs `exceptions` too). */
  synsets?: string;
  /** `english.exceptions` (needs `synsets` too). */
  exceptions?: string;
}

/** Loaded resources. `wordnet` is absent when no synonym module needs it. */
export interface MeteorResources {
  functionWords: ReadonlySet<string>;
  prefixes: NonbreakingPrefixes;
  wordnet?: WordNet;
}

/** Function words from `english.words` text (one per line, as Java's `readLine` splits). */
export function parseFunctionWords(text: string): ReadonlySet<string> {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return new Set(lines);
}

/**
 * Resources from texts and built-in copies, without any I/O. WordNet is taken from
 * `texts.synsets`/`texts.exceptions` when given, else left out.
 */
export function resourcesFromTexts(texts: MeteorResourceTexts = {}): MeteorResources {
  const functionWords = texts.functionWords === undefined
    ? new Set(ENGLISH_FUNCTION_WORDS)
    : parseFunctionWords(texts.functionWords);
  const prefixes = texts.prefixes === undefined
    ? defaultEnglishPrefixes()
    : parseNonbreakingPrefixes(texts.prefixes);
  const wordnet = texts.synsets !== undefined && texts.exceptions !== undefined
    ? parseMeteorWordNet(texts.synsets, texts.exceptions)
    : undefined;
  return { functionWords, prefixes, wordnet };
}

/**
 * Load resources: from `dir` (a Meteor resource directory with `english.words`, and, when
 * `needWordNet`, `english.synsets` + `english.exceptions`; `english.prefixes` is optional), or
 * else from `texts` and the built-in copies (the built-in WordNet is loaded when needed).
 */
export async function loadMeteorResources(
  dir: ResourceLocation | undefined,
  texts: MeteorResourceTexts,
  needWordNet: boolean,
): Promise<MeteorResources> {
  if (dir === undefined) {
    const res = resourcesFromTexts(texts);
    if (needWordNet && !res.wordnet) res.wordnet = await loadBuiltinWordNet();
    return res;
  }
  const file = (name: string) => resourcePath(dir, `english.${name}`);
  const [functionWords, prefixes, synsets, exceptions] = await Promise.all([
    readResourceText(file("words")),
    readOptionalResourceText(file("prefixes")),
    needWordNet ? readResourceText(file("synsets")) : undefined,
    needWordNet ? readResourceText(file("exceptions")) : undefined,
  ]);
  return resourcesFromTexts({ functionWords, prefixes, synsets, exceptions });
}
