/**
 * The GPU side of the decoding contract (src/decode/step.ts): each `step` records the model's
 * decoder step, the per-row logits processing and the selection (top-k / gather / full row)
 * into one compute pass, submits once and reads back only what the strategy asked for.
 * A `reorder` is recorded into the next step's submission, so it costs no extra round trip.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { DecoderStep, RowProcessing, StepOut, StepWant } from "../decode/step.ts";
import { processLogits } from "../shaders/logits_process.ts";
import { gatherValues, topk } from "../shaders/topk.ts";
import type { CaptionModel, DecodeState, EncoderState } from "../arch/caption_model.ts";
import { type DecoderFactory, generate } from "../decode/generate.ts";
import { type GenerateOptions, resolveOptions } from "../decode/options.ts";
import type { GeneratedSequence } from "../decode/search.ts";

/** Pack per-row seen (deduplicated) and banned lists as the logits kernel reads them. */
export function packTokenLists(
  rows: number,
  vocabSize: number,
  seen: Int32Array[] | undefined,
  banned: Int32Array[] | undefined,
): { packed: Uint32Array; seenTotal: number } {
  // ids outside the vocabulary (ClipCap's reserved prefix id in a history) have no logit
  const inVocab = (l: Iterable<number>) => [...l].filter((t) => t >= 0 && t < vocabSize);
  const seenSets = Array.from({ length: rows }, (_, r) => [...new Set(inVocab(seen?.[r] ?? []))]);
  const bannedLists = Array.from({ length: rows }, (_, r) => inVocab(banned?.[r] ?? []));
  const seenTotal = seenSets.reduce((s, l) => s + l.length, 0);
  const bannedTotal = bannedLists.reduce((s, l) => s + l.length, 0);
  const out = new Uint32Array(2 * (rows + 1) + seenTotal + bannedTotal);
  let o = 2 * (rows + 1);
  [seenSets, bannedLists].forEach((lists, which) => {
    let acc = 0;
    lists.forEach((l, r) => {
      out[which * (rows + 1) + r] = acc;
      acc += l.length;
      out.set(l, o);
      o += l.length;
    });
    out[which * (rows + 1) + rows] = acc;
  });
  return { packed: out, seenTotal };
}

type Read = ReturnType<Recorder["readTensor"]>;

/** Readbacks of one step: the logits (`full`), or the top-k and the gathered values. */
interface StepReads {
  logits?: Read;
  values?: Read;
  ids?: Read;
  gathered?: Read;
}

/** A model's decoder over live rows, driven by a search strategy. */
export class GpuDecoder implements DecoderStep {
  #pending: Recorder | undefined;

  /** `pending`: a recorder holding work to submit with the first step (e.g. `beginDecode`). */
  constructor(
    readonly gpu: Gpu,
    readonly model: CaptionModel,
    readonly state: DecodeState,
    pending?: Recorder,
  ) {
    this.#pending = pending;
  }

  get vocabSize(): number {
    return this.model.decoder.vocabSize;
  }
  get rows(): number {
    return this.state.rows;
  }

