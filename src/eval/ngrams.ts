/**
 * Shared pieces of the pycocoevalcap scorers: Python's whitespace splitting and n-gram
 * counting (`precook` in `bleu_scorer.py` / `cider_scorer.py`).
 * @module
 */

/** The characters Python's `str.split()` and `str.strip()` treat as whitespace. */
const PY_SPACE_CLASS =
  "[\t\n\u000B\u000C\r\u001C-\u001F \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";
const PY_WHITESPACE = new RegExp(`${PY_SPACE_CLASS}+`);
const PY_TRAILING_WHITESPACE = new RegExp(`${PY_SPACE_CLASS}+$`);

/** Python `s.split()`: split on runs of Unicode whitespace, no empty tokens. */
export function pySplit(s: string): string[] {
  return s.split(PY_WHITESPACE).filter((w) => w.length > 0);
}

/** Python `s.rstrip()`: drop trailing Unicode whitespace. */
export function pyRstrip(s: string): string {
  return s.replace(PY_TRAILING_WHITESPACE, "");
}

/**
 * Count the n-grams of `words` for n = 1..maxN, one map per n (index n-1). A key is the
 * n-gram's words joined by one space (words never contain whitespace). Each map keeps the
 * reference's insertion order (start position ascending), which fixes float summation order.
 */
export function countNgrams(words: readonly string[], maxN: number): Map<string, number>[] {
  const counts: Map<string, number>[] = [];
  for (let n = 1; n <= maxN; n++) {
    const m = new Map<string, number>();
    for (let i = 0; i + n <= words.length; i++) {
      const key = n === 1 ? words[i] : words.slice(i, i + n).join(" ");
      m.set(key, (m.get(key) ?? 0) + 1);
    }
    counts.push(m);
  }
  return counts;
}
