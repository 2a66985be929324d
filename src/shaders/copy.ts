/**
 * Data movement: a strided 2-D copy (writing new keys/values into a cache at a position) and
 * prepending one row to every item of a batch (a CLS token before patch embeddings).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";

const COPY = new Kernel({
  name: "copy2d",
  uniforms: {
    width: "u32",
    srcOff: "u32",
    srcStride: "u32",
    group: "u32",
    dstOff: "u32",
    dstOuter: "u32",
    dstInner: "u32",
  },
  storage: { S: read(), D: readWrite() },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x;
  let dst = p.dstOff + (i / p.group) * p.dstOuter + (i % p.group) * p.dstInner;
  let src = p.srcOff + i * p.srcStride;
  for (var j = lid.x; j < p.width; j += WG_X) { D[dst + j] = D_t(f32(S[src + j])); }
}`,
});

/** Strided copy: item i (of n) is `width` elements at `src[srcOff + i·srcStride]`. */
export interface Copy2d {
  n: number;
  width: number;
  srcOff: number;
  srcStride: number;
  /** Items are grouped: item i goes to `dst[dstOff + ⌊i/group⌋·dstOuter + (i mod group)·dstInner]`. */
  group: number;
  dstOff: number;
  dstOuter: number;
  dstInner: number;
}

/** Record a strided copy of f32 data from `src` into `dst`. */
export function copy2d(rec: Recorder, src: Tensor, dst: Tensor, c: Copy2d): void {
  const lastSrc = c.srcOff + (c.n - 1) * c.srcStride + c.width;
  const i = c.n - 1;
  const lastDst = c.dstOff + Math.floor(i / c.group) * c.dstOuter + (i % c.group) * c.dstInner +
    c.width;
  if (lastSrc > src.size || lastDst > dst.size) {
    throw new WebcapError(
      "BAD_SHAPE",
      `copy2d out of range: src [${src.shape}] needs ${lastSrc}, dst [${dst.shape}] needs ${lastDst}`,
    );
  }
  const { n, ...uniforms } = c;
  COPY.record(rec, { uniforms, bind: { S: src, D: dst }, groups: n });
}

/** `[N, P, D]` → `[N, P+1, D]` with `row [D]` first in every item. */
export function prependRow(rec: Recorder, x: Tensor, row: Tensor): Tensor {
  const [N, P, D] = x.shape;
  if (row.size !== D) {
    throw new WebcapError("BAD_SHAPE", `prependRow: row [${row.shape}] is not [${D}]`);
  }
  const y = rec.output([N, P + 1, D]);
  copy2d(rec, row, y, {
    n: N,
    width: D,
    srcOff: 0,
    srcStride: 0,
    group: 1,
    dstOff: 0,
    dstOuter: (P + 1) * D,
    dstInner: 0,
  });
  copy2d(rec, x, y, {
    n: N * P,
    width: D,
    srcOff: 0,
    srcStride: D,
    group: P,
    dstOff: D,
    dstOuter: (P + 1) * D,
    dstInner: D,
  });
  return y;
}