  #checkTokens(tokens: Int32Array): void {
    const R = this.state.rows, V = this.vocabSize;
    if (tokens.length !== R) {
      throw new WebcapError("BAD_OPTION", `step: ${tokens.length} tokens for ${R} rows`);
    }
    const start = this.model.decoder.decoderStartTokenId; // may lie past the vocabulary (ClipCap's prefix)
    for (const t of tokens) {
      if (!(t >= 0 && t < V) && t !== start) {
        throw new WebcapError(
          "BAD_OPTION",
          `step: token id ${t} is outside the vocabulary (0..${V - 1})`,
        );
      }
    }
  }

  /** Record the per-row processing of `logits` (nothing when it is the identity). */
  #process(rec: Recorder, logits: Tensor, proc: RowProcessing): void {
    const R = this.state.rows;
    const anyList = proc.repetitionPenalty !== 1 || proc.banned?.some((b) => b.length > 0);
    if (!proc.logSoftmaxBefore && !proc.logSoftmaxAfter && !anyList) return;
    const seen = proc.repetitionPenalty !== 1 ? proc.seen : undefined;
    const { packed, seenTotal } = packTokenLists(R, this.vocabSize, seen, proc.banned);
    const lists = rec.upload(packed, [packed.length], "u32");
    processLogits(rec, logits, lists, {
      rows: R,
      before: proc.logSoftmaxBefore,
      after: proc.logSoftmaxAfter,
      penalty: proc.repetitionPenalty,
      seenTotal,
    });
  }

  async step(tokens: Int32Array, proc: RowProcessing, want: StepWant): Promise<StepOut> {
    this.#checkTokens(tokens);
    const rec = this.#pending ?? new Recorder(this.gpu);
    this.#pending = undefined;
    const reads = rec.scope(() => this.#recordStep(rec, tokens, proc, want));
    if (want.kind === "none") { // prompt token: submitted with the next step, no round trip
      this.#pending = rec;
      return { values: new Float32Array(0), ids: new Int32Array(0) };
    }
    await rec.submit();
    if (want.kind === "full") {
      return { values: (await reads.logits) as Float32Array, ids: new Int32Array(0) };
    }
    const out: StepOut = {
      values: (await reads.values) as Float32Array,
      ids: (await reads.ids) as Int32Array,
    };
    if (want.gather) {
      const flat = reads.gathered ? (await reads.gathered) as Float32Array : new Float32Array(0);
      let o = 0;
      out.gathered = want.gather.map((l) => {
        const v = flat.slice(o, o + l.length);
        o += l.length;
        return v;
      });
    }
    return out;
  }

  /** Record one step and the readbacks `want` asks for (in the caller's scope). */
  #recordStep(rec: Recorder, tokens: Int32Array, proc: RowProcessing, want: StepWant): StepReads {
    const logits = this.model.step(
      rec,
      this.state,
      rec.upload(tokens, [this.state.rows], "i32"),
      1,
    );
    if (want.kind === "none") return {};
    this.#process(rec, logits, proc);
    if (want.kind === "full") return { logits: rec.readTensor(logits) };
    const sel = topk(rec, logits, Math.min(want.k, this.vocabSize));
    const reads: StepReads = { values: rec.readTensor(sel.values), ids: rec.readTensor(sel.ids) };
    const pairs = want.gather?.flatMap((l, r) => Array.from(l, (id) => [r, id])).flat() ?? [];
    if (pairs.length) {
      const tp = rec.upload(Uint32Array.from(pairs), [pairs.length / 2, 2], "u32");
      reads.gathered = rec.readTensor(gatherValues(rec, logits, tp));
    }
    return reads;
  }

  /** `steps` greedy steps in one submission: each step's top-1 ids feed the next step on the GPU. */
  async greedySteps(
    tokens: Int32Array,
    steps: number,
    procAt: (i: number) => RowProcessing,
  ): Promise<{ ids: Int32Array; values: Float32Array }> {
    const R = this.state.rows;
    this.#checkTokens(tokens);
    const rec = this.#pending ?? new Recorder(this.gpu);
    this.#pending = undefined;
    const reads = rec.scope(() => {
      let ids: Tensor = rec.upload(tokens, [R], "i32");
      return Array.from({ length: steps }, (_, i) => {
        const logits = this.model.step(rec, this.state, ids, 1);
        this.#process(rec, logits, procAt(i));
        const sel = topk(rec, logits, 1);
        ids = sel.ids.view([R]);
        return [rec.readTensor(sel.ids), rec.readTensor(sel.values)];
      });
    });
    await rec.submit();
    const outIds = new Int32Array(steps * R), outValues = new Float32Array(steps * R);
    for (const [i, [pi, pv]] of reads.entries()) {
      outIds.set((await pi) as Int32Array, i * R);
      outValues.set((await pv) as Float32Array, i * R);
    }
    return { ids: outIds, values: outValues };
  }

  reorder(parents: Int32Array): void {
    this.#pending ??= new Recorder(this.gpu);
    this.model.reorder(this.#pending, this.state, parents);
  }

  /** Submit pending work (a trailing reorder; not on a lost device) and free the caches. */
  async dispose(): Promise<void> {
    const pending = this.#pending;
    this.#pending = undefined;
    try {
      if (pending && !this.gpu.lost) await pending.submit();
    } finally {
      this.state.dispose();
    }
  }
}

/**
 * Run a decoding strategy on a model's encoder states: rows are created by the strategy's
 * needs (beams, samples), each bound to its image; caches are freed at the end.
 */
export async function generateOnGpu(
  gpu: Gpu,
  model: CaptionModel,
  enc: EncoderState,
  prompts: number[][],
  options: GenerateOptions,
): Promise<GeneratedSequence[][]> {
  const images = enc.images;
  const maxLength = (prompts[0]?.length ?? 0) + (options.promptIds?.length ?? 0) +
    resolveOptions(options).maxNewTokens;
  const decoders: GpuDecoder[] = [];
  const start = model.decoder.decoderStartTokenId;
  const factory: DecoderFactory = {
    vocabSize: model.decoder.vocabSize,
    images,
    reservedStartId: start >= model.decoder.vocabSize ? start : undefined,
    create: (rowsPerImage) => {
      const rowImage = Int32Array.from(
        { length: images * rowsPerImage },
        (_, r) => Math.floor(r / rowsPerImage),
      );
      const rec = new Recorder(gpu);
      // a cache too large for the device is refused with whatever was allocated before it freed
      const st = gpu.pool.releaseOnThrow(() => model.beginDecode(rec, enc, rowImage, maxLength));
      const dec = new GpuDecoder(gpu, model, st, rec);
      decoders.push(dec);
      return dec;
    },
  };
  let out: GeneratedSequence[][];
  try {
    out = await generate(factory, prompts, options);
  } catch (e) {
    await Promise.allSettled(decoders.map((d) => d.dispose())); // e is the error to report
    throw e;
  }
  for (const d of decoders) await d.dispose();
  return out;
}
