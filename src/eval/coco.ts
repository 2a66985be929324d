/**
 * The COCO caption evaluation pipeline (pycocoevalcap `eval.py`): align references and one
 * candidate per image, PTB-tokenize references and candidates in two separate calls, then run
 * BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE on the tokenized strings.
 * @module
 */

import { Bleu } from "./bleu.ts";
import { CiderD, type DocumentFrequency } from "./cider.ts";
import {
  type CaptionResult,
  type ImageId,
  pairCaptions,
  type PairedCaptions,
  toCandidateTable,
  toReferenceTable,
} from "./coco_input.ts";
import { type MeteorOptions, MeteorScorer } from "./meteor/meteor.ts";
import { ptbTokenize } from "./ptb/tokenizer.ts";
import { RougeL } from "./rouge.ts";
import { type SpiceOptions, SpiceScorer } from "./spice/spice.ts";
import { WebcapError } from "../errors.ts";

/** Metric families, in the order pycocoevalcap runs them. */
export const METRIC_FAMILIES = ["BLEU", "METEOR", "ROUGE_L", "CIDEr", "SPICE"] as const;

/** One metric family. METEOR and SPICE are the slow ones. */
export type MetricFamily = typeof METRIC_FAMILIES[number];

/** Options of {@link evaluateCaptions} and {@link evaluatePaired}. */
export interface EvaluateOptions {
  /** Families to compute (default: all; see `skipSlow`). */
  metrics?: readonly MetricFamily[];
  /** Leave out METEOR and SPICE. */
  skipSlow?: boolean;
  /** Captions are already PTB-tokenized: skip the tokenizer. */
  tokenized?: boolean;
  /** Evaluate only the images that have a result (else a missing result is an error). */
  subset?: boolean;
  /** CIDEr-D document frequencies from a corpus (default: from the evaluated references). */
  ciderDf?: DocumentFrequency;
  /**
   * A METEOR scorer to reuse, or options to create one. Without a paraphrase table the
   * metric is reported as `METEOR_noparaphrase` (not the standard COCO METEOR), with one as
   * `METEOR`.
   */
  meteor?: MeteorScorer | MeteorOptions;
  /** A SPICE-ts scorer to reuse, or options to create one; reported as `SPICE-ts`. */
  spice?: SpiceScorer | SpiceOptions;
}

/** Scores of one image: its id and one value per metric name. */
export type PerImageScores = { image_id: ImageId } & Record<string, number>;

/** Result of an evaluation. */
export interface EvaluationResult {
  /** Corpus score per metric name (`Bleu_1`…`Bleu_4`, `METEOR…`, `ROUGE_L`, `CIDEr`, `SPICE-ts`). */
  metrics: Record<string, number>;
  /** Per-image scores, in evaluation order. */
  perImage: PerImageScores[];
  /** The tokenized captions the scorers saw. */
  tokenized: { refs: string[][]; candidates: string[] };
}

type Scores = { corpus: Record<string, number>; perImage: Record<string, number[]> };

function selectedFamilies(opts: EvaluateOptions): MetricFamily[] {
  const chosen = opts.metrics ?? METRIC_FAMILIES;
  const bad = chosen.find((m) => !METRIC_FAMILIES.includes(m));
  if (bad !== undefined) {
    throw new WebcapError(
      "BAD_OPTION",
      `unknown metric ${JSON.stringify(bad)}; choose from ${METRIC_FAMILIES.join(", ")}`,
    );
  }
  const slow = new Set<MetricFamily>(opts.skipSlow ? ["METEOR", "SPICE"] : []);
  return METRIC_FAMILIES.filter((m) => chosen.includes(m) && !slow.has(m));
}

function bleuScores(refs: string[][], cands: string[]): Scores {
  const r = new Bleu(refs).score(cands);
  const out: Scores = { corpus: {}, perImage: {} };
  r.corpus.forEach((v, k) => {
    out.corpus[`Bleu_${k + 1}`] = v;
    out.perImage[`Bleu_${k + 1}`] = r.perImage.map((p) => p[k]);
  });
  return out;
}

