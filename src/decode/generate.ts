/**
 * The entry point of decoding: validate the options, create the decoder rows the chosen strategy
 * needs, run it. Strategy choice follows transformers: forceWordsIds → constrained beam search;
 * numBeamGroups > 1 → diverse beam search; numBeams > 1 → beam search (beam sampling with
 * doSample); doSample → sampling; otherwise greedy search.
 * @module
 */

import { WebcapError } from "../errors.ts";
import { beamSearch } from "./beam.ts";
import { constrainedBeamSearch } from "./constrained_beam.ts";
import { diverseBeamSearch } from "./diverse_beam.ts";
import { greedySearch } from "./greedy.ts";
import {
  checkVocabulary,
  type GenerateOptions,
  type ResolvedOptions,
  resolveOptions,
} from "./options.ts";
import { compileRules } from "./processors.ts";
import { sampleSearch } from "./sample.ts";
import { feedPrompt, type GeneratedSequence, type SearchSetup } from "./search.ts";
import type { DecoderStep } from "./step.ts";

/** Makes the decoder of one generate call. */
export interface DecoderFactory {
  /** Logits per row. */
  readonly vocabSize: number;
  /** Images of the batch (each row holds one image's encoder state). */
  readonly images: number;
  /**
   * A reserved first prompt token that lies outside the vocabulary (ClipCap's "last prefix
   * vector" id); accepted as each prompt's first token.
   */
  readonly reservedStartId?: number;
  /** A decoder with images·rowsPerImage rows; row = image·rowsPerImage + j. */
  create(rowsPerImage: number): DecoderStep | Promise<DecoderStep>;
}

/** Rows per image a resolved strategy needs. */
function rowsPerImage(o: ResolvedOptions): number {
  if (o.numBeams > 1) return o.numBeams;
  return o.doSample ? o.numReturnSequences : 1;
}

function checkPrompts(prompts: readonly number[][], factory: DecoderFactory): void {
  if (prompts.length !== factory.images) {
    throw new WebcapError(
      "BAD_OPTION",
      `got ${prompts.length} prompts for a batch of ${factory.images} images; pass one per image`,
    );
  }
  const len = prompts[0]?.length ?? 0;
  for (const [i, p] of prompts.entries()) {
    if (p.length === 0 || p.length !== len) {
      throw new WebcapError(
        "BAD_OPTION",
        `prompt ${i} has ${p.length} tokens, prompt 0 has ${len}: prompts must be non-empty and of equal length (caption images with other prompts in another call)`,
      );
    }
    for (const [j, t] of p.entries()) {
      if (j === 0 && t === factory.reservedStartId) continue;
      if (!Number.isInteger(t) || t < 0 || t >= factory.vocabSize) {
        throw new WebcapError(
          "BAD_OPTION",
          `prompt ${i} holds ${t}, not a token id below ${factory.vocabSize}`,
        );
      }
    }
  }
}

/**
 * Generate sequences for a batch of images.
 * @param factory makes the decoder (rows hold the images' encoder states).
 * @param prompts per image, the start tokens (e.g. [decoder_start_token_id]); options.promptIds
 *   follow them. All prompts must have the same length.
 * @returns per image, its sequences best first (beam methods) or in row order (sampling).
 * @throws WebcapError BAD_OPTION before any model work when an option or prompt is invalid.
 */
export async function generate(
  factory: DecoderFactory,
  prompts: readonly number[][],
  options: GenerateOptions = {},
): Promise<GeneratedSequence[][]> {
  const opts = resolveOptions(options);
  checkVocabulary(opts, factory.vocabSize);
  const full = prompts.map((p) => [...p, ...opts.promptIds]);
  checkPrompts(full, factory);
  const rows = rowsPerImage(opts);
  const dec = await factory.create(rows);
  const setup: SearchSetup = {
    prompts: full,
    opts,
    rules: compileRules(opts, full),
    vocabSize: factory.vocabSize,
    first: await feedPrompt(dec, full, rows),
  };
  if (opts.forceWordsIds.length > 0) return constrainedBeamSearch(dec, setup);
  if (opts.numBeamGroups > 1) return diverseBeamSearch(dec, setup);
  if (opts.numBeams > 1) return beamSearch(dec, setup);
  if (opts.doSample) return sampleSearch(dec, setup);
  return greedySearch(dec, setup);
}
