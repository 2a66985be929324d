/**
 * Meteor 1.5's text normalization for English with `-norm` (normalize, keep punctuation,
 * lowercase), as `edu.cmu.meteor.util.Normalizer.normalizeLine` and `MeteorScorer` apply it:
 * a Moses-style tokenizer with quote/dash normalization, contraction splitting, dotted-acronym
 * collapsing (`u.s.` → `us`) and non-breaking prefixes, followed by lowercasing.
 *
 * Regular expressions run with the `u` flag so that, like Java's, they match code points; Java's
 * `\s`, `\p{Digit}` and `\p{Lower}` are ASCII-only and are spelled out as such.
 * @module
 */

/** Letters Meteor treats as alphabetic: ASCII, Latin-1/Latin Extended-A, Cyrillic blocks. */
const ALPHA = "A-Za-z\u0160\u017D\u0161\u017E\u0178\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u017E" +
  "\u0400-\u04FF\u0500-\u0527\uA640-\uA66E\uA67E-\uA697\u1D00-\u1D7F";
const ALNUM = "0-9" + ALPHA;
/** Java's `\s`. */
const JAVA_SPACE = " \\t\\n\\x0B\\f\\r";

const SEP_OTHER = new RegExp(`([^${ALNUM}${JAVA_SPACE}.'\`,\\-\u2018\u2019])`, "gu");
const MULTI_DOT = /\.(\.+)/gu;
const MULTI_DOT2 = /DOTMULTI\.([^.])/gu;
const COMMA = /([^0-9]),([^0-9])/gu;
const COMMA2 = /([0-9]),([^0-9])/gu;
const COMMA3 = /([^0-9]),([0-9])/gu;
const QUOTE_SINGLE = /[`\u2018\u2019]/gu;
const QUOTE_DOUBLE = /[\u201C\u201D]|''/gu;
const RM_DASH = new RegExp(`([${ALNUM}.])-([${ALNUM}])`, "gu");
const CONT_EN = new RegExp(`([^${ALPHA}])'([^${ALPHA}])`, "gu");
const CONT_EN2 = new RegExp(`([^${ALPHA}0-9])'([${ALPHA}])`, "gu");
const CONT_EN3 = new RegExp(`([${ALPHA}])'([^${ALPHA}])`, "gu");
const CONT_EN4 = new RegExp(`([${ALPHA}])'([${ALPHA}])`, "gu");
const CONT_EN5 = /([0-9])'(s)/gu;
const HAS_ALPHA = new RegExp(`[${ALPHA}]`, "u");
const STARTS_LOWER = /^[a-z]/;
const STARTS_DIGIT = /^[0-9]/;
const WHITE = /[ \u2000-\u200A\u202F\u205F\u3000\u00A0]+/gu;
/** Java `StringTokenizer`'s default delimiters. */
const TOKEN_DELIMS = /[ \t\n\r\f]+/;

/** How a non-breaking prefix protects a following dot. */
export type PrefixKind = "any" | "numeric_only";

/** Non-breaking prefixes: `pre` → kind (case-sensitive, without the dot). */
export type NonbreakingPrefixes = ReadonlyMap<string, PrefixKind>;

/**
 * The English non-breaking prefixes Meteor 1.5 ships (`resources/nonbreaking/english.prefixes`,
 * taken by Meteor from the Moses tokenizer): single capitals, titles, a few lowercase
 * abbreviations, and three prefixes that protect a dot only before a number.
 */
export const ENGLISH_PREFIXES_TEXT: string = [
  ..."ABCDEFGHIJKLMNOPQRSTUVWXYZ",
  ..."Adj Adm Adv Asst Bart Bldg Brig Bros Capt Cmdr Col Comdr Con Corp Cpl DR Dr Drs Ens Gen"
    .split(" "),
  ..."Gov Hon Hr Hosp Insp Lt MM MR MRS MS Maj Messrs Mlle Mme Mr Mrs Ms Msgr Op Ord Pfc Ph"
    .split(" "),
  ..."Prof Pvt Rep Reps Res Rev Rt Sen Sens Sfc Sgt Sr St Supt Surg v vs i.e rev e.g".split(" "),
  "No #NUMERIC_ONLY#",
  "Nos",
  "Art #NUMERIC_ONLY#",
  "Nr",
  "pp #NUMERIC_ONLY#",
].join("\n");

/**
 * Parse a Meteor/Moses non-breaking prefix file: one prefix per line, `#` comments, an optional
 * second token `#NUMERIC_ONLY#`.
 */
export function parseNonbreakingPrefixes(text: string): NonbreakingPrefixes {
  const out = new Map<string, PrefixKind>();
  for (const line of text.split(/\r\n|\r|\n/)) {
    const toks = line.split(TOKEN_DELIMS).filter((t) => t !== "");
    if (toks.length === 0 || toks[0].startsWith("#")) continue;
    out.set(toks[0], toks[1] === "#NUMERIC_ONLY#" ? "numeric_only" : "any");
  }
  return out;
}

let englishPrefixes: NonbreakingPrefixes | undefined;

/** Meteor's English non-breaking prefixes, parsed once. */
export function defaultEnglishPrefixes(): NonbreakingPrefixes {
  englishPrefixes ??= parseNonbreakingPrefixes(ENGLISH_PREFIXES_TEXT);
  return englishPrefixes;
}

/** Java's `String.trim`: strip characters up to U+0020 at both ends. */
export function javaTrim(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && s.charCodeAt(a) <= 0x20) a++;
  while (b > a && s.charCodeAt(b - 1) <= 0x20) b--;
  return s.slice(a, b);
}

