/**
 * Row gather: `out[r, :] = table[ids[r], :] (+ pos[posStart + r % posPeriod, :])`. Serves token
 * embeddings (GPT-2 `wte` + `wpe`, BERT word + position embeddings) and cache reordering for
 * beams (`table` = cache, `ids` = parent rows). Tables larger than one storage binding are bound
 * in windows of rows; each window writes only the rows whose id falls in it.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { type Binding, Params, type Recorder } from "../gpu/recorder.ts";
import { dtypeBytes, emptyTensor, type Tensor } from "../gpu/tensor.ts";
import { grid } from "./matmul.ts";

function wgsl(f16: boolean, pos: boolean): string {
  return `${f16 ? "enable f16;" : ""}
struct P { rows: u32, D: u32, row0: u32, nrows: u32, posStart: u32, posPeriod: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> T: array<${f16 ? "f16" : "f32"}>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
${pos ? "@group(0) @binding(4) var<storage, read> PT: array<f32>;" : ""}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let r = wg.y * 65535u + wg.x;
  if (r >= p.rows) { return; }
  let id = u32(ids[r]);
  if (id < p.row0 || id >= p.row0 + p.nrows) { return; }
  let src = (id - p.row0) * p.D;
  for (var d = lid.x; d < p.D; d += 64u) {
    var v = f32(T[src + d]);
    ${pos ? "v += PT[(p.posStart + r % p.posPeriod) * p.D + d];" : ""}
    Y[r * p.D + d] = v;
  }
}`;
}

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
  const y = opts.out ?? emptyTensor(rec.gpu, [R, D]);
  if (y.size !== R * D) {
    throw new WebcapError("BAD_SHAPE", `embedding: out [${y.shape}] is not [${R}, ${D}]`);
  }
  const pipeline = rec.gpu.pipelines.get(wgsl(table.dtype === "f16", !!opts.pos));
  for (let row0 = 0; row0 < V; row0 += step) {
    const n = Math.min(step, V - row0);
    const tBind: Binding = n === V ? table : {
      buffer: table.buffer,
      offset: row0 * rowBytes,
      size: Math.ceil((n * rowBytes) / 4) * 4,
    };
    const bindings: Binding[] = [tBind, ids, y];
    if (opts.pos) bindings.push(opts.pos.table);
    const params = new Params().u32(R).u32(D).u32(row0).u32(n)
      .u32(opts.pos?.start ?? 0).u32(opts.pos?.period ?? 1);
    rec.dispatch(pipeline, params, bindings, grid(R));
  }
  return y;
}
