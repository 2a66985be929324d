/**
 * Tokenizers: Hugging Face `tokenizer.json` (BPE, e.g. GPT-2's byte-level BPE; WordPiece, e.g.
 * BERT's; Unigram), and Show-Attend-Tell style word maps.
 *
 * A `tokenizer.json` runs on one of two libraries behind one interface (`library.ts`): in Deno
 * Hugging Face's native `tokenizers` (`native_library.ts`), elsewhere, or where it cannot load,
 * the pure-JS `@huggingface/tokenizers` (`js_library.ts`); {@link Tokenizer.backend} says which.
 *
 * Decoding follows transformers 5 (`TokenizersBackend.decode`):
 * - ids the vocabulary lacks are skipped, as the Rust tokenizer does;
 * - `skipSpecialTokens` (default true) drops added tokens marked `special` ([CLS], [SEP], [PAD],
 *   [UNK], `<|endoftext|>` …);
 * - the decoder of `tokenizer.json` runs as stored (BERT's WordPiece decoder joins `##` pieces and
 *   applies its own `cleanup` flag);
 * - `clean_up_tokenization_spaces` then defaults to `tokenizer_config.json`'s value, else false
 *   (the transformers 5 default for GPT-2 and BERT alike); for BPE models transformers ignores a
 *   configured true unless
 *   `clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output` is also set, and so
 *   does this. An explicit `cleanUpTokenizationSpaces` option always applies.
 * @module
 */

import { WebcapError } from "../errors.ts";
import { fileLocation, localFiles, type ModelFiles } from "../io/model_files.ts";
import { openJs } from "./js_library.ts";
import { type JsonTokenizer, TOKENIZER_BACKENDS, type TokenizerBackend } from "./library.ts";
import { nativeLibrary } from "./native_library.ts";

export type { TokenizerBackend } from "./library.ts";

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Add the tokenizer's special tokens ([CLS] … [SEP], `<start>` … `<end>`); default true. */
  addSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens; default true. */
  skipSpecialTokens?: boolean;
  /** Apply transformers' `clean_up_tokenization` (" ." → "." …); default from the config. */
  cleanUpTokenizationSpaces?: boolean;
}

/** The keys of `tokenizer_config.json` that change decoding. */
export interface TokenizerConfig {
  /** Default of {@link DecodeOptions.cleanUpTokenizationSpaces}. */
  clean_up_tokenization_spaces?: boolean;
  /** Lets a configured clean-up apply to BPE models too (transformers ≥ 5 skips it otherwise). */
  clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output?: boolean;
  /** Other keys go to `@huggingface/tokenizers` as its config (the native library takes none). */
  [key: string]: unknown;
}

/** Options of {@link Tokenizer.fromJSON}. */
export interface TokenizerOptions {
  /**
   * The library to run a `tokenizer.json` on; default the native `tokenizers` where it loads
   * (Deno with --allow-ffi, --allow-read and --allow-env), else `@huggingface/tokenizers`.
   */
  backend?: TokenizerBackend;
}

interface Backend {
  encode(text: string, addSpecialTokens: boolean): number[];
  /** Tokens of the known ids, already filtered of special tokens when asked, decoded. */
  decode(ids: number[], skipSpecialTokens: boolean): string;
  defaultCleanUp: boolean;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  vocabSize: number;
  specialIds: number[];
  /** Id of the unknown token, if the vocabulary has one. */
  unkId: number | undefined;
  /** Where the vocabulary came from. */
  kind: TokenizerKind;
  /** The library running a `tokenizer.json`; undefined for the word map and ids backends. */
  backend?: TokenizerBackend;
}

/** A `tokenizer.json`, a Show-Attend-Tell word map, or no vocabulary (token ids as text). */
export type TokenizerKind = "tokenizer.json" | "word map" | "ids";

/** transformers' `clean_up_tokenization`: undo spaces before punctuation and contractions. */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(" .", ".")
    .replaceAll(" ?", "?")
    .replaceAll(" !", "!")
    .replaceAll(" ,", ",")
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

