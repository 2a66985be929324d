/**
 * Command-line decoding flags (transformers' `generate` names in kebab-case) and their mapping
 * to {@link CaptionOptions}, including words given as text (`--force-words`, `--bad-words`)
 * turned into token ids with the model's tokenizer.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { WebcapError } from "../errors.ts";
import type { CaptionOptions } from "../captioner/captioner.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { LENGTH_RANGES, lengthControl, LexiconSentiment } from "../decode/rerank.ts";

/** `parseArgs` options of the caption CLI. */
export const CAPTION_FLAGS = {
  model: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  dtype: { type: "string" },
  offline: { type: "boolean" },
  "max-pixels": { type: "string" },
  "batch-size": { type: "string" },
  "attention-map": { type: "string" },
  "num-beams": { type: "string" },
  "num-return-sequences": { type: "string" },
  "num-beam-groups": { type: "string" },
  "diversity-penalty": { type: "string" },
  "force-words": { type: "string" },
  "bad-words": { type: "string" },
  "do-sample": { type: "boolean" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  "typical-p": { type: "string" },
  seed: { type: "string" },
  "min-new-tokens": { type: "string" },
  "max-new-tokens": { type: "string" },
  "length-penalty": { type: "string" },
  "repetition-penalty": { type: "string" },
  "no-repeat-ngram-size": { type: "string" },
  "early-stopping": { type: "string" },
  prompt: { type: "string" },
  length: { type: "string" },
  sentiment: { type: "string" },
} as const satisfies ParseArgsConfig["options"];

type Flags = Record<string, string | boolean | undefined>;

const CAPTION_PARSE = { options: CAPTION_FLAGS, allowPositionals: true } as const;

/** Parsed arguments of the caption CLI: flag values and the image paths. */
export type CaptionArgs = ReturnType<typeof parseArgs<typeof CAPTION_PARSE>>;

/**
 * Parse the caption CLI's arguments.
 * @throws WebcapError BAD_OPTION for an unknown flag, a missing value or a value starting with
 *   a dash (pass negative numbers as `--length-penalty=-0.5`).
 */
export function parseCaptionArgs(args: string[]): CaptionArgs {
  try {
    return parseArgs({ args, ...CAPTION_PARSE });
  } catch (e) {
    if (
      !(e instanceof TypeError && String((e as { code?: string }).code).startsWith("ERR_PARSE"))
    ) {
      throw e;
    }
    throw new WebcapError("BAD_OPTION", `${e.message.replaceAll("\n", " ")} (see --help)`);
  }
}

/** Model loading and batching settings of the caption CLI. */
export interface RunSettings {
  /** `--dtype`: matrix storage on the GPU. */
  dtype?: "f32" | "f16";
  /** `--max-pixels`: largest accepted image. */
  maxPixels?: number;
  /** `--batch-size`: images encoded together (default 8). */
  batchSize: number;
}

/** {@link RunSettings} from parsed flags; refuses values that are not what the flag takes. */
export function runSettingsFromFlags(flags: Flags): RunSettings {
  const dtype = flags.dtype;
  if (dtype !== undefined && dtype !== "f32" && dtype !== "f16") {
    throw new WebcapError("BAD_OPTION", `--dtype must be f32 or f16, got "${dtype}"`);
  }
  return {
    dtype,
    maxPixels: positiveInt(flags, "max-pixels"),
    batchSize: positiveInt(flags, "batch-size") ?? 8,
  };
}

function positiveInt(flags: Flags, name: string): number | undefined {
  const n = num(flags, name);
  if (n !== undefined && !(Number.isSafeInteger(n) && n >= 1)) {
    throw new WebcapError(
      "BAD_OPTION",
      `--${name} must be a whole number ≥ 1, got "${flags[name]}"`,
    );
  }
  return n;
}

function num(flags: Flags, name: string): number | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || v.trim() === "" || !Number.isFinite(n)) {
    throw new WebcapError("BAD_OPTION", `--${name} must be a number, got "${v}"`);
  }
  return n;
}

