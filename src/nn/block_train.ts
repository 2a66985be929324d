/**
 * The backward of a pre-LN transformer block's two residual branches, as GPT-2 and ViT both
 * have them: self-attention `x + drop(out(attn(qkv(ln(x)))))` and the MLP
 * `x + drop(fc2(act(fc1(ln(x)))))`, each from the gradient of its output to that of its input
 * (the residual's share included), every parameter gradient accumulated into a {@link Gradients}.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { Activation } from "../shaders/activations.ts";
import { attentionBackward, type AttnDropout, type AttnOperand } from "../shaders/attention.ts";
import { unaryBackward } from "../shaders/elementwise.ts";
import type { SavedNorm } from "../shaders/layernorm.ts";
import { drop, type DropSite, type Gradients, linearBackward, normBackward } from "./grads.ts";
import type { LayerNorm, Linear } from "./modules.ts";

/** The q, k and v operands of a stacked `qkv [batch·seq, 3·hidden]`. */
export function qkvOperands(
  qkv: Tensor,
  seq: number,
  hidden: number,
): [AttnOperand, AttnOperand, AttnOperand] {
  const op = (offset: number) => ({
    t: qkv,
    offset,
    posStride: 3 * hidden,
    rowStride: seq * 3 * hidden,
  });
  return [op(0), op(hidden), op(2 * hidden)];
}

/** What the self-attention branch kept: its norm, `qkv`, the probabilities and the heads' output. */
export interface SavedSelfAttention {
  n: SavedNorm;
  qkv: Tensor; // [batch·seq, 3·hidden]
  probs: Tensor; // [batch, heads, seq, seq]
  a: Tensor; // [batch·seq, hidden]
}

/** The self-attention branch's weights, shape and dropouts. */
export interface SelfAttentionBranch {
  ln: LayerNorm;
  qkv: Linear;
  out: Linear;
  batch: number;
  seq: number;
  heads: number;
  hidden: number;
  scale: number;
  /** The dropout of the output projection. */
  outDrop: DropSite;
  /** The dropout of the probabilities. */
  probsDrop?: AttnDropout;
}

/**
 * Backward of the self-attention branch from `dOut [batch·seq, hidden]` (the gradient of
 * `x + branch(x)`): returns dX, `dOut` through the branch plus `dOut` itself.
 */
export function selfAttentionBackward(
  rec: Recorder,
  s: SavedSelfAttention,
  b: SelfAttentionBranch,
  dOut: Tensor,
  g: Gradients,
): Tensor {
  const { batch, seq, hidden } = b;
  const dy = drop(rec, b.outDrop, dOut);
  const da = linearBackward(rec, s.a, b.out, dy, g)!;
  const dqkv = rec.temp([batch * seq, 3 * hidden]);
  const [q, k, v] = qkvOperands(s.qkv, seq, hidden);
  attentionBackward(rec, {
    q,
    k,
    v,
    batch,
    queries: seq,
    heads: b.heads,
    headDim: hidden / b.heads,
    keys: seq,
    scale: b.scale,
    probs: s.probs,
    dropout: b.probsDrop,
    dO: da,
    dQ: dqkv,
    dKV: dqkv,
  });
  const dn = linearBackward(rec, s.n.y, b.qkv, dqkv, g)!;
  rec.releaseAfterSubmit(da, dn);
  if (dy !== dOut) rec.releaseAfterSubmit(dy);
  return normBackward(rec, s.n, b.ln, dn, g, dOut);
}

/** What the MLP branch kept: its norm, the pre-activation and the activation. */
export interface SavedMlp {
  n: SavedNorm;
  pre: Tensor; // [rows, inner]
  f: Tensor; // [rows, inner]
}

/** The MLP branch's weights, activation and output dropout. */
export interface MlpBranch {
  ln: LayerNorm;
  fc1: Linear;
  fc2: Linear;
  act: Activation;
  outDrop: DropSite;
}

/** Backward of the MLP branch from `dOut [rows, hidden]`: returns dX, the residual's share included. */
export function mlpBackward(
  rec: Recorder,
  s: SavedMlp,
  b: MlpBranch,
  dOut: Tensor,
  g: Gradients,
): Tensor {
  const dy = drop(rec, b.outDrop, dOut);
  const df = linearBackward(rec, s.f, b.fc2, dy, g)!;
  const dpre = unaryBackward(rec, s.pre, df, b.act);
  const dn = linearBackward(rec, s.n.y, b.fc1, dpre, g)!;
  rec.releaseAfterSubmit(df, dpre, dn);
  if (dy !== dOut) rec.releaseAfterSubmit(dy);
  return normBackward(rec, s.n, b.ln, dn, g, dOut);
}
