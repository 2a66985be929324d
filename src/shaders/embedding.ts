/**
 * Row gather: `out[r, :] = table[ids[r], :] (+ pos[posStart + r % posPeriod, :])`. Serves token
 * embeddings (GPT-2 `wte` + `wpe`, BERT word + position embeddings) and cache reordering for
 * beams (`table` = cache, `ids` = parent rows). Tables larger than one storage binding are bound
 * in windows of rows; each window writes only the rows whose id falls in it. A quantized table
 * (`QuantMatrix`, rows = ids) is read through the `quant` variant, dequantized in registers.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import { type Recorder, tensorWindow } from "../gpu/recorder.ts";
import { dtypeBytes, type Tensor } from "../gpu/tensor.ts";
import * as quant from "./quant/qmatrix.ts";

const EMBEDDING = new Kernel({
  name: "embedding",
  uniforms: { D: "u32", row0: "u32", nrows: "u32", posStart: "u32", posPeriod: "u32", G: "u32" },
  storage: {
    T: optional(read()),
    TQ: optional(read("u32")),
    TS: optional(read("u32")),
    ids: read("i32"),
    Y: readWrite(),
    PT: optional(read()),
  },
  workgroupSize: [64],
  body: (v: { quant?: quant.QuantScheme }, has) => `
${
    v.quant
      ? quant.dequantWgsl(v.quant, { fn: "t_at", data: "TQ", scales: "TS", K: "p.D", G: "p.G" })
      : "fn t_at(r: u32, d: u32) -> f32 { return f32(T[r * p.D + d]); }"
  }
fn kernel(wg: vec3u, lid: vec3u) {
  let r = wg.x;
  let id = u32(ids[r]);
  if (id < p.row0 || id >= p.row0 + p.nrows) { return; }
  for (var d = lid.x; d < p.D; d += WG_X) {
    var v = t_at(id - p.row0, d);
    ${has.PT ? "v += f32(PT[(p.posStart + r % p.posPeriod) * p.D + d]);" : ""}
    Y[r * p.D + d] = Y_t(v);
  }
}`,
});

/**
 * Rows per window of a table larger than one binding: as many as `maxBinding` holds, in a
 * multiple of the rows that keep each window's byte offset 256-aligned (0: not even that fits).
 * `rowBytes` are the bytes per row of each binding the table takes (a quantized one: two).
 */
function windowRows(maxBinding: number, rowBytes: readonly number[]): number {
  const align = 256 / Math.min(...rowBytes.map((b) => b & -b), 256);
  return Math.floor(maxBinding / Math.max(...rowBytes) / align) * align;
}

/** Bytes per row of each binding of `table [V, D]`. */
function bytesPerRow(table: quant.Weight, D: number): number[] {
  if (!quant.isQuant(table)) return [D * dtypeBytes(table.dtype)];
  return [(D * quant.QUANT_BITS[table.scheme]) / 8, (D / table.groupSize) * 4];
}

/** The table bindings of rows `[row0, row0 + n)` of `table [V, …]` (or all of it). */
function tableBindings(table: quant.Weight, row0: number, n: number, V: number, D: number) {
  if (quant.isQuant(table)) {
    const { data, scales } = quant.quantRows(table, row0, n);
    return { TQ: data, TS: scales };
  }
  return { T: n === V ? table : tensorWindow(table, row0 * D, n * D) };
}

/** Options of {@link embedding}. */
export interface EmbeddingOptions {
  /** Position table `[P, D]` added at row `posStart + r % posPeriod`. */
  pos?: { table: Tensor; start: number; period: number };
  out?: Tensor;
}

/** Gather rows of `table [V, D]` (f32, f16 or quantized) by `ids [R]` (i32) into `[R, D]` f32. */
export function embedding(
  rec: Recorder,
  table: quant.Weight,
  ids: Tensor,
  opts: EmbeddingOptions = {},
): Tensor {
  if (ids.dtype !== "i32") {
    throw new WebcapError("BAD_DTYPE", `embedding ids must be i32, got ${ids.dtype}`);
  }
  const V = table.shape[0];
  const D = table.shape.slice(1).reduce((a, b) => a * b, 1);
  const R = ids.size;
  const rowBytes = bytesPerRow(table, D);
  const fits = V * Math.max(...rowBytes) <= rec.gpu.maxBinding;
  const step = fits ? V : windowRows(rec.gpu.maxBinding, rowBytes);
  if (step === 0) {
    throw new WebcapError(
      "BAD_SHAPE",
      `embedding: rows of [${table.shape}] (${
        Math.max(...rowBytes)
      } B each) cannot be bound in windows of ` +
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
        G: quant.isQuant(table) ? table.groupSize : 0,
      },
      variant: { quant: quant.isQuant(table) ? table.scheme : undefined },
      bind: {
        ...tableBindings(table, row0, n, V, D),
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
