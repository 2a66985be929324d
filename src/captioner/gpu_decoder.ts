/**
 * The GPU side of the decoding contract (src/decode/step.ts): each `step` records the model's
 * decoder step, the per-row logits processing and the selection (top-k / gather / full row)
 * into one compute pass, submits once and reads back only what the strategy asked for.
 * A `reorder` is recorded into the next step's submission, so it costs no extra round trip.
 * Greedy search and sampling (`runLoop`) and beam search (`runBeams`) run many steps per
 * submission with everything between steps on the GPU.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type {
  BeamPlan,
  DecoderStep,
  LoopOut,
  LoopPlan,
  RowProcessing,
  StepOut,
  StepWant,
} from "../decode/step.ts";
import { allEnded } from "../decode/loop.ts";
import { packWords, processHistory, processLogits } from "../shaders/logits_process.ts";
import { type BeamShape, beamStep, hypsWidth, seqWidth } from "../shaders/beam/beam.ts";
import { sampleRows } from "../shaders/sample/sample.ts";
import { gatherValues, recordTokens, topk } from "../shaders/topk.ts";
import type { CaptionModel, DecodeState, EncoderState } from "../arch/caption_model.ts";
import { type DecoderFactory, generate } from "../decode/generate.ts";
import { type GenerateOptions, resolveOptions } from "../decode/options.ts";
import type { GeneratedSequence } from "../decode/search.ts";
import type { ProcessorRules } from "../decode/processors.ts";

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

/** Steps per submission of {@link GpuDecoder.runLoop} at most (it also splits a run in two). */
const LOOP_CHUNK = 16;

/** A loop's GPU state: histories, the ids fed next, the packed lists, the chosen tokens. */
interface LoopTensors {
  hist: Tensor;
  next: Tensor;
  lists: Tensor;
  out: Tensor;
}

/** How {@link GpuDecoder} runs chunks of steps: record step i, read a chunk, stop after it. */
interface ChunkSteps {
  step(rec: Recorder, i: number): void;
  read(rec: Recorder, from: number, n: number): Promise<ArrayBuffer>;
  stop(words: ArrayBuffer, from: number, n: number): boolean;
}

/** Beam search's GPU state ({@link GpuDecoder.runBeams}; layouts in src/shaders/beam/beam.ts). */
interface BeamTensors {
  shape: BeamShape;
  /** Running sequences `[R, W]`, read and written alternately. */
  seq: [Tensor, Tensor];
  hyps: Tensor;
  next: Tensor;
  parents: Tensor;
  consts: Tensor;
  /** Bad words and eos for the processors. */
  lists: Tensor;
  /** Empty token lists: the log-softmax alone. */
  none: Tensor;
}

/** Whether any processor applies. */
function anyRule(r: ProcessorRules): boolean {
  return r.repetitionPenalty !== 1 || r.noRepeatNgramSize > 0 ||
    r.encoderNoRepeatNgramSize > 0 || r.badWords.length > 0 || r.minNewTokens > 0;
}

/** Image `b`'s finished hypotheses, best first, from the read-back lists. */
function finishedOf(words: Int32Array, b: number, s: BeamShape): GeneratedSequence[] {
  const h0 = b * hypsWidth(s), K = s.beams, N = s.maxNew;
  const f32 = new Float32Array(words.buffer, words.byteOffset, words.length);
  return Array.from({ length: words[h0 + 1] }, (_, i) => {
    const e = h0 + 3 + K + words[h0 + 3 + i] * (2 + 2 * N), len = words[e];
    return {
      tokens: Array.from(words.subarray(e + 2, e + 2 + len)),
      logprobs: Array.from(f32.subarray(e + 2 + N, e + 2 + N + len)),
      score: f32[e + 1],
    };
  });
}

