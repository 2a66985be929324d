/**
 * A small longest-match regular-expression engine with JFlex semantics, used by the PTB
 * tokenizer (`ptb_lexer.ts`). JavaScript's RegExp is leftmost-first (backtracking), while a
 * JFlex scanner picks the longest match over all rules, ties going to the earliest rule. This
 * file compiles JFlex-style patterns to a Thompson NFA and runs it as a lazily built DFA over
 * UTF-16 code units (JFlex 1.5 `%unicode` scanners also read Java `char`s).
 *
 * Pattern syntax (the subset of JFlex that the PTB lexer uses):
 * `a|b`, `(…)`, `*`, `+`, `?`, `{m}`, `{m,n}`, `{NAME}` (macro), `[…]` classes with ranges and
 * `^` negation (`[^]` is any character), `[:letter:]`, `[:digit:]`, `[:uppercase:]`, escapes
 * `\uXXXX`, `\t`, `\n`, `\r`, `\f` and `\c` for a literal `c`. With `caseless`, a literal
 * character outside a class matches its upper and lower case; classes are never expanded
 * (JFlex `%caseless`).
 * @module
 */

/** Sorted, disjoint, inclusive code-unit ranges: `[lo0, hi0, lo1, hi1, …]`. */
type Ranges = number[];

/** Regular-expression syntax tree. */
type Node =
  | { t: "set"; r: Ranges }
  | { t: "cat"; parts: Node[] }
  | { t: "alt"; alts: Node[] }
  | { t: "rep"; node: Node; min: number; max: number };

const MAX_UNIT = 0xffff;

function mergeRanges(pairs: number[][]): Ranges {
  pairs.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [lo, hi] of pairs) {
    const n = out.length;
    if (n > 0 && lo <= out[n - 1] + 1) out[n - 1] = Math.max(out[n - 1], hi);
    else out.push(lo, hi);
  }
  return out;
}

function rangesToPairs(r: Ranges): number[][] {
  const pairs: number[][] = [];
  for (let i = 0; i < r.length; i += 2) pairs.push([r[i], r[i + 1]]);
  return pairs;
}

function negateRanges(r: Ranges): Ranges {
  const out: number[] = [];
  let next = 0;
  for (let i = 0; i < r.length; i += 2) {
    if (r[i] > next) out.push(next, r[i] - 1);
    next = r[i + 1] + 1;
  }
  if (next <= MAX_UNIT) out.push(next, MAX_UNIT);
  return out;
}

