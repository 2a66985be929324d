/**
 * Scanner driver for the PTBLexer 3.4.1 rules of `ptb_rules.ts`: splits a text into PTB
 * tokens and line breaks, exactly like `edu.stanford.nlp.process.PTBTokenizer` with
 * `-preserveLines` (before its `-lowerCase` step).
 * @module
 */

import { LongestMatcher, MacroTable, type RegexNode } from "./regex.ts";
import { PTB_MACROS, PTB_RULES } from "./rules.ts";
import { PTB_CHAR_CLASSES } from "./unicode.ts";

/** A line break produced by the scanner (PTBTokenizer's `*NL*` token). */
export const PTB_NEWLINE: unique symbol = Symbol("ptb-newline");

/** One scanner output: a token text, or {@link PTB_NEWLINE}. */
export type PtbLexeme = string | typeof PTB_NEWLINE;

interface CompiledRules {
  all: LongestMatcher;
  /** Per rule with trailing context: matchers for its token part and its context part. */
  split: Map<number, { main: LongestMatcher; trail: LongestMatcher }>;
}

let compiled: CompiledRules | undefined;

function compile(): CompiledRules {
  const macros = new MacroTable(PTB_MACROS, PTB_CHAR_CLASSES, true);
  const whole: RegexNode[] = [];
  const split = new Map<number, { main: LongestMatcher; trail: LongestMatcher }>();
  PTB_RULES.forEach((rule, i) => {
    const main = macros.parse(rule.main);
    if (rule.trail === undefined) {
      whole.push(main);
      return;
    }
    const trail = macros.parse(rule.trail);
    whole.push({ t: "cat", parts: [main, trail] });
    split.set(i, { main: new LongestMatcher([main]), trail: new LongestMatcher([trail]) });
  });
  return { all: new LongestMatcher(whole), split };
}

/** End of the token part of a trailing-context match text[start, end): the longest one. */
function tokenEnd(
  m: { main: LongestMatcher; trail: LongestMatcher },
  text: string,
  start: number,
  end: number,
): number {
  const mainEnds = m.main.acceptingEnds(text, start, end);
  for (let p = end; p >= start; p--) {
    if (mainEnds[p - start] && m.trail.matchesExactly(text, p, end)) return p;
  }
  throw new Error(`ptb_lexer: no split for trailing-context match at ${start}`);
}

/**
 * Scan `text` into tokens (PTB3-escaped, not lowercased) and line breaks.
 * @param text Any string; line breaks (`\n`, `\r`, `\r\n`, `\v`, `\f`, U+2028, U+2029) become
 *   {@link PTB_NEWLINE}.
 */
export function ptbLex(text: string): PtbLexeme[] {
  compiled ??= compile();
  const { all, split } = compiled;
  const out: PtbLexeme[] = [];
  let pos = 0;
  while (pos < text.length) {
    const [len, rule] = all.longest(text, pos);
    const m = split.get(rule);
    const end = m ? tokenEnd(m, text, pos, pos + len) : pos + len;
    const outcome = PTB_RULES[rule].action(text.slice(pos, end));
    if (outcome.newline) out.push(PTB_NEWLINE);
    else if (outcome.token !== undefined) out.push(outcome.token);
    pos = end - (outcome.pushback ?? 0);
  }
  return out;
}
