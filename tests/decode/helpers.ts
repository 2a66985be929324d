/** Test helpers for src/decode: fixture paths, toy language models, a replaying model. */
import type { CpuLanguageModel } from "../../src/decode/cpu_decoder.ts";
import { Rng } from "../../src/decode/rng.ts";
import type { GeneratedSequence } from "../../src/decode/search.ts";
import type { DecoderStep, RowProcessing, StepOut, StepWant } from "../../src/decode/step.ts";
import { processRows } from "../../src/decode/processors.ts";

/** Directory of the Hugging Face fixtures (../shared/fixtures/hf from the repository root). */
export const HF_FIXTURES = new URL("../../../shared/fixtures/hf/", import.meta.url);

/** Path of a file under the Hugging Face fixtures. */
export function hfFixture(rel: string): string {
  return new URL(rel, HF_FIXTURES).pathname;
}

/**
 * A deterministic toy language model: logits are a fixed random table (normal-ish, times
 * `scale`) indexed by the last two tokens of the row, so rows with different histories differ.
 */
export function toyModel(vocab: number, seed: number, scale = 3): CpuLanguageModel {
  const rng = new Rng(seed);
  const table = new Float32Array(vocab * vocab * vocab);
  for (let i = 0; i < table.length; i++) {
    const u = rng.nextFloat() + rng.nextFloat() + rng.nextFloat() - 1.5;
    table[i] = u * 2 * scale;
  }
  return (histories) => {
    const out = new Float32Array(histories.length * vocab);
    histories.forEach((h, r) => {
      const a = h.at(-2) ?? 0;
      const b = h.at(-1) ?? 0;
      out.set(table.subarray((a * vocab + b) * vocab, (a * vocab + b + 1) * vocab), r * vocab);
    });
    return out;
  };
}

/**
 * A model that replays recorded per-step scores: step t (the t-th token after the prompt) of the
 * row that is the s-th live row of image i returns `steps[t]` row i·rowsPerImage + s. This equals
 * the recording's rows exactly when the search keeps its beams in the reference's order.
 */
export function replayModel(
  steps: Float32Array[],
  rowsPerImage: number,
  vocab: number,
  promptLen: number,
): CpuLanguageModel {
  return (histories, images) => {
    const out = new Float32Array(histories.length * vocab);
    const slots = new Map<number, number>();
    histories.forEach((h, r) => {
      const t = h.length - promptLen;
      if (t < 0) return;
      if (t >= steps.length) throw new Error(`no recorded step ${t}`);
      const slot = slots.get(images[r]) ?? 0;
      slots.set(images[r], slot + 1);
      const src = (images[r] * rowsPerImage + slot) * vocab;
      out.set(steps[t].subarray(src, src + vocab), r * vocab);
    });
    return out;
  };
}

/**
 * A decoder wrapper that answers every top-k request with the whole sorted vocabulary (k = vocab):
 * strategies read the row stride from the result, so they then see every candidate. A strategy
 * whose top-k request is exact returns the same sequences with and without this wrapper.
 */
export class FullReadDecoder implements DecoderStep {
  constructor(readonly inner: DecoderStep) {}
  get vocabSize(): number {
    return this.inner.vocabSize;
  }
  get rows(): number {
    return this.inner.rows;
  }
  reorder(parents: Int32Array): void {
    this.inner.reorder(parents);
  }
  async step(tokens: Int32Array, proc: RowProcessing, want: StepWant): Promise<StepOut> {
    if (want.kind !== "topk") return this.inner.step(tokens, proc, want);
    const full = await this.inner.step(tokens, proc, { kind: "full" });
    const noop: RowProcessing = {
      logSoftmaxBefore: false,
      repetitionPenalty: 1,
      logSoftmaxAfter: false,
    };
    return processRows(full.values, this.vocabSize, noop, {
      kind: "topk",
      k: this.vocabSize,
      gather: want.gather,
    });
  }
}

/** Sum of float32 values in float64 (for score checks). */
export function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** Token lists of a result, for comparisons. */
export function tokensOf(result: GeneratedSequence[][]): number[][][] {
  return result.map((seqs) => seqs.map((s) => s.tokens));
}
