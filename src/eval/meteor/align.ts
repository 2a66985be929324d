/**
 * Meteor 1.5's word aligner (`edu.cmu.meteor.aligner.Aligner` and its matchers): every module adds
 * candidate matches between test (line 1) and reference (line 2) words to one shared pool, matches
 * that nothing competes with are fixed, and a beam search over reference positions picks the rest.
 * The search reproduces the reference's quirks: integer (truncated) weighted match counts, the
 * distance of a taken match charged to the parent path, and `String.hashCode` word keys.
 * @module
 */

import type { ParaphraseTable } from "./paraphrase.ts";
import type { WordNet } from "../wordnet.ts";

/** A Meteor matching module. */
export type MeteorModule = "exact" | "stem" | "synonym" | "paraphrase";

/** One match: reference words `[start, start+length)` ↔ test words `[matchStart, +matchLength)`. */
export interface MeteorMatch {
  /** First reference word. */
  start: number;
  /** Number of reference words. */
  length: number;
  /** First test word. */
  matchStart: number;
  /** Number of test words. */
  matchLength: number;
  /** Index of the module (position in the module list) that made the match. */
  module: number;
}

/** What the matchers need. */
export interface AlignerResources {
  /** Function words (lowercase). */
  functionWords: ReadonlySet<string>;
  /** Stemmer for the stem module. */
  stem?: (word: string) => string;
  /** Synonym dictionary for the synonym module. */
  wordnet?: WordNet;
  /** Paraphrase table for the paraphrase module. */
  paraphrase?: ParaphraseTable;
}

/** The chosen alignment with Meteor's per-module counts. */
export interface MeteorAlignment {
  /** Test words. */
  test: string[];
  /** Reference words. */
  reference: string[];
  /** Function-word flags of test / reference words. */
  testFunction: boolean[];
  referenceFunction: boolean[];
  /** Chosen match starting at each reference position, or null. */
  matches: (MeteorMatch | null)[];
  /** Per module: matched content / function words on the test and reference side. */
  testContent: number[];
  referenceContent: number[];
  testFunctionMatches: number[];
  referenceFunctionMatches: number[];
  /** Number of chunks. */
  chunks: number;
}

/** Java's `String.hashCode`, which Meteor uses as word keys. */
export function javaHash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}

/** Candidate matches per reference position, with coverage counts. */
class Stage {
  readonly keys1: number[];
  readonly keys2: number[];
  readonly matches: MeteorMatch[][];
  readonly coverage1: Int32Array;
  readonly coverage2: Int32Array;

  constructor(test: string[], ref: string[]) {
    this.keys1 = test.map(javaHash);
    this.keys2 = ref.map(javaHash);
    this.matches = ref.map(() => []);
    this.coverage1 = new Int32Array(test.length);
    this.coverage2 = new Int32Array(ref.length);
  }

  add(module: number, start: number, length: number, matchStart: number, matchLength: number) {
    this.matches[start].push({ start, length, matchStart, matchLength, module });
    for (let k = 0; k < matchLength; k++) this.coverage1[matchStart + k]++;
    for (let k = 0; k < length; k++) this.coverage2[start + k]++;
  }
}

/** Add one-word matches for every (ref j, test i) pair that `same(i, j)` accepts. */
function matchPairs(s: Stage, module: number, same: (i: number, j: number) => boolean): void {
  for (let j = 0; j < s.keys2.length; j++) {
    for (let i = 0; i < s.keys1.length; i++) if (same(i, j)) s.add(module, j, 1, i, 1);
  }
}

function intersects(a: Set<number>, b: Set<number>): boolean {
  for (const x of a) if (b.has(x)) return true;
  return false;
}

/** Phrase matches in both directions, as `ParaphraseMatcher` does. */
function matchParaphrases(
  s: Stage,
  module: number,
  t: ParaphraseTable,
  test: string[],
  ref: string[],
) {
  const ids1 = test.map((w) => t.wordId(w));
  const ids2 = ref.map((w) => t.wordId(w));
  const occursAt = (line: number[], at: number, phrase: readonly number[]) =>
    phrase.every((id, k) => at + k < line.length && line[at + k] === id);
  for (let j = 0; j < ids2.length; j++) {
    for (const p of t.pathsAt(ids2, j)) {
      for (let i = 0; i < ids1.length; i++) {
        if (occursAt(ids1, i, p.paraphrase)) s.add(module, j, p.length, i, p.paraphrase.length);
      }
    }
  }
  for (let i = 0; i < ids1.length; i++) {
    for (const p of t.pathsAt(ids1, i)) {
      for (let j = 0; j < ids2.length; j++) {
        if (occursAt(ids2, j, p.paraphrase)) s.add(module, j, p.paraphrase.length, i, p.length);
      }
    }
  }
}