function badTokenizer(source: string, what: string, cause?: unknown): WebcapError {
  return new WebcapError(
    "BAD_TOKENIZER",
    `${source}: ${what}`,
    cause === undefined ? undefined : { cause },
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `model.type`s that both libraries implement. */
const SUPPORTED_MODELS = ["BPE", "WordPiece", "Unigram"];

/** The libraries insist on every pipeline key; tokenizer.json writers may omit null ones. */
function completeJson(json: Record<string, unknown>): Record<string, unknown> {
  return { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json };
}

/** Loads a complete `tokenizer.json` with one library; throws the library's error. */
type OpenJson = (json: Record<string, unknown>, config: TokenizerConfig) => JsonTokenizer;

/**
 * The library to run a `tokenizer.json` on: `backend`, by default the native one where it loads.
 * @throws WebcapError BAD_OPTION for an unknown backend or the native one where it cannot load.
 */
function library(backend: TokenizerBackend | undefined, source: string): OpenJson {
  if (backend !== undefined && !TOKENIZER_BACKENDS.includes(backend)) {
    throw new WebcapError(
      "BAD_OPTION",
      `${source}: backend "${backend}" is unknown; expected ${TOKENIZER_BACKENDS.join(" or ")}.`,
    );
  }
  if (backend === "@huggingface/tokenizers") return openJs;
  const native = nativeLibrary();
  if (typeof native !== "string") return native.open;
  if (backend === undefined) return openJs;
  throw new WebcapError(
    "BAD_OPTION",
    `${source}: the native tokenizers library cannot be used here (${native}); ` +
      'use backend "@huggingface/tokenizers".',
  );
}

/** Backend over one of the libraries for a `tokenizer.json`. */
function hfBackend(
  json: Record<string, unknown>,
  config: TokenizerConfig,
  source: string,
  backend?: TokenizerBackend,
): Backend {
  const model = json.model;
  if (!isObject(model) || typeof model.type !== "string" || model.vocab === undefined) {
    throw badTokenizer(source, 'not a tokenizer.json: "model" with "type" and "vocab" is missing.');
  }
  const nativeOnly = model.type === "WordLevel"; // e.g. trained by `--init random`
  if (!SUPPORTED_MODELS.includes(model.type) && !nativeOnly) {
    throw badTokenizer(
      source,
      `tokenizer model "${model.type}" is not supported; expected ${SUPPORTED_MODELS.join(", ")}.`,
    );
  }
  if (nativeOnly && backend === "@huggingface/tokenizers") {
    throw badTokenizer(source, 'tokenizer model "WordLevel" needs the native tokenizers library.');
  }
  if (!Array.isArray(json.added_tokens)) {
    throw badTokenizer(source, 'not a tokenizer.json: "added_tokens" must be a list.');
  }
  const open = library(backend ?? (nativeOnly ? "tokenizers" : undefined), source);
  let tok: JsonTokenizer;
  try {
    tok = open(completeJson(json), config);
  } catch (e) {
    throw badTokenizer(source, `unsupported tokenizer.json (${(e as Error).message}).`, e);
  }
  const byId = new Map<number, string>();
  for (const [token, id] of tok.vocab) byId.set(id, token);
  const forceBpe = config.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output;
  return {
    encode: (text, addSpecialTokens) => tok.encode(text, addSpecialTokens),
    decode: (known, skip) => tok.decode(known, skip),
    defaultCleanUp: config.clean_up_tokenization_spaces === true &&
      (model.type !== "BPE" || forceBpe === true),
    tokenToId: (t) => tok.vocab.get(t),
    idToToken: (id) => byId.get(id),
    vocabSize: [...byId.keys()].reduce((a, b) => Math.max(a, b), -1) + 1,
    unkId: typeof model.unk_token === "string" ? tok.vocab.get(model.unk_token) : undefined,
    kind: "tokenizer.json",
    backend: tok.backend,
    specialIds: (json.added_tokens as Record<string, unknown>[])
      .filter((t) => t.special === true && typeof t.id === "number")
      .map((t) => t.id as number)
      .sort((a, b) => a - b),
  };
}

const WORD_MAP_SPECIALS = ["<start>", "<end>", "<pad>", "<unk>"];

function isWordMap(v: Record<string, unknown>): boolean {
  return "<start>" in v && "<end>" in v && !("model" in v);
}

/**
 * Backend for a Show-Attend-Tell `word_map.json` (word → id). Encoding lower-cases and splits on
 * whitespace (the captions it was built from are lower-case word lists); unknown words map to
 * `<unk>`. Decoding joins words with spaces.
 */
function wordMapBackend(map: Record<string, unknown>, source: string): Backend {
  const missing = WORD_MAP_SPECIALS.filter((w) => !(w in map));
  if (missing.length > 0) {
    throw badTokenizer(source, `word map lacks ${missing.join(", ")}.`);
  }
  const byId = new Map<number, string>();
  for (const [word, id] of Object.entries(map)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw badTokenizer(source, `word map id of "${word}" must be a non-negative integer.`);
    }
    if (byId.has(id)) {
      throw badTokenizer(source, `word map gives id ${id} to "${byId.get(id)}" and "${word}".`);
    }
    byId.set(id, word);
  }
  const ids = map as Record<string, number>;
  const special = new Set(WORD_MAP_SPECIALS.map((w) => ids[w]));
  return {
    encode(text, addSpecialTokens) {
      const words = text.toLowerCase().split(/\s+/).filter((w) => w.length > 0);
      const body = words.map((w) => (Object.hasOwn(ids, w) ? ids[w] : ids["<unk>"]));
      return addSpecialTokens ? [ids["<start>"], ...body, ids["<end>"]] : body;
    },
    decode: (known, skip) =>
      known.filter((id) => !skip || !special.has(id)).map((id) => byId.get(id)).join(" "),
    defaultCleanUp: false,
    tokenToId: (t) => (Object.hasOwn(ids, t) ? ids[t] : undefined),
    idToToken: (id) => byId.get(id),
    vocabSize: [...byId.keys()].reduce((a, b) => Math.max(a, b), -1) + 1,
    specialIds: [...special].sort((a, b) => a - b),
    unkId: ids["<unk>"],
    kind: "word map",
  };
}

/**
 * Backend for a model shipped without any vocabulary: text is the token ids written as decimal
 * numbers separated by spaces, both ways, so captions stay inspectable and forced/bad words can
 * still be given (as ids).
 */
function idsBackend(vocabSize: number, special: readonly number[], source: string): Backend {
  const specials = new Set(special);
  return {
    encode(text) {
      return text.split(/\s+/).filter((w) => w.length > 0).map((w) => {
        const id = Number(w);
        if (!/^\d+$/.test(w) || id >= vocabSize) {
          throw badTokenizer(
            source,
            `"${w}" is not a token id below ${vocabSize} (this model has no vocabulary file).`,
          );
        }
        return id;
      });
    },
    decode: (known, skip) => known.filter((id) => !skip || !specials.has(id)).join(" "),
    defaultCleanUp: false,
    tokenToId: (t) => (/^\d+$/.test(t) && Number(t) < vocabSize ? Number(t) : undefined),
    idToToken: (id) => (Number.isInteger(id) && id >= 0 && id < vocabSize ? String(id) : undefined),
    vocabSize,
    specialIds: [...specials].sort((a, b) => a - b),
    unkId: undefined,
    kind: "ids",
  };
}

function parseJson(json: object | string, source: string): Record<string, unknown> {
  let value: unknown = json;
  if (typeof json === "string") {
    try {
      value = JSON.parse(json);
    } catch (e) {
      throw badTokenizer(source, `invalid JSON (${(e as Error).message}).`, e);
    }
  }
  if (!isObject(value)) throw badTokenizer(source, "expected a JSON object.");
  return value;
}

/** Text ↔ token ids for one captioning model. */
export class Tokenizer {
  readonly #backend: Backend;

  private constructor(backend: Backend) {
    this.#backend = backend;
  }

  /**
   * From a parsed or raw `tokenizer.json` (or a word map, recognised by its `<start>`/`<end>`
   * keys), with the optional `tokenizer_config.json` next to it.
   * @param source file name for error messages.
   * @throws WebcapError BAD_TOKENIZER for JSON that is neither, or that the library rejects;
   * BAD_OPTION for a backend that is unknown or cannot load here.
   */
  static fromJSON(
    json: object | string,
    source: string,
    config: TokenizerConfig = {},
    options: TokenizerOptions = {},
  ): Tokenizer {
    const obj = parseJson(json, source);
    if (isWordMap(obj)) return new Tokenizer(wordMapBackend(obj, source));
    return new Tokenizer(hfBackend(obj, config, source, options.backend));
  }

  /**
   * Read a `tokenizer.json` (or `word_map.json`) and, if present beside it,
   * `tokenizer_config.json` (Deno).
   * @throws WebcapError MISSING_FILE if the file cannot be read, else as {@link fromJSON}.
   */
  static async fromFile(path: string): Promise<Tokenizer> {
    const cut = path.search(/[^/\\]*$/);
    const tok = await Tokenizer.fromModelFiles(localFiles(path.slice(0, cut)), path.slice(cut));
    if (tok) return tok;
    throw new WebcapError(
      "MISSING_FILE",
      `${path}: the tokenizer file does not exist; check the path.`,
    );
  }

  /**
   * Read tokenizer file `name` (a `tokenizer.json` or `word_map.json`) of a model's files and,
   * if present beside it, `tokenizer_config.json`.
   * @returns undefined when `name` does not exist.
   * @throws WebcapError as {@link fromJSON}, or when a file exists but cannot be read.
   */
  static async fromModelFiles(files: ModelFiles, name: string): Promise<Tokenizer | undefined> {
    const text = await files.text(name);
    if (text === undefined) return undefined;
    const configName = name.replace(/[^/]*$/, "tokenizer_config.json");
    const configText = await files.text(configName);
    const config: TokenizerConfig = configText === undefined
      ? {}
      : parseJson(configText, fileLocation(files, configName));
    return Tokenizer.fromJSON(text, fileLocation(files, name), config);
  }

  /**
   * From a Show-Attend-Tell word map (word → id, with `<start>`, `<end>`, `<pad>`, `<unk>`).
   * @throws WebcapError BAD_TOKENIZER if a special word is missing or ids are invalid.
   */
  static fromWordMap(map: Record<string, number>, source = "word map"): Tokenizer {
    return new Tokenizer(wordMapBackend(parseJson(map, source), source));
  }

  /**
   * For a model shipped without a vocabulary: text is token ids as decimal numbers (`"22 28 291"`),
   * both ways; `special` ids are skipped when decoding with `skipSpecialTokens`.
   */
  static fromIds(vocabSize: number, special: readonly number[], source = "token ids"): Tokenizer {
    return new Tokenizer(idsBackend(vocabSize, special, source));
  }

  /** Where the vocabulary came from; "ids" when the model has none and text is token ids. */
  get kind(): TokenizerKind {
    return this.#backend.kind;
  }

  /**
   * The library running this `tokenizer.json`: `"tokenizers"` (native, Deno) or
   * `"@huggingface/tokenizers"` (pure JS); undefined for word maps and token ids.
   */
  get backend(): TokenizerBackend | undefined {
    return this.#backend.backend;
  }

  /** Token ids of `text` (special tokens added unless `addSpecialTokens` is false). */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.#backend.encode(text, opts.addSpecialTokens ?? true);
  }

  /** Text of `ids` (see the module doc for the defaults). */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const known = ids.filter((id) => this.#backend.idToToken(id) !== undefined);
    const text = this.#backend.decode(known, opts.skipSpecialTokens ?? true);
    const cleanUp = opts.cleanUpTokenizationSpaces ?? this.#backend.defaultCleanUp;
    return cleanUp ? cleanUpTokenization(text) : text;
  }

  /** Id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#backend.tokenToId(token);
  }

  /** Token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.#backend.idToToken(id);
  }

  /** Number of ids (largest id + 1), added tokens included. */
  get vocabSize(): number {
    return this.#backend.vocabSize;
  }

  /** Id of the unknown token (`[UNK]`, `<unk>`), when the vocabulary has one. */
  get unkTokenId(): number | undefined {
    return this.#backend.unkId;
  }

  /** Ids of the special tokens, ascending. */
  get specialIds(): readonly number[] {
    return this.#backend.specialIds;
  }
}
