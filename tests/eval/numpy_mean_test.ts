import assert from "node:assert/strict";
import { numpyMean } from "../../src/eval/numpy_mean.ts";

/** numpy's blocking, written out: 8 accumulators per block of ≤128, halves above that. */
function pairwise(a: number[]): number {
  if (a.length < 8) return a.reduce((s, x) => s + x, -0);
  if (a.length <= 128) {
    const r = a.slice(0, 8);
    let i = 8;
    for (; i + 8 <= a.length; i += 8) for (let j = 0; j < 8; j++) r[j] += a[i + j];
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < a.length; i++) res += a[i];
    return res;
  }
  let h = Math.floor(a.length / 2);
  h -= h % 8;
  return pairwise(a.slice(0, h)) + pairwise(a.slice(h));
}

Deno.test("numpyMean: pairwise summation order (differs from a naive left-to-right sum)", () => {
  let seed = 1;
  const rnd = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
  let differsFromNaive = 0;
  for (const n of [1, 4, 7, 8, 9, 127, 128, 129, 200, 1000, 5003]) {
    const a = Array.from({ length: n }, () => rnd() * 10 ** Math.floor(rnd() * 6));
    assert.equal(numpyMean(a), pairwise(a) / n, `n=${n}`);
    if (numpyMean(a) !== a.reduce((s, x) => s + x, 0) / n) differsFromNaive++;
  }
  assert.ok(differsFromNaive > 0);
  assert.equal(numpyMean([1, 2, 3]), 2);
  assert.ok(Number.isNaN(numpyMean([])));
});
