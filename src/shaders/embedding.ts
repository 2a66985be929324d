/**
 * Row gather: `out[r, :] = table[ids[r], :] (+ pos[posStart + r % posPeriod, :])`. Serves token
 * embeddings (GPT-2 `wte` + `wpe`, BERT word + position embeddings) and cache reordering for
 * beams (`table` = cache, `ids` = parent rows). Tables larger than one storage binding are bound
 * in windows of rows; each window writes only the rows whose id falls in it.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import { type Recorder, tensorWindow } from "../gpu/recorder.ts";
import { dtypeBytes, type Tensor } from "../gpu/tensor.ts";

const EMBEDDING = new Kernel({
  name: "embedding",
  uniforms: { D: "u32", row0: "u32", nrows: "u32", posStart: "u32", posPeriod: "u32" },
  storage: { T: read(), ids: read("i32"), Y: readWrite(), PT: optional(read()) },
  workgroupSize: [64],
  body: (_, has) => `
fn kernel(wg: vec3u, lid: vec3u) {
  let r = wg.x;
  let id = u32(ids[r]);
  if (id < p.row0 || id >= p.row0 + p.nrows) { return; }
  let src = (id - p.row0) * p.D;
  for (var d = lid.x; d < p.D; d += WG_X) {
    var v = f32(T[src + d]);
    ${has.PT ? "v += f32(PT[(p.posStart + r % p.posPeriod) * p.D + d]);" : ""}
    Y[r * p.D + d] = Y_t(v);
  }
}`,
});

/**
 * Rows per window of a table larger than one binding: as many as `maxBinding` holds, in a
 * multiple of the rows that keep each window's byte offset 256-aligned (0: not even that fits).
 */
function windowRows(maxBinding: number, rowBytes: number): number {
  const align = 256 / Math.min(rowBytes & -rowBytes, 256);
  return Math.floor(maxBinding / rowBytes / align) * align;
}

/** Options of {@link embedding}. */
export interface EmbeddingOptions {
  /** Position table `[P, D]` added at row `posStart + r % posPeriod`. */
  pos?: { table: Tensor; start: number; period: number };
  out?: Tensor;
}

/** Gather rows of `table [V, D]` (f32 or f16) by `ids [R]` (i32) into `[R, D]` f32. */
export function embedding(
  rec: Recorder,
  table: Tensor,
  ids: Tensor,
  opts: EmbeddingOptions = {},
): Tensor {
  if (ids.dtype !== "i32") {
    throw new WebcapError("BAD_DTYPE", `embedding ids must be i32, got ${ids.dtype}`);
  }
  const V = table.shape[0];
  const D = table.size / V;
  const R = ids.size;
  const rowBytes = D * dtypeBytes(table.dtype);
  const step = table.byteSize <= rec.gpu.maxBinding ? V : windowRows(rec.gpu.maxBinding, rowBytes);
  if (step === 0) {
    throw new WebcapError(
      "BAD_SHAPE",
      `embedding: rows of [${table.shape}] (${rowBytes} B each) cannot be bound in windows of ` +
        `${rec.gpu.maxBinding} B`,
    );
  }
  const y = opts.out ?? rec.output([R, D]);
  if (y.size !== R * D) {
    throw new WebcapError("BAD_SHAPE", `embedding: out [${y.shape}] is not [${R}, ${D}]`);
  }
  for (let row0 = 0; row0 < V; row0 += step) {
    const n = Math.min(step, V - row0);
    EMBEDDING.record(rec, {
      uniforms: {
        D,
        row0,
        nrows: n,
        posStart: opts.pos?.start ?? 0,
        posPeriod: opts.pos?.period ?? 1,
      },
      bind: {
        T: n === V ? table : tensorWindow(table, row0 * D, n * D),
        ids,
        Y: y,
        PT: opts.pos?.table,
      },
      groups: R,
    });
  }
  return y;
}

// ---- backward ----

/**
 * `dT[v, :] += Σ_{r : ids[r] = v} dY[r, :]`, one workgroup per table row, rows r in order: each
 * row of the table is owned by one workgroup, so the sum is the same bits on every run.
 */
const EMBEDDING_BACKWARD = new Kernel({
  name: "embedding_backward",
  uniforms: { D: "u32", R: "u32" },
  storage: { dY: read(), ids: read("i32"), dT: readWrite() },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let v = i32(wg.x);
  for (var d = lid.x; d < p.D; d += WG_X) {
    let o = wg.x * p.D + d;
    var g = f32(dT[o]);
    for (var r = 0u; r < p.R; r++) {
      if (ids[r] == v) { g += f32(dY[r * p.D + d]); }
    }
    dT[o] = dT_t(g);
  }
}`,
});

/**
 * Backward of a row gather: accumulates `dy [R, D]` into `dTable [V, D]` at rows `ids [R]`
 * (i32; a negative id contributes nothing). Deterministic: no atomics.
 */
export function embeddingBackward(rec: Recorder, dy: Tensor, ids: Tensor, dTable: Tensor): void {
  const R = ids.size, V = dTable.shape[0], D = dTable.size / V;
  if (ids.dtype !== "i32") {
    throw new WebcapError("BAD_DTYPE", `embeddingBackward ids must be i32, got ${ids.dtype}`);
  }
  if (dy.size !== R * D) {
    throw new WebcapError(
      "BAD_SHAPE",
      `embeddingBackward: dY [${dy.shape}] is not [${R}, ${D}] for table [${dTable.shape}]`,
    );
  }
  EMBEDDING_BACKWARD.record(rec, {
    uniforms: { D, R },
    bind: { dY: dy, ids, dT: dTable },
    groups: V,
  });
}
