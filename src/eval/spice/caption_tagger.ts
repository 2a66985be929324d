/**
 * Rule-based part-of-speech tagger for lowercase, PTB-tokenized caption English (SPICE-ts).
 *
 * Closed-class words come from the fixed lists below; open-class words from the WordNet lexicon
 * (`pos_lexicon.ts`), disambiguated left to right by the previous tag, a one-word look-ahead,
 * determiner–noun number agreement, and WordNet's SemCor tagged-sense counts as a frequency
 * prior. Multi-word prepositions (`next to`, `in front of`, …) are merged into one token first.
 * @module
 */

import { analyse, type Analysis, lemmatize, type WnPos } from "./pos_lexicon.ts";

/** Penn-Treebank-like tags (VBD and VBN are both `VBN`; `AUX` covers be/have/do forms). */
export type Tag =
  | "DT" // determiner
  | "PRP$" // possessive pronoun
  | "PRP" // personal pronoun
  | "CD" // number
  | "IN" // preposition or particle (also multi-word prepositions)
  | "TO" // infinitival `to`
  | "CC" // coordinating conjunction
  | "SUB" // subordinating conjunction (clause boundary)
  | "WDT" // relativizer
  | "MD" // modal
  | "AUX" // form of be / have / do used as auxiliary or copula
  | "NEG" // negation
  | "EX" // existential `there`
  | "POS" // possessive `'s`
  | "RB" // adverb
  | "JJ" // adjective, or a participle used as a prenominal modifier
  | "NN" // singular noun
  | "NNS" // plural noun
  | "VB" // verb, base form
  | "VBZ" // verb, 3rd person singular
  | "VBG" // verb, -ing
  | "VBN" // verb, past tense or participle
  | "SYM"; // anything else (brackets, symbols)

/** A token with its tag and WordNet lemma. */
export interface TaggedToken {
  word: string;
  tag: Tag;
  lemma: string;
}

const CLOSED: ReadonlyMap<string, Tag> = new Map<string, Tag>([
  ...words("DT", "a an the this these those each every another some any no all both either"),
  ...words("DT", "neither half"),
  ...words("PRP$", "his its their my our your"),
  ...words("PRP", "he she it they we i you him them us me himself herself itself themselves"),
  ...words("CD", "zero one two three four five six seven eight nine ten eleven twelve thirteen"),
  ...words("CD", "fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty"),
  ...words("CD", "fifty sixty seventy eighty ninety hundred thousand million"),
  ...words("IN", "about above across after against along alongside amid among amongst around"),
  ...words("IN", "at atop before behind below beneath beside besides between beyond by"),
  ...words("IN", "despite down during except for from in inside into like near of off on onto"),
  ...words("IN", "opposite out outside over past per through throughout thru toward towards"),
  ...words("IN", "under underneath unlike until up upon via with within without"),
  ...words("CC", "and or but nor &"),
  ...words("SUB", "while because although though if whilst than as"),
  ...words("WDT", "which who whom whose where when what"),
  ...words("MD", "can could will would shall should may might must ca wo"),
  ...words("AUX", "is are was were be been being am 're 'm has have had having 've 'd does do did"),
  ...words("NEG", "not n't never"),
  ...words("RB", "very really quite just also too so almost nearly still only even rather"),
  ...words("RB", "here together away alone apart very partially slightly mostly"),
  ...words("RB", "most more less least"),
  ...words("PRP", "each-other"),
  ...words("NN", "something someone somebody everything everyone anything nothing anyone"),
]);

/** Multi-word prepositions, after CoreNLP's lists, restricted to ones captions use. */
const MULTIWORD_PREPS: readonly string[][] = [
  "in front of",
  "on top of",
  "in back of",
  "next to",
  "close to",
  "near to",
  "out of",
  "away from",
  "far from",
  "across from",
  "along with",
  "together with",
  "ahead of",
  "because of",
  "due to",
  "instead of",
  "inside of",
  "outside of",
  "off of",
  "in between",
].map((p) => p.split(" "));

/** Fixed expressions read as one word (a noun, or the reciprocal pronoun). */
const MULTIWORD_NOUNS: ReadonlyMap<string, string> = new Map([
  ["each other", "each-other"],
  ["one another", "each-other"],
  ["close up", "close-up"],
  ["closeup", "close-up"],
]);

const NP_INTERNAL: ReadonlySet<Tag | undefined> = new Set(["DT", "PRP$", "CD", "POS", "JJ"]);
const PLURAL_DETS: ReadonlySet<string> = new Set(["these", "those", "both", "all", "some"]);
const SINGULAR_DETS: ReadonlySet<string> = new Set(["a", "an", "this", "that", "each", "every"]);

