/**
 * The contract between search strategies and a model: one decoder step over `rows` live rows.
 * Strategies know nothing of GPUs; a model runs the step, applies the per-row processing below
 * next to its logits (on the GPU for GPU models) and returns only what the strategy asked for.
 * @module
 */
import type { ProcessorRules } from "./processors.ts";
import type { GeneratedSequence } from "./search.ts";
import type { WarpSettings } from "./warpers.ts";

/**
 * Per-row processing applied to the logits of one step, in this order:
 * 1. `logSoftmaxBefore`: replace logits by log-softmax(logits) (beam search semantics);
 * 2. repetition penalty: for each token in `seen[row]`, x < 0 ? x·p : x / p;
 * 3. `banned[row]` tokens set to -Infinity;
 * 4. `logSoftmaxAfter`: log-softmax of the processed row.
 */
export interface RowProcessing {
  /** Step 1: replace the logits by their log-softmax. */
  logSoftmaxBefore: boolean;
  /** 1 = off. */
  repetitionPenalty: number;
  /** Tokens to penalize, per row (duplicates allowed; each token penalized once). [rows][*] */
  seen?: Int32Array[];
  /** Tokens forbidden this step, per row. [rows][*] */
  banned?: Int32Array[];
  /** Step 4: log-softmax of the processed row. */
  logSoftmaxAfter: boolean;
}

/** What a strategy reads back after a step. */
export type StepWant =
  /** The k best processed values per row, best first, ties to the lower id. Optional extra ids per row whose processed values are also returned. */
  | { kind: "topk"; k: number; gather?: Int32Array[] }
  /** The whole processed row (sampling). */
  | { kind: "full" }
  /** Nothing (prompt tokens): a GPU decoder may defer the work to the next step's submission. */
  | { kind: "none" };

/** Result of one step. */
export interface StepOut {
  /** topk: [rows, k] values. full: [rows, vocab] values. */
  values: Float32Array;
  /** topk: [rows, k] token ids. full: empty. */
  ids: Int32Array;
  /** Values of `gather` ids per row, when asked. */
  gathered?: Float32Array[];
}

/** One model's decoder, seen from a search strategy. */
export interface DecoderStep {
  /** Logits per row. */
  readonly vocabSize: number;
  /** Live rows now. */
  readonly rows: number;
  /** Feed one token per row, advance every row's caches by one position, process and select. */
  step(tokens: Int32Array, proc: RowProcessing, want: StepWant): Promise<StepOut>;
  /**
   * Rearrange rows: new row i continues the state (caches, positions) of old row `parents[i]`.
   * `parents.length` may be smaller than `rows` (finished rows dropped) but not larger than
   * the rows the decoder was created with.
   */
  reorder(parents: Int32Array): void;
  /**
   * Optional fast path of greedy search and sampling: run up to `plan.maxSteps` steps with the
   * processors (and warpers and draws) applied where the logits live, each row's chosen token
   * feeding its next step, and only a few read-backs; stop once every row has produced an eos.
   * Rows are never dropped; tokens after a row's eos are computed and ignored.
   */
  runLoop?(tokens: Int32Array, plan: LoopPlan): Promise<LoopOut>;
  /**
   * Optional fast path of beam search (src/decode/beam.ts semantics): with `numBeams` rows per
   * image, each holding its image's prompt state, run the whole search where the logits live
   * (scores, candidates, finished lists, early stopping, row reorders) with only a few
   * read-backs. Returns per image its finished hypotheses, best first (at most numBeams).
   */
  runBeams?(tokens: Int32Array, plan: BeamPlan): Promise<GeneratedSequence[][]>;
}

/** What a decoder needs to run beam search by itself ({@link DecoderStep.runBeams}). */
export interface BeamPlan {
  /** Each image's full prompt. [images][promptLen] */
  prompts: readonly (readonly number[])[];
  /** The processors, applied after the log-softmax. */
  rules: ProcessorRules;
  /** Beams per image (rows per image). */
  numBeams: number;
  /** Candidates ranked per image and step: max(2, 1 + #eos)·numBeams (≤ the vocabulary). */
  keep: number;
  /** Finished scores are divided by (generated length)^lengthPenalty. */
  lengthPenalty: number;
  /** transformers' stopping rule: true, false (the heuristic) or "never". */
  earlyStopping: boolean | "never";
  /** maxNewTokens: the caches hold this many more positions. */
  maxSteps: number;
}

/** What a decoder needs to run greedy search or sampling by itself ({@link DecoderStep.runLoop}). */
export interface LoopPlan {
  /** Each row's tokens so far, prompt first; all of the prompt's length. [rows][promptLen] */
  histories: readonly (readonly number[])[];
  /** Each row's image (its prompt's n-gram table). [rows] */
  rowImages: readonly number[];
  /** The processors, in transformers' order (repetition penalty, then bans). */
  rules: ProcessorRules;
  /**
   * Sampling: warp the processed row and draw with `sampleUniform(seed, row, step)` (rng.ts);
   * absent: greedy (argmax of the log-softmax of the processed row).
   */
  sample?: { warp: WarpSettings; seed: number };
  /** Most steps to run (the caches hold this many more positions). */
  maxSteps: number;
}

/** The tokens a loop chose and their log-probabilities, `[steps, rows]`. */
export interface LoopOut {
  /** The chosen token of every row at every step. [steps, rows] */
  ids: Int32Array;
  /** Their processed (greedy) or warped (sampling) log-probabilities. [steps, rows] */
  values: Float32Array;
  /** Steps run (≤ maxSteps; fewer when every row ended early). */
  steps: number;
}
