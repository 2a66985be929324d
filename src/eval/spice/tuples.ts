/**
 * SPICE's merged scene graphs and tuple matching (SPICE-ts), following the semantics of
 * `edu.anu.spice` (SceneGraph, SemanticConcept, TupleSet), reimplemented from its description.
 *
 * A concept is a set of words plus the union of their WordNet synsets. Two concepts are similar
 * when they share a word or a synset. Adding tuples to a graph merges an object into the most
 * similar existing node (word overlap counts 1, else the Jaccard index of the synsets), an
 * attribute into a similar attribute of its node, and a relation into a similar relation between
 * the same two nodes. The graph's tuples are its objects, object–attribute pairs and
 * object–relation–object triples.
 * @module
 */

import type { SceneGraph } from "./scene_graph.ts";

/** Word → synset ids (WordNet synonyms); empty sets disable synonym matching. */
export type SynsetLookup = (word: string) => ReadonlySet<number>;

/** A concept: words (lemmas or phrases) and their synsets. */
export interface Concept {
  words: Set<string>;
  synsets: Set<number>;
}

/** A tuple of one (object), two (object, attribute) or three (subject, relation, object) concepts. */
export type Tuple = Concept[];

interface GraphNode {
  object: Concept;
  attributes: Concept[];
}

interface GraphEdge {
  source: GraphNode;
  target: GraphNode;
  relation: Concept;
}

function intersects<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): boolean {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  for (const x of small) if (large.has(x)) return true;
  return false;
}

function setEquals<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

/** SPICE `similarTo`: a shared synset or a shared word. */
function similarConcepts(a: Concept, b: Concept): boolean {
  return intersects(a.synsets, b.synsets) || intersects(a.words, b.words);
}

/** SPICE `similarity`: 1 on a shared word, else |synsets ∩| / |synsets ∪|. */
function similarity(a: Concept, b: Concept): number {
  if (intersects(a.words, b.words)) return 1;
  let inter = 0;
  for (const x of a.synsets) if (b.synsets.has(x)) inter++;
  const union = a.synsets.size + b.synsets.size - inter;
  return union === 0 ? 0 : inter / union;
}

function conceptEquals(a: Concept, b: Concept): boolean {
  return setEquals(a.words, b.words) && setEquals(a.synsets, b.synsets);
}

function mergeInto(into: Concept, from: Concept): void {
  for (const w of from.words) into.words.add(w);
  for (const s of from.synsets) into.synsets.add(s);
}

/** A scene graph with SPICE's concept merging, built from parsed captions. */
export class MergedGraph {
  private readonly nodes: GraphNode[] = [];
  private readonly edges: GraphEdge[] = [];

  constructor(private readonly synsets: SynsetLookup) {}

  /** Adds a parsed caption: relations, then attributes, then objects (SPICE's order). */
  addCaption(g: SceneGraph): void {
    for (const [s, r, o] of g.relations) this.addRelation(s, r, o);
    for (const [o, a] of g.attributes) this.addAttribute(o, a);
    for (const o of g.objects) this.node(o);
  }

  /** Tuples of the graph: per node its object and attributes, then every relation. */
  tuples(): Tuple[] {
    const out: Tuple[] = [];
    for (const n of this.nodes) {
      out.push([n.object]);
      for (const a of n.attributes) out.push([n.object, a]);
    }
    for (const e of this.edges) out.push([e.source.object, e.relation, e.target.object]);
    return out;
  }

  private concept(word: string): Concept {
    return { words: new Set([word]), synsets: new Set(this.synsets(word)) };
  }

  /** SPICE `getOrAddNode`: an equal node, else merge into the most similar one, else a new node. */
  private node(word: string): GraphNode {
    const c = this.concept(word);
    let best: GraphNode | undefined;
    let bestSim = 0;
    for (const n of this.nodes) {
      if (conceptEquals(n.object, c)) return n;
      const sim = similarity(c, n.object);
      if (sim > bestSim) [best, bestSim] = [n, sim];
    }
    if (best) {
      mergeInto(best.object, c);
      return best;
    }
    const fresh = { object: c, attributes: [] };
    this.nodes.push(fresh);
    return fresh;
  }

  private addAttribute(object: string, attribute: string): void {
    const n = this.node(object);
    const c = this.concept(attribute);
    if (n.attributes.some((a) => conceptEquals(a, c))) return;
    const similar = n.attributes.find((a) => similarConcepts(c, a));
    if (similar) mergeInto(similar, c);
    else n.attributes.push(c);
  }

  private addRelation(subject: string, relation: string, object: string): void {
    const source = this.node(subject);
    const target = this.node(object);
    const c = this.concept(relation.replace(/^be /, ""));
    const same = this.edges.filter((e) => e.source === source && e.target === target);
    if (same.some((e) => conceptEquals(e.relation, c))) return;
    const similar = same.find((e) => similarConcepts(c, e.relation));
    if (similar) mergeInto(similar.relation, c);
    else this.edges.push({ source, target, relation: c });
  }
}

/** SPICE tuple similarity: same length and every position similar. */
function similarTuples(a: Tuple, b: Tuple): boolean {
  return a.length === b.length && a.every((c, i) => similarConcepts(c, b[i]));
}

/** For each tuple of `xs`, whether some tuple of `ys` is similar to it. */
export function matchFlags(xs: Tuple[], ys: Tuple[]): boolean[] {
  return xs.map((x) => ys.some((y) => similarTuples(x, y)));
}

/** Readable form of a tuple: each concept's words joined by `/` (sorted). */
export function tupleText(t: Tuple): string[] {
  return t.map((c) => [...c.words].sort().join("/"));
}
