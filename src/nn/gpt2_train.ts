/**
 * GPT-2 in teacher forcing for training: the whole sequence of every row in one pass (no KV
 * cache), keeping every activation the backward needs (layernorm statistics, attention
 * probabilities, GELU inputs), and the backward through it into a {@link Gradients}. Cross-attention
 * reads per-row encoder states `[R·E, h]` (an image's states repeated for each of its rows).
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { attention, attentionBackward } from "../shaders/attention.ts";
import { accumulate, unary } from "../shaders/elementwise.ts";
import { embedding, embeddingBackward } from "../shaders/embedding.ts";
import type { SavedNorm } from "../shaders/layernorm.ts";
import { matmul, matmulBackward } from "../shaders/matmul.ts";
import { floatWeight } from "../shaders/quant/qmatrix.ts";
import type { Gpt2Weights } from "./gpt2.ts";
import { attnDrop, drop, type DropSite, linearDrop, type TrainDropout } from "./grads.ts";
import { type Gradients, linearBackward, normBackward, normTrain } from "./grads.ts";
import { mlpBackward, qkvOperands, selfAttentionBackward } from "./block_train.ts";
import { linear } from "./modules.ts";

type Layer = Gpt2Weights["layers"][number];

interface SavedCross {
  nc: SavedNorm;
  q: Tensor; // [R·T, h]
  ckv: Tensor; // [R·E, 2h]
  probs: Tensor; // [R, H, T, E]
  ca: Tensor; // [R·T, h]
  x2: Tensor;
}

interface SavedLayer {
  x: Tensor; // [R·T, h] block input
  n1: SavedNorm;
  qkv: Tensor; // [R·T, 3h]
  probs: Tensor; // [R, H, T, T]
  a: Tensor;
  x1: Tensor;
  cross?: SavedCross;
  n2: SavedNorm;
  pre: Tensor; // [R·T, inner] before the activation
  f: Tensor;
}

/** What {@link gpt2TrainForward} kept for {@link gpt2TrainBackward}. */
export interface Gpt2Saved {
  R: number;
  T: number;
  E: number;
  /** Token ids `[R·T]`, or undefined when the forward took input embeddings. */
  ids?: Tensor;
  posIds: Tensor;
  enc?: Tensor;
  layers: SavedLayer[];
  xL: Tensor;
  nf: SavedNorm;
  /** The dropout masks' key (none: dropout off). */
  dropout?: TrainDropout;
  /** Everything to release once the step is submitted. */
  keep: Tensor[];
}

/**
 * GPT-2's dropout sites: the embeddings, then per block its attention, cross-attention, MLP;
 * from `SITES + 2^19` per block its self- and cross-attention probabilities.
 */
const SITES = 1 << 20;
type Resid = "attn" | "cross" | "mlp";
function residSite(w: Gpt2Weights, d: TrainDropout | undefined, i: number, k: Resid): DropSite {
  return {
    d,
    p: w.config.resid_pdrop,
    site: SITES + 1 + 3 * i + ["attn", "cross", "mlp"].indexOf(k),
  };
}
function embdSite(w: Gpt2Weights, d: TrainDropout | undefined): DropSite {
  return { d, p: w.config.embd_pdrop, site: SITES };
}
function probSite(w: Gpt2Weights, d: TrainDropout | undefined, i: number, cross: boolean) {
  return attnDrop({ d, p: w.config.attn_pdrop, site: SITES + (1 << 19) + 2 * i + +cross });
}

function scaleOf(w: Gpt2Weights, i: number): number {
  const c = w.config;
  const s = c.scale_attn_weights ? 1 / Math.sqrt(c.n_embd / c.n_head) : 1;
  return c.scale_attn_by_inverse_layer_idx ? s / (i + 1) : s;
}

/** Operands of the cross-attention: q, and k/v in `ckv`. */
function crossOps(q: Tensor, ckv: Tensor, T: number, E: number, h: number) {
  const op = (offset: number) => ({ t: ckv, offset, posStride: 2 * h, rowStride: E * 2 * h });
  return [{ t: q, offset: 0, posStride: h, rowStride: T * h }, op(0), op(h)] as const;
}

function saveNorm(keep: Tensor[], s: SavedNorm): SavedNorm {
  keep.push(s.y, s.mean, s.rstd);
  return s;
}

function crossForward(
  rec: Recorder,
  w: Gpt2Weights,
  l: Layer,
  i: number,
  x1: Tensor,
  s: { R: number; T: number; E: number; enc: Tensor; keep: Tensor[]; dropout?: TrainDropout },
): SavedCross {
  const c = w.config, h = c.n_embd, H = c.n_head, cl = l.cross!;
  const nc = saveNorm(s.keep, normTrain(rec, x1, cl.ln));
  const q = linear(rec, nc.y, cl.q);
  const ckv = linear(rec, s.enc, cl.kv);
  const probs = rec.temp([s.R, H, s.T, s.E]);
  const [qo, ko, vo] = crossOps(q, ckv, s.T, s.E, h);
  const ca = attention(rec, {
    q: qo,
    k: ko,
    v: vo,
    batch: s.R,
    queries: s.T,
    heads: H,
    headDim: h / H,
    keys: s.E,
    scale: scaleOf(w, i),
    probs,
    dropout: probSite(w, s.dropout, i, true),
  }).view([s.R * s.T, h]);
  const x2 = linearDrop(rec, ca, cl.proj, residSite(w, s.dropout, i, "cross"), x1);
  s.keep.push(q, ckv, ca, x2);
  return { nc, q, ckv, probs, ca, x2 };
}

