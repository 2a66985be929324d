/**
 * `numpy.mean` of a float64 vector, bit for bit: numpy adds with pairwise summation (blocks of
 * up to 128 values summed with 8 interleaved accumulators) starting from the identity 0, then
 * divides by the count. Checked against numpy 2.4 on random vectors of 1 to 50,001 values.
 * @module
 */

function pairwiseSum(a: ArrayLike<number>, start: number, n: number): number {
  if (n < 8) {
    let res = -0;
    for (let i = 0; i < n; i++) res += a[start + i];
    return res;
  }
  if (n <= 128) {
    const r = [0, 0, 0, 0, 0, 0, 0, 0];
    for (let j = 0; j < 8; j++) r[j] = a[start + j];
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    }
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2);
}

/** Mean as `numpy.mean(np.array(values))` computes it; NaN for an empty vector. */
export function numpyMean(values: ArrayLike<number>): number {
  return (0 + pairwiseSum(values, 0, values.length)) / values.length;
}
