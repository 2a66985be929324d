/**
 * Rule-based scene-graph parser for caption English (SPICE-ts).
 *
 * A caption (lowercase PTB tokens, e.g. `a man riding a horse on a beach`) is tagged
 * (`caption_tagger.ts`), chunked into noun phrases, and read left to right by a small clause
 * machine that attaches each noun phrase to what precedes it: a preposition (`horse on beach`),
 * a verb (`man riding horse`), a copula (`the sky is blue`), a possessive (`man 's hat`), or a
 * coordination (`a man and a woman`). The output has SPICE's three tuple kinds: objects,
 * object–attribute pairs and subject–relation–object triples, all lemmatized.
 * @module
 */

import { tagCaption, type TaggedToken } from "./caption_tagger.ts";
import { isAnimate } from "./pos_lexicon.ts";

/** Scene graph of one caption: lemmatized tuples, without duplicates. */
export interface SceneGraph {
  /** Object names, e.g. `man`, `horse`. */
  objects: string[];
  /** [object, attribute] pairs, e.g. [`shirt`, `red`], [`dog`, `two`]. */
  attributes: [string, string][];
  /** [subject, relation, object] triples, e.g. [`man`, `ride`, `horse`], [`man`, `in`, `shirt`]. */
  relations: [string, string, string][];
}

/** Quantity nouns that become an attribute of the noun after `of` (CoreNLP's `qmod` list). */
const QUANTITY_NOUNS: ReadonlySet<string> = new Set(
  ("lot lots assortment number couple bunch handful litany sheaf slew dozen dozens series variety " +
    "multitude wad clutch mountain array spate string ton tons range plethora heap sort kind type " +
    "version bit pair pairs triple total plenty loads hundreds thousands").split(" "),
);

/** Collective nouns of people or animals (WordNet files them under noun.group). */
const ANIMATE_GROUPS: ReadonlySet<string> = new Set(
  "people crowd team family couple herd flock group audience pack pair".split(" "),
);

/**
 * Nouns whose `of` phrase names what a following verb is about (`a group of people standing`,
 * `a close-up of a cat sleeping`): collectives and picture words.
 */
const FRAME_NOUNS: ReadonlySet<string> = new Set(
  ("group herd flock crowd team pack set row line pile stack close-up picture photo photograph " +
    "image view shot").split(" "),
);

/** Pronouns that refer back to the caption's first noun phrase. */
const ANAPHORS: ReadonlySet<string> = new Set(["he", "she", "it", "they", "him", "them"]);

/** A noun phrase: its head lemma and the attributes its modifiers contribute. */
interface NounPhrase {
  head: string;
  plural: boolean;
  attrs: string[];
  /** True for a personal pronoun (its head is resolved to an antecedent, or dropped). */
  pronoun: boolean;
  /** Possessive pronoun (`his`) before the head, resolved to the caption's first noun phrase. */
  possessedByPronoun: boolean;
}

type Group = NounPhrase[];

/** What the next noun phrase would attach to. */
type Pending =
  | { kind: "prep"; prep: string; gov: Group } // noun phrase + preposition
  | { kind: "verb"; verb: string; subj: Group; prep: string } // verb (+ particles/prepositions)
  | { kind: "copula"; subj: Group }; // be + predicate

/** Items the clause machine reads. */
type Item =
  | { kind: "np"; np: NounPhrase }
  | { kind: "adj"; lemmas: string[] }
  | { kind: "verb"; lemma: string; tag: string }
  | { kind: "prep"; word: string }
  | { kind: "copula" }
  | { kind: "have" }
  | { kind: "cc" }
  | { kind: "wdt" }
  | { kind: "to" }
  | { kind: "boundary" }
  | { kind: "possessive" };

