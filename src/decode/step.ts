/**
 * The contract between search strategies and a model: one decoder step over `rows` live rows.
 * Strategies know nothing of GPUs; a model runs the step, applies the per-row processing below
 * next to its logits (on the GPU for GPU models) and returns only what the strategy asked for.
 * @module
 */

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
   * Optional fast path of greedy search: run `steps` steps with no read-back in between, each
   * row's top-1 processed token feeding that row's next step where the logits live (on the GPU
   * for GPU models). `procAt(i)` is the processing of step i; it must not depend on tokens
   * chosen inside the chunk. Returns the chosen ids and their processed values, `[steps, rows]`.
   */
  greedySteps?(
    tokens: Int32Array,
    steps: number,
    procAt: (i: number) => RowProcessing,
  ): Promise<{ ids: Int32Array; values: Float32Array }>;
}
