/**
 * The token rules of Stanford PTBLexer 3.4.1 (CoreNLP tag v3.4.1) in its default mode:
 * PTB3 escaping on, americanize off, traditional (not strict) Treebank 3, newlines tokenized
 * (`-preserveLines`). Written from the behaviour of that lexer and checked against a compiled
 * copy of it; the patterns use the JFlex syntax that `ptb_regex.ts` understands.
 *
 * Scanning semantics (JFlex): at each position the longest match over all rules wins, ties go
 * to the rule listed first. A rule with `trail` matches `main` followed by `trail`; the whole
 * length counts for the longest-match choice, and the token is the longest `main` part after
 * which the rest still matches `trail`.
 * @module
 */

/** What a rule does with its matched text. */
export interface LexOutcome {
  /** The token to emit; absent: emit nothing. */
  token?: string;
  /** Give back this many code units at the end of the match; they are scanned again. */
  pushback?: number;
  /** The match is a line break (a `*NL*` token under `-preserveLines`). */
  newline?: boolean;
}

/** One scanner rule. */
export interface LexRule {
  /** Pattern of the token. */
  main: string;
  /** Trailing context that must follow (not part of the token). */
  trail?: string;
  /** Builds the token from the matched text (`main` part only). */
  action: (text: string) => LexOutcome;
}

