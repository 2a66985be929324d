/**
 * METEOR 1.5 as the COCO caption evaluation runs it (`meteor-1.5.jar - - -stdio -l en -norm`,
 * driven by pycocoevalcap's `meteor.py`), in TypeScript: normalization, exact/stem/synonym
 * (and optional paraphrase) alignment, Meteor's sufficient statistics, per-segment scores with the
 * best of several references, and the corpus score of the summed statistics.
 *
 * Parameters are Meteor's English "rank" task: α 0.85, β 0.20, γ 0.60, δ 0.75; module weights
 * 1.0, 0.6, 0.8, 0.6 by **position** in the module list, as Meteor's `-m` option assigns them.
 * @module
 */

import { WebcapError } from "../../errors.ts";
import {
  type AlignerResources,
  MeteorAligner,
  type MeteorAlignment,
  type MeteorModule,
} from "./align.ts";
import { javaTokens, javaTrim, meteorNormalize } from "./normalize.ts";
import type { ParaphraseTable } from "./paraphrase.ts";
import {
  loadMeteorResources,
  type MeteorResources,
  type MeteorResourceTexts,
  resourcesFromTexts,
} from "./resources.ts";
import { snowballEnglishStem } from "./snowball_english.ts";
import type { WordNet } from "../wordnet.ts";

export type { MeteorModule } from "./align.ts";

/** Meteor's English "rank" parameters α, β, γ, δ. */
const ALPHA = 0.85;
const BETA = 0.2;
const GAMMA = 0.6;
const DELTA = 0.75;
/** English rank-task module weights, assigned by position in the module list. */
const RANK_WEIGHTS = [1.0, 0.6, 0.8, 0.6];

/** Meteor's sufficient statistics of one segment or of a sum of segments (`MeteorStats`). */
export interface MeteorStats {
  testLength: number;
  referenceLength: number;
  testFunctionWords: number;
  referenceFunctionWords: number;
  /** Per module: matched content / function words, test and reference side. */
  testContent: number[];
  referenceContent: number[];
  testFunction: number[];
  referenceFunction: number[];
  chunks: number;
  testWordMatches: number;
  referenceWordMatches: number;
}

/** Statistics of one aligned segment. */
export function statsOfAlignment(a: MeteorAlignment): MeteorStats {
  const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
  return {
    testLength: a.test.length,
    referenceLength: a.reference.length,
    testFunctionWords: a.testFunction.filter(Boolean).length,
    referenceFunctionWords: a.referenceFunction.filter(Boolean).length,
    testContent: [...a.testContent],
    referenceContent: [...a.referenceContent],
    testFunction: [...a.testFunctionMatches],
    referenceFunction: [...a.referenceFunctionMatches],
    chunks: a.chunks,
    testWordMatches: sum(a.testContent) + sum(a.testFunctionMatches),
    referenceWordMatches: sum(a.referenceContent) + sum(a.referenceFunctionMatches),
  };
}

/** True when both sides are matched completely, in a single chunk. */
function matchedInOneChunk(s: MeteorStats): boolean {
  return s.testWordMatches === s.testLength && s.referenceWordMatches === s.referenceLength &&
    s.chunks === 1;
}

/**
 * Field-wise sum of segment statistics (`MeteorStats.addStats`). As in Meteor, the chunk of a
 * segment matched completely in one chunk is not added.
 */
export function sumStats(all: readonly MeteorStats[], modules: number): MeteorStats {
  const zeros = () => new Array<number>(modules).fill(0);
  const t: MeteorStats = {
    testLength: 0,
    referenceLength: 0,
    testFunctionWords: 0,
    referenceFunctionWords: 0,
    testContent: zeros(),
    referenceContent: zeros(),
    testFunction: zeros(),
    referenceFunction: zeros(),
    chunks: 0,
    testWordMatches: 0,
    referenceWordMatches: 0,
  };
  for (const s of all) {
    t.testLength += s.testLength;
    t.referenceLength += s.referenceLength;
    t.testFunctionWords += s.testFunctionWords;
    t.referenceFunctionWords += s.referenceFunctionWords;
    for (let i = 0; i < modules; i++) {
      t.testContent[i] += s.testContent[i];
      t.referenceContent[i] += s.referenceContent[i];
      t.testFunction[i] += s.testFunction[i];
      t.referenceFunction[i] += s.referenceFunction[i];
    }
    if (!matchedInOneChunk(s)) t.chunks += s.chunks;
    t.testWordMatches += s.testWordMatches;
    t.referenceWordMatches += s.referenceWordMatches;
  }
  return t;
}