/** The arrays joined into one. */
function concat<T extends Int32Array | Float32Array>(
  parts: T[],
  Type: { new (n: number): T },
): T {
  const out = new Type(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p as never, o);
    o += p.length;
  }
  return out;
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

  /**
   * Greedy search or sampling run on the GPU: processors from the histories, selection or draw,
   * and the chosen tokens fed back, in chunks ({@link #chunked}); stops once every row has
   * produced an eos.
   */
  async runLoop(tokens: Int32Array, plan: LoopPlan): Promise<LoopOut> {
    this.#checkTokens(tokens);
    const first = this.#pending ?? new Recorder(this.gpu);
    this.#pending = undefined;
    const lp = this.#loopTensors(first, tokens, plan);
    const R = tokens.length;
    const ids: Int32Array[] = [], values: Float32Array[] = [];
    try {
      await this.#chunked(first, plan.maxSteps, {
        step: (rec, i) => this.#loopStep(rec, lp, plan, i),
        read: (rec, from, n) => rec.read(lp.out.buffer, n * 8 * R, from * 8 * R),
        stop: (words, _from, n) => {
          for (let i = 0; i < n; i++) {
            ids.push(new Int32Array(words, i * 8 * R, R));
            values.push(new Float32Array(words, (i * 2 + 1) * 4 * R, R));
          }
          return allEnded(concat(ids, Int32Array), R, plan.rules.eos);
        },
      });
    } finally {
      for (const t of [lp.hist, lp.next, lp.lists, lp.out]) t.release();
    }
    const out = concat(ids, Int32Array);
    return { ids: out, values: concat(values, Float32Array), steps: out.length / R };
  }

  /**
   * Run up to `maxSteps` steps, {@link LOOP_CHUNK} or fewer per submission (a run is split in two
   * at least), `first` holding the first chunk: each chunk ends with one read-back, the next
   * chunk is queued before it is read, and `c.stop` on the words read ends the run.
   */
  async #chunked(first: Recorder, maxSteps: number, c: ChunkSteps): Promise<void> {
    const chunk = Math.min(LOOP_CHUNK, Math.ceil(maxSteps / 2));
    let recorded = 0;
    const submitChunk = (rec: Recorder) => {
      const from = recorded, n = Math.min(chunk, maxSteps - from);
      for (let i = from; i < from + n; i++) rec.recycle(() => c.step(rec, i));
      recorded += n;
      const read = c.read(rec, from, n);
      return { from, n, read, done: rec.submit() };
    };
    const inflight = [submitChunk(first)];
    try {
      while (inflight.length > 0) {
        if (recorded < maxSteps) inflight.push(submitChunk(new Recorder(this.gpu)));
        const q = inflight.shift()!;
        await q.done;
        if (c.stop(await q.read, q.from, q.n)) break;
      }
    } finally {
      await Promise.allSettled(inflight.map((q) => q.done)); // a chunk queued past the end
    }
  }

  /**
   * Beam search run on the GPU ({@link DecoderStep.runBeams}): per step the model, log-softmax,
   * processors from the running sequences, top-k per row, then `beamStep` (candidates, finished
   * lists, done flags) and the caches gathered by the chosen parents, in chunks
   * ({@link #chunked}); each chunk reads back the finished lists, the last one read is the result.
   */
  async runBeams(tokens: Int32Array, plan: BeamPlan): Promise<GeneratedSequence[][]> {
    this.#checkTokens(tokens);
    const images = plan.prompts.length, K = plan.numBeams;
    if (tokens.length !== images * K || plan.keep > this.vocabSize) {
      throw new WebcapError(
        "BAD_OPTION",
        `runBeams: ${tokens.length} rows for ${images} images of ${K} beams, ${plan.keep} candidates of ${this.vocabSize}`,
      );
    }
    const first = this.#pending ?? new Recorder(this.gpu);
    this.#pending = undefined;
    const bt = this.#beamTensors(first, tokens, plan);
    let words = new Int32Array(0);
    try {
      await this.#chunked(first, plan.maxSteps, {
        step: (rec, i) => this.#beamStep(rec, bt, plan, i),
        read: (rec) => rec.read(bt.hyps.buffer, bt.hyps.size * 4),
        stop: (read) => {
          words = new Int32Array(read);
          return Array.from({ length: images }, (_, b) => words[b * bt.hyps.shape[1]])
            .every((done) => done === 1);
        },
      });
    } finally {
      for (const t of [...bt.seq, bt.hyps, bt.next, bt.parents, bt.consts, bt.lists, bt.none]) {
        t.release();
      }
    }
    return Array.from({ length: images }, (_, b) => finishedOf(words, b, bt.shape));
  }

  /** Beam search's GPU state: running sequences (ping-pong), finished lists, the constants. */
  #beamTensors(rec: Recorder, tokens: Int32Array, plan: BeamPlan): BeamTensors {
    const R = tokens.length, images = plan.prompts.length, P = plan.prompts[0].length;
    const shape: BeamShape = {
      beams: plan.numBeams,
      keep: plan.keep,
      promptLen: P,
      maxNew: plan.maxSteps,
      earlyTrue: plan.earlyStopping === true,
      fixedLen: plan.earlyStopping === "never" && plan.lengthPenalty > 0,
    };
    const W = seqWidth(shape), HS = hypsWidth(shape);
    const seq = new Int32Array(R * W); // prompts; scores 0
    for (let r = 0; r < R; r++) seq.set(plan.prompts[Math.floor(r / plan.numBeams)], r * W);
    const hyps = new Int32Array(images * HS);
    for (let b = 0; b < images; b++) hyps[b * HS + 2] = 1; // the heuristic holds no image yet
    const denoms = Float32Array.from(
      { length: plan.maxSteps },
      (_, g) => (g + 1) ** plan.lengthPenalty,
    );
    const consts = new Uint32Array([...new Uint32Array(denoms.buffer), ...plan.rules.eos]);
    const lists = packWords(plan.rules.badWords, plan.rules.eos);
    const keep = rec.keep.bind(rec);
    return {
      shape,
      seq: [keep(rec.upload(seq, [R, W], "i32")), keep(rec.upload(seq, [R, W], "i32"))],
      hyps: keep(rec.upload(hyps, [images, HS], "i32")),
      next: keep(rec.upload(tokens, [R], "i32")),
      parents: keep(rec.output([R], "i32")),
      consts: keep(rec.upload(consts, [consts.length], "u32")),
      lists: keep(rec.upload(lists, [lists.length], "u32")),
      none: keep(rec.upload(new Uint32Array(2 * (R + 1)), [2 * (R + 1)], "u32")),
    };
  }

  /** Record step `i` of beam search (reads `seq[i % 2]`, writes the other). */
  #beamStep(rec: Recorder, bt: BeamTensors, plan: BeamPlan, i: number): void {
    const R = bt.next.size, r = plan.rules, P = bt.shape.promptLen;
    const [seqIn, seqOut] = i % 2 === 0 ? bt.seq : [bt.seq[1], bt.seq[0]];
    const logits = this.model.step(rec, this.state, bt.next, 1);
    const o = { rows: R, before: true, after: false, penalty: 1, seenTotal: 0 };
    processLogits(rec, logits, bt.none, o); // log-softmax, as the host path
    if (anyRule(r)) {
      processHistory(rec, logits, seqIn, bt.lists, {
        ...r,
        promptLen: P,
        len: P + i,
        words: r.badWords.length,
        eosCount: r.eos.length,
        logSoftmax: false,
      });
    }
    const top = topk(rec, logits, plan.keep);
    const { hyps, next, parents, consts } = bt;
    beamStep(rec, top, { seqIn, seqOut, hyps, next, parents, consts }, {
      ...bt.shape,
      vocab: this.vocabSize,
      eosCount: r.eos.length,
      step: i,
      width: i === 0 ? 1 : plan.numBeams,
    });
    if (i + 1 < plan.maxSteps) this.model.reorder(rec, this.state, bt.parents);
  }

  /** The loop's state: histories `[R, promptLen + maxSteps]`, the fed ids, lists, the output. */
  #loopTensors(rec: Recorder, tokens: Int32Array, plan: LoopPlan): LoopTensors {
    const R = tokens.length, P = plan.histories[0].length, maxLen = P + plan.maxSteps;
    const h = new Int32Array(R * maxLen);
    plan.histories.forEach((row, r) => h.set(row, r * maxLen));
    const lists = packWords(plan.rules.badWords, plan.rules.eos);
    return {
      hist: rec.keep(rec.upload(h, [R, maxLen], "i32")),
      next: rec.keep(rec.upload(tokens, [R], "i32")),
      lists: rec.keep(rec.upload(lists, [lists.length], "u32")),
      out: rec.output([plan.maxSteps, 2, R], "u32"),
    };
  }

  /** Record step `i` of a loop: the model, the processors, the choice, the bookkeeping. */
  #loopStep(rec: Recorder, lp: LoopTensors, plan: LoopPlan, i: number): void {
    const P = plan.histories[0].length, r = plan.rules;
    const logits = this.model.step(rec, this.state, lp.next, 1);
    processHistory(rec, logits, lp.hist, lp.lists, {
      ...r,
      promptLen: P,
      len: P + i,
      words: r.badWords.length,
      eosCount: r.eos.length,
      logSoftmax: !plan.sample,
    });
    const s = plan.sample;
    const sel = s
      ? sampleRows(rec, logits, { ...s.warp, seed: s.seed, step: i })
      : topk(rec, logits, 1);
    recordTokens(rec, sel, lp.next, lp.hist, lp.out, { pos: P + i, outAt: i * 2 * lp.next.size });
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