/**
 * A path of the beam search. A successor shares its parent's arrays and records the match it
 * adds in `pending`; the arrays are copied only when the successor survives the beam
 * (`materialize`), so a position with many candidate matches costs O(1) per successor. The
 * arrays of a materialized path are never written again.
 */
class Path {
  matches1 = 0;
  matches2 = 0;
  chunks = 0;
  idx = 0;
  lastMatchEnd = -1;
  distance = 0;
  pending: MeteorMatch | null = null;

  constructor(
    public matches: (MeteorMatch | null)[],
    public used1: Uint8Array,
    public used2: Uint8Array,
  ) {}

  /** A successor of this (materialized) path that takes match `m`; its arrays are copied later. */
  successor(m: MeteorMatch): Path {
    const p = new Path(this.matches, this.used1, this.used2);
    p.matches1 = this.matches1;
    p.matches2 = this.matches2;
    p.chunks = this.chunks;
    p.idx = this.idx;
    p.lastMatchEnd = this.lastMatchEnd;
    p.distance = this.distance;
    p.pending = m;
    return p;
  }

  /** Copy the shared arrays and record the pending match in them. */
  materialize(): void {
    const m = this.pending;
    if (m === null) return;
    this.matches = [...this.matches];
    this.used1 = this.used1.slice();
    this.used2 = this.used2.slice();
    this.matches[m.start] = m;
    this.setUsed(m);
    this.pending = null;
  }

  isUsed(m: MeteorMatch): boolean {
    for (let k = 0; k < m.length; k++) if (this.used2[m.start + k]) return true;
    for (let k = 0; k < m.matchLength; k++) if (this.used1[m.matchStart + k]) return true;
    return false;
  }

  setUsed(m: MeteorMatch): void {
    for (let k = 0; k < m.length; k++) this.used2[m.start + k] = 1;
    for (let k = 0; k < m.matchLength; k++) this.used1[m.matchStart + k] = 1;
  }

  /** Count match `m` (the weighted counts are Java ints: each addition truncates). */
  take(m: MeteorMatch, weight: number): void {
    this.matches1 = Math.trunc(this.matches1 + m.matchLength * weight);
    this.matches2 = Math.trunc(this.matches2 + m.length * weight);
    if (this.lastMatchEnd !== -1 && m.matchStart !== this.lastMatchEnd) this.chunks++;
    this.idx = m.start + m.length;
    this.lastMatchEnd = m.matchStart + m.matchLength;
  }
}

/** Meteor's `PARTIAL_COMPARE_TOTAL`: more weighted matches, then fewer chunks, then less distance. */
function comparePaths(x: Path, y: Path): number {
  const matchDiff = (y.matches1 + y.matches2) - (x.matches1 + x.matches2);
  if (matchDiff !== 0) return matchDiff > 0 ? 1 : -1;
  if (x.chunks !== y.chunks) return x.chunks - y.chunks;
  return x.distance - y.distance;
}

/** Count matched words and chunks of a final alignment. */
function countChunks(matches: (MeteorMatch | null)[]): number {
  let chunks = 0;
  let idx = 0;
  let lastMatchEnd = -1;
  while (idx < matches.length) {
    const m = matches[idx];
    if (m === null) {
      if (lastMatchEnd !== -1) chunks++;
      lastMatchEnd = -1;
      idx++;
    } else {
      if (lastMatchEnd !== -1 && m.matchStart !== lastMatchEnd) chunks++;
      idx = m.start + m.length;
      lastMatchEnd = m.matchStart + m.matchLength;
    }
  }
  return lastMatchEnd !== -1 ? chunks + 1 : chunks;
}

/** Meteor 1.5's aligner for a fixed module list. */
export class MeteorAligner {
  /** Search weights: 1 for exact, 0.5 for every other module (as `MeteorScorer` sets them). */
  private readonly searchWeights: number[];

  /**
   * @param modules matching modules in order (module index = position)
   * @param resources word lists and dictionaries the modules need
   * @param beamSize beam width of the search (Meteor: 40)
   */
  constructor(
    readonly modules: readonly MeteorModule[],
    private readonly resources: AlignerResources,
    private readonly beamSize = 40,
  ) {
    this.searchWeights = modules.map((m) => (m === "exact" ? 1 : 0.5));
  }

  /** Align test words against reference words (both already normalized and lowercased). */
  align(test: string[], ref: string[]): MeteorAlignment {
    const s = new Stage(test, ref);
    const identical = s.keys1.length === s.keys2.length &&
      s.keys1.every((k, i) => k === s.keys2[i]);
    const used = identical ? this.modules.slice(0, 1) : this.modules;
    used.forEach((mod, index) => this.runModule(mod, index, s, test, ref));
    const best = this.resolve(s, this.initialPath(s));
    return this.summarize(test, ref, best.matches);
  }