/** Weighted match total of one side: content words weigh δ, function words 1−δ. */
function weightedMatches(content: number[], fn: number[], weights: readonly number[]): number {
  let total = 0;
  for (let i = 0; i < weights.length; i++) total += content[i] * weights[i] * DELTA;
  for (let i = 0; i < weights.length; i++) total += fn[i] * weights[i] * (1.0 - DELTA);
  return total;
}

/** Meteor's score of a set of statistics (`MeteorScorer.computeMetrics`); 0 for NaN. */
export function meteorScoreOfStats(s: MeteorStats, weights: readonly number[]): number {
  const testLen = DELTA * (s.testLength - s.testFunctionWords) +
    (1.0 - DELTA) * s.testFunctionWords;
  const refLen = DELTA * (s.referenceLength - s.referenceFunctionWords) +
    (1.0 - DELTA) * s.referenceFunctionWords;
  const precision = weightedMatches(s.testContent, s.testFunction, weights) / testLen;
  const recall = weightedMatches(s.referenceContent, s.referenceFunction, weights) / refLen;
  const fMean = 1.0 / ((1.0 - ALPHA) / precision + ALPHA / recall);
  const frag = matchedInOneChunk(s)
    ? 0
    : s.chunks / ((s.testWordMatches + s.referenceWordMatches) / 2);
  const score = fMean * (1.0 - GAMMA * Math.pow(frag, BETA));
  return Number.isNaN(score) ? 0 : Math.max(score, 0.0);
}

/** Options of {@link MeteorScorer}. */
export interface MeteorOptions {
  /**
   * Matching modules in order. Default: exact, stem, synonym, plus paraphrase when a
   * `paraphrase` table is given. Weights 1.0, 0.6, 0.8, 0.6 go by position, as with Meteor's `-m`.
   */
  modules?: MeteorModule[];
  /** Paraphrase table for the paraphrase module (Meteor's `paraphrase-en` format). */
  paraphrase?: ParaphraseTable;
  /**
   * Meteor resource directory (`english.words`, `english.synsets`, `english.exceptions`, optional
   * `english.prefixes`); {@link MeteorScorer.create} only; takes precedence over `resources`.
   */
  resourceDir?: string | URL;
  /** Resource file texts (for browsers); omitted ones use the built-in copies. */
  resources?: MeteorResourceTexts;
  /** An already loaded synonym dictionary (takes precedence over `resources`). */
  wordnet?: WordNet;
}

/** Corpus and per-image METEOR. */
export interface MeteorResult {
  /** Score of the summed statistics of all images (what pycocoevalcap reports as METEOR). */
  corpus: number;
  /** Score of each image's best reference, in input order. */
  perImage: number[];
}

function resolveModules(opts: MeteorOptions): MeteorModule[] {
  const modules = opts.modules ??
    (opts.paraphrase ? ["exact", "stem", "synonym", "paraphrase"] : ["exact", "stem", "synonym"]);
  const known = ["exact", "stem", "synonym", "paraphrase"];
  const bad = modules.find((m) => !known.includes(m));
  if (modules.length === 0 || modules.length > 4 || bad !== undefined) {
    throw new WebcapError(
      "BAD_OPTION",
      `METEOR modules ${JSON.stringify(modules)} are invalid; give 1 to 4 of ${known.join(", ")}`,
    );
  }
  if (modules.includes("paraphrase") && !opts.paraphrase) {
    throw new WebcapError(
      "BAD_OPTION",
      "METEOR module 'paraphrase' needs a table: pass paraphrase: await ParaphraseTable.load(file)",
    );
  }
  return modules;
}

/** METEOR 1.5 scorer for PTB-tokenized captions. */
export class MeteorScorer {
  /** The modules in use, in order. */
  readonly modules: readonly MeteorModule[];
  private readonly weights: number[];
  private readonly aligner: MeteorAligner;
  private readonly resources: MeteorResources;

