/**
 * transformers-style `generate` kwargs (snake_case, as in a `generate.json` or a
 * `generation_config.json`) to {@link GenerateOptions}.
 * @module
 */

import { WebcapError } from "../errors.ts";
import type { GenerateOptions } from "./options.ts";

const NAMES: Record<string, keyof GenerateOptions> = {
  max_new_tokens: "maxNewTokens",
  min_new_tokens: "minNewTokens",
  num_beams: "numBeams",
  num_return_sequences: "numReturnSequences",
  length_penalty: "lengthPenalty",
  early_stopping: "earlyStopping",
  repetition_penalty: "repetitionPenalty",
  no_repeat_ngram_size: "noRepeatNgramSize",
  encoder_no_repeat_ngram_size: "encoderNoRepeatNgramSize",
  bad_words_ids: "badWordsIds",
  force_words_ids: "forceWordsIds",
  do_sample: "doSample",
  temperature: "temperature",
  top_k: "topK",
  top_p: "topP",
  typical_p: "typicalP",
  seed: "seed",
  num_beam_groups: "numBeamGroups",
  diversity_penalty: "diversityPenalty",
  eos_token_id: "eosTokenId",
  pad_token_id: "padTokenId",
};

/**
 * Convert snake_case kwargs to options; `null` values count as unset. Values are checked later
 * by `resolveOptions`.
 * @throws WebcapError BAD_OPTION for a kwarg webcap does not implement.
 */
export function optionsFromHF(kwargs: Record<string, unknown>): GenerateOptions {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(kwargs)) {
    const name = NAMES[key];
    if (name === undefined) {
      throw new WebcapError(
        "BAD_OPTION",
        `generate kwarg ${key} is not supported; supported: ${Object.keys(NAMES).join(", ")}`,
      );
    }
    if (value !== null) out[name] = value;
  }
  return out as GenerateOptions;
}