function words(tag: Tag, list: string): [string, Tag][] {
  return list.split(" ").map((w) => [w, tag]);
}

/** Merges multi-word prepositions and fixed nouns; returns the merged token list. */
function mergeMultiwords(tokens: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const prep = MULTIWORD_PREPS.find((p) => p.every((w, k) => tokens[i + k] === w));
    if (prep) {
      out.push(prep.join(" "));
      i += prep.length - 1;
      continue;
    }
    const pair = `${tokens[i]} ${tokens[i + 1]}`;
    if (MULTIWORD_NOUNS.has(pair)) {
      out.push(MULTIWORD_NOUNS.get(pair)!);
      i++;
      continue;
    }
    out.push(MULTIWORD_NOUNS.get(tokens[i]) ?? tokens[i]);
  }
  return out;
}

/** Open-class readings grouped into the tags the tagger chooses between, with weights. */
interface Readings {
  /** tag → [lemma, weight]; weight = tagged count + 1 (0 means absent). */
  byTag: Map<Tag, [string, number]>;
}

const FORM_TAG: Record<string, Tag> = {
  base: "VB",
  "3sg": "VBZ",
  ing: "VBG",
  past: "VBN",
};

function readingTag(a: Analysis): Tag {
  if (a.pos === "n") return a.form === "plural" || isPluralLemma(a) ? "NNS" : "NN";
  if (a.pos === "v") return FORM_TAG[a.form] ?? "VB";
  return a.pos === "a" ? "JJ" : "RB";
}

/** Plural-only lemmas like `people`, `pants` (a base noun ending in s whose -s is not a stem). */
function isPluralLemma(a: Analysis): boolean {
  return a.lemma === "people" || a.lemma === "police" || a.lemma === "cattle";
}

/** Guesses readings of a word WordNet does not know, from its suffix. */
function guessReadings(word: string): Readings {
  const byTag = new Map<Tag, [string, number]>();
  if (/^[0-9]/.test(word)) byTag.set("CD", [word, 1]);
  else if (!/[a-z]/.test(word)) byTag.set("SYM", [word, 1]);
  else if (word.endsWith("ing") && word.length > 5) byTag.set("VBG", [word.slice(0, -3), 1]);
  else if (word.endsWith("ed") && word.length > 4) byTag.set("VBN", [word.slice(0, -2), 1]);
  else if (word.endsWith("ly") && word.length > 4) byTag.set("RB", [word, 1]);
  else if (word.endsWith("s") && !word.endsWith("ss") && word.length > 3) {
    byTag.set("NNS", [word.slice(0, -1), 1]);
  } else byTag.set("NN", [word, 1]);
  return { byTag };
}

/** All open-class readings of a word. */
function readings(word: string): Readings {
  const all = analyse(word);
  if (all.length === 0) return guessReadings(word);
  const byTag = new Map<Tag, [string, number]>();
  for (const a of all) {
    const tag = readingTag(a);
    const w = a.count + 1;
    const prev = byTag.get(tag);
    if (!prev || w > prev[1]) byTag.set(tag, [lemmaFor(word, a), w]);
  }
  return { byTag };
}

/** The lemma the tagger reports for a reading (nouns and adjectives via `lemmatize`). */
function lemmaFor(word: string, a: Analysis): string {
  if (a.pos === "v") return a.lemma;
  return lemmatize(word, a.pos as WnPos);
}

/**
 * An -ing word that WordNet lists as a noun tagged at least twice and at least half as often as
 * its verb (`building`, `painting`, `parking`; not `standing`, `sitting`, `skiing`).
 */
function lexicalizedNoun(r: Readings): boolean {
  const noun = weight(r, "NN") - 1;
  return has(r, "VBG") && noun >= 2 && 2 * noun >= weight(r, "VBG") - 1;
}

function weight(r: Readings, ...tags: Tag[]): number {
  return Math.max(0, ...tags.map((t) => r.byTag.get(t)?.[1] ?? 0));
}

function has(r: Readings, ...tags: Tag[]): boolean {
  return tags.some((t) => r.byTag.has(t));
}

/** Tagging state for one caption. */
class Tagger {
  readonly toks: string[];
  readonly out: TaggedToken[] = [];
  private readonly cache = new Map<number, Readings>();

  constructor(tokens: string[]) {
    this.toks = mergeMultiwords(tokens);
  }