/**
 * Teacher-forced forward of `ids [R·T]` (i32; row r holds T positions from 0), or of input
 * embeddings `{ embeds: [R·T, h] }`, with cross-attention over `enc [R·E, h]`. Returns logits
 * `[R·T, vocab]` and what the backward needs. With `dropout`, the embeddings, every block's
 * projections and its attention probabilities are dropped out at the config's rates
 * (`embd_pdrop`, `resid_pdrop`, `attn_pdrop`).
 */
export function gpt2TrainForward(
  rec: Recorder,
  w: Gpt2Weights,
  input: Tensor | { embeds: Tensor },
  R: number,
  T: number,
  enc?: { states: Tensor; E: number },
  dropout?: TrainDropout,
): { logits: Tensor; saved: Gpt2Saved } {
  const c = w.config, h = c.n_embd, H = c.n_head;
  if (T > c.n_positions) {
    throw new WebcapError(
      "BAD_SHAPE",
      `${T} positions exceed the decoder's n_positions ${c.n_positions}`,
    );
  }
  if (c.add_cross_attention !== !!enc) {
    throw new WebcapError(
      "BAD_OPTION",
      "encoder states are needed exactly when GPT-2 has cross-attention",
    );
  }
  const keep: Tensor[] = [];
  const posIds = uploadTensor(
    rec.gpu,
    Int32Array.from({ length: R * T }, (_, r) => r % T),
    [R * T],
    "i32",
    "pos-ids",
  );
  keep.push(posIds);
  const pos = { table: w.wpe, start: 0, period: T };
  const ids = "embeds" in input ? undefined : input;
  let x = ids
    ? embedding(rec, w.wte, ids, { pos })
    : embedFromInput(rec, input as { embeds: Tensor }, R * T, pos);
  keep.push(x);
  if (dropout && w.config.embd_pdrop > 0) {
    x = drop(rec, embdSite(w, dropout), x);
    keep.push(x);
  }
  const E = enc?.E ?? 0;
  const layers = w.layers.map((l, i): SavedLayer => {
    const n1 = saveNorm(keep, normTrain(rec, x, l.ln1));
    const qkv = linear(rec, n1.y, l.attn);
    const probs = rec.temp([R, H, T, T]);
    const [q, k, v] = qkvOperands(qkv, T, h);
    const a = attention(rec, {
      q,
      k,
      v,
      batch: R,
      queries: T,
      heads: H,
      headDim: h / H,
      keys: T,
      causal: { past: 0 },
      scale: scaleOf(w, i),
      probs,
      dropout: probSite(w, dropout, i, false),
    }).view([R * T, h]);
    const x1 = linearDrop(rec, a, l.attnProj, residSite(w, dropout, i, "attn"), x);
    keep.push(qkv, a, x1);
    const cross = l.cross
      ? crossForward(rec, w, l, i, x1, { R, T, E, enc: enc!.states, keep, dropout })
      : undefined;
    const xc = cross?.x2 ?? x1;
    const n2 = saveNorm(keep, normTrain(rec, xc, l.ln2));
    const pre = linear(rec, n2.y, l.fc);
    const f = unary(rec, pre, w.act);
    const out = linearDrop(rec, f, l.proj, residSite(w, dropout, i, "mlp"), xc);
    keep.push(pre, f, out);
    const saved = { x, n1, qkv, probs, a, x1, cross, n2, pre, f };
    x = out;
    return saved;
  });
  const nf = saveNorm(keep, normTrain(rec, x, w.lnF));
  const logits = matmul(rec, nf.y, w.lmHead, { transposeW: true });
  const saved = { R, T, E, ids, posIds, enc: enc?.states, layers, xL: x, nf, dropout, keep };
  return { logits, saved };
}

/** `embeds [n, h]` plus the position rows: a gather by ids `0 .. n-1`. */
function embedFromInput(
  rec: Recorder,
  input: { embeds: Tensor },
  n: number,
  pos: { table: Tensor; start: number; period: number },
): Tensor {
  if (input.embeds.size !== n * pos.table.shape[1]) {
    throw new WebcapError(
      "BAD_SHAPE",
      `input embeddings [${input.embeds.shape}] are not [${n}, ${pos.table.shape[1]}]`,
    );
  }
  const rows = rec.upload(Int32Array.from({ length: n }, (_, i) => i), [n], "i32");
  return embedding(rec, input.embeds, rows, { pos });
}

