/**
 * Example SCST rewards beside CIDEr-D (`ciderReward` in `scst.ts`), for the controllable
 * captions the project decodes: a keyword reward (the fraction of given keywords a sample
 * contains), a length reward (closeness to a target length in words), sentence BLEU-4 against
 * the references, and a weighted sum of rewards ({@link combineRewards}) whose name goes into
 * the SCST signature ({@link rewardName}). Every reward reads captions PTB-tokenized, as the
 * COCO evaluation does.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Bleu } from "../eval/bleu.ts";
import { ptbTokenize } from "../eval/ptb/tokenizer.ts";
import { type RewardFn, tokenizeRefs } from "./scst.ts";

/** A reward, its weight in a sum, and its name in the signature. */
export interface RewardTerm {
  /** The reward. */
  reward: RewardFn;
  /** Its weight (finite, not 0). */
  weight: number;
  /** Its name, e.g. `CIDEr-D(train-df)`. */
  name: string;
}

/**
 * The fraction of `keywords` each sample contains (each keyword PTB-tokenized; a keyword of
 * several words counts when its words appear together, in order).
 */
export function keywordReward(keywords: readonly string[]): RewardFn {
  const words = ptbTokenize(keywords).map((k) => k.split(" ").filter(Boolean));
  if (words.length === 0 || words.some((w) => w.length === 0)) {
    throw new WebcapError(
      "BAD_OPTION",
      `keyword reward: keywords must be non-empty, got ${JSON.stringify(keywords)}`,
    );
  }
  return (samples) =>
    ptbTokenize(samples).map((s) => {
      const padded = ` ${s} `;
      return words.filter((w) => padded.includes(` ${w.join(" ")} `)).length / words.length;
    });
}

/** 1 − |words − target| / target (at least 0): 1 at `target` words, 0 at 0 or 2·target. */
export function lengthReward(target: number): RewardFn {
  if (!(Number.isInteger(target) && target >= 1)) {
    throw new WebcapError(
      "BAD_OPTION",
      `length reward: target must be an integer ≥ 1, got ${target}`,
    );
  }
  return (samples) =>
    ptbTokenize(samples).map((s) => {
      const n = s.split(" ").filter(Boolean).length;
      return Math.max(0, 1 - Math.abs(n - target) / target);
    });
}

/** Sentence BLEU-4 of each sample against its references (pycocoevalcap's per-image Bleu_4). */
export const bleu4Reward: RewardFn = (samples, references) => {
  const bleu = new Bleu(tokenizeRefs(references));
  return ptbTokenize(samples).map((s, i) => bleu.scoreOne(i, s)[3]);
};

/** Σ weight · reward over `terms`, per sample. */
export function combineRewards(terms: readonly RewardTerm[]): RewardFn {
  if (terms.length === 0 || terms.some((t) => !Number.isFinite(t.weight) || t.weight === 0)) {
    throw new WebcapError(
      "BAD_OPTION",
      "combined reward: give at least one term, each of a finite weight ≠ 0",
    );
  }
  return (samples, references) => {
    const out = new Array<number>(samples.length).fill(0);
    for (const t of terms) {
      t.reward(samples, references).forEach((r, i) => out[i] += t.weight * r);
    }
    return out;
  };
}

/** The name of a combined reward: the term's own name alone at weight 1, else `1*A+0.5*B`. */
export function rewardName(terms: readonly RewardTerm[]): string {
  if (terms.length === 1 && terms[0].weight === 1) return terms[0].name;
  return terms.map((t) => `${t.weight}*${t.name}`).join("+");
}
