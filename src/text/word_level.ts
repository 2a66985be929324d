/**
 * A word-level `tokenizer.json` trained on captions with Hugging Face's native `tokenizers`
 * (Deno): a lowercase normalizer, the `Whitespace` pre-tokenizer (words and punctuation runs),
 * `WordLevel` trained on the captions (`Tokenizer.train`, words by descending count), then the
 * special tokens placed first — `<pad>` 0, `<bos>` 1, `<eos>` 2, `<unk>` 3 — and the words after
 * them in the trainer's order. Beside it goes a `tokenizer_config.json` naming the special tokens,
 * so the folder loads with webcap's `Tokenizer` and with transformers' `AutoTokenizer`.
 *
 * The library is imported when called, so a browser bundle holds no native code.
 * @module
 */
import { WebcapError } from "../errors.ts";

/** The special tokens, in id order. */
export const WORD_LEVEL_SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"] as const;

/** The ids of a trained word-level tokenizer's special tokens and its vocabulary size. */
export interface WordLevelIds {
  pad: number;
  bos: number;
  eos: number;
  unk: number;
  /** Words and special tokens. */
  vocabSize: number;
}

/** `[word → id]` of a trained vocabulary, specials first, then words in the trainer's id order. */
function withSpecials(trained: Record<string, number>): Record<string, number> {
  const vocab: Record<string, number> = {};
  WORD_LEVEL_SPECIALS.forEach((t, i) => vocab[t] = i);
  const words = Object.entries(trained).sort((a, b) => a[1] - b[1]).map(([w]) => w);
  for (const w of words) if (!(w in vocab)) vocab[w] = Object.keys(vocab).length;
  return vocab;
}

/** transformers' `tokenizer_config.json` of the trained tokenizer. */
const TOKENIZER_CONFIG = {
  tokenizer_class: "PreTrainedTokenizerFast",
  pad_token: "<pad>",
  bos_token: "<bos>",
  eos_token: "<eos>",
  unk_token: "<unk>",
  clean_up_tokenization_spaces: false,
};

/**
 * Train a word-level tokenizer on `captions` and write `tokenizer.json` and
 * `tokenizer_config.json` into the folder `dir`.
 * @throws WebcapError BAD_INPUT when no caption has a word.
 */
export async function trainWordLevel(
  captions: readonly string[],
  dir: string,
): Promise<WordLevelIds> {
  if (!captions.some((c) => /\S/.test(c))) {
    throw new WebcapError("BAD_INPUT", "a word-level tokenizer needs captions with words");
  }
  const tk = await import("npm:tokenizers@0.23.2");
  const text = await Deno.makeTempFile({ suffix: ".txt" });
  try {
    await Deno.writeTextFile(text, captions.map((c) => c.replace(/\s+/g, " ")).join("\n") + "\n");
    const tok = new tk.Tokenizer(tk.WordLevel.empty() as unknown as InstanceType<typeof tk.Model>);
    tok.setNormalizer(tk.lowercase());
    tok.setPreTokenizer(tk.whitespacePreTokenizer());
    tok.train([text]);
    const vocab = withSpecials(tok.getVocab());
    tok.setModel(tk.WordLevel.init(vocab, { unkToken: "<unk>" }));
    tok.addSpecialTokens([...WORD_LEVEL_SPECIALS]);
    tok.save(`${dir}/tokenizer.json`, true);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify(TOKENIZER_CONFIG, null, 2) + "\n",
    );
    return { pad: 0, bos: 1, eos: 2, unk: 3, vocabSize: Object.keys(vocab).length };
  } finally {
    await Deno.remove(text);
  }
}
