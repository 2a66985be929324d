/**
 * The example SCST rewards: keyword fraction and length closeness on captions whose answers
 * follow from the definitions, sentence BLEU-4 equal to the eval module's per-image Bleu_4,
 * a weighted sum equal to the weighted rewards it sums, its signature name, and bad options.
 */
import assert from "node:assert/strict";
import { evaluatePaired } from "../../src/eval/coco.ts";
import {
  bleu4Reward,
  combineRewards,
  keywordReward,
  lengthReward,
  rewardName,
} from "../../src/train/rewards.ts";
import { ciderReward } from "../../src/train/scst.ts";
import { assertCode } from "../util.ts";

const REFS = [
  ["a dog runs on the green grass", "a brown dog running outside"],
  ["a cat sleeps on a sofa", "a grey cat lying on a couch"],
  ["two birds on a wire", "birds sitting on a power line"],
];
const SAMPLES = ["A dog runs on the grass.", "a cat on a couch", ""];

Deno.test("keyword reward: the fraction of keywords present, case and punctuation as PTB reads them", () => {
  const r = keywordReward(["dog", "green grass", "Grass", "couch"]);
  assert.deepEqual(r(SAMPLES, REFS), [2 / 4, 1 / 4, 0]);
  assert.deepEqual(keywordReward(["on the"])(["dog on the grass", "one theme"], REFS), [1, 0]);
});

Deno.test("length reward: 1 at the target word count, falling linearly to 0 at 0 or twice it", () => {
  const r = lengthReward(4);
  assert.deepEqual(
    r(["a dog runs fast", "a dog", "one two three four five six seven eight", ""], REFS),
    [
      1,
      0.5,
      0,
      0,
    ],
  );
  assert.equal(r(["a dog, runs ."], REFS)[0], 0.75); // punctuation is no word
});

Deno.test("BLEU-4 reward equals the eval module's per-image Bleu_4; weighted sums add up", async () => {
  const bleu = bleu4Reward(SAMPLES, REFS);
  const e = await evaluatePaired({ ids: [0, 1, 2], refs: REFS, candidates: SAMPLES }, {
    metrics: ["BLEU"],
  });
  assert.deepEqual(bleu, e.perImage.map((p) => p.Bleu_4));
  assert.ok(bleu[0] > 0);
  const cider = ciderReward(REFS);
  const terms = [
    { reward: cider, weight: 1, name: "CIDEr-D(train-df)" },
    { reward: bleu4Reward, weight: 0.5, name: "BLEU-4" },
  ];
  const sum = combineRewards(terms)(SAMPLES, REFS);
  const c = cider(SAMPLES, REFS);
  sum.forEach((v, i) => assert.ok(Math.abs(v - (c[i] + 0.5 * bleu[i])) < 1e-12, `${i}`));
  assert.equal(rewardName(terms), "1*CIDEr-D(train-df)+0.5*BLEU-4");
  assert.equal(rewardName(terms.slice(0, 1)), "CIDEr-D(train-df)");
});

Deno.test("rewards refuse empty keywords, a bad target length and weights of 0", () => {
  assertCode(() => keywordReward([]), "BAD_OPTION", "keywords");
  assertCode(() => keywordReward(["dog", " "]), "BAD_OPTION", "keywords");
  assertCode(() => lengthReward(0), "BAD_OPTION", "target");
  assertCode(() => combineRewards([{ reward: bleu4Reward, weight: 0, name: "b" }]), "BAD_OPTION");
});