  run(): TaggedToken[] {
    for (let i = 0; i < this.toks.length; i++) this.out.push(this.tagAt(i));
    return this.out;
  }

  private readingsAt(i: number): Readings {
    let r = this.cache.get(i);
    if (!r) {
      r = readings(this.toks[i]);
      this.cache.set(i, r);
    }
    return r;
  }

  /** Tag of the previous token, skipping adverbs and negation. */
  private prevTag(i: number): Tag | undefined {
    for (let k = i - 1; k >= 0; k--) {
      const t = this.out[k].tag;
      if (t !== "RB" && t !== "NEG") return t;
    }
    return undefined;
  }

  private tagAt(i: number): TaggedToken {
    const word = this.toks[i];
    if (word.includes(" ")) return { word, tag: "IN", lemma: word };
    const closed = this.closedTag(i);
    if (closed) return { word, tag: closed, lemma: word };
    const r = this.readingsAt(i);
    const tag = this.chooseOpen(i, r);
    const lemma = r.byTag.get(tag)?.[0] ?? this.fallbackLemma(r, tag, word);
    return { word, tag, lemma };
  }

  /** Lemma when the chosen tag came from a neighbouring reading (e.g. VBN used as JJ). */
  private fallbackLemma(r: Readings, tag: Tag, word: string): string {
    if (tag === "JJ") return r.byTag.get("VBN")?.[0] ?? r.byTag.get("VBG")?.[0] ?? word;
    if (tag === "NNS" || tag === "NN") return r.byTag.get("NN")?.[0] ?? word;
    return word;
  }

