/**
 * A {@link DecoderStep} over any CPU language model given as a function from the rows' token
 * histories to next-token logits; processing and selection run in {@link processRows}. Used by
 * the tests with small deterministic toy models, and usable with any CPU model.
 * @module
 */

import { WebcapError } from "../errors.ts";
import type { DecoderFactory } from "./generate.ts";
import { processRows } from "./processors.ts";
import type { DecoderStep, RowProcessing, StepOut, StepWant } from "./step.ts";

/**
 * Next-token logits [rows, vocab] for rows whose fed tokens are `histories[r]` (prompt first)
 * and whose image is `images[r]`.
 */
export type CpuLanguageModel = (
  histories: readonly (readonly number[])[],
  images: Int32Array,
) => Float32Array | Promise<Float32Array>;

/** A decoder whose "cache" is each row's token history. */
export class CpuDecoder implements DecoderStep {
  #histories: number[][];
  #images: Int32Array;
  readonly #capacity: number;
  /** Step calls so far. */
  steps = 0;
  /** Rows computed so far, summed over steps (the work done). */
  rowSteps = 0;

  /**
   * A decoder of images·rowsPerImage rows, row = image·rowsPerImage + j.
   * @param lm the language model.
   * @param vocabSize logits per row.
   * @param images number of images.
   * @param rowsPerImage rows per image at the start.
   */
  constructor(
    readonly lm: CpuLanguageModel,
    readonly vocabSize: number,
    images: number,
    rowsPerImage: number,
  ) {
    this.#capacity = images * rowsPerImage;
    this.#histories = Array.from({ length: this.#capacity }, () => []);
    this.#images = Int32Array.from(
      { length: this.#capacity },
      (_, r) => Math.floor(r / rowsPerImage),
    );
  }

  /** Live rows. */
  get rows(): number {
    return this.#histories.length;
  }

  /** Token histories of the live rows (read-only view for tests). */
  get histories(): readonly (readonly number[])[] {
    return this.#histories;
  }

  /** Feed one token per row, compute logits, process and select. */
  async step(tokens: Int32Array, proc: RowProcessing, want: StepWant): Promise<StepOut> {
    if (tokens.length !== this.rows) {
      throw new WebcapError("BAD_SHAPE", `step got ${tokens.length} tokens for ${this.rows} rows`);
    }
    this.#histories.forEach((h, r) => h.push(tokens[r]));
    this.steps++;
    this.rowSteps += this.rows;
    const logits = await this.lm(this.#histories, this.#images);
    if (logits.length !== this.rows * this.vocabSize) {
      throw new WebcapError(
        "BAD_SHAPE",
        `the language model returned ${logits.length} logits for ${this.rows} rows of ${this.vocabSize}`,
      );
    }
    return processRows(logits, this.vocabSize, proc, want);
  }

  /** New row i continues old row parents[i]. */
  reorder(parents: Int32Array): void {
    if (parents.length > this.#capacity) {
      throw new WebcapError(
        "BAD_SHAPE",
        `reorder to ${parents.length} rows exceeds the ${this.#capacity} rows the decoder was made with`,
      );
    }
    for (const p of parents) {
      if (p < 0 || p >= this.rows) {
        throw new WebcapError(
          "BAD_SHAPE",
          `reorder parent ${p} is not a live row (0…${this.rows - 1})`,
        );
      }
    }
    this.#histories = Array.from(parents, (p) => [...this.#histories[p]]);
    this.#images = Int32Array.from(parents, (p) => this.#images[p]);
  }
}

/** A {@link DecoderFactory} of {@link CpuDecoder}s. */
export interface CpuDecoderFactory extends DecoderFactory {
  /** Every decoder made so far, for inspection. */
  readonly created: CpuDecoder[];
  /** A decoder with images·rowsPerImage rows. */
  create(rowsPerImage: number): CpuDecoder;
}

/** A factory of {@link CpuDecoder}s for `images` images. */
export function cpuDecoderFactory(
  lm: CpuLanguageModel,
  vocabSize: number,
  images: number,
): CpuDecoderFactory {
  const created: CpuDecoder[] = [];
  return {
    vocabSize,
    images,
    created,
    create(rowsPerImage: number): CpuDecoder {
      const d = new CpuDecoder(lm, vocabSize, images, rowsPerImage);
      created.push(d);
      return d;
    },
  };
}
