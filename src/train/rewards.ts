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
import { ciderReward, type RewardFn, tokenizeRefs } from "./scst.ts";

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
export const bleu4Reward: RewardFn = (
  samples: string[],
  references: string[][],
): number[] => {
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

/** The rewards `--reward name:weight,…` names. */
export const REWARD_NAMES = ["cider", "bleu4", "keywords", "length"] as const;

/** A reward of {@link REWARD_NAMES} and its weight. */
export type RewardWeights = { name: typeof REWARD_NAMES[number]; weight: number }[];

/**
 * `cider:1,bleu4:0.5` as names and weights (a name alone weighs 1).
 * @throws WebcapError BAD_OPTION naming an unknown reward, a bad weight or a reward twice.
 */
export function parseRewardWeights(spec: string): RewardWeights {
  const out: RewardWeights = [];
  for (const part of spec.split(",")) {
    const [name, w = "1", ...rest] = part.trim().split(":");
    const weight = Number(w);
    const known = (REWARD_NAMES as readonly string[]).includes(name);
    if (!known || rest.length || !Number.isFinite(weight) || weight === 0 || w.trim() === "") {
      throw new WebcapError(
        "BAD_OPTION",
        `--reward: ${JSON.stringify(part)} is not name:weight with a name of ` +
          `${REWARD_NAMES.join(", ")} and a number ≠ 0 (e.g. cider:1,bleu4:0.5)`,
      );
    }
    if (out.some((t) => t.name === name)) {
      throw new WebcapError("BAD_OPTION", `--reward: ${name} is given twice`);
    }
    out.push({ name: name as RewardWeights[number]["name"], weight });
  }
  return out;
}

/** What the named rewards need: the training references (CIDEr-D's df), keywords, a length. */
export interface RewardContext {
  /** The captions of each training image. */
  trainRefs: readonly (readonly string[])[];
  /** The keyword reward's keywords. */
  keywords?: readonly string[];
  /** The length reward's target, in words. */
  targetLength?: number;
}

/**
 * The terms of named, weighted rewards.
 * @throws WebcapError BAD_OPTION when `keywords` or `length` lacks its keywords or target.
 */
export function rewardTerms(weights: RewardWeights, ctx: RewardContext): RewardTerm[] {
  return weights.map(({ name, weight }) => {
    const need = (what: string): never => {
      throw new WebcapError("BAD_OPTION", `the ${name} reward needs ${what}`);
    };
    switch (name) {
      case "cider":
        return { reward: ciderReward(ctx.trainRefs), weight, name: "CIDEr-D(train-df)" };
      case "bleu4":
        return { reward: bleu4Reward, weight, name: "BLEU-4" };
      case "keywords": {
        const k = ctx.keywords ?? need("keywords (--keywords a,b)");
        return { reward: keywordReward(k), weight, name: `keywords(${k.join("|")})` };
      }
      case "length": {
        const t = ctx.targetLength ?? need("a target length (--target-length N)");
        return { reward: lengthReward(t), weight, name: `length(${t})` };
      }
    }
  });
}
