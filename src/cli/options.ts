/**
 * Command-line decoding flags (transformers' `generate` names in kebab-case) and their mapping
 * to {@link CaptionOptions}, including words given as text (`--force-words`, `--bad-words`)
 * turned into token ids with the model's tokenizer.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { WebcapError } from "../errors.ts";
import type { CaptionerOptions, CaptionOptions } from "../captioner/captioner.ts";
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
  progress: { type: "boolean" },
  output: { type: "string" },
  shard: { type: "string" },
  "shard-count": { type: "string" },
  "shard-by": { type: "string" },
  prefetch: { type: "string" },
  "decode-workers": { type: "string" },
  "fetch-timeout": { type: "string" },
  retries: { type: "string" },
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

type FlagName = keyof typeof CAPTION_FLAGS;

/** Each flag's value (empty for switches) and meaning, as `--help` prints them. */
const CAPTION_HELP: Record<FlagName, [value: string, meaning: string]> = {
  model: [
    "DIR|URL|ORG/NAME",
    "hub id or folder (default nlpconnect/vit-gpt2-image-captioning)",
  ],
  json: ["", "one JSON line per image (captions, scores, tokens, logprobs)"],
  help: ["", "print this help"],
  dtype: [
    "f32|f16|q8|q4",
    "weights on the GPU (f16 needs shader-f16; q8/q4 quantize matmul weights; default f32)",
  ],
  offline: ["", "use the Hugging Face cache only, never the network"],
  "max-pixels": ["N", "refuse images with more pixels than N"],
  "batch-size": ["N", "images encoded together (default 8)"],
  "attention-map": [
    "OUT.png",
    "attention picture per image (OUT-1.png, … for several)",
  ],
  progress: ["", "progress bar (items/s, ETA) even when stderr is not a terminal"],
  output: ["FILE.jsonl", "append one line per image; a rerun skips the images already there"],
  shard: ["I/N", "caption only task I's share of N tasks (0-based; by a hash of each key)"],
  "shard-count": [
    "N",
    "task count with JOB_COMPLETION_INDEX (Kubernetes) or AWS_BATCH_JOB_ARRAY_INDEX",
  ],
  "shard-by": ["key|tar", "split by key hash (default) or give whole tar files to tasks"],
  prefetch: ["N", "images read and decoded ahead of the GPU (default 4 batches)"],
  "decode-workers": ["N", "decoding threads (default min(4, CPUs − 1); 0: the main thread)"],
  "fetch-timeout": ["S", "seconds one try of a URL may take (default 30)"],
  retries: ["N", "retries of a failed URL, with backoff from 0.5 s (default 3)"],
  "num-beams": ["N", "beam search with N beams (default 1: greedy)"],
  "num-return-sequences": ["N", "captions per image (≤ --num-beams unless sampling)"],
  "num-beam-groups": ["N", "diverse beam search: split the beams into N groups"],
  "diversity-penalty": ["X", "penalty for tokens another group chose at the same step"],
  "force-words": ["W1,W2", "words every caption must contain (constrained beam search)"],
  "bad-words": ["W1,W2", "words never generated"],
  "do-sample": ["", "sample instead of searching"],
  temperature: ["T", "sampling temperature (default 1)"],
  "top-k": ["K", "sample among the K likeliest tokens (default 50; 0: all)"],
  "top-p": ["P", "nucleus sampling: the fewest tokens with probability ≥ P"],
  "typical-p": ["P", "locally typical sampling with mass P"],
  seed: ["S", "random seed of sampling (same seed, same captions)"],
  "min-new-tokens": ["N", "no end of caption before N tokens"],
  "max-new-tokens": ["N", "at most N tokens per caption (default 20)"],
  "length-penalty": ["X", "beam score = sum of logprobs / length^X (default 1)"],
  "repetition-penalty": [
    "X",
    "penalise tokens already generated (> 1 repeats less)",
  ],
  "no-repeat-ngram-size": ["N", "never repeat an n-gram of N tokens"],
  "early-stopping": ["true|false|never", "when beam search stops (early_stopping)"],
  prompt: ["TEXT", "captions continue TEXT (BLIP conditional captioning)"],
  length: ["short|normal|detailed", "presets of --min-new-tokens and --max-new-tokens"],
  sentiment: ["positive|negative", "rerank 5 beams by a sentiment lexicon"],
};

/** Flags printed under "Decoding" in `--help`; the others are general. */
const FIRST_DECODING_FLAG: FlagName = "num-beams";

/** The caption CLI's `--help` text: usage and every flag with its meaning. */
export function captionUsage(): string {
  const names = Object.keys(CAPTION_HELP) as FlagName[];
  const left = (n: FlagName) => {
    const short = "short" in CAPTION_FLAGS[n] ? `-${CAPTION_FLAGS[n].short}, ` : "";
    return `${short}--${n}${CAPTION_HELP[n][0] ? ` ${CAPTION_HELP[n][0]}` : ""}`;
  };
  const width = Math.max(...names.map((n) => left(n).length));
  const line = (n: FlagName) => `  ${left(n).padEnd(width)}  ${CAPTION_HELP[n][1]}`;
  const split = names.indexOf(FIRST_DECODING_FLAG);
  return [
    "usage: deno task caption INPUT... [flags]",
    "       deno task caption merge PART.jsonl... --output ALL.jsonl|results.json [flags]",
    "",
    "Caption images (jpg, png, webp, bmp, tiff, gif): files, folders (with subfolders), http(s)",
    "URLs, lists (.txt: a path or URL a line; .jsonl: {key, path|url, image_id}) and WebDataset",
    ".tar shards, local or http(s) (`shard-{000..063}.tar` expands as in webdataset). Negative",
    "numbers may be given as --flag -1 or --flag=-1.",
    "`deno task caption merge --help` explains merging the outputs of sharded tasks.",
    "",
    "General:",
    ...names.slice(0, split).map(line),
    "",
    "Decoding (transformers' generate names):",
    ...names.slice(split).map(line),
  ].join("\n");
}