async function meteorScores(
  refs: string[][],
  cands: string[],
  opt: EvaluateOptions["meteor"],
): Promise<Scores> {
  const scorer = opt instanceof MeteorScorer ? opt : await MeteorScorer.create(opt ?? {});
  const name = scorer.modules.includes("paraphrase") ? "METEOR" : "METEOR_noparaphrase";
  const r = scorer.score(refs, cands);
  return { corpus: { [name]: r.corpus }, perImage: { [name]: r.perImage } };
}

async function spiceScores(
  refs: string[][],
  cands: string[],
  opt: EvaluateOptions["spice"],
): Promise<Scores> {
  const scorer = opt instanceof SpiceScorer ? opt : await SpiceScorer.create(opt ?? {});
  const r = scorer.score(refs, cands);
  return { corpus: { "SPICE-ts": r.corpus }, perImage: { "SPICE-ts": r.perImage } };
}

function runFamily(
  family: MetricFamily,
  refs: string[][],
  cands: string[],
  opts: EvaluateOptions,
): Scores | Promise<Scores> {
  switch (family) {
    case "BLEU":
      return bleuScores(refs, cands);
    case "METEOR":
      return meteorScores(refs, cands, opts.meteor);
    case "ROUGE_L": {
      const r = new RougeL(refs).score(cands);
      return { corpus: { ROUGE_L: r.corpus }, perImage: { ROUGE_L: r.perImage } };
    }
    case "CIDEr": {
      const r = new CiderD(refs, { df: opts.ciderDf }).score(cands);
      return { corpus: { CIDEr: r.corpus }, perImage: { CIDEr: r.perImage } };
    }
    case "SPICE":
      return spiceScores(refs, cands, opts.spice);
  }
}

/** Tokenize (unless already tokenized): references in one call, candidates in another. */
export function tokenizePaired(
  paired: PairedCaptions,
  tokenized = false,
): { refs: string[][]; candidates: string[] } {
  if (tokenized) return { refs: paired.refs, candidates: paired.candidates };
  const flat = ptbTokenize(paired.refs.flat());
  let at = 0;
  const refs = paired.refs.map((r) => flat.slice(at, at += r.length));
  return { refs, candidates: ptbTokenize(paired.candidates) };
}

/** Evaluate captions already aligned per image (see `coco_input.ts` for the file formats). */
export async function evaluatePaired(
  paired: PairedCaptions,
  opts: EvaluateOptions = {},
): Promise<EvaluationResult> {
  const families = selectedFamilies(opts);
  const tokenized = tokenizePaired(paired, opts.tokenized);
  const metrics: Record<string, number> = {};
  const perImage: PerImageScores[] = paired.ids.map((id) => ({ image_id: id }) as PerImageScores);
  for (const family of families) {
    const s = await runFamily(family, tokenized.refs, tokenized.candidates, opts);
    Object.assign(metrics, s.corpus);
    for (const [name, values] of Object.entries(s.perImage)) {
      values.forEach((v, i) => perImage[i][name] = v);
    }
  }
  return { metrics, perImage, tokenized };
}

/**
 * Evaluate captions like pycocoevalcap's `COCOEvalCap.evaluate()`.
 * @param gts References per image (raw captions): a Map or an object `{image_id: [refs]}`;
 *   its order is the evaluation order.
 * @param res Candidates: COCO results `[{image_id, caption}]`, or a Map / object id → caption.
 * @param opts Metrics, `skipSlow`, `tokenized`, `subset`, CIDEr document frequencies, scorers.
 * @throws WebcapError `BAD_EVAL_INPUT` for unknown or missing images, duplicate results or
 *   non-string captions.
 */
export async function evaluateCaptions(
  gts: ReadonlyMap<ImageId, readonly string[]> | Readonly<Record<string, readonly string[]>>,
  res: readonly CaptionResult[] | ReadonlyMap<ImageId, string> | Readonly<Record<string, string>>,
  opts: EvaluateOptions = {},
): Promise<EvaluationResult> {
  const paired = pairCaptions(toReferenceTable(gts), toCandidateTable(res), {
    subset: opts.subset,
  });
  return await evaluatePaired(paired, opts);
}