const NP_TAGS: ReadonlySet<string> = new Set(["DT", "PRP$", "CD", "JJ", "NN", "NNS", "RB"]);
const BE_FORMS: ReadonlySet<string> = new Set(
  ["is", "are", "was", "were", "be", "been", "being", "am", "'s", "'re", "'m"],
);
const HAVE_FORMS: ReadonlySet<string> = new Set(["has", "have", "had", "having", "'ve"]);

/** Collects tuples without duplicates. */
class TupleSink {
  private readonly seen = new Set<string>();
  readonly graph: SceneGraph = { objects: [], attributes: [], relations: [] };

  object(o: string): void {
    if (this.once(`o|${o}`)) this.graph.objects.push(o);
  }

  attribute(o: string, a: string): void {
    this.object(o);
    if (this.once(`a|${o}|${a}`)) this.graph.attributes.push([o, a]);
  }

  relation(s: string, r: string, o: string): void {
    this.object(s);
    this.object(o);
    if (this.once(`r|${s}|${r}|${o}`)) this.graph.relations.push([s, r, o]);
  }

  private once(key: string): boolean {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }
}

/** Reads one noun phrase starting at `i`; returns it and the index after it. */
function readNounPhrase(toks: TaggedToken[], i: number): [NounPhrase | undefined, number] {
  const start = i;
  let end = i;
  while (end < toks.length && inNounPhrase(toks, end, start)) end++;
  const span = toks.slice(start, end);
  let headAt = -1;
  for (let k = span.length - 1; k >= 0; k--) {
    if (span[k].tag === "NN" || span[k].tag === "NNS") {
      headAt = k;
      break;
    }
  }
  if (headAt < 0) return [undefined, end];
  const head = span[headAt];
  const plural = head.tag === "NNS" || head.word === "people";
  const attrs: string[] = [];
  let possessedByPronoun = false;
  for (const t of span.slice(0, headAt)) {
    if (t.tag === "JJ" || t.tag === "NN" || t.tag === "NNS") attrs.push(t.lemma);
    else if (t.tag === "CD" && plural) attrs.push(t.word);
    else if (t.tag === "PRP$") possessedByPronoun = true;
  }
  const np = { head: head.lemma, plural, attrs, pronoun: false, possessedByPronoun };
  return [np, start + headAt + 1];
}

/** Whether token k continues the noun phrase that started at `start`. */
function inNounPhrase(toks: TaggedToken[], k: number, start: number): boolean {
  const t = toks[k];
  if (t.tag === "CC") {
    return k > start && toks[k - 1].tag === "JJ" && toks[k + 1]?.tag === "JJ";
  }
  if (!NP_TAGS.has(t.tag)) return false;
  if (k === start) return true;
  const prev = toks[k - 1];
  if (t.tag === "RB") return toks[k + 1]?.tag === "JJ";
  if (t.tag === "DT" || t.tag === "PRP$") return false; // a new determiner starts a new phrase
  if (t.tag === "CD") return prev.tag === "DT" || prev.tag === "PRP$";
  if (prev.tag === "NNS" && t.tag !== "NNS") return false; // `tomatoes coleslaw`: a list
  return true;
}

/** Whether any phrase of the group names a person or an animal. */
function animate(group: Group): boolean {
  return group.some((np) => isAnimate(np.head) || ANIMATE_GROUPS.has(np.head));
}

/** Turns tagged tokens into clause items (noun phrases chunked). */
function toItems(toks: TaggedToken[]): Item[] {
  const items: Item[] = [];
  for (let i = 0; i < toks.length;) {
    const t = toks[i];
    if (NP_TAGS.has(t.tag) && t.tag !== "RB") {
      const [np, next] = readNounPhrase(toks, i);
      if (np) items.push({ kind: "np", np });
      else {
        const lemmas = toks.slice(i, next).filter((x) => x.tag === "JJ").map((x) => x.lemma);
        if (lemmas.length > 0) items.push({ kind: "adj", lemmas });
      }
      i = Math.max(next, i + 1);
      continue;
    }
    const item = singleItem(t, toks[i + 1]);
    if (item) items.push(item);
    i++;
  }
  return mergeQuantities(items);
}

