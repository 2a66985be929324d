/**
 * SPICE-ts: a scene-graph caption metric after SPICE (Anderson et al. 2016), in TypeScript.
 *
 * NOT the Java SPICE: captions are parsed by the rule-based parser of `scene_graph.ts` instead
 * of CoreNLP and the Stanford Scene Graph Parser, so its numbers are not comparable to published
 * SPICE scores; report them as `SPICE-ts`. What it keeps from SPICE: references of an image
 * merged into one scene graph, tuples (objects, attributes, relations), matching by lemma or
 * shared WordNet synset (Meteor's synonym data, via `wordnet.ts`), per-image F1 and a corpus
 * score that is the plain mean of the per-image F1. See src/eval/NOTES.md, "SPICE-ts".
 * @module
 */

import { WebcapError } from "../../errors.ts";
import { parseSceneGraph, type SceneGraph } from "./scene_graph.ts";
import { matchFlags, MergedGraph, type SynsetLookup, type Tuple, tupleText } from "./tuples.ts";
import { loadWordNet, type LoadWordNetOptions, type WordNet } from "../wordnet.ts";

/** Options of {@link SpiceScorer.create}. */
export interface SpiceOptions {
  /** Synonym dictionary to use; default: {@link loadWordNet} with `wordnetOptions`. */
  wordnet?: WordNet;
  /** How to load the dictionary when `wordnet` is not given (default: built-in WordNet 3.0). */
  wordnetOptions?: LoadWordNetOptions;
  /** Match tuples through WordNet synsets as well as lemmas (default true, as SPICE does). */
  synonyms?: boolean;
}

/** One tuple of an image's candidate or reference graph, as text, with its match flag. */
export interface SpiceTupleView {
  /** Concepts of the tuple; a merged concept lists its words joined by `/`. */
  tuple: string[];
  /** Whether a tuple of the other side is similar to it. */
  matched: boolean;
}

/** Per-image scores and, with `detail`, the tuples. */
export interface SpiceImageDetail {
  /** Precision: matched candidate tuples / candidate tuples (0 when there are none). */
  pr: number;
  /** Recall: matched reference tuples / reference tuples (0 when there are none). */
  re: number;
  /** F1 of `pr` and `re` (0 when either is 0). */
  f: number;
  /** The candidate's and the merged references' tuples (empty lists unless `detail` was asked). */
  tuples: { cand: SpiceTupleView[]; refs: SpiceTupleView[] };
}

/** Result of {@link SpiceScorer.score}. */
export interface SpiceResult {
  /** Mean of the per-image F1 (NaN only for an empty input). */
  corpus: number;
  /** Per-image F1, in input order. */
  perImage: number[];
  /** Per-image precision, recall, F1 and tuples; present when asked for. */
  detail?: SpiceImageDetail[];
}

/** Scores captions with SPICE-ts. Create with {@link SpiceScorer.create}. */
export class SpiceScorer {
  private readonly synsetCache = new Map<string, ReadonlySet<number>>();

  private constructor(private readonly wordnet: WordNet | undefined) {}

  /** Loads the synonym dictionary (unless `synonyms: false`) and returns a scorer. */
  static async create(opts: SpiceOptions = {}): Promise<SpiceScorer> {
    if (opts.synonyms === false) return new SpiceScorer(undefined);
    return new SpiceScorer(opts.wordnet ?? await loadWordNet(opts.wordnetOptions));
  }

  /**
   * Scores one candidate per image against that image's references.
   * @param refsTok per image, its PTB-tokenized lowercase references (at least one each)
   * @param candsTok per image, its PTB-tokenized lowercase candidate
   * @param opts `detail: true` adds per-image precision, recall and tuples
   */
  score(refsTok: string[][], candsTok: string[], opts: { detail?: boolean } = {}): SpiceResult {
    checkInput(refsTok, candsTok);
    const parses = new Map<string, SceneGraph>();
    const parse = (c: string) => {
      let g = parses.get(c);
      if (!g) parses.set(c, g = parseSceneGraph(c));
      return g;
    };
    const details = candsTok.map((cand, i) =>
      this.scoreImage(refsTok[i].map(parse), parse(cand), opts.detail ?? false)
    );
    const perImage = details.map((d) => d.f);
    const corpus = perImage.length === 0
      ? NaN
      : perImage.reduce((a, b) => a + b, 0) / perImage.length;
    return opts.detail ? { corpus, perImage, detail: details } : { corpus, perImage };
  }

  /** One image: merged reference graph vs candidate graph → precision, recall, F1. */
  private scoreImage(refs: SceneGraph[], cand: SceneGraph, detail: boolean): SpiceImageDetail {
    const lookup: SynsetLookup = (w) => this.synsets(w);
    const refGraph = new MergedGraph(lookup);
    for (const r of refs) refGraph.addCaption(r);
    const candGraph = new MergedGraph(lookup);
    candGraph.addCaption(cand);
    const [c, r] = [candGraph.tuples(), refGraph.tuples()];
    const cFlags = matchFlags(c, r);
    const rFlags = matchFlags(r, c);
    const pr = fraction(cFlags);
    const re = fraction(rFlags);
    const f = pr > 0 && re > 0 ? (2 * pr * re) / (pr + re) : 0;
    const tuples = detail
      ? { cand: views(c, cFlags), refs: views(r, rFlags) }
      : { cand: [], refs: [] };
    return { pr, re, f, tuples };
  }

  /** Synsets of a concept word or phrase (SPICE: spaces → `_`, own ∪ base-form synsets). */
  private synsets(word: string): ReadonlySet<number> {
    if (!this.wordnet) return EMPTY;
    let s = this.synsetCache.get(word);
    if (!s) {
      s = this.wordnet.allSynsets(word.trim().toLowerCase().replaceAll(" ", "_"));
      this.synsetCache.set(word, s);
    }
    return s;
  }
}

const EMPTY: ReadonlySet<number> = new Set();

function fraction(flags: boolean[]): number {
  return flags.length === 0 ? 0 : flags.filter((x) => x).length / flags.length;
}

function views(tuples: Tuple[], flags: boolean[]): SpiceTupleView[] {
  return tuples.map((t, i) => ({ tuple: tupleText(t), matched: flags[i] }));
}

function checkInput(refsTok: string[][], candsTok: string[]): void {
  if (refsTok.length !== candsTok.length) {
    throw new WebcapError(
      "BAD_EVAL_INPUT",
      `SPICE-ts: ${refsTok.length} reference lists but ${candsTok.length} candidates; ` +
        "pass one candidate and one list of references per image",
    );
  }
  const empty = refsTok.findIndex((r) => r.length === 0);
  if (empty >= 0) {
    throw new WebcapError(
      "BAD_EVAL_INPUT",
      `SPICE-ts: image ${empty} has no reference caption; every image needs at least one`,
    );
  }
}
