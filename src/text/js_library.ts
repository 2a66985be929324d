/**
 * `@huggingface/tokenizers` (pure JavaScript) behind {@link JsonTokenizer}: the browsers'
 * library, and Deno's when the native one cannot load.
 * @module
 */

import { Tokenizer as HfTokenizer } from "npm:@huggingface/tokenizers@^0.2.0";
import type { JsonTokenizer } from "./library.ts";

/**
 * Load a complete `tokenizer.json` (every pipeline key present) with `tokenizer_config.json`'s
 * keys as the library's config; clean-up is left to the caller.
 * @throws the library's error for a tokenizer.json it rejects.
 */
export function openJs(json: Record<string, unknown>, config: object): JsonTokenizer {
  const tok = new HfTokenizer(json, { ...config, clean_up_tokenization_spaces: false });
  return {
    backend: "@huggingface/tokenizers",
    encode: (text, addSpecialTokens) =>
      tok.encode(text, { add_special_tokens: addSpecialTokens }).ids,
    decode: (ids, skipSpecialTokens) =>
      ids.length === 0 ? "" : tok.decode(ids, {
        skip_special_tokens: skipSpecialTokens,
        clean_up_tokenization_spaces: false,
      }),
    vocab: tok.get_vocab(true),
  };
}
