/**
 * Data movement: a strided 2-D copy (writing new keys/values into a cache at a position) and
 * prepending one row to every item of a batch (a CLS token before patch embeddings).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Params, type Recorder } from "../gpu/recorder.ts";
import { emptyTensor, type Tensor } from "../gpu/tensor.ts";
import { grid } from "./matmul.ts";

const COPY = `
struct P { n: u32, width: u32, srcOff: u32, srcStride: u32, group: u32, dstOff: u32, dstOuter: u32, dstInner: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> S: array<f32>;
@group(0) @binding(2) var<storage, read_write> D: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = wg.y * 65535u + wg.x;
  if (i >= p.n) { return; }
  let dst = p.dstOff + (i / p.group) * p.dstOuter + (i % p.group) * p.dstInner;
  let src = p.srcOff + i * p.srcStride;
  for (var j = lid.x; j < p.width; j += 64u) { D[dst + j] = S[src + j]; }
}`;

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
  const params = new Params().u32(c.n).u32(c.width).u32(c.srcOff).u32(c.srcStride).u32(c.group)
    .u32(c.dstOff).u32(c.dstOuter).u32(c.dstInner);
  rec.dispatch(rec.gpu.pipelines.get(COPY), params, [src, dst], grid(c.n));
}

/** `[N, P, D]` → `[N, P+1, D]` with `row [D]` first in every item. */
export function prependRow(rec: Recorder, x: Tensor, row: Tensor): Tensor {
  const [N, P, D] = x.shape;
  if (row.size !== D) {
    throw new WebcapError("BAD_SHAPE", `prependRow: row [${row.shape}] is not [${D}]`);
  }
  const y = emptyTensor(rec.gpu, [N, P + 1, D]);
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
