/**
 * One LSTM cell step for a batch of rows, given the pre-activation gates
 * `gates = x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh` (two matmul calls: the second adds the first as its
 * residual). PyTorch gate order i, f, g, o:
 * `c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)`, `h' = σ(o) ⊙ tanh(c')`.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, optional, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { activationWgsl } from "./activations.ts";

/** Options of {@link lstmCell}. */
export interface LstmCellOptions {
  /** Write h' into this `[rows, H]` tensor instead of a new one. */
  hOut?: Tensor;
  /** Write c' into this `[rows, H]` tensor (not `c` itself) instead of a new one. */
  cOut?: Tensor;
}

/**
 * The start of both cell kernels: element `i` of `[rows, H]`, its gate offset `g` in
 * `G [rows, 4·H]` and the activated gates `ig`, `fg`, `gg`, `og`.
 */
const GATES_WGSL = `${activationWgsl("none")}
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.rows * p.H) { return; }
  let j = i % p.H;
  let g = (i / p.H) * 4u * p.H + j;
  let ig = sigmoid_f32(f32(G[g]));
  let fg = sigmoid_f32(f32(G[g + p.H]));
  let gg = tanh_f32(f32(G[g + 2u * p.H]));
  let og = sigmoid_f32(f32(G[g + 3u * p.H]));`;

const LSTM_CELL = new Kernel({
  name: "lstm_cell",
  uniforms: { rows: "u32", H: "u32" },
  storage: { G: read(), C: read(), Hn: readWrite(), Cn: readWrite() },
  workgroupSize: [256],
  body: () => `
${GATES_WGSL}
  let c = fg * f32(C[i]) + ig * gg;
  Cn[i] = Cn_t(c);
  Hn[i] = Hn_t(og * tanh_f32(c));
}`,
});

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
  const h = opts.hOut ?? rec.output([rows, H]);
  const cNew = opts.cOut ?? rec.output([rows, H]);
  LSTM_CELL.record(rec, {
    uniforms: { rows, H },
    bind: { G: gates, C: c, Hn: h, Cn: cNew },
    groups: Math.ceil((rows * H) / 256),
  });
  return { h, c: cNew };
}

// ---- backward ----

/**
 * Backward of {@link LSTM_CELL} from the saved gates and c: with `dc' = dCn + dH·σ(o)·(1 −
 * tanh²c')`, writes `dG = [dc'·tanh(g)·σ'(i), dc'·c·σ'(f), dc'·σ(i)·(1 − tanh²g),
 * dH·tanh(c')·σ'(o)]` and `dC = dc'·σ(f)`.
 */
const LSTM_CELL_BACKWARD = new Kernel({
  name: "lstm_cell_backward",
  uniforms: { rows: "u32", H: "u32" },
  storage: {
    G: read(),
    C: read(),
    dH: read(),
    dCn: optional(read()),
    dG: readWrite(),
    dC: readWrite(),
  },
  workgroupSize: [256],
  body: (_, has) => `
${GATES_WGSL}
  let c0 = f32(C[i]);
  let tc = tanh_f32(fg * c0 + ig * gg);
  let dh = f32(dH[i]);
  let dc = ${has.dCn ? "f32(dCn[i])" : "0.0"} + dh * og * (1.0 - tc * tc);
  dG[g] = dG_t(dc * gg * ig * (1.0 - ig));
  dG[g + p.H] = dG_t(dc * c0 * fg * (1.0 - fg));
  dG[g + 2u * p.H] = dG_t(dc * ig * (1.0 - gg * gg));
  dG[g + 3u * p.H] = dG_t(dh * tc * og * (1.0 - og));
  dC[i] = dC_t(dc * fg);
}`,
});

/**
 * Backward of {@link lstmCell} for the saved `gates [rows, 4·H]` and `c [rows, H]`, from the
 * gradients of h' (`dH`) and of c' (`dCn`, left out when c' feeds nothing later): returns the
 * gradient of the gates `[rows, 4·H]` and of c `[rows, H]`.
 */
export function lstmCellBackward(
  rec: Recorder,
  gates: Tensor,
  c: Tensor,
  dH: Tensor,
  dCn?: Tensor,
): { dGates: Tensor; dC: Tensor } {
  const [rows, H] = c.shape;
  if (gates.size !== rows * 4 * H || dH.size !== rows * H || (dCn && dCn.size !== rows * H)) {
    throw new WebcapError(
      "BAD_SHAPE",
      `lstmCellBackward wants gates [${rows}, ${4 * H}], dH and dCn [${rows}, ${H}] for c ` +
        `[${c.shape}], got [${gates.shape}], [${dH.shape}], [${dCn?.shape ?? "-"}]`,
    );
  }
  const out = { dGates: rec.output([rows, 4 * H]), dC: rec.output([rows, H]) };
  LSTM_CELL_BACKWARD.record(rec, {
    uniforms: { rows, H },
    bind: { G: gates, C: c, dH, dCn, dG: out.dGates, dC: out.dC },
    groups: Math.ceil((rows * H) / 256),
  });
  return out;
}
