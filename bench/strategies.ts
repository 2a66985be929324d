/**
 * Latency and captions per second of each decoding strategy on one model (default: the
 * fixture ViT-GPT2), for a batch of images, encoder included.
 * @module
 */
import { Captioner, type CaptionOptions } from "../src/captioner/captioner.ts";

/** One row of the strategy benchmark. */
export interface StrategyRow {
  name: string;
  shape: string;
  ms: number;
  captionsPerSec: number;
}

const STRATEGIES: [string, CaptionOptions][] = [
  ["greedy", {}],
  ["beam 3", { numBeams: 3 }],
  ["beam 5", { numBeams: 5 }],
  ["sampling top-p 0.9", { doSample: true, topP: 0.9, seed: 1 }],
  ["diverse beams 4/2", { numBeams: 4, numBeamGroups: 2, diversityPenalty: 1 }],
  ["constrained (1 word)", { numBeams: 4 }],
];

/** Run every strategy `reps` times (median) on `batch` copies of a fixture image. */
export async function benchStrategies(
  modelDir?: string,
  reps = 3,
  batch = 4,
): Promise<StrategyRow[]> {
  // WEBCAP_FIXTURES points at a copy of shared/fixtures/hf (e.g. on a lent GPU machine)
  const root = Deno.env.get("WEBCAP_FIXTURES") ??
    new URL("../../shared/fixtures/hf", import.meta.url).pathname;
  const dir = modelDir ?? `${root}/vit-gpt2`;
  const image = await Deno.readFile(`${root}/preprocess/pattern.png`);
  const captioner = await Captioner.fromPretrained(dir);
  const images = Array.from({ length: batch }, () => image);
  const maxNewTokens = 12;
  const rows: StrategyRow[] = [];
  try {
    for (const [name, opts] of STRATEGIES) {
      const o: CaptionOptions = { maxNewTokens, ...opts };
      if (name.startsWith("constrained")) {
        o.forceWordsIds = [[captioner.tokenizer.encode(" a", { addSpecialTokens: false })]];
      }
      const times: number[] = [];
      for (let i = 0; i <= reps; i++) {
        const t0 = performance.now();
        await captioner.caption(images, o);
        if (i > 0) times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const ms = times[Math.floor(times.length / 2)];
      rows.push({
        name,
        shape: `${batch} images x ${maxNewTokens} tokens`,
        ms,
        captionsPerSec: (batch * 1000) / ms,
      });
    }
  } finally {
    captioner.dispose();
  }
  return rows;
}
