/**
 * One LSTM cell step for a batch of rows, given the pre-activation gates
 * `gates = x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh` (two matmul calls: the second adds the first as its
 * residual). PyTorch gate order i, f, g, o:
 * `c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)`, `h' = σ(o) ⊙ tanh(c')`.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Params, type Recorder } from "../gpu/recorder.ts";
import { emptyTensor, type Tensor } from "../gpu/tensor.ts";
import { activationWgsl } from "./activations.ts";
import { grid } from "./matmul.ts";

/** Options of {@link lstmCell}. */
export interface LstmCellOptions {
  /** Write h' into this `[rows, H]` tensor instead of a new one. */
  hOut?: Tensor;
  /** Write c' into this `[rows, H]` tensor (not `c` itself) instead of a new one. */
  cOut?: Tensor;
}

const LSTM_WGSL = `
struct P { rows: u32, H: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read> C: array<f32>;
@group(0) @binding(3) var<storage, read_write> Hn: array<f32>;
@group(0) @binding(4) var<storage, read_write> Cn: array<f32>;
${activationWgsl("none")}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = (wg.y * 65535u + wg.x) * 256u + lid.x;
  if (i >= p.rows * p.H) { return; }
  let j = i % p.H;
  let g = (i / p.H) * 4u * p.H + j;
  let ig = sigmoid_f32(G[g]);
  let fg = sigmoid_f32(G[g + p.H]);
  let gg = tanh_f32(G[g + 2u * p.H]);
  let og = sigmoid_f32(G[g + 3u * p.H]);
  let c = fg * C[i] + ig * gg;
  Cn[i] = c;
  Hn[i] = og * tanh_f32(c);
}`;

/** Record one LSTM step: gates `[rows, 4·H]`, c `[rows, H]` → `{ h, c }`, each `[rows, H]`. */
export function lstmCell(
  rec: Recorder,
  gates: Tensor,
  c: Tensor,
  opts: LstmCellOptions = {},
): { h: Tensor; c: Tensor } {
  if (
    c.shape.length !== 2 || gates.shape.length !== 2 || gates.shape[0] !== c.shape[0] ||
    gates.shape[1] !== 4 * c.shape[1]
  ) {
    throw new WebcapError(
      "BAD_SHAPE",
      `lstmCell wants gates [rows, 4·H] and c [rows, H], got [${gates.shape}] and [${c.shape}]`,
    );
  }
  if (gates.dtype !== "f32" || c.dtype !== "f32") {
    throw new WebcapError(
      "BAD_DTYPE",
      `lstmCell wants f32 gates and c, got ${gates.dtype} and ${c.dtype}`,
    );
  }
  const [rows, H] = c.shape;
  for (const [name, t] of [["hOut", opts.hOut], ["cOut", opts.cOut]] as const) {
    if (t && t.size !== rows * H) {
      throw new WebcapError("BAD_SHAPE", `lstmCell: ${name} [${t.shape}] is not [${rows}, ${H}]`);
    }
    if (t && (t.buffer === c.buffer || t.buffer === gates.buffer)) {
      throw new WebcapError(
        "BAD_OPTION",
        `lstmCell: ${name} must not share a buffer with gates or c; pass a separate tensor`,
      );
    }
  }
  if (opts.hOut && opts.cOut && opts.hOut.buffer === opts.cOut.buffer) {
    throw new WebcapError("BAD_OPTION", "lstmCell: hOut and cOut must be different tensors");
  }
  const h = opts.hOut ?? emptyTensor(rec.gpu, [rows, H]);
  const cNew = opts.cOut ?? emptyTensor(rec.gpu, [rows, H]);
  const pipeline = rec.gpu.pipelines.get(LSTM_WGSL);
  rec.dispatch(
    pipeline,
    new Params().u32(rows).u32(H),
    [gates, c, h, cNew],
    grid(Math.ceil((rows * H) / 256)),
  );
  return { h, c: cNew };
}