/** Backward of one block from `dOut` (the gradient of its output); returns the gradient of its input. */
function layerBackward(
  rec: Recorder,
  w: Gpt2Weights,
  l: Layer,
  i: number,
  s: SavedLayer,
  sv: Gpt2Saved,
  dOut: Tensor,
  g: Gradients,
  dEnc: Tensor | undefined,
): Tensor {
  const c = w.config, h = c.n_embd, H = c.n_head, { R, T, E } = sv;
  const tmp: Tensor[] = [];
  const t = <X extends Tensor | undefined>(x: X): X => (x && tmp.push(x), x);
  let dx1 = t(mlpBackward(
    rec,
    { n: s.n2, pre: s.pre, f: s.f },
    {
      ln: l.ln2,
      fc1: l.fc,
      fc2: l.proj,
      act: w.act,
      outDrop: residSite(w, sv.dropout, i, "mlp"),
    },
    dOut,
    g,
  ));
  if (l.cross && s.cross) {
    const sc = s.cross, cl = l.cross;
    const dy = drop(rec, residSite(w, sv.dropout, i, "cross"), dx1); // through the dropout
    if (dy !== dx1) t(dy);
    const dca = t(linearBackward(rec, sc.ca, cl.proj, dy, g))!;
    const dq = rec.temp([R * T, h]);
    const dckv = rec.temp([R * E, 2 * h]);
    const [qo, ko, vo] = crossOps(sc.q, sc.ckv, T, E, h);
    attentionBackward(rec, {
      q: qo,
      k: ko,
      v: vo,
      batch: R,
      queries: T,
      heads: H,
      headDim: h / H,
      keys: E,
      scale: scaleOf(w, i),
      probs: sc.probs,
      dropout: probSite(w, sv.dropout, i, true),
      dO: dca,
      dQ: dq,
      dKV: dckv,
    });
    const dnc = t(linearBackward(rec, sc.nc.y, cl.q, dq, g))!;
    const dEncL = t(linearBackward(rec, sv.enc!, cl.kv, dckv, g, { noDx: !dEnc }));
    if (dEnc) accumulate(rec, dEnc, dEncL!);
    dx1 = t(normBackward(rec, sc.nc, cl.ln, dnc, g, dx1));
  }
  const dx = selfAttentionBackward(
    rec,
    { n: s.n1, qkv: s.qkv, probs: s.probs, a: s.a },
    {
      ln: l.ln1,
      qkv: l.attn,
      out: l.attnProj,
      batch: R,
      seq: T,
      heads: H,
      hidden: h,
      scale: scaleOf(w, i),
      outDrop: residSite(w, sv.dropout, i, "attn"),
      probsDrop: probSite(w, sv.dropout, i, false),
    },
    dx1,
    g,
  );
  rec.releaseAfterSubmit(...tmp);
  return dx;
}

/**
 * Backward of {@link gpt2TrainForward} from `dLogits [R·T, vocab]`: accumulates every parameter
 * gradient into `g` (the tied `wte` gets both the head's and the embedding's; frozen ones are
 * skipped) and returns the gradient of the encoder states `[R·E, h]` (undefined without
 * cross-attention, or when `encoderGrad` is false: a frozen encoder needs none). A forward over
 * input embeddings accumulates their gradient into `dEmbeds [R·T, h]`.
 */
export function gpt2TrainBackward(
  rec: Recorder,
  w: Gpt2Weights,
  sv: Gpt2Saved,
  dLogits: Tensor,
  g: Gradients,
  encoderGrad = true,
  dEmbeds?: Tensor,
): Tensor | undefined {
  if (!sv.ids && dEmbeds?.size !== sv.R * sv.T * w.config.n_embd) {
    throw new WebcapError(
      "BAD_OPTION",
      `a forward over input embeddings needs dEmbeds [${sv.R * sv.T}, ${w.config.n_embd}]`,
    );
  }
  const h = w.config.n_embd;
  const lmHead = floatWeight(w.lmHead, "gpt2 backward");
  const dnf = matmulBackward(rec, sv.nf.y, lmHead, dLogits, { dW: g.of(lmHead) }, {
    transposeW: true,
  })!;
  let dx = normBackward(rec, sv.nf, w.lnF, dnf, g);
  rec.releaseAfterSubmit(dnf);
  const dEnc = sv.enc && encoderGrad
    ? uploadTensor(rec.gpu, new Float32Array(sv.R * sv.E * h), [sv.R * sv.E, h], "f32", "d-enc")
    : undefined;
  for (let i = w.layers.length - 1; i >= 0; i--) {
    const next = layerBackward(rec, w, w.layers[i], i, sv.layers[i], sv, dx, g, dEnc);
    rec.releaseAfterSubmit(dx);
    dx = next;
  }
  if (sv.dropout && w.config.embd_pdrop > 0) {
    const dEmb = drop(rec, embdSite(w, sv.dropout), dx);
    rec.releaseAfterSubmit(dx);
    dx = dEmb;
  }
  const dWte = g.of(floatWeight(w.wte, "gpt2 backward")), dWpe = g.of(w.wpe);
  if (!sv.ids) accumulate(rec, dEmbeds!, dx);
  else if (dWte) embeddingBackward(rec, dx, sv.ids, dWte);
  if (dWpe) embeddingBackward(rec, dx, sv.posIds, dWpe);
  rec.releaseAfterSubmit(dx, ...sv.keep);
  return dEnc;
}