  private runModule(mod: MeteorModule, index: number, s: Stage, test: string[], ref: string[]) {
    const r = this.resources;
    if (mod === "exact") matchPairs(s, index, (i, j) => s.keys1[i] === s.keys2[j]);
    else if (mod === "stem") {
      const stem = r.stem!;
      const st1 = test.map((w) => javaHash(stem(w)));
      const st2 = ref.map((w) => javaHash(stem(w)));
      matchPairs(s, index, (i, j) => st1[i] === st2[j] && s.keys1[i] !== s.keys2[j]);
    } else if (mod === "synonym") {
      const syn1 = test.map((w) => r.wordnet!.allSynsets(w));
      const syn2 = ref.map((w) => r.wordnet!.allSynsets(w));
      matchPairs(s, index, (i, j) => intersects(syn1[i], syn2[j]) && s.keys1[i] !== s.keys2[j]);
    } else matchParaphrases(s, index, r.paraphrase!, test, ref);
  }

  /** The start path, with every uncontested one-candidate match fixed. */
  private initialPath(s: Stage): Path {
    const path = new Path(
      s.matches.map(() => null),
      new Uint8Array(s.keys1.length),
      new Uint8Array(s.keys2.length),
    );
    for (let j = 0; j < s.matches.length; j++) {
      if (s.matches[j].length !== 1) continue;
      const m = s.matches[j][0];
      let overlap = false;
      for (let k = 0; k < m.length; k++) if (s.coverage2[j + k] !== 1) overlap = true;
      for (let k = 0; k < m.matchLength; k++) {
        if (s.coverage1[m.matchStart + k] !== 1) overlap = true;
      }
      if (!overlap) {
        path.matches[j] = m;
        path.setUsed(m);
      }
    }
    return path;
  }

  /** Left-to-right beam search over reference positions (`Aligner.resolve`). */
  private resolve(s: Stage, start: Path): Path {
    let next: Path[] = [start];
    const n = s.matches.length;
    for (let current = 0; current <= n; current++) {
      const paths = next.sort(comparePaths);
      next = [];
      for (let rank = 0; rank < this.beamSize && rank < paths.length; rank++) {
        paths[rank].materialize();
        this.extend(s, paths[rank], current, next);
      }
      if (next.length === 0) next.push(paths[0]);
    }
    const best = next.sort(comparePaths)[0];
    best.materialize();
    return best;
  }

  /** Extend one path at reference position `current`, pushing its successors onto `next`. */
  private extend(s: Stage, path: Path, current: number, next: Path[]): void {
    if (current === s.matches.length) {
      if (path.lastMatchEnd !== -1) path.chunks++;
      next.push(path);
      return;
    }
    if (path.used2[current]) {
      const fixed = path.matches[path.idx];
      if (current < path.idx) next.push(path);
      else if (fixed) {
        path.take(fixed, this.searchWeights[fixed.module]);
        path.distance += Math.abs(fixed.start - fixed.matchStart);
        next.push(path);
      }
      return;
    }
    for (const m of s.matches[current]) {
      if (path.isUsed(m)) continue;
      const taken = path.successor(m);
      taken.take(m, this.searchWeights[m.module]);
      path.distance += Math.abs(m.start - m.matchStart); // charged to the parent, as in Meteor
      next.push(taken);
    }
    if (path.lastMatchEnd !== -1) {
      path.chunks++;
      path.lastMatchEnd = -1;
    }
    path.idx++;
    next.push(path);
  }

  /** Per-module content/function counts and chunks of the chosen matches. */
  private summarize(test: string[], ref: string[], matches: (MeteorMatch | null)[]) {
    const fw = this.resources.functionWords;
    const zeros = () => this.modules.map(() => 0);
    const a: MeteorAlignment = {
      test,
      reference: ref,
      testFunction: test.map((w) => fw.has(w.toLowerCase())),
      referenceFunction: ref.map((w) => fw.has(w.toLowerCase())),
      matches: [...matches],
      testContent: zeros(),
      referenceContent: zeros(),
      testFunctionMatches: zeros(),
      referenceFunctionMatches: zeros(),
      chunks: countChunks(matches),
    };
    for (const m of matches) {
      if (!m) continue;
      for (let k = 0; k < m.matchLength; k++) {
        if (a.testFunction[m.matchStart + k]) a.testFunctionMatches[m.module]++;
        else a.testContent[m.module]++;
      }
      for (let k = 0; k < m.length; k++) {
        if (a.referenceFunction[m.start + k]) a.referenceFunctionMatches[m.module]++;
        else a.referenceContent[m.module]++;
      }
    }
    return a;
  }
}