/** Java `StringTokenizer` split into words. */
export function javaTokens(s: string): string[] {
  return s.split(TOKEN_DELIMS).filter((t) => t !== "");
}

/** Split punctuation, protect runs of dots, split commas, normalize quotes and dashes. */
function separate(line: string): string {
  let w = ` ${line} `.replace(SEP_OTHER, " $1 ").replace(MULTI_DOT, " DOTMULTI$1");
  while (w.includes("DOTMULTI.")) {
    w = w.replace(MULTI_DOT2, "DOTDOTMULTI $1").replaceAll("DOTMULTI.", "DOTDOTMULTI");
  }
  w = w.replace(COMMA, "$1 , $2").replace(COMMA2, "$1 , $2").replace(COMMA3, "$1 , $2");
  w = w.replace(QUOTE_SINGLE, "'").replace(QUOTE_DOUBLE, ' " ');
  w = w.replaceAll("\u2013", "-").replaceAll("--", "-").replace(RM_DASH, "$1 $2");
  w = w.replace(CONT_EN, "$1 ' $2").replace(CONT_EN2, "$1 ' $2").replace(CONT_EN3, "$1 ' $2");
  return w.replace(CONT_EN4, "$1 '$2").replace(CONT_EN5, "$1 '$2");
}

/** Decide, token by token, whether a final dot is split off. */
function splitDots(words: string[], prefixes: NonbreakingPrefixes): string {
  let out = "";
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    const next = i < words.length - 1 ? words[i + 1] : undefined;
    if (word.length > 1 && word.endsWith(".")) {
      const pre = word.slice(0, -1);
      const kind = prefixes.get(pre);
      if (pre.includes(".") && HAS_ALPHA.test(pre)) out += word.replaceAll(".", "");
      else if (kind === "any" || (next !== undefined && STARTS_LOWER.test(next))) out += word;
      else if (kind === "numeric_only" && next !== undefined && STARTS_DIGIT.test(next)) {
        out += word;
      } else out += pre + " .";
    } else out += word;
    out += " ";
  }
  return out;
}

/**
 * Normalize one line as Meteor 1.5 does for English with `-norm` (punctuation kept), including the
 * final lowercasing. Returns space-separated tokens.
 */
export function meteorNormalize(
  line: string,
  prefixes: NonbreakingPrefixes = defaultEnglishPrefixes(),
): string {
  let w = splitDots(javaTokens(separate(line)), prefixes);
  while (w.includes("DOTDOTMULTI")) w = w.replaceAll("DOTDOTMULTI", "DOTMULTI.");
  w = w.replaceAll("DOTMULTI", ".");
  return javaTrim(w.replace(WHITE, " ")).toLowerCase();
}