/**
 * `a couple of dogs` → one noun phrase `dogs` with the attribute `couple` (SPICE's quantity
 * modifiers): the quantity noun is neither an object nor related by `of`.
 */
function mergeQuantities(items: Item[]): Item[] {
  const out: Item[] = [];
  for (let i = 0; i < items.length; i++) {
    const [q, of, x] = [items[i], items[i + 1], items[i + 2]];
    if (
      q.kind === "np" && QUANTITY_NOUNS.has(q.np.head) && of?.kind === "prep" &&
      of.word === "of" && x?.kind === "np" && !x.np.pronoun
    ) {
      out.push({ kind: "np", np: { ...x.np, attrs: [...x.np.attrs, q.np.head] } });
      i += 2;
    } else out.push(q);
  }
  return out;
}

/** The clause item of a token outside noun phrases, or undefined when it carries nothing. */
function singleItem(t: TaggedToken, next: TaggedToken | undefined): Item | undefined {
  switch (t.tag) {
    case "PRP":
      return {
        kind: "np",
        np: { head: t.word, plural: false, attrs: [], pronoun: true, possessedByPronoun: false },
      };
    case "VB":
    case "VBZ":
    case "VBG":
    case "VBN":
      return { kind: "verb", lemma: t.lemma, tag: t.tag };
    case "IN":
      return { kind: "prep", word: t.word };
    case "AUX":
      if (BE_FORMS.has(t.word)) return { kind: "copula" };
      if (HAVE_FORMS.has(t.word) && next && NP_TAGS.has(next.tag)) return { kind: "have" };
      return undefined;
    case "CC":
      return { kind: "cc" };
    case "WDT":
      return { kind: "wdt" };
    case "TO":
      return { kind: "to" };
    case "SUB":
    case "EX":
      return { kind: "boundary" };
    case "POS":
      return { kind: "possessive" };
  }
  return undefined;
}

/** The clause machine: reads items left to right and emits tuples. */
class ClauseReader {
  private readonly sink = new TupleSink();
  /** The caption's first non-pronoun noun phrase (antecedent of pronouns). */
  private topic: NounPhrase | undefined;
  /** Subject of the current clause. */
  private subject: Group | undefined;
  /** The last noun-phrase group and how it was attached (undefined: unattached). */
  private lastGroup: Group | undefined;
  private lastAttachment: Pending | undefined;
  /** Subject of the last verb (for `and`-coordinated and infinitival verbs). */
  private lastVerbSubject: Group | undefined;
  private pending: Pending | undefined;
  /** Verb waiting for an object; emitted as an attribute when none comes. */
  private openVerb: { verb: string; subj: Group } | undefined;
  private prev: Item | undefined;
  private index = 0;
  private relativeHead: Group | undefined;

  constructor(private readonly items: Item[]) {}

  run(): SceneGraph {
    for (; this.index < this.items.length; this.index++) {
      const item = this.items[this.index];
      this.step(item);
      this.prev = item;
    }
    this.closeVerb();
    return this.sink.graph;
  }

  private step(item: Item): void {
    switch (item.kind) {
      case "np":
        return this.nounPhrase(item.np);
      case "adj":
        return this.adjectives(item.lemmas);
      case "verb":
        return this.verb(item.lemma, item.tag);
      case "prep":
        return this.preposition(item.word);
      case "copula":
        this.closeVerb();
        this.pending = { kind: "copula", subj: this.clauseSubject() };
        return;
      case "have":
        this.closeVerb();
        this.verb("have", "VB");
        return;
      case "wdt":
        this.closeVerb();
        this.relativeHead = this.lastGroup;
        if (this.lastGroup) this.subject = this.lastGroup;
        return;
      case "boundary":
        this.closeVerb();
        this.pending = undefined;
        this.lastAttachment = undefined;
        this.lastGroup = undefined;
        return;
      case "cc":
      case "to":
      case "possessive":
        return;
    }
  }