/** Named sub-patterns of the lexer. */
export const PTB_MACROS: Record<string, string> = {
  SGML: String
    .raw`\<([!\?][A-Za-z\-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:\.\-]*([ ]+([A-Za-z][A-Za-z0-9_:\.\-]*|[A-Za-z][A-Za-z0-9_:\.\-]*[ ]*=[ ]*('[^']*'|\"[^\"]*\")))*[ ]*\/?|\/[A-Za-z][A-Za-z0-9_:\.\-]*)[ ]*\>`,
  SPMDASH: String.raw`&(MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]`,
  SPAMP: String.raw`&amp;`,
  SPPUNC: String.raw`&(HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);`,
  SPLET: String.raw`&[aeiouAEIOU](acute|grave|uml);`,
  SPACE: String.raw`[ \t\u00A0\u2000-\u200A\u3000]`,
  SPACES: String.raw`{SPACE}+`,
  NEWLINE: String.raw`\r|\r?\n|\u2028|\u2029|\u000B|\u000C|\u0085`,
  SPACENL: String.raw`({SPACE}|{NEWLINE})`,
  SPACENLS: String.raw`{SPACENL}+`,
  SENTEND: String.raw`{SPACENL}({SPACENL}|[:uppercase:]|{SGML})`,
  DIGIT: String.raw`[:digit:]|[\u07C0-\u07C9]`,
  DATE: String.raw`{DIGIT}{1,2}[\-\/]{DIGIT}{1,2}[\-\/]{DIGIT}{2,4}`,
  NUM: String.raw`{DIGIT}+|{DIGIT}*([.:,\u00AD\u066B\u066C]{DIGIT}+)+`,
  NUMBER: String.raw`[\-+]?{NUM}`,
  SUBSUPNUM: String
    .raw`[\u207A\u207B\u208A\u208B]?([\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)`,
  FRAC: String.raw`({DIGIT}{1,4}[- \u00A0])?{DIGIT}{1,4}(\\?\/|\u2044){DIGIT}{1,4}`,
  FRAC2: String.raw`[\u00BC\u00BD\u00BE\u2153-\u215E]`,
  DOLSIGN: String.raw`([A-Z]*\$|#)`,
  DOLSIGN2: String
    .raw`[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]`,
  LETTER: String.raw`([:letter:]|{SPLET}|{LETTER_EXTRA})`,
  LETTER_EXTRA: "[" +
    String.raw`\u00AD\u0237-\u024F\u02C2-\u02C5\u02D2-\u02DF\u02E5-\u02FF\u0300-\u036F` +
    String.raw`\u0370-\u037D\u0384\u0385\u03CF\u03F6\u03FC-\u03FF\u0483-\u0487\u04CF` +
    String.raw`\u04F6-\u04FF\u0510-\u0525\u055A-\u055F\u0591-\u05BD\u05BF\u05C1\u05C2\u05C4` +
    String.raw`\u05C5\u05C7\u0615-\u061A\u063B-\u063F\u064B-\u065E\u0670\u06D6-\u06EF` +
    String.raw`\u06FA-\u06FF\u070F\u0711\u0730-\u074F\u0750-\u077F\u07A6-\u07B1\u07CA-\u07F5` +
    String.raw`\u07FA\u0900-\u0903\u093C\u093E-\u094E\u0951-\u0955\u0962-\u0963\u0981-\u0983` +
    String.raw`\u09BC-\u09C4\u09C7\u09C8\u09CB-\u09CD\u09D7\u09E2\u09E3\u0A01-\u0A03\u0A3C` +
    String.raw`\u0A3E-\u0A4F\u0A81-\u0A83\u0ABC-\u0ACF\u0B82\u0BBE-\u0BC2\u0BC6-\u0BC8` +
    String.raw`\u0BCA-\u0BCD\u0C01-\u0C03\u0C3E-\u0C56\u0D3E-\u0D44\u0D46-\u0D48\u0E30-\u0E3A` +
    String.raw`\u0E47-\u0E4E\u0EB1-\u0EBC\u0EC8-\u0ECD` + "]",
  WORD: String.raw`{LETTER}({LETTER}|{DIGIT})*([.!?]{LETTER}({LETTER}|{DIGIT})*)*`,
  FILENAME_EXT:
    "bat|bmp|c|class|cgi|cpp|dll|doc|docx|exe|gif|gz|h|htm|html|jar|java|jpeg|jpg|mov|mp3|" +
    "pdf|php|pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip",
  FILENAME: String.raw`({LETTER}|{DIGIT})+([.]({LETTER}|{DIGIT})+)*([.]{FILENAME_EXT})`,
  ALNUM: String.raw`([:letter:]|[:digit:])`,
  THING_PART: String.raw`([dDoOlL]{APOSETCETERA}{ALNUM})?{ALNUM}+`,
  THING: String.raw`{THING_PART}({HYPHEN}{THING_PART})*`,
  THINGA: String.raw`[A-Z]+(([+&]|{SPAMP})[A-Z]+)+`,
  THING3: String.raw`[A-Za-z0-9]+(-[A-Za-z]+){0,2}(\\?\/[A-Za-z0-9]+(-[A-Za-z]+){0,2}){1,2}`,
  APOS: String.raw`['\u0092\u2019]|&apos;`,
  APOSETCETERA: String.raw`{APOS}|[\`\u0091\u2018\u201B]`,
  HTHING: String.raw`[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(-([A-Za-z0-9\u00AD]+|{ACRO2}\.))+`,
  REDAUX: String.raw`{APOS}([msdMSD]|re|ve|ll)`,
  SWORD: String.raw`[A-Za-z\u00AD]*[A-MO-Za-mo-z](\u00AD)*`,
  SREDAUX: String.raw`n{APOSETCETERA}t`,
  APOWORD: [
    String.raw`{APOS}n{APOS}?`,
    String.raw`[lLdDjJ]{APOS}`,
    String.raw`Dunkin{APOS}`,
    String.raw`somethin{APOS}`,
    String.raw`ol{APOS}`,
    String.raw`{APOS}em`,
    String.raw`[A-HJ-XZn]{APOSETCETERA}[:letter:]{2}[:letter:]*`,
    String.raw`{APOS}[2-9]0s`,
    String.raw`{APOS}till?`,
    String.raw`[:letter:][:letter:]*[aeiouyAEIOUY]{APOSETCETERA}[aeiouA-Z][:letter:]*`,
    String.raw`{APOS}cause`,
    String.raw`cont'd\.?`,
    String.raw`'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l`,
    String.raw`O{APOSETCETERA}o`,
  ].join("|"),
  APOWORD2: String.raw`y{APOS}`,
  FULLURL: String.raw`https?:\/\/[^ \t\n\f\r\"<>|(){}]+[^ \t\n\f\r\"<>|.!?(){},-]`,
  LIKELYURL: String
    .raw`((www\.([^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})|(([^ \t\n\f\r\"\`'<>|.!?(){},-_$]+\.)+(com|net|org|edu)))(\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?`,
  EMAIL: String
    .raw`(&lt;|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{}]*@([^ \t\n\f\r\"<>|(){}.\u00A0]+\.)*([^ \t\n\f\r\"<>|(){}.\u00A0]+)(&gt;|>)?`,
  TWITTER: String.raw`@[a-zA-Z_][a-zA-Z_0-9]*|#{LETTER}+`,
  ABMONTH: "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec",
  ABDAYS: "Mon|Tue|Tues|Wed|Thu|Thurs|Fri",
  ABSTATE: "Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a|" +
    "[M]ass|Md|Mich|Minn|[M]iss|Mo|Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt|[W]ash|" +
    "Wisc?|Wyo",
  ABCOMP: "Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys",
  ABNUM: "tel|est|ext|sq",
  ABPTIT: String.raw`Jr|Sr|Bros|(Ed|Ph)\.D|Blvd|Rd|Esq`,
  ABBREV1: String.raw`({ABMONTH}|{ABDAYS}|{ABSTATE}|{ABCOMP}|{ABNUM}|{ABPTIT}|etc|al|seq|Bldg)\.`,
  ACRO: String
    .raw`[A-Za-z](\.[A-Za-z])*|(Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(U\.K|U\.S\.S\.R)`,
  ACRO2: String
    .raw`[A-Za-z](\.[A-Za-z])+|(Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(U\.K|U\.S\.S\.R)`,
  ABTITLE: "Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|" +
    "Maj|Sgt|Cpl|Pvt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj|" +
    "Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc",
  ABCOMP2: "Invt|Elec|Natl|M[ft]g|Dept",
  ABBREV4: String.raw`{ABTITLE}|vs|Alex|Wm|Jos|Cie|a\.k\.a|cf|TREAS|Ph|{ACRO}|{ABCOMP2}`,
  ABBREV2: String.raw`{ABBREV4}\.`,
  ACRONYM: String.raw`({ACRO})\.`,
  ACRONYM_FOLLOWER: "[A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut|" +
    "[E]arlier|[H]e|[H]er|[H]ere|[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|[M]r\\.|" +
    "[M]s\\.|[N]ow|[O]nce|[O]ne|[O]ther|[O]ur|[S]he|[S]ince|[S]o|[S]ome|[S]uch|[T]hat|[T]he|" +
    "[T]heir|[T]hen|[T]here|[T]hese|[T]hey|[T]his|[W]e|[W]hen|[W]hile|[W]hat|[Y]et|[Y]ou|{SGML}",
  ABBREV3: String.raw`(ca|figs?|prop|nos?|art|bldg|prop|pp|op)\.`,
  PHONE: String
    .raw`(\([0-9]{2,3}\)[ \u00A0]?|(\+\+?)?([0-9]{2,4}[\- \u00A0])?[0-9]{2,4}[\- \u00A0])[0-9]{3,4}[\- \u00A0]?[0-9]{3,5}|((\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}`,
  FAKEDUCKFEET: "<<|>>",
  LESSTHAN: "<|&lt;",
  GREATERTHAN: ">|&gt;",
  HYPHEN: String.raw`[-_\u058A\u2010\u2011]`,
  HYPHENS: String.raw`\-+`,
  LDOTS: String.raw`\.{3,5}|(\.[ \u00A0]){2,4}\.|[\u0085\u2026]`,
  FNMARKS: "@+|#+|_+",
  ASTS: String.raw`\*+|(\\\*){1,3}`,
  INSENTP: String.raw`[,;:\u3001]`,
  QUOTES: String
    .raw`{APOS}|''|[\`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB]{1,2}`,
  DBLQUOT: String.raw`\"|&quot;`,
  TBSPEC: String
    .raw`-(RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S(&|&amp;)P-500|S(&|&amp;)Ls|Cap{APOS}n|c{APOS}est`,
  TBSPEC2: String.raw`{APOS}[0-9][0-9]`,
  SMILEY: String.raw`[<>]?[:;=][\-o\*']?[\(\)DPdpO\\{@\|\[\]]`,
  ASIANSMILEY: String
    .raw`[\^x=~<>]\.\[\^x=~<>]|[\-\^x=~<>']_[\-\^x=~<>']|\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)|\([\^x=~<>']-[\^x=~<>'\`]\)`,
  MISCSYMBOL: "[" +
    String.raw`+%&~\^|\\\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00B3\u00B4-\u00BA` +
    String.raw`\u00D7\u00F7\u0387\u05BE\u05C0\u05C3\u05C6\u05F3\u05F4\u0600-\u0603` +
    String.raw`\u0606-\u060A\u060C\u0614\u061B\u061E\u066A\u066D\u0703-\u070D\u07F6\u07F7` +
    String.raw`\u07F8\u0964\u0965\u0E4F\u1FBD\u2016\u2017\u2020-\u2023\u2030-\u2038\u203B` +
    String.raw`\u203E-\u2042\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF` +
    String.raw`\u2200-\u2BFF\u3012\u30FB\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65` +
    "]",
};

