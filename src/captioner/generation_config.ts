/**
 * Decoding defaults from a model's `generation_config.json`, applied as transformers' `generate`
 * applies them: each decoding key of the file is the default of its option and an explicit option
 * wins. Lengths follow `_prepare_generated_length`: `max_new_tokens` wins over `max_length`, which
 * counts the decoder's whole input (start token and prompt) unless it is transformers' default 20
 * (then 20 new tokens); `min_new_tokens` wins over `min_length`, counted the same way. A minimum
 * from the file never exceeds the call's maximum (transformers then bans eos to the end, which is
 * the same). Token ids (`decoder_start_token_id`, `eos_token_id`, …) are the architecture's.
 * @module
 */

import { WebcapError } from "../errors.ts";
import { optionsFromHF } from "../decode/hf_kwargs.ts";
import {
  DEFAULT_MAX_NEW_TOKENS,
  type GenerateOptions,
  resolveOptions,
  resolveValues,
} from "../decode/options.ts";

/** Keys that set a {@link GenerateOptions} field. */
const DECODING_KEYS = new Set([
  "max_new_tokens",
  "min_new_tokens",
  "num_beams",
  "num_return_sequences",
  "length_penalty",
  "early_stopping",
  "repetition_penalty",
  "no_repeat_ngram_size",
  "encoder_no_repeat_ngram_size",
  "bad_words_ids",
  "force_words_ids",
  "do_sample",
  "temperature",
  "top_k",
  "top_p",
  "typical_p",
  "num_beam_groups",
  "diversity_penalty",
]);

/** Keys that change no caption: token ids the architecture reads, outputs, caching, metadata. */
const IGNORED_KEYS = new Set([
  "_from_model_config",
  "transformers_version",
  "bos_token_id",
  "decoder_start_token_id",
  "eos_token_id",
  "pad_token_id",
  "use_cache",
  "cache_implementation",
  "output_attentions",
  "output_hidden_states",
  "output_scores",
  "output_logits",
  "return_dict_in_generate",
]);

/** transformers' `GenerationConfig().max_length`, which `generate` reads as "20 new tokens". */
const HF_DEFAULT_MAX_LENGTH = 20;

/** The decoding defaults of a model. */
export interface GenerationDefaults {
  /** The file they come from (for messages); empty when the model has none. */
  source: string;
  /** Options the file sets (lengths in tokens to generate only). */
  options: GenerateOptions;
  /** `max_length`: decoder input (start token + prompt) plus generated tokens. */
  maxLength?: number;
  /** `min_length`, counted as `maxLength`. */
  minLength?: number;
}

/** A model without `generation_config.json`. */
export const NO_GENERATION_DEFAULTS: GenerationDefaults = { source: "", options: {} };

function badKey(source: string, key: string, what: string, cause?: unknown): WebcapError {
  return new WebcapError("BAD_CONFIG", `${source}: "${key}" ${what}`, { cause });
}

function lengthKey(json: Record<string, unknown>, key: string, min: number, source: string) {
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
    throw badKey(source, key, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * The decoding defaults of a parsed `generation_config.json`, each value validated as its option.
 * @throws WebcapError BAD_CONFIG naming the file and key: an invalid value, a decoding setting
 * webcap does not implement, or settings that conflict with each other.
 */
export function readGenerationConfig(
  json: Record<string, unknown> | undefined,
  source: string,
): GenerationDefaults {
  if (!json) return NO_GENERATION_DEFAULTS;
  const options: GenerateOptions = {};
  for (const [key, value] of Object.entries(json)) {
    if (IGNORED_KEYS.has(key) || key === "max_length" || key === "min_length") continue;
    if (!DECODING_KEYS.has(key)) {
      if (value === null || value === false || (Array.isArray(value) && value.length === 0)) {
        continue; // a switched-off setting
      }
      throw badKey(source, key, "is a decoding setting webcap does not implement; remove it");
    }
    const one = optionsFromHF({ [key]: value });
    try {
      resolveValues(one);
    } catch (e) {
      throw badKey(source, key, `is invalid: ${(e as Error).message}`, e);
    }
    Object.assign(options, one);
  }
  const { maxNewTokens: _max, minNewTokens: _min, ...lengthFree } = options;
  try {
    resolveOptions(lengthFree);
  } catch (e) {
    throw new WebcapError("BAD_CONFIG", `${source}: ${(e as Error).message}`, { cause: e });
  }
  return {
    source,
    options,
    maxLength: lengthKey(json, "max_length", 1, source),
    minLength: lengthKey(json, "min_length", 0, source),
  };
}

/** Tokens to generate that the file's `max_length` leaves after a prompt. */
function maxFromLength(d: GenerationDefaults, promptLength: number): number | undefined {
  if (d.maxLength === undefined || d.maxLength === HF_DEFAULT_MAX_LENGTH) return undefined;
  const n = d.maxLength - promptLength;
  if (n < 1) {
    throw new WebcapError(
      "BAD_OPTION",
      `${d.source}: "max_length" ${d.maxLength} leaves no token to generate after the ` +
        `${promptLength}-token decoder prompt; pass maxNewTokens (or a shorter prompt)`,
    );
  }
  return n;
}

/**
 * The options of a call: `explicit` over the file's defaults, lengths as transformers derives them
 * for a decoder prompt of `promptLength` tokens (start token included).
 */
export function withDefaults(
  d: GenerationDefaults,
  explicit: GenerateOptions,
  promptLength: number,
): GenerateOptions {
  const out: GenerateOptions = { ...d.options, ...explicit };
  if (explicit.maxNewTokens === undefined && d.options.maxNewTokens === undefined) {
    const max = maxFromLength(d, promptLength);
    if (max !== undefined) out.maxNewTokens = max;
  }
  if (explicit.minNewTokens === undefined) {
    const min = d.options.minNewTokens ??
      (d.minLength === undefined ? undefined : Math.max(0, d.minLength - promptLength));
    const max = out.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
    if (min !== undefined && typeof max === "number") out.minNewTokens = Math.min(min, max);
  }
  return out;
}

/** The file keys whose values a call took (for messages). */
export function defaultsTaken(d: GenerationDefaults, explicit: GenerateOptions): string[] {
  const taken = Object.entries(d.options)
    .filter(([k]) => explicit[k as keyof GenerateOptions] === undefined)
    .map(([k, v]) => `${k} ${JSON.stringify(v)}`);
  if (explicit.maxNewTokens === undefined && d.maxLength !== undefined) {
    taken.push(`max_length ${d.maxLength}`);
  }
  if (explicit.minNewTokens === undefined && d.minLength !== undefined) {
    taken.push(`min_length ${d.minLength}`);
  }
  return taken;
}