  /** The subject a verb or copula predicates on at this point. */
  private clauseSubject(): Group {
    if (this.prev?.kind === "wdt" && this.relativeHead) return this.relativeHead;
    if ((this.prev?.kind === "cc" || this.prev?.kind === "to") && this.lastVerbSubject) {
      return this.lastVerbSubject;
    }
    if (this.lastGroup && this.lastAttachment === undefined) return this.lastGroup;
    return this.subject ?? this.lastGroup ?? [];
  }

  /**
   * Subject of a verb without auxiliary. Right after an object noun phrase, a past participle
   * modifies that phrase (`a pizza topped with`); an -ing or finite verb does so when that phrase
   * is animate and the clause subject is not (`a bed with two dogs sleeping`); otherwise the
   * clause subject (`a man in a suit holding a phone`).
   */
  private verbSubject(tag: string): Group {
    const subj = this.clauseSubject();
    const last = this.lastGroup;
    if (this.prev?.kind !== "np" || !last || this.lastAttachment === undefined) return subj;
    if (tag === "VBN" || (animate(last) && !animate(subj))) return last;
    return subj;
  }

  private nounPhrase(raw: NounPhrase): void {
    const np = this.resolve(raw);
    if (this.prev?.kind === "possessive" && this.lastGroup) {
      for (const owner of this.lastGroup) this.emitRelation(owner, "have", np);
      this.replaceLast(np);
      return;
    }
    if (np) this.emitNounPhrase(np);
    if (this.coordinates() && np) {
      this.lastGroup!.push(np);
      if (this.lastAttachment) this.attach(this.lastAttachment, np);
      return;
    }
    const pending = this.pending;
    if (!np && pending?.kind === "verb") { // `standing next to each other on …`
      this.pending = { ...pending, prep: "" };
      return;
    }
    this.pending = undefined;
    if (pending && np) {
      this.openVerb = undefined;
      this.attach(pending, np);
    }
    if (!np) return;
    this.lastAttachment = pending;
    this.lastGroup = [np];
    if (!pending && !this.topic && !np.pronoun) this.topic = np;
    if (!pending) this.subject = this.lastGroup;
    if (pending?.kind === "prep" && pending.prep === "of" && pending.gov === this.subject) {
      const frame = pending.gov.some((g) => FRAME_NOUNS.has(g.head));
      if (np.plural || frame || (animate([np]) && !animate(pending.gov))) {
        this.subject = this.lastGroup;
      }
    }
  }

  /**
   * Whether the current noun phrase joins the previous one: `X and Y`, or `X Y … and Z` (a list
   * whose commas the tokenizer removed: only noun phrases up to a closing `and`/`or`).
   */
  private coordinates(): boolean {
    if (!this.lastGroup || this.pending) return false;
    const before = this.items[this.index - 2];
    if (this.prev?.kind === "cc") return before?.kind === "np";
    if (this.prev?.kind !== "np") return false;
    for (let k = this.index + 1; k < this.items.length; k++) {
      const kind = this.items[k].kind;
      if (kind === "cc") return this.items[k + 1]?.kind === "np";
      if (kind !== "np") return false;
    }
    return false;
  }

  /** Replaces a possessor by the possessed noun as the phrase the clause goes on with. */
  private replaceLast(np: NounPhrase | undefined): void {
    if (!np || !this.lastGroup) return;
    this.emitNounPhrase(np);
    const wasSubject = this.subject === this.lastGroup;
    this.lastGroup = [np];
    if (wasSubject || this.lastAttachment === undefined) this.subject = this.lastGroup;
    if (this.lastAttachment) this.attach(this.lastAttachment, np);
  }