/** Parsed flag values by flag name. */
export type Flags = Record<string, string | boolean | undefined>;

const CAPTION_PARSE = { options: CAPTION_FLAGS, allowPositionals: true } as const;

/** Parsed arguments of the caption CLI: flag values and the image paths. */
export type CaptionArgs = ReturnType<typeof parseArgs<typeof CAPTION_PARSE>>;

const NEGATIVE_NUMBER = /^-(\d|\.\d)/;

/** `--flag -1` → `--flag=-1` for flags that take a value, so negative numbers parse. */
function joinNegativeValues(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const flag = args[i].startsWith("--") ? args[i].slice(2) : undefined;
    const spec = flag !== undefined && Object.hasOwn(CAPTION_FLAGS, flag)
      ? CAPTION_FLAGS[flag as FlagName]
      : undefined;
    if (spec?.type === "string" && NEGATIVE_NUMBER.test(args[i + 1] ?? "")) {
      out.push(`${args[i]}=${args[++i]}`);
    } else out.push(args[i]);
  }
  return out;
}

/** A clear message for `parseArgs`' error `code` about `flag`. */
function parseErrorMessage(code: string, flag: string): string {
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag ${flag}; a file name starting with "-" goes after "--", as in: -- ${flag}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return CAPTION_FLAGS[flag.replace(/^-+/, "") as FlagName]?.type === "boolean"
        ? `${flag} takes no value`
        : `${flag} needs a value; one starting with "-" is given as ${flag}=-VALUE`;
    default:
      return `cannot parse ${flag}`;
  }
}

/**
 * Parse the caption CLI's arguments. Negative numbers work as `--top-k -1` and `--top-k=-1`.
 * @throws WebcapError BAD_OPTION naming the flag for an unknown flag, a missing value or a value
 *   starting with a dash that is not a number (give it as `--prompt=-text`).
 */
export function parseCaptionArgs(args: string[]): CaptionArgs {
  try {
    return parseArgs({ args: joinNegativeValues(args), ...CAPTION_PARSE });
  } catch (e) {
    const code = String((e as { code?: string }).code);
    if (!(e instanceof TypeError && code.startsWith("ERR_PARSE"))) throw e;
    const flag = e.message.match(/'(-[^' ]+)/)?.[1] ?? "";
    throw new WebcapError("BAD_OPTION", `${parseErrorMessage(code, flag)} (see --help)`);
  }
}

/** API option names (`topP`) as the CLI flags that set them (`--top-p`). */
const FLAG_OF_OPTION: Record<string, string> = {
  ...Object.fromEntries(
    Object.keys(CAPTION_FLAGS).map((
      f,
    ) => [f.replace(/-(\w)/g, (_, c) => c.toUpperCase()), `--${f}`]),
  ),
  forceWordsIds: "--force-words",
  badWordsIds: "--bad-words",
  promptIds: "--prompt",
};

/** A message about API options (`option topP: …`) in the CLI's flag names (`option --top-p: …`). */
export function inFlagNames(message: string): string {
  const flag = (w: string) => Object.hasOwn(FLAG_OF_OPTION, w) ? FLAG_OF_OPTION[w] : w;
  return message
    .replace(/^option (\w+):/, (_, w) => `option ${flag(w)}:`)
    .replace(/\b[a-z]+(?:[A-Z][a-z]*)+\b/g, flag);
}

const SAMPLING_FLAGS = ["temperature", "top-k", "top-p", "typical-p", "seed"] as const;

/** Warnings about flags that have no effect as given (sampling flags without --do-sample). */
export function flagWarnings(flags: Flags): string[] {
  if (flags["do-sample"] === true) return [];
  return SAMPLING_FLAGS.filter((f) => flags[f] !== undefined).map((f) =>
    `--${f} has no effect without --do-sample (greedy or beam search); add --do-sample to sample`
  );
}

/** Model loading and batching settings of the caption CLI. */
export interface RunSettings {
  /** `--dtype`: matrix storage on the GPU (q8 / q4: quantized). */
  dtype?: CaptionerOptions["dtype"];
  /** `--max-pixels`: largest accepted image. */
  maxPixels?: number;
  /** `--batch-size`: images encoded together (default 8). */
  batchSize: number;
}

/** {@link RunSettings} from parsed flags; refuses values that are not what the flag takes. */
export function runSettingsFromFlags(flags: Flags): RunSettings {
  const dtype = flags.dtype;
  if (dtype !== undefined && !["f32", "f16", "q8", "q4"].includes(String(dtype))) {
    throw new WebcapError("BAD_OPTION", `--dtype must be f32, f16, q8 or q4, got "${dtype}"`);
  }
  return {
    dtype: dtype as CaptionerOptions["dtype"],
    maxPixels: positiveInt(flags, "max-pixels"),
    batchSize: positiveInt(flags, "batch-size") ?? 8,
  };
}

/** A flag's whole number ≥ 1, undefined when not given; BAD_OPTION naming the flag otherwise. */
export function positiveInt(flags: Flags, name: string): number | undefined {
  const n = num(flags, name);
  if (n !== undefined && !(Number.isSafeInteger(n) && n >= 1)) {
    throw new WebcapError(
      "BAD_OPTION",
      `--${name} must be a whole number ≥ 1, got "${flags[name]}"`,
    );
  }
  return n;
}

/** A flag's number, undefined when not given; BAD_OPTION naming the flag otherwise. */
export function num(flags: Flags, name: string): number | undefined {
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