/**
 * The token sequences a word can take in a caption: with a leading space (mid-sentence, as
 * byte-level BPE spells it) and bare (sentence start, WordPiece). Refuses words the tokenizer
 * cannot express (unknown token).
 */
export function wordAlternatives(tok: Tokenizer, word: string, flag: string): number[][] {
  const w = word.trim();
  if (!w) throw new WebcapError("BAD_OPTION", `${flag}: empty word`);
  const unk = tok.unkTokenId;
  const seen = new Set<string>();
  const out: number[][] = [];
  for (const text of [` ${w}`, w]) {
    const ids = tok.encode(text, { addSpecialTokens: false });
    if (ids.length === 0 || (unk !== undefined && ids.includes(unk))) continue;
    const key = ids.join(",");
    if (!seen.has(key)) {
      seen.add(key);
      out.push(ids);
    }
  }
  if (!out.length) {
    throw new WebcapError("BAD_OPTION", `${flag}: the tokenizer cannot express "${w}"`);
  }
  return out;
}

/** CaptionOptions from parsed flags. */
export function captionOptionsFromFlags(flags: Flags, tok: Tokenizer): CaptionOptions {
  const o: CaptionOptions = {
    numBeams: num(flags, "num-beams"),
    numReturnSequences: num(flags, "num-return-sequences"),
    numBeamGroups: num(flags, "num-beam-groups"),
    diversityPenalty: num(flags, "diversity-penalty"),
    doSample: flags["do-sample"] === true ? true : undefined,
    temperature: num(flags, "temperature"),
    topK: num(flags, "top-k"),
    topP: num(flags, "top-p"),
    typicalP: num(flags, "typical-p"),
    seed: num(flags, "seed"),
    minNewTokens: num(flags, "min-new-tokens"),
    maxNewTokens: num(flags, "max-new-tokens"),
    lengthPenalty: num(flags, "length-penalty"),
    repetitionPenalty: num(flags, "repetition-penalty"),
    noRepeatNgramSize: num(flags, "no-repeat-ngram-size"),
    prompt: flags.prompt as string | undefined,
  };
  const es = flags["early-stopping"];
  if (es !== undefined) {
    if (es !== "true" && es !== "false" && es !== "never") {
      throw new WebcapError(
        "BAD_OPTION",
        `--early-stopping must be true, false or never, got "${es}"`,
      );
    }
    o.earlyStopping = es === "never" ? "never" : es === "true";
  }
  const words = (name: string) =>
    String(flags[name] ?? "").split(",").map((w) => w.trim()).filter((w) => w.length > 0);
  if (flags["force-words"] !== undefined) {
    o.forceWordsIds = words("force-words").map((w) => wordAlternatives(tok, w, "--force-words"));
  }
  if (flags["bad-words"] !== undefined) {
    o.badWordsIds = words("bad-words").flatMap((w) => wordAlternatives(tok, w, "--bad-words"));
  }
  for (const k of Object.keys(o) as (keyof CaptionOptions)[]) if (o[k] === undefined) delete o[k];
  if (flags.length !== undefined) {
    const wish = String(flags.length);
    if (!Object.hasOwn(LENGTH_RANGES, wish)) {
      throw new WebcapError(
        "BAD_OPTION",
        `--length must be one of ${Object.keys(LENGTH_RANGES).join(", ")}, got "${wish}"`,
      );
    }
    Object.assign(o, { ...lengthControl(wish as keyof typeof LENGTH_RANGES), ...o });
  }
  if (flags.sentiment !== undefined) {
    const target = String(flags.sentiment);
    if (target !== "positive" && target !== "negative") {
      throw new WebcapError(
        "BAD_OPTION",
        `--sentiment must be positive or negative, got "${target}"`,
      );
    }
    // rerank an n-best list: 5 beams and 5 returned unless given
    o.numBeams ??= 5;
    o.numReturnSequences ??= o.numBeams;
    o.rerank = { reranker: new LexiconSentiment(target) };
  }
  return o;
}