const LRB = "-LRB-", RRB = "-RRB-";

/** Drop soft hyphens (U+00AD); a token of soft hyphens only becomes "-". */
function removeSoftHyphens(s: string): string {
  const out = s.replaceAll("\u00AD", "");
  return out.length === 0 ? "-" : out;
}

function normalizeAmp(s: string): string {
  return s.replace(/&amp;/gi, "&");
}

function normalizeParens(s: string): string {
  return s.replaceAll("(", LRB).replaceAll(")", RRB);
}

/** LaTeX-style quotes (`` and ''), the PTB3 default. */
function latexQuotes(s: string, probablyLeft: boolean): string {
  const out = probablyLeft
    ? s.replace(/&apos;|'/g, "`").replace(/"|&quot;/g, "``")
    : s.replace(/&apos;|'/g, "'").replace(/"|&quot;/g, "''");
  return out.replace(/[\u0091\u2018\u201B\u2039]/g, "`")
    .replace(/[\u0092\u2019\u203A]/g, "'")
    .replace(/[\u0093\u201C\u00AB]/g, "``")
    .replace(/[\u0094\u201D\u00BB]/g, "''");
}

function normalizeCurrency(s: string): string {
  return s.replace(/\u00A2/g, "cents").replace(/\u00A3/g, "#")
    .replace(/[\u0080\u00A4\u20A0\u20AC]/g, "$");
}

function normalizeFractions(s: string): string {
  return s.replace(/\u00BC/g, "1/4").replace(/\u00BD/g, "1/2").replace(/\u00BE/g, "3/4")
    .replace(/\u2153/g, "1/3").replace(/\u2154/g, "2/3");
}

const emit = (token: string): LexOutcome => ({ token });
const same = (t: string): LexOutcome => ({ token: t });
const skip = (): LexOutcome => ({});
const softHyphens = (t: string): LexOutcome => ({ token: removeSoftHyphens(t) });
const quoteRight = (t: string): LexOutcome => ({ token: latexQuotes(t, false) });
const quoteLeft = (t: string): LexOutcome => ({ token: latexQuotes(t, true) });
const ampersand = (t: string): LexOutcome => ({ token: normalizeAmp(t) });
/** Emit all but the last `n` code units; they are scanned again. */
const giveBack = (n: number) => (t: string): LexOutcome => ({ token: t.slice(0, -n), pushback: n });
/** Emit the abbreviation with its period, then scan the period again as a sentence end. */
const reduplicatePeriod = (t: string): LexOutcome => ({ token: t, pushback: 1 });
const spacesToNbsp = (t: string): string => t.replaceAll(" ", "\u00A0");

/** Acronym before a likely sentence start: "I." gives "I" + "."; "U.S." gives "U.S." + ".". */
function acronymBeforeSentence(t: string): LexOutcome {
  return t.length === 2 ? { token: t.slice(0, 1), pushback: 1 } : reduplicatePeriod(t);
}

/** All rules in priority order (the first listed wins a tie in length). */
export const PTB_RULES: LexRule[] = [
  { main: "c[+][+]", action: same },
  { main: "(c|f)#", action: same },
  { main: "cannot", action: giveBack(3) },
  { main: "'twas", action: giveBack(3) },
  { main: "'tis", action: giveBack(2) },
  { main: "gonna|gotta|lemme|gimme|wanna", action: giveBack(2) },
  { main: "{SGML}", action: (t) => emit(spacesToNbsp(t)) },
  { main: "{SPMDASH}", action: () => emit("--") },
  { main: "{SPAMP}", action: ampersand },
  { main: "{SPPUNC}", action: same },
  { main: "{WORD}", trail: "{REDAUX}", action: softHyphens },
  { main: "{SWORD}", trail: "{SREDAUX}", action: softHyphens },
  { main: "{WORD}", action: softHyphens },
  { main: "{APOWORD}", action: same },
  { main: "{APOWORD2}", trail: "[:letter:]", action: same },
  { main: "{FULLURL}", action: same },
  { main: "{LIKELYURL}", action: same },
  { main: "{EMAIL}", action: same },
  { main: "{TWITTER}", action: same },
  { main: "{REDAUX}", trail: "[^A-Za-z]", action: quoteRight },
  { main: "{SREDAUX}", trail: "[^A-Za-z]", action: quoteRight },
  { main: "{DATE}", action: same },
  { main: "{NUMBER}", action: softHyphens },
  { main: "{SUBSUPNUM}", action: same },
  { main: "{FRAC}", action: (t) => emit(spacesToNbsp(t)) },
  { main: "{FRAC2}", action: (t) => emit(normalizeFractions(t)) },
  { main: "{TBSPEC}", action: ampersand },
  { main: "{THING3}", action: same },
  { main: "{DOLSIGN}", action: same },
  { main: "{DOLSIGN2}", action: (t) => emit(normalizeCurrency(t)) },
  {
    main: "{ACRONYM}",
    trail: "({SPACENLS})({ACRONYM_FOLLOWER}){SPACENL}",
    action: acronymBeforeSentence,
  },
  { main: "{ABBREV3}", trail: "{SPACENL}?[:digit:]", action: same },
  { main: String.raw`(pt[eyEY]|co)\.`, trail: "{SPACE}(ltd|lim)", action: same },
  { main: "{ABBREV1}", trail: "{SENTEND}", action: reduplicatePeriod },
  { main: "{ABBREV1}", trail: "[^][^]", action: same },
  { main: "{ABBREV1}", action: reduplicatePeriod },
  { main: "{ABBREV2}", action: same },
  { main: "{ABBREV4}", trail: "{SPACE}", action: same },
  { main: "{ACRO}", trail: "{SPACENL}", action: same },
  { main: "{TBSPEC2}", trail: "{SPACENL}", action: same },
  { main: "{FILENAME}", trail: "({SPACENL}|[.?!,])", action: same },
  { main: String.raw`{WORD}\.`, trail: "{INSENTP}", action: softHyphens },
  { main: "{PHONE}", action: (t) => emit(normalizeParens(spacesToNbsp(t))) },
  { main: "{DBLQUOT}", trail: "[A-Za-z0-9$]", action: quoteLeft },
  { main: "{DBLQUOT}", action: quoteRight },
  { main: String.raw`\u007F`, action: skip },
  { main: "{LESSTHAN}", action: () => emit("<") },
  { main: "{GREATERTHAN}", action: () => emit(">") },
  { main: "{SMILEY}", trail: "[^A-Za-z0-9]", action: (t) => emit(normalizeParens(t)) },
  { main: "{ASIANSMILEY}", action: (t) => emit(normalizeParens(t)) },
  { main: String.raw`\{`, action: () => emit("-LCB-") },
  { main: String.raw`\}`, action: () => emit("-RCB-") },
  { main: String.raw`\[`, action: () => emit("-LSB-") },
  { main: String.raw`\]`, action: () => emit("-RSB-") },
  { main: String.raw`\(`, action: () => emit(LRB) },
  { main: String.raw`\)`, action: () => emit(RRB) },
  { main: "{HYPHENS}", action: (t) => emit(t.length === 3 || t.length === 4 ? "--" : t) },
  { main: "{LDOTS}", action: () => emit("...") },
  { main: "{FNMARKS}", action: same },
  { main: "{ASTS}", action: same },
  { main: "{INSENTP}", action: same },
  { main: "[?!]+", action: same },
  {
    main: String.raw`[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]`,
    action: same,
  },
  { main: "=", action: same },
  { main: String.raw`\/`, action: same },
  { main: String.raw`{HTHING}\.`, trail: "{INSENTP}", action: softHyphens },
  { main: "{HTHING}", action: softHyphens },
  { main: String.raw`{THING}\.`, trail: "{INSENTP}", action: same },
  { main: "{THING}", action: same },
  { main: String.raw`{THINGA}\.`, trail: "{INSENTP}", action: ampersand },
  { main: "{THINGA}", action: ampersand },
  { main: "'", trail: String.raw`[A-Za-z][^ \t\n\r\u00A0]`, action: quoteLeft },
  { main: "{REDAUX}", action: quoteRight },
  { main: "{SREDAUX}", action: quoteRight },
  { main: "{QUOTES}", action: quoteRight },
  { main: "{FAKEDUCKFEET}", action: same },
  { main: "{MISCSYMBOL}", action: same },
  { main: String.raw`\u0000|{SPACES}|[\u200B\u200E-\u200F\uFEFF]`, action: skip },
  { main: "{NEWLINE}", action: () => ({ newline: true }) },
  { main: "&nbsp;", action: skip },
  // Anything else is untokenizable and deleted (PTBTokenizer's default "firstDelete").
  { main: "[^]", action: skip },
];
