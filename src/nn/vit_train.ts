/**
 * ViT for training: the forward of `vitEncode` keeping every activation the backward needs, and
 * the backward into a {@link Gradients} (patch projection, CLS token, position table, every block,
 * the norms). No gradient reaches the pixels.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { attention } from "../shaders/attention.ts";
import { prependRow } from "../shaders/copy.ts";
import { binary, unary } from "../shaders/elementwise.ts";
import { embedding, embeddingBackward } from "../shaders/embedding.ts";
import type { SavedNorm } from "../shaders/layernorm.ts";
import { patchify } from "../shaders/patchify.ts";
import { attnDrop, drop, type DropSite, linearDrop, type TrainDropout } from "./grads.ts";
import { type Gradients, linearBackward, normBackward, normTrain } from "./grads.ts";
import { mlpBackward, qkvOperands, selfAttentionBackward } from "./block_train.ts";
import { linear } from "./modules.ts";
import type { VitWeights } from "./vit.ts";

interface SavedLayer {
  n1: SavedNorm;
  qkv: Tensor; // [N·S, 3h]
  probs: Tensor; // [N, H, S, S]
  a: Tensor;
  n2: SavedNorm;
  pre: Tensor; // [N·S, inter] before the activation
  f: Tensor;
}

/** What {@link vitTrainForward} kept for {@link vitTrainBackward}. */
export interface VitSaved {
  N: number;
  S: number;
  patches: Tensor; // [N·P, C·p·p]
  pre?: SavedNorm;
  layers: SavedLayer[];
  final?: SavedNorm;
  /** The dropout masks' key (none: dropout off). */
  dropout?: TrainDropout;
  keep: Tensor[];
}

/** ViT's dropout sites: the embeddings (k 0), then per block its attention output and MLP. */
const SITES = 2 << 20;
function site(w: VitWeights, d: TrainDropout | undefined, k: number): DropSite {
  return { d, p: w.config.hidden_dropout_prob, site: SITES + k };
}
const attnSite = (i: number) => 1 + 2 * i, mlpSite = (i: number) => 2 + 2 * i;
/** Block i's attention probabilities: `attention_probs_dropout_prob` at `SITES + 2^19 + i`. */
function probSite(w: VitWeights, d: TrainDropout | undefined, i: number) {
  return attnDrop({ d, p: w.config.attention_probs_dropout_prob, site: SITES + (1 << 19) + i });
}

/**
 * `pixels [N, C, H, W]` → last hidden state `[N·S, h]` and what the backward needs; with
 * `dropout`, `hidden_dropout_prob` applies to the embeddings and every block's projections and
 * `attention_probs_dropout_prob` to its attention probabilities.
 */
export function vitTrainForward(
  rec: Recorder,
  w: VitWeights,
  pixels: Tensor,
  dropout?: TrainDropout,
): { hidden: Tensor; saved: VitSaved } {
  const c = w.config, h = c.hidden_size, H = c.num_attention_heads;
  const [N, C, Hh, Ww] = pixels.shape;
  if (C !== c.num_channels || Hh !== c.image_size || Ww !== c.image_size) {
    throw new WebcapError(
      "BAD_SHAPE",
      `ViT expects pixels [N, ${c.num_channels}, ${c.image_size}, ${c.image_size}], got [${pixels.shape}]`,
    );
  }
  const P = (c.image_size / c.patch_size) ** 2, S = P + 1;
  const keep: Tensor[] = [];
  const norm = (x: Tensor, ln: VitWeights["layers"][number]["ln1"]) => {
    const s = normTrain(rec, x, ln);
    keep.push(s.y, s.mean, s.rstd);
    return s;
  };
  const patches = patchify(rec, pixels, c.patch_size);
  const emb = linear(rec, patches, w.patch).view([N, P, h]);
  const withCls = prependRow(rec, emb, w.cls);
  let x = binary(rec, withCls, w.pos, "add").view([N * S, h]);
  keep.push(patches, emb, withCls, x);
  const xd = drop(rec, site(w, dropout, 0), x);
  if (xd !== x) keep.push(x = xd);
  const pre = w.preNorm ? norm(x, w.preNorm) : undefined;
  if (pre) x = pre.y;
  const layers = w.layers.map((l, i): SavedLayer => {
    const n1 = norm(x, l.ln1);
    const qkv = linear(rec, n1.y, l.qkv);
    const probs = rec.temp([N, H, S, S]);
    const [q, k, v] = qkvOperands(qkv, S, h);
    const a = attention(rec, {
      q,
      k,
      v,
      batch: N,
      queries: S,
      heads: H,
      headDim: h / H,
      keys: S,
      scale: 1 / Math.sqrt(h / H),
      probs,
      dropout: probSite(w, dropout, i),
    }).view([N * S, h]);
    const x1 = linearDrop(rec, a, l.attnOut, site(w, dropout, attnSite(i)), x);
    const n2 = norm(x1, l.ln2);
    const pre = linear(rec, n2.y, l.fc1);
    const f = unary(rec, pre, w.act);
    x = linearDrop(rec, f, l.fc2, site(w, dropout, mlpSite(i)), x1);
    keep.push(qkv, a, x1, pre, f, x);
    return { n1, qkv, probs, a, n2, pre, f };
  });
  const final = w.finalNorm ? norm(x, w.finalNorm) : undefined;
  return { hidden: final?.y ?? x, saved: { N, S, patches, pre, layers, final, dropout, keep } };
}

