/**
 * The caption tokenization step of the COCO caption evaluation (pycocoevalcap
 * `tokenizer/ptbtokenizer.py`): Stanford PTBTokenizer 3.4.1 with `-preserveLines -lowerCase`
 * on all captions of one call joined by newlines, then removal of punctuation tokens.
 *
 * Departure from the reference: the reference replaces only `\n` inside a caption, so a `\r`,
 * `\v`, `\f`, U+2028 or U+2029 inside a caption makes the Java tokenizer start a new output
 * line and shifts every later caption of that call by one line. Here those characters are
 * replaced by a space like `\n`, so each caption keeps its own line. A lone UTF-16 surrogate
 * (which makes the reference fail to encode its temp file) is deleted as untokenizable.
 * @module
 */

import { pyRstrip } from "../ngrams.ts";
import { PTB_NEWLINE, ptbLex } from "./lexer.ts";

/** Tokens that pycocoevalcap removes after tokenization (exact string match). */
export const PTB_PUNCTUATION: ReadonlySet<string> = new Set([
  "''",
  "'",
  "``",
  "`",
  "-LRB-",
  "-RRB-",
  "-LCB-",
  "-RCB-",
  ".",
  "?",
  "!",
  ",",
  ":",
  "-",
  "--",
  "...",
  ";",
]);

/** Characters that end a line for PTBTokenizer; replaced by a space inside a caption. */
const LINE_BREAKS = new RegExp("[\n\r\u000B\u000C\u2028\u2029]", "g");

/** pycocoevalcap's line post-processing: rstrip, split on " ", drop punctuation, join. */
function cleanLine(line: string): string {
  return pyRstrip(line).split(" ").filter((w) => !PTB_PUNCTUATION.has(w))
    .join(" ");
}

/**
 * Tokenize captions as one pycocoevalcap tokenizer call does: lowercased PTB tokens joined by
 * single spaces, punctuation tokens removed. Captions of one call are scanned as one text
 * (one caption per line), exactly like the reference, so a caption's last token can depend on
 * the start of the next caption (e.g. `"a."` before `"A dog"` gives `"a"`).
 * @param captions Raw captions, in the order the reference would write them (for COCO: images
 *   in order, each image's captions in order; references and candidates in separate calls).
 * @returns One tokenized string per caption, same order (`""` for an all-punctuation caption).
 */
export function ptbTokenize(captions: readonly string[]): string[] {
  if (captions.length === 0) return [];
  const text = captions.map((c) => c.replace(LINE_BREAKS, " ")).join("\n");
  const lines: string[][] = [[]];
  for (const lexeme of ptbLex(text)) {
    if (lexeme === PTB_NEWLINE) lines.push([]);
    else lines[lines.length - 1].push(lexeme.toLowerCase());
  }
  return captions.map((_, i) => cleanLine(lines[i].join(" ")));
}

/** Tokenize one caption on its own (a one-caption {@link ptbTokenize} call). */
export function ptbTokenizeOne(caption: string): string {
  return ptbTokenize([caption])[0];
}