  /**
   * Build a scorer from in-memory resources (built-in copies, `resources` texts or `wordnet`).
   * Use {@link MeteorScorer.create} to read a `resourceDir` or the built-in WordNet data.
   */
  constructor(opts: MeteorOptions = {}, loaded?: MeteorResources) {
    this.modules = resolveModules(opts);
    this.weights = RANK_WEIGHTS.slice(0, this.modules.length);
    this.resources = loaded ?? resourcesFromTexts(opts.resources);
    if (opts.wordnet) this.resources = { ...this.resources, wordnet: opts.wordnet };
    if (opts.resourceDir !== undefined && !loaded) {
      throw new WebcapError(
        "BAD_OPTION",
        "METEOR resourceDir needs file reads: use `await MeteorScorer.create(opts)`",
      );
    }
    if (this.modules.includes("synonym") && !this.resources.wordnet) {
      throw new WebcapError(
        "BAD_OPTION",
        "METEOR synonym module needs WordNet: use `await MeteorScorer.create(opts)`, or pass " +
          "`wordnet` or `resources.synsets` + `resources.exceptions`",
      );
    }
    const alignerResources: AlignerResources = {
      functionWords: this.resources.functionWords,
      stem: snowballEnglishStem,
      wordnet: this.resources.wordnet,
      paraphrase: opts.paraphrase,
    };
    this.aligner = new MeteorAligner(this.modules, alignerResources);
  }

  /** Load the resources (`resourceDir`, texts, or built-in data) and build a scorer. */
  static async create(opts: MeteorOptions = {}): Promise<MeteorScorer> {
    const modules = resolveModules(opts);
    const needWordNet = modules.includes("synonym") && !opts.wordnet;
    const loaded = await loadMeteorResources(opts.resourceDir, opts.resources ?? {}, needWordNet);
    return new MeteorScorer(opts, loaded);
  }

  /**
   * Score PTB-tokenized captions as pycocoevalcap does.
   * @param refsTok per image, its tokenized references (at least one)
   * @param candsTok per image, its tokenized candidate
   */
  score(refsTok: string[][], candsTok: string[]): MeteorResult {
    if (refsTok.length !== candsTok.length) {
      throw new WebcapError(
        "BAD_EVAL_INPUT",
        `METEOR got ${refsTok.length} reference lists but ${candsTok.length} candidates; ` +
          "pass one candidate per image",
      );
    }
    const stats = candsTok.map((cand, i) => this.segmentStats(refsTok[i], cand, i));
    return {
      corpus: meteorScoreOfStats(sumStats(stats, this.modules.length), this.weights),
      perImage: stats.map((s) => meteorScoreOfStats(s, this.weights)),
    };
  }

  /** Statistics of the best-scoring reference for one image (earlier reference wins ties). */
  private segmentStats(refs: string[], cand: string, image: number): MeteorStats {
    const fields = stdioFields(refs, cand, image);
    const test = this.words(fields.test);
    let best: MeteorStats | undefined;
    let bestScore = -1;
    for (const ref of fields.refs) {
      const s = statsOfAlignment(this.aligner.align(test, this.words(ref)));
      const score = meteorScoreOfStats(s, this.weights);
      if (score > bestScore) [best, bestScore] = [s, score];
    }
    return best!;
  }

  /** Normalized, lowercased words of one line. */
  private words(line: string): string[] {
    return javaTokens(meteorNormalize(line, this.resources.prefixes));
  }
}

/**
 * What Meteor's `-stdio` mode receives from pycocoevalcap for one image: the candidate has `|||`
 * removed and double spaces made single; the line `SCORE ||| ref… ||| cand` is split on `|||`
 * (Java `String.split`, trailing empty fields dropped) and each field is trimmed.
 */
function stdioFields(refs: string[], cand: string, image: number) {
  if (refs.length === 0) {
    throw new WebcapError(
      "BAD_EVAL_INPUT",
      `METEOR: image ${image} has no reference; give at least one`,
    );
  }
  const clean = cand.replaceAll("|||", "").replaceAll("  ", " ");
  const parts = ["SCORE", refs.join(" ||| "), clean].join(" ||| ").split("|||");
  while (parts.length > 0 && parts[parts.length - 1] === "") parts.pop();
  if (parts.length < 3) {
    throw new WebcapError(
      "BAD_EVAL_INPUT",
      `METEOR: image ${image} has no usable reference or candidate`,
    );
  }
  return { refs: parts.slice(1, -1).map(javaTrim), test: javaTrim(parts[parts.length - 1]) };
}