  /** Pronoun → antecedent (the caption's topic) for subject pronouns; undefined if unresolvable. */
  private resolve(np: NounPhrase): NounPhrase | undefined {
    if (!np.pronoun) return np;
    if (!ANAPHORS.has(np.head) || !this.topic) return undefined;
    const objectPosition = this.pending !== undefined;
    return objectPosition ? undefined : this.topic;
  }

  private emitNounPhrase(np: NounPhrase): void {
    if (np.pronoun) return;
    this.sink.object(np.head);
    for (const a of np.attrs) this.sink.attribute(np.head, a);
    if (np.possessedByPronoun && this.topic && this.topic !== np) {
      this.sink.relation(this.topic.head, "have", np.head);
    }
  }

  private emitRelation(s: NounPhrase, rel: string, o: NounPhrase | undefined): void {
    if (!o || s === o) return;
    this.sink.relation(s.head, rel, o.head);
  }

  private attach(p: Pending, np: NounPhrase): void {
    if (p.kind === "prep") {
      for (const g of p.gov) this.emitRelation(g, p.prep, np);
    } else if (p.kind === "verb") {
      const rel = [p.verb, p.prep].filter((x) => x !== "").join(" ");
      for (const s of p.subj) this.emitRelation(s, rel, np);
    } else {
      for (const s of p.subj) if (!s.pronoun && s !== np) this.sink.attribute(s.head, np.head);
    }
  }

  private adjectives(lemmas: string[]): void {
    const target = this.pending?.kind === "copula"
      ? this.pending.subj
      : this.prev?.kind === "np" && this.lastGroup
      ? this.lastGroup
      : undefined;
    for (const s of target ?? []) for (const a of lemmas) this.sink.attribute(s.head, a);
    if (this.pending?.kind === "copula") this.pending = undefined;
  }

  private verb(lemma: string, tag: string): void {
    this.closeVerb();
    const copula = this.pending?.kind === "copula" ? this.pending.subj : undefined;
    const subj = copula ?? this.verbSubject(tag);
    this.pending = { kind: "verb", verb: lemma, subj, prep: "" };
    this.openVerb = { verb: lemma, subj };
    this.lastVerbSubject = subj;
  }

  private preposition(word: string): void {
    const p = this.pending;
    if (p?.kind === "verb") {
      this.pending = { ...p, prep: p.prep ? `${p.prep} ${word}` : word };
      return;
    }
    if (p?.kind === "copula") {
      this.pending = { kind: "verb", verb: "", subj: p.subj, prep: word };
      return;
    }
    if (p?.kind === "prep" && this.prev?.kind === "prep") { // `down by the ocean`
      this.pending = { ...p, prep: word };
      return;
    }
    const last = this.lastGroup;
    if (last) {
      this.closeVerb();
      // A coordinated subject takes the phrase as a whole; an object list only its last member.
      const gov = last === this.subject ? last : [last[last.length - 1]];
      this.pending = { kind: "prep", prep: word, gov };
    }
  }

  /** A verb that got no object or prepositional phrase describes its subject (`woman smiling`). */
  private closeVerb(): void {
    const v = this.openVerb;
    this.openVerb = undefined;
    if (!v || v.verb === "have") return;
    for (const s of v.subj) if (!s.pronoun) this.sink.attribute(s.head, v.verb);
  }
}

/**
 * Parses one caption (lowercase PTB tokens separated by spaces) into a scene graph.
 * Example: `parseSceneGraph("two dogs playing in the grass")` →
 * objects `dog`, `grass`; attributes [`dog`, `two`]; relations [`dog`, `play in`, `grass`].
 */
export function parseSceneGraph(caption: string): SceneGraph {
  const tokens = caption.trim().split(/\s+/).filter((t) => t.length > 0);
  if (tokens.length === 0) return { objects: [], attributes: [], relations: [] };
  return new ClauseReader(toItems(tagCaption(tokens))).run();
}
