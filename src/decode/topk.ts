/**
 * Top-k selection over a score row, best first, ties to the lower index (the order the GPU
 * kernels and {@link processRows} promise). NaN counts as -Infinity.
 * @module
 */

/** The k best entries of `row[offset, offset + length)`: values and indices relative to offset. */
export function topK(
  row: ArrayLike<number>,
  k: number,
  offset = 0,
  length = row.length - offset,
): { values: Float64Array; ids: Int32Array } {
  const n = Math.min(k, length);
  const values = new Float64Array(n).fill(-Infinity);
  const ids = new Int32Array(n).fill(-1);
  let filled = 0;
  for (let i = 0; i < length; i++) {
    const raw = row[offset + i];
    const v = raw === raw ? raw : -Infinity;
    if (filled === n && !(v > values[n - 1])) continue;
    // insert after every entry ≥ v, so an equal value keeps its lower index ahead
    let pos = filled === n ? n - 1 : filled;
    while (pos > 0 && values[pos - 1] < v) {
      values[pos] = values[pos - 1];
      ids[pos] = ids[pos - 1];
      pos--;
    }
    values[pos] = v;
    ids[pos] = i;
    if (filled < n) filled++;
  }
  return { values, ids };
}