  /** Tag of a closed-class word in context, or undefined for open-class words. */
  private closedTag(i: number): Tag | undefined {
    const word = this.toks[i];
    const prev = this.prevTag(i);
    const next = this.toks[i + 1];
    switch (word) {
      case "that":
        return prev === "NN" || prev === "NNS" ? "WDT" : "DT";
      case "her":
        return next !== undefined && this.startsNominal(i + 1) ? "PRP$" : "PRP";
      case "'s":
        return prev === "PRP" || prev === "EX" || prev === "WDT" || prev === "DT" ||
            (next !== undefined && this.isVerbal(i + 1))
          ? "AUX"
          : "POS";
      case "'":
        return prev === "NNS" ? "POS" : "SYM";
      case "there":
        return next !== undefined && /^(is|are|was|were|'s)$/.test(next) ? "EX" : "RB";
      case "to":
        return next !== undefined && this.isBareVerb(i + 1) ? "TO" : "IN";
    }
    const tag = CLOSED.get(word);
    if (tag === "IN" && !this.hasObject(i)) return this.particleOrNoun(i);
    return tag;
  }

  /** A preposition with no noun phrase after it is a particle; some are nouns after a determiner. */
  private particleOrNoun(i: number): Tag | undefined {
    const prev = this.prevTag(i);
    if ((prev === "DT" || prev === "JJ" || prev === "PRP$") && has(this.readingsAt(i), "NN")) {
      return undefined; // "the inside", "the back"
    }
    return "IN";
  }

  /** Whether a noun phrase (or a pronoun) starts at token i+1. */
  private hasObject(i: number): boolean {
    const next = this.toks[i + 1];
    if (next === undefined) return false;
    const tag = CLOSED.get(next);
    if (tag) return tag === "DT" || tag === "PRP$" || tag === "CD" || tag === "PRP";
    if (next.includes(" ")) return false;
    return this.startsNominal(i + 1) || has(this.readingsAt(i + 1), "VBG");
  }

  /** Whether token j can begin a noun phrase. */
  private startsNominal(j: number): boolean {
    const w = this.toks[j];
    if (w === undefined || w.includes(" ")) return false;
    const tag = CLOSED.get(w);
    if (tag) return tag === "DT" || tag === "CD" || tag === "PRP$";
    const r = this.readingsAt(j);
    return has(r, "NN", "NNS", "JJ", "CD");
  }

  /** Whether token j prefers a finite or participial verb reading over noun and adjective. */
  private isVerbal(j: number): boolean {
    const w = this.toks[j];
    if (w === undefined || CLOSED.has(w) || w.includes(" ")) return false;
    const r = this.readingsAt(j);
    return weight(r, "VBG", "VBN") > weight(r, "NN", "NNS", "JJ");
  }

  /** Whether token j can be a base-form verb (after infinitival `to`). */
  private isBareVerb(j: number): boolean {
    const w = this.toks[j];
    if (w === undefined || CLOSED.has(w) || w.includes(" ")) return false;
    return has(this.readingsAt(j), "VB");
  }

  /**
   * Whether token j (skipping adverbs) would continue a noun phrase rather than start a verb:
   * it has a noun or adjective reading at least as frequent as its participle readings.
   */
  private continuesNominal(j: number): boolean {
    let w = this.toks[j];
    while (w !== undefined && (CLOSED.get(w) === "RB" || /^[a-z]{3,}ly$/.test(w))) {
      w = this.toks[++j];
    }
    if (w === undefined || w.includes(" ")) return false;
    if (CLOSED.has(w)) return false;
    const r = this.readingsAt(j);
    const nominal = weight(r, "NN", "NNS", "JJ");
    if (nominal === 0) return false;
    return nominal >= weight(r, "VBG", "VBN") || lexicalizedNoun(r);
  }

  /** Whether the participle readings of r outweigh its noun and adjective readings. */
  private prefersParticiple(r: Readings): Tag | undefined {
    const verb = weight(r, "VBG", "VBN");
    if (verb === 0 || verb <= weight(r, "NN", "NNS", "JJ")) return undefined;
    return weight(r, "VBG") >= weight(r, "VBN") ? "VBG" : "VBN";
  }

  private chooseOpen(i: number, r: Readings): Tag {
    const tags = [...r.byTag.keys()];
    if (tags.length === 1) return tags[0];
    const prev = this.prevTag(i);
    if (prev === "AUX" || prev === "MD" || prev === "NEG") return this.afterAux(i, r, prev);
    if (prev === "TO") return has(r, "VB") ? "VB" : this.inNominal(i, r);
    if (prev === "WDT") return this.afterNoun(i, r, true);
    if (prev === "NN" || prev === "NNS" || prev === "PRP") return this.afterNoun(i, r, false);
    if (prev === "CC") return this.afterConjunction(i, r);
    if (NP_INTERNAL.has(prev)) return this.inNominal(i, r);
    const participle = this.prefersParticiple(r);
    if (participle && !this.continuesNominal(i + 1)) return participle;
    return this.inNominal(i, r);
  }

  /** After be/have/do or a modal: participles, adjectives, then base verbs. */
  private afterAux(i: number, r: Readings, prev: Tag): Tag {
    if (has(r, "VBG")) return "VBG";
    if (has(r, "VBN") && weight(r, "VBN") >= weight(r, "JJ")) return "VBN";
    if ((prev === "MD" || this.out[i - 1]?.word.startsWith("d")) && has(r, "VB")) return "VB";
    if (has(r, "JJ")) return "JJ";
    if (has(r, "VBN")) return "VBN";
    return this.inNominal(i, r);
  }

  /** Right after a noun (or a relativizer): a verb, or a noun continuing a compound. */
  private afterNoun(i: number, r: Readings, clause: boolean): Tag {
    const verbTags: Tag[] = ["VBG", "VBN", "VBZ"];
    if (clause) verbTags.push("VB");
    const verb = verbTags.find((t) => has(r, t))
      ? Math.max(...verbTags.map((t) => weight(r, t)))
      : 0;
    if (verb === 0) return this.pluralSubjectVerb(i, r) ? "VB" : this.inNominal(i, r);
    const bestVerb = verbTags.reduce((a, b) => (weight(r, b) > weight(r, a) ? b : a));
    if (clause || this.agreementForcesVerb(i, r)) return bestVerb;
    const nominal = weight(r, "NN", "NNS");
    const objectFollows = this.hasObject(i) || this.toks[i + 1]?.includes(" ");
    if (bestVerb === "VBZ") {
      const atEnd = i + 1 === this.toks.length || CLOSED.get(this.toks[i + 1]) === "SUB";
      return verb > nominal && (objectFollows || atEnd) ? "VBZ" : this.inNominal(i, r);
    }
    if (bestVerb === "VBN" && !has(r, "VBG") && this.continuesNominal(i + 1)) return "JJ";
    if (objectFollows) return bestVerb;
    if (bestVerb === "VBG" && lexicalizedNoun(r)) return this.inNominal(i, r);
    if (nominal === 0 || verb >= nominal) return bestVerb;
    return this.inNominal(i, r);
  }

  /** `two zebras stand near …`: a base-form verb after a plural subject, before its complement. */
  private pluralSubjectVerb(i: number, r: Readings): boolean {
    if (!has(r, "VB") || has(r, "VBG", "VBN", "VBZ") || this.out[i - 1]?.tag === "RB") return false;
    const next = this.toks[i + 1];
    const complement = next === undefined || next.includes(" ") || CLOSED.get(next) === "IN" ||
      CLOSED.get(next) === "DT" || CLOSED.get(next) === "RB" ||
      weight(r, "VB") > 2 * weight(r, "NN", "NNS", "JJ");
    return complement && this.subjectIsPlural(i);
  }

  /** Whether the noun phrase ending at token i-1 is plural (plural head, number or determiner). */
  private subjectIsPlural(i: number): boolean {
    for (let k = i - 1; k >= 0; k--) {
      const t = this.out[k];
      if (t.tag === "NNS" && k === i - 1) return true;
      if (t.tag === "CD") return t.word !== "one";
      if (t.tag === "DT") return PLURAL_DETS.has(t.word);
      if (t.tag !== "NN" && t.tag !== "JJ") return false;
    }
    return false;
  }

  /** `a man walks`: a singular determiner cannot head a plural noun, so -s is a verb. */
  private agreementForcesVerb(i: number, r: Readings): boolean {
    if (!has(r, "VBZ") || !has(r, "NNS") || has(r, "NN")) return false;
    const next = this.toks[i + 1];
    if (next === "and" || next === "or" || (next !== undefined && !CLOSED.has(next))) return false;
    for (let k = i - 1; k >= 0; k--) {
      const t = this.out[k];
      if (t.tag === "DT") return SINGULAR_DETS.has(t.word);
      if (t.tag !== "NN" && t.tag !== "JJ") return false;
    }
    return false;
  }

  /** After `and`/`or`: same kind as the first conjunct when possible. */
  private afterConjunction(i: number, r: Readings): Tag {
    let k = i - 2;
    while (k >= 0 && (this.out[k].tag === "RB" || this.out[k].tag === "NEG")) k--;
    const first = k >= 0 ? this.out[k].tag : undefined;
    if (first && first !== "NN" && first !== "NNS" && has(r, first)) {
      if (first === "JJ" || first.startsWith("VB")) return first;
    }
    const participle = this.prefersParticiple(r);
    if (participle && !this.continuesNominal(i + 1)) return participle;
    return this.inNominal(i, r);
  }

  /**
   * Inside or at the start of a noun phrase: a modifier (adjective, participle or compound noun)
   * when the noun phrase goes on, else its head noun.
   */
  private inNominal(i: number, r: Readings): Tag {
    const nounTag: Tag | undefined = has(r, "NNS") && weight(r, "NNS") >= weight(r, "NN")
      ? "NNS"
      : has(r, "NN")
      ? "NN"
      : has(r, "NNS")
      ? "NNS"
      : undefined;
    const goesOn = this.continuesNominal(i + 1) || this.coordinatedModifier(i, r);
    if (goesOn) {
      if (has(r, "JJ") && (weight(r, "JJ") >= weight(r, "NN") || this.isColourLike(i))) return "JJ";
      if (has(r, "VBN", "VBG") && weight(r, "VBN", "VBG") > weight(r, "NN", "NNS")) return "JJ";
      if (nounTag) return nounTag === "NNS" && has(r, "NN") ? "NN" : nounTag;
      return "JJ";
    }
    if (has(r, "JJ") && weight(r, "JJ") > weight(r, "NN", "NNS")) return "JJ";
    if (nounTag) return nounTag;
    if (has(r, "JJ")) return "JJ";
    if (has(r, "VBG")) return "VBG";
    if (has(r, "VBN")) return "VBN";
    return [...r.byTag.keys()][0];
  }

  /** `black and white`: an adjective-capable word followed by `and` and another one. */
  private coordinatedModifier(i: number, r: Readings): boolean {
    if (!has(r, "JJ")) return false;
    const conj = this.toks[i + 1];
    if (conj !== "and" && conj !== "or") return false;
    const after = this.toks[i + 2];
    if (after === undefined || CLOSED.has(after) || after.includes(" ")) return false;
    return has(this.readingsAt(i + 2), "JJ") && this.continuesNominal(i + 3);
  }

  /** An adjective-capable word right before another adjective-capable word (`red white bus`). */
  private isColourLike(i: number): boolean {
    const next = this.toks[i + 1];
    if (next === undefined || CLOSED.has(next) || next.includes(" ")) return false;
    return has(this.readingsAt(i + 1), "JJ");
  }
}

/** Tags a caption given as PTB tokens (lowercase). Multi-word prepositions become one token. */
export function tagCaption(tokens: string[]): TaggedToken[] {
  return new Tagger(tokens.filter((t) => t.length > 0)).run();
}
