/**
 * Helpers of the GPU decoder tests: generation on a real model's encoder states with the GPU
 * decoder whole (runLoop, runBeams) or reduced to its one-step interface (the host strategies).
 */
import type { Captioner } from "../../src/captioner/captioner.ts";
import type { DecoderFactory } from "../../src/decode/generate.ts";
import { generate } from "../../src/decode/generate.ts";
import type { GenerateOptions } from "../../src/decode/options.ts";
import type { GeneratedSequence } from "../../src/decode/search.ts";
import type { DecoderStep } from "../../src/decode/step.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import type { EncoderState } from "../../src/arch/caption_model.ts";
import { GpuDecoder } from "../../src/captioner/gpu_decoder.ts";
import { rng } from "../util.ts";

/**
 * Decoders over `enc`; `chunked` false hides `runLoop` and `runBeams`, so the search steps one by
 * one on the host.
 */
function factoryOf(c: Captioner, enc: EncoderState, maxLength: number, chunked: boolean) {
  const made: GpuDecoder[] = [];
  const d = c.model.decoder;
  const factory: DecoderFactory = {
    vocabSize: d.vocabSize,
    images: enc.images,
    reservedStartId: d.decoderStartTokenId >= d.vocabSize ? d.decoderStartTokenId : undefined,
    create(rowsPerImage: number): DecoderStep {
      const rowImage = Int32Array.from(
        { length: enc.images * rowsPerImage },
        (_, r) => Math.floor(r / rowsPerImage),
      );
      const rec = new Recorder(c.gpu);
      const dec = new GpuDecoder(
        c.gpu,
        c.model,
        c.model.beginDecode(rec, enc, rowImage, maxLength),
        rec,
      );
      made.push(dec);
      if (chunked) return dec;
      return {
        get vocabSize() {
          return dec.vocabSize;
        },
        get rows() {
          return dec.rows;
        },
        step: (t, p, w) => dec.step(t, p, w),
        reorder: (p) => dec.reorder(p),
      };
    },
  };
  return { factory, dispose: () => Promise.all(made.map((m) => m.dispose())) };
}

/** Generate on `enc` with the GPU decoder, its chunked paths or (`chunked` false) step by step. */
export async function run(
  c: Captioner,
  enc: EncoderState,
  opts: GenerateOptions,
  chunked: boolean,
): Promise<GeneratedSequence[][]> {
  const prompt = c.promptIds(undefined);
  const { factory, dispose } = factoryOf(c, enc, prompt.length + opts.maxNewTokens!, chunked);
  try {
    return await generate(factory, Array.from({ length: enc.images }, () => prompt), opts);
  } finally {
    await dispose();
  }
}

/** A `w`×`h` RGB image of noise. */
export function noise(w: number, h: number, seed: number) {
  const r = rng(seed);
  return { width: w, height: h, data: Uint8Array.from({ length: w * h * 3 }, () => r() * 256) };
}