function layerBackward(
  rec: Recorder,
  w: VitWeights,
  i: number,
  s: SavedLayer,
  sv: VitSaved,
  dOut: Tensor,
  g: Gradients,
): Tensor {
  const h = w.config.hidden_size, H = w.config.num_attention_heads, l = w.layers[i];
  const dx1 = mlpBackward(
    rec,
    { n: s.n2, pre: s.pre, f: s.f },
    {
      ln: l.ln2,
      fc1: l.fc1,
      fc2: l.fc2,
      act: w.act,
      outDrop: site(w, sv.dropout, mlpSite(i)),
    },
    dOut,
    g,
  );
  const dx = selfAttentionBackward(
    rec,
    { n: s.n1, qkv: s.qkv, probs: s.probs, a: s.a },
    {
      ln: l.ln1,
      qkv: l.qkv,
      out: l.attnOut,
      batch: sv.N,
      seq: sv.S,
      heads: H,
      hidden: h,
      scale: 1 / Math.sqrt(h / H),
      outDrop: site(w, sv.dropout, attnSite(i)),
      probsDrop: probSite(w, sv.dropout, i),
    },
    dx1,
    g,
  );
  rec.releaseAfterSubmit(dx1);
  return dx;
}

/** Row ids over `[N·S]` positions: `pick(s)` for position s of each image (−1: none). */
function positionIds(rec: Recorder, N: number, S: number, pick: (s: number) => number): Tensor {
  const ids = Int32Array.from({ length: N * S }, (_, r) => pick(r % S));
  const t = uploadTensor(rec.gpu, ids, [N * S], "i32", "vit-ids");
  rec.releaseAfterSubmit(t);
  return t;
}

/** Backward of {@link vitTrainForward} from `dHidden [N·S, h]` into `g`. */
export function vitTrainBackward(
  rec: Recorder,
  w: VitWeights,
  sv: VitSaved,
  dHidden: Tensor,
  g: Gradients,
): void {
  const h = w.config.hidden_size, { N, S } = sv;
  let dx = sv.final ? normBackward(rec, sv.final, w.finalNorm!, dHidden, g) : dHidden;
  for (let i = w.layers.length - 1; i >= 0; i--) {
    const next = layerBackward(rec, w, i, sv.layers[i], sv, dx, g);
    if (dx !== dHidden) rec.releaseAfterSubmit(dx);
    dx = next;
  }
  if (sv.pre) {
    const next = normBackward(rec, sv.pre, w.preNorm!, dx, g);
    rec.releaseAfterSubmit(dx);
    dx = next;
  }
  const dEmbDrop = drop(rec, site(w, sv.dropout, 0), dx);
  if (dEmbDrop !== dx) {
    if (dx !== dHidden) rec.releaseAfterSubmit(dx);
    dx = dEmbDrop;
  }
  const dPos = g.of(w.pos), dCls = g.of(w.cls);
  if (dPos) embeddingBackward(rec, dx, positionIds(rec, N, S, (s) => s), dPos);
  if (dCls) {
    const clsRow = positionIds(rec, N, S, (s) => (s === 0 ? 0 : -1));
    embeddingBackward(rec, dx, clsRow, dCls.view([1, h]));
  }
  const patchRows = Int32Array.from(
    { length: N * (S - 1) },
    (_, r) => Math.floor(r / (S - 1)) * S + 1 + (r % (S - 1)),
  );
  const rows = uploadTensor(rec.gpu, patchRows, [patchRows.length], "i32", "patch-rows");
  const dEmb = embedding(rec, dx, rows);
  linearBackward(rec, sv.patches, w.patch, dEmb, g, { noDx: true });
  rec.releaseAfterSubmit(rows, dEmb, ...sv.keep);
  if (dx !== dHidden && !sv.keep.includes(dx)) rec.releaseAfterSubmit(dx);
}
