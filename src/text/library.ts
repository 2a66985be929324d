/**
 * The one interface over the two libraries that run a Hugging Face `tokenizer.json`: Hugging
 * Face's native `tokenizers` (Rust through Node-API, in Deno) and `@huggingface/tokenizers`
 * (pure JavaScript, in browsers and wherever the native one cannot load).
 * @module
 */

/** Which library runs a `tokenizer.json`: native `tokenizers` or `@huggingface/tokenizers`. */
export type TokenizerBackend = "tokenizers" | "@huggingface/tokenizers";

/** The libraries, in the order they are tried. */
export const TOKENIZER_BACKENDS: readonly TokenizerBackend[] = [
  "tokenizers",
  "@huggingface/tokenizers",
];

/** A `tokenizer.json` loaded by one library: all webcap asks of it. */
export interface JsonTokenizer {
  readonly backend: TokenizerBackend;
  /** Token ids of `text`, the post-processor's special tokens added when asked. */
  encode(text: string, addSpecialTokens: boolean): number[];
  /** Text of ids the vocabulary has, through the stored decoder; no clean-up of its own. */
  decode(ids: number[], skipSpecialTokens: boolean): string;
  /** Every token and its id, added tokens included. */
  readonly vocab: ReadonlyMap<string, number>;
}