function inRanges(r: Ranges, c: number): boolean {
  let lo = 0, hi = (r.length >> 1) - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (c < r[2 * mid]) hi = mid - 1;
    else if (c > r[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
}

/** Predicates for the JFlex predefined classes `[:name:]`, keyed by name. */
export type NamedClasses = Record<string, (codeUnit: number) => boolean>;

/** Ranges of the BMP code units accepted by `pred`. */
function rangesOf(pred: (codeUnit: number) => boolean): Ranges {
  const pairs: number[][] = [];
  for (let c = 0; c <= MAX_UNIT; c++) {
    if (!pred(c)) continue;
    const last = pairs[pairs.length - 1];
    if (last && last[1] === c - 1) last[1] = c;
    else pairs.push([c, c]);
  }
  return mergeRanges(pairs);
}

function caseVariants(c: number): Ranges {
  const s = String.fromCharCode(c);
  const units = new Set([c]);
  for (const v of [s.toLowerCase(), s.toUpperCase()]) {
    if (v.length === 1) units.add(v.charCodeAt(0));
  }
  return mergeRanges([...units].map((u) => [u, u]));
}

const ESCAPES: Record<string, number> = { t: 9, n: 10, r: 13, f: 12 };

/** Recursive-descent parser from pattern text to a syntax tree. */
class Parser {
  #pos = 0;
  constructor(
    private readonly src: string,
    private readonly macro: (name: string) => Node,
    private readonly namedClass: (name: string) => Ranges,
    private readonly caseless: boolean,
  ) {}

  parse(): Node {
    const node = this.#alt();
    if (this.#pos !== this.src.length) this.#fail("unexpected character");
    return node;
  }

  #fail(msg: string): never {
    throw new Error(`ptb_regex: ${msg} at ${this.#pos} in ${this.src}`);
  }

  #peek(): string {
    return this.src[this.#pos];
  }

  #alt(): Node {
    const alts = [this.#cat()];
    while (this.#peek() === "|") {
      this.#pos++;
      alts.push(this.#cat());
    }
    return alts.length === 1 ? alts[0] : { t: "alt", alts };
  }

  #cat(): Node {
    const parts: Node[] = [];
    while (this.#pos < this.src.length && this.#peek() !== "|" && this.#peek() !== ")") {
      parts.push(this.#repeat());
    }
    return parts.length === 1 ? parts[0] : { t: "cat", parts };
  }

  #repeat(): Node {
    let node = this.#atom();
    for (;;) {
      const c = this.#peek();
      if (c === "*") node = { t: "rep", node, min: 0, max: Infinity };
      else if (c === "+") node = { t: "rep", node, min: 1, max: Infinity };
      else if (c === "?") node = { t: "rep", node, min: 0, max: 1 };
      else if (c === "{" && /\d/.test(this.src[this.#pos + 1] ?? "")) {
        node = this.#bounds(node);
        continue;
      } else return node;
      this.#pos++;
    }
  }

  #bounds(node: Node): Node {
    const m = /^\{(\d+)(?:,(\d+))?\}/.exec(this.src.slice(this.#pos));
    if (!m) this.#fail("bad repetition");
    this.#pos += m[0].length;
    const min = Number(m[1]);
    return { t: "rep", node, min, max: m[2] === undefined ? min : Number(m[2]) };
  }

  #atom(): Node {
    const c = this.#peek();
    if (c === "(") {
      this.#pos++;
      const node = this.#alt();
      if (this.#peek() !== ")") this.#fail("missing )");
      this.#pos++;
      return node;
    }
    if (c === "[") return { t: "set", r: this.#classExpr() };
    if (c === "{") {
      const end = this.src.indexOf("}", this.#pos);
      const name = this.src.slice(this.#pos + 1, end);
      this.#pos = end + 1;
      return this.macro(name);
    }
    const unit = this.#unit();
    return { t: "set", r: this.caseless ? caseVariants(unit) : [unit, unit] };
  }

  /** One literal code unit, escaped or not. */
  #unit(): number {
    const c = this.src[this.#pos++];
    if (c !== "\\") return c.charCodeAt(0);
    const e = this.src[this.#pos++];
    if (e === "u") {
      const hex = this.src.slice(this.#pos, this.#pos + 4);
      this.#pos += 4;
      return parseInt(hex, 16);
    }
    return ESCAPES[e] ?? e.charCodeAt(0);
  }

  #classExpr(): Ranges {
    const named = /^\[:([a-z]+):\]/.exec(this.src.slice(this.#pos));
    if (named) {
      this.#pos += named[0].length;
      return this.namedClass(named[1]);
    }
    this.#pos++; // [
    const negate = this.#peek() === "^";
    if (negate) this.#pos++;
    const pairs: number[][] = [];
    while (this.#peek() !== "]") {
      if (this.#pos >= this.src.length) this.#fail("missing ]");
      if (this.src.startsWith("[:", this.#pos)) {
        pairs.push(...rangesToPairs(this.#classExpr()));
        continue;
      }
      const lo = this.#unit();
      if (this.#peek() === "-" && this.src[this.#pos + 1] !== "]") {
        this.#pos++;
        pairs.push([lo, this.#unit()]);
      } else pairs.push([lo, lo]);
    }
    this.#pos++; // ]
    const r = mergeRanges(pairs);
    return negate ? negateRanges(r) : r;
  }
}

/** Named sub-patterns, parsed on first use (JFlex macros may refer to later ones). */
export class MacroTable {
  #src = new Map<string, string>();
  #parsed = new Map<string, Node>();
  #classes = new Map<string, Ranges>();
  /**
   * @param defs Macro name → pattern.
   * @param classes Predicates for `[:name:]` classes (evaluated over the BMP once).
   * @param caseless JFlex `%caseless`.
   */
  constructor(
    defs: Record<string, string>,
    private readonly classes: NamedClasses,
    private readonly caseless: boolean,
  ) {
    for (const [name, src] of Object.entries(defs)) this.#src.set(name, src);
  }

  /** Parse `pattern`, expanding `{NAME}` references from this table. */
  parse(pattern: string): Node {
    return new Parser(
      pattern,
      (name) => this.#get(name),
      (name) => this.#namedClass(name),
      this.caseless,
    ).parse();
  }

  #namedClass(name: string): Ranges {
    let r = this.#classes.get(name);
    if (r) return r;
    const pred = this.classes[name];
    if (!pred) throw new Error(`ptb_regex: unknown class [:${name}:]`);
    r = rangesOf(pred);
    this.#classes.set(name, r);
    return r;
  }

  #get(name: string): Node {
    let node = this.#parsed.get(name);
    if (node) return node;
    const src = this.#src.get(name);
    if (src === undefined) throw new Error(`ptb_regex: unknown macro {${name}}`);
    node = this.parse(src);
    this.#parsed.set(name, node);
    return node;
  }
}

/** Thompson NFA: state i moves on `sets[i]` to `next[i]`, or by `eps[i]` for free. */
class Nfa {
  sets: (Ranges | null)[] = [];
  next: number[] = [];
  eps: number[][] = [];
  /** Index of the pattern accepted in this state, or -1. */
  accept: number[] = [];

  state(): number {
    this.sets.push(null);
    this.next.push(-1);
    this.eps.push([]);
    this.accept.push(-1);
    return this.sets.length - 1;
  }

  /** Add `node` between fresh states; returns [start, end]. */
  build(node: Node): [number, number] {
    if (node.t === "set") {
      const s = this.state(), e = this.state();
      this.sets[s] = node.r;
      this.next[s] = e;
      return [s, e];
    }
    if (node.t === "cat") {
      const s = this.state();
      let end = s;
      for (const part of node.parts) {
        const [ps, pe] = this.build(part);
        this.eps[end].push(ps);
        end = pe;
      }
      return [s, end];
    }
    if (node.t === "alt") {
      const s = this.state(), e = this.state();
      for (const alt of node.alts) {
        const [as, ae] = this.build(alt);
        this.eps[s].push(as);
        this.eps[ae].push(e);
      }
      return [s, e];
    }
    return this.#buildRepeat(node);
  }

  #buildRepeat(node: { node: Node; min: number; max: number }): [number, number] {
    const s = this.state();
    let end = s;
    for (let i = 0; i < node.min; i++) {
      const [ps, pe] = this.build(node.node);
      this.eps[end].push(ps);
      end = pe;
    }
    if (node.max === Infinity) {
      const [ps, pe] = this.build(node.node);
      const e = this.state();
      this.eps[end].push(ps, e);
      this.eps[pe].push(ps, e);
      return [s, e];
    }
    const e = this.state();
    for (let i = node.min; i < node.max; i++) {
      const [ps, pe] = this.build(node.node);
      this.eps[end].push(ps, e);
      end = pe;
    }
    this.eps[end].push(e);
    return [s, e];
  }
}

interface DfaState {
  nfa: number[];
  accept: number;
  ascii: Int32Array;
  other: Map<number, number>;
}

const UNKNOWN = -2;
const DEAD = -1;

/**
 * Matcher for a list of patterns: longest match from a position, ties to the lowest pattern
 * index. The DFA is built lazily, one transition at a time, and cached.
 */
export class LongestMatcher {
  #nfa = new Nfa();
  #states: DfaState[] = [];
  #index = new Map<string, number>();

  /** Compile `patterns` (syntax trees from {@link MacroTable.parse}); index = priority. */
  constructor(patterns: Node[]) {
    const start = this.#nfa.state();
    patterns.forEach((p, i) => {
      const [s, e] = this.#nfa.build(p);
      this.#nfa.eps[start].push(s);
      this.#nfa.accept[e] = i;
    });
    this.#intern(this.#closure([start]));
  }

  #closure(seed: number[]): number[] {
    const seen = new Set<number>(seed);
    const stack = [...seed];
    while (stack.length > 0) {
      for (const t of this.#nfa.eps[stack.pop()!]) {
        if (!seen.has(t)) {
          seen.add(t);
          stack.push(t);
        }
      }
    }
    return [...seen].sort((a, b) => a - b);
  }

  #intern(set: number[]): number {
    if (set.length === 0) return DEAD;
    const key = set.join(",");
    const found = this.#index.get(key);
    if (found !== undefined) return found;
    let accept = -1;
    for (const s of set) {
      const a = this.#nfa.accept[s];
      if (a >= 0 && (accept < 0 || a < accept)) accept = a;
    }
    const ascii = new Int32Array(128).fill(UNKNOWN);
    this.#states.push({ nfa: set, accept, ascii, other: new Map() });
    this.#index.set(key, this.#states.length - 1);
    return this.#states.length - 1;
  }

  #step(state: number, c: number): number {
    const st = this.#states[state];
    const cached = c < 128 ? st.ascii[c] : st.other.get(c);
    if (cached !== undefined && cached !== UNKNOWN) return cached;
    const moved: number[] = [];
    for (const s of st.nfa) {
      const r = this.#nfa.sets[s];
      if (r !== null && inRanges(r, c)) moved.push(this.#nfa.next[s]);
    }
    const target = this.#intern(this.#closure(moved));
    if (c < 128) st.ascii[c] = target;
    else st.other.set(c, target);
    return target;
  }

  /**
   * Longest match of any pattern starting at `pos` (and ending by `end`).
   * @returns `[length, patternIndex]`, or `[0, -1]` when nothing matches.
   */
  longest(text: string, pos: number, end = text.length): [number, number] {
    let state = 0, bestLen = 0, bestRule = this.#states[0].accept;
    for (let i = pos; i < end; i++) {
      state = this.#step(state, text.charCodeAt(i));
      if (state === DEAD) break;
      const a = this.#states[state].accept;
      if (a >= 0) {
        bestLen = i + 1 - pos;
        bestRule = a;
      }
    }
    return [bestLen, bestRule];
  }

  /** Positions p in [from, to] such that text[from, p) matches a pattern. */
  acceptingEnds(text: string, from: number, to: number): boolean[] {
    const ends = new Array<boolean>(to - from + 1).fill(false);
    let state = 0;
    ends[0] = this.#states[0].accept >= 0;
    for (let i = from; i < to; i++) {
      state = this.#step(state, text.charCodeAt(i));
      if (state === DEAD) break;
      ends[i + 1 - from] = this.#states[state].accept >= 0;
    }
    return ends;
  }

  /** Whether text[from, to) as a whole matches a pattern. */
  matchesExactly(text: string, from: number, to: number): boolean {
    let state = 0;
    for (let i = from; i < to; i++) {
      state = this.#step(state, text.charCodeAt(i));
      if (state === DEAD) return false;
    }
    return this.#states[state].accept >= 0;
  }
}

export type { Node as RegexNode };
