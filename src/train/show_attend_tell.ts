/**
 * Training Show-Attend-Tell as sgrvinod's `train.py` does: the encoder frozen (its features
 * computed once per image), or with `fine_tune_encoder` its ResNet's stages 2–4 training too
 * (`src/nn/resnet_train.ts`: the stem and layer1 frozen, BatchNorm on its running statistics);
 * teacher forcing over `[start; caption]`, the LSTM run for the longest caption with each row's
 * steps past its own length masked (what sorting by length and `batch_size_t` do), loss = mean
 * next-word cross-entropy over the caption tokens + `alpha_c·((1 − Σ_t α)²).mean()` over rows and
 * pixels. Dropout (`dropout` in config.json, default
 * 0.5 as `DecoderWithAttention`) of h before `fc` when a dropout key is given.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { readModelJson } from "../arch/model_json.ts";
import { configRate } from "../nn/config.ts";
import {
  loadSatDecoder,
  type SatDecoderWeights,
  type ShowAttendTellConfig,
  showAttendTellConfig,
} from "../arch/show_attend_tell.ts";
import type { Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { asModelFiles, fileLocation } from "../io/model_files.ts";
import { openWeights } from "../io/weights.ts";
import { drop, Gradients, linearBackward, type TrainDropout } from "../nn/grads.ts";
import { linear } from "../nn/modules.ts";
import { type Param, ParamLoader } from "../nn/params.ts";
import { loadResNet, resnetEncode, type ResNetWeights } from "../nn/resnet.ts";
import { resnetTrainBackward, resnetTrainForward } from "../nn/resnet_train.ts";
import { copy2d } from "../shaders/copy.ts";
import { unary, unaryBackward } from "../shaders/elementwise.ts";
import { embedding, embeddingBackward } from "../shaders/embedding.ts";
import { lstmCell, lstmCellBackward } from "../shaders/lstm.ts";
import { columnSum } from "../shaders/matmul.ts";
import { meanAxis1, meanAxis1Backward } from "../shaders/reduce.ts";
import { crossEntropy } from "../shaders/softmax.ts";
import {
  attentionCoverage,
  softAttention,
  type SoftAttentionArgs,
  softAttentionBackward,
  softAttentionDFeatures,
} from "../shaders/soft_attention.ts";
import { lossOfRows, teacherForcing, type TokenBatch } from "./batch.ts";
import type { EncoderInput } from "./vision_text.ts";
import type { LossAndGrads } from "./vit_gpt2.ts";

/** Show-Attend-Tell held for training (f32). */
export interface SatTrain {
  config: ShowAttendTellConfig;
  /** Weight λ of the doubly stochastic attention term (`alpha_c` in config.json, default 1). */
  alphaC: number;
  /** Dropout rate of h before `fc` while training (`dropout`, default 0.5). */
  dropout: number;
  /** Run once per image by {@link satFeatures} when frozen; stages 2–4 train with `trainEncoder`. */
  resnet: ResNetWeights;
  /** The first ResNet stage that trains ({@link SAT_FIRST_TRAINED_STAGE}); absent: frozen whole. */
  encoderFrom?: number;
  decoder: SatDecoderWeights;
  /** Trainable: the decoder, and with `trainEncoder` the ResNet's stages 2–4. */
  params: Param[];
  /** Frozen: the rest of the ResNet (folded BatchNorms, running statistics). */
  frozen: Param[];
  dispose(): void;
}

/**
 * The first ResNet stage that trains with the encoder, layer2 (index 1; the later ones train too):
 * `Encoder.fine_tune` trains `resnet.children()[5:]`, `encoder.resnet.5.` (layer2) to `.7.`.
 */
export const SAT_FIRST_TRAINED_STAGE = 1;

/** Options of {@link loadSatTrain}. */
export interface LoadSatTrainOptions {
  /** Load the ResNet's stages 2–4 trainable, their BatchNorms unfolded (default false: all folded, frozen). */
  trainEncoder?: boolean;
}

/** Load a Show-Attend-Tell folder for training, in f32. */
export async function loadSatTrain(
  gpu: Gpu,
  dir: string,
  opts: LoadSatTrainOptions = {},
): Promise<SatTrain> {
  const files = asModelFiles(dir);
  const where = fileLocation(files, "config.json");
  const json = await readModelJson(files, "config.json");
  const config = showAttendTellConfig(json, where);
  const alphaC = json.alpha_c ?? 1;
  if (typeof alphaC !== "number" || !(alphaC >= 0) || !Number.isFinite(alphaC)) {
    throw new WebcapError("BAD_CONFIG", `${where}: "alpha_c" must be a number ≥ 0`);
  }
  const dropout = configRate(json, "dropout", where, 0.5);
  const store = await openWeights(files);
  const p = new ParamLoader(gpu, store, "f32");
  try {
    const encoderFrom = opts.trainEncoder ? SAT_FIRST_TRAINED_STAGE : undefined;
    const resnet = await loadResNet(p, "encoder.resnet", config.resnet, {
      keepBatchNormFrom: encoderFrom,
    });
    const decoder = await loadSatDecoder(p, config);
    // folded BatchNorms and running statistics are not trainable
    const mine = (q: Param) =>
      q.trainable && (q.name.startsWith("decoder.") || !!opts.trainEncoder);
    return {
      config,
      alphaC,
      dropout,
      resnet,
      encoderFrom,
      decoder,
      params: p.params.filter(mine),
      frozen: p.params.filter((q) => !mine(q)),
      dispose: () => p.dispose(),
    };
  } catch (e) {
    p.dispose();
    throw e;
  } finally {
    store.close();
  }
}

/** Frozen encoder features `[N, pixels, C]` of `pixels [N, 3, H, W]`; the caller releases them. */
export async function satFeatures(gpu: Gpu, m: SatTrain, pixels: Tensor): Promise<Tensor> {
  const rec = new Recorder(gpu);
  const out = resnetEncode(rec, m.resnet, pixels);
  await rec.submit();
  return out;
}

/**
 * The batch of `labels [N, T]`: each caption's words then the end token, −100 after it (the
 * caption less its start token, sgrvinod's `caps[:, 1:]`); inputs are the start token then the
 * labels (teacher forcing), so row r decodes as many steps as it has labels.
 */
export function satBatch(labels: Int32Array, N: number, m: SatTrain): TokenBatch {
  const c = m.config;
  return teacherForcing(labels, N, {
    startId: c.startTokenId,
    padId: c.padTokenId,
    vocab: c.vocabSize,
  });
}

/** What one step kept for the backward. */
interface SavedStep {
  h: Tensor; // [R, Hd] state before the step
  c: Tensor;
  decAtt: Tensor; // [R, A]
  gatePre: Tensor; // [R, C] before the sigmoid
  gate: Tensor;
  x: Tensor; // [R, E + C] LSTM input [embedding; z]
  gates: Tensor; // [R, 4Hd]
}

/** Loss and gradients, with the two terms of the loss apart. */
export interface SatLossAndGrads extends LossAndGrads {
  /** Mean next-word cross-entropy. */
  ce: number;
  /** `alpha_c·((1 − Σ_t α)²).mean()`. */
  attention: number;
  /** The gradient of the features `[N, pixels, C]`, when asked. */
  dFeatures?: Float32Array;
}

interface Ctx {
  rec: Recorder;
  m: SatTrain;
  R: number;
  T: number;
  P: number;
  enc: Tensor; // [N·P, C]
  encAtt: Tensor; // [N·P, A]
  rowImage: Tensor; // i32 [R]
  alpha: Tensor; // [R, T, P]
}

/** Soft-attention operands of step t. */
function attnArgs(
  c: Ctx,
  s: Pick<SavedStep, "decAtt" | "gate">,
  t: number,
): Omit<SoftAttentionArgs, "z"> {
  return {
    encAtt: c.encAtt,
    decAtt: s.decAtt,
    wFull: c.m.decoder.fullAtt,
    enc: c.enc,
    gate: s.gate,
    rowImage: c.rowImage,
    pixels: c.P,
    alpha: { t: c.alpha, offset: t * c.P, rowStride: c.T * c.P },
  };
}

/** Step t forward: attention, gate, LSTM cell; writes h' into row t of `hs [R·T, Hd]`. */
function stepForward(c: Ctx, emb: Tensor, hs: Tensor, h: Tensor, cell: Tensor, t: number) {
  const { rec, R, T } = c, w = c.m.decoder, { embedDim: E, encoderDim: C } = c.m.config;
  const H = c.m.config.decoderDim;
  const x = rec.output([R, E + C]);
  copy2d(rec, emb, x, rowsOf(R, E, t * E, T * E, 0, E + C));
  const decAtt = linear(rec, h, w.decAtt);
  const gatePre = linear(rec, h, w.fBeta);
  const gate = unary(rec, gatePre, "sigmoid");
  const args = attnArgs(c, { decAtt, gate }, t);
  softAttention(rec, { ...args, z: { t: x, offset: E, rowStride: E + C } });
  const gates = linear(rec, h, w.whh, { residual: linear(rec, x, w.wih) });
  const next = lstmCell(rec, gates, cell);
  const s: SavedStep = { h, c: cell, decAtt, gatePre, gate, x, gates };
  copy2d(rec, next.h, hs, rowsOf(R, H, 0, H, t * H, T * H));
  return { s, next };
}

/** A copy2d of R rows of `width` from `src[srcOff + r·srcStride]` to `dst[dstOff + r·dstStride]`. */
function rowsOf(
  R: number,
  width: number,
  srcOff: number,
  srcStride: number,
  dstOff: number,
  dstStride: number,
) {
  return { n: R, width, srcOff, srcStride, group: 1, dstOff, dstOuter: dstStride, dstInner: 0 };
}

/** Where the backward of every step accumulates: the embeddings' and `encAtt`'s gradients. */
interface StepGrads {
  dEmb: Tensor; // [R·T, E], row r·T + t written by step t
  dEncAtt: Tensor; // [N, P·A], summed over rows and steps
  dAlpha: Tensor; // [R, T, P] from the attention term
  dEnc?: Tensor; // [N, P, C] through z, summed over rows and steps (when the encoder trains)
}

/**
 * Step t backward from `dh` (of h', with the logits' share) and `dc` (of c'; none at the last
 * step): accumulates the step's parameter gradients; returns dh and dc of the state before it,
 * `below` (the logits' share of that state, `[R, Hd]`) added to dh.
 */
function stepBackward(
  c: Ctx,
  s: SavedStep,
  t: number,
  d: { h: Tensor; c?: Tensor; below?: Tensor },
  out: StepGrads,
  g: Gradients,
): { h: Tensor; c: Tensor } {
  const { rec, R, T } = c, w = c.m.decoder, { embedDim: E, encoderDim: C } = c.m.config;
  const { dGates, dC } = lstmCellBackward(rec, s.gates, s.c, d.h, d.c);
  const dx = linearBackward(rec, s.x, w.wih, dGates, g)!; // [R, E + C]
  copy2d(rec, dx, out.dEmb, rowsOf(R, E, 0, E + C, t * E, T * E));
  const dZ = { t: dx, offset: E, rowStride: E + C };
  const ga = softAttentionBackward(rec, { ...attnArgs(c, s, t), dZ, dAlpha: out.dAlpha });
  if (out.dEnc) softAttentionDFeatures(rec, { ...attnArgs(c, s, t), dZ }, out.dEnc);
  embeddingBackward(rec, ga.dEncAtt, c.rowImage, out.dEncAtt);
  const dFull = g.of(w.fullAtt);
  if (dFull) columnSum(rec, ga.dWFull, dFull);
  const dGatePre = unaryBackward(rec, s.gatePre, ga.dGate, "sigmoid");
  let dh = linearBackward(rec, s.h, w.whh, dGates, g, { residual: d.below })!;
  dh = linearBackward(rec, s.h, w.fBeta, dGatePre, g, { residual: dh })!;
  dh = linearBackward(rec, s.h, w.decAtt, ga.dDecAtt, g, { residual: dh })!;
  return { h: dh, c: dC };
}

/** The state of every row at step 0: `init_h/init_c(mean_p(features))` gathered by image. */
function initState(c: Ctx, features: Tensor) {
  const { rec } = c, w = c.m.decoder, [N, P, C] = features.shape;
  const mean = rec.output([N, C]);
  meanAxis1(rec, features, N, P, C, mean, 0);
  const h0 = linear(rec, mean, w.initH), c0 = linear(rec, mean, w.initC); // [N, Hd]
  return { mean, h: embedding(rec, h0, c.rowImage), c: embedding(rec, c0, c.rowImage) };
}

/**
 * Backward of {@link initState} from the rows' dh and dc; with `dEnc [N, P, C]` (the encoder
 * trains) adds the features' share through the mean over pixels to it.
 */
function initStateBackward(
  c: Ctx,
  mean: Tensor,
  d: { h: Tensor; c: Tensor },
  g: Gradients,
  dEnc?: Tensor,
): void {
  const { rec } = c, w = c.m.decoder, N = mean.shape[0], H = c.m.config.decoderDim;
  let dMean: Tensor | undefined; // [N, C]
  for (const [dRows, l] of [[d.h, w.initH], [d.c, w.initC]] as const) {
    const dImg = rec.upload(new Float32Array(N * H), [N, H], "f32");
    embeddingBackward(rec, dRows, c.rowImage, dImg);
    dMean = linearBackward(rec, mean, l, dImg, g, { noDx: !dEnc, residual: dMean });
  }
  if (dEnc) meanAxis1Backward(rec, dMean!, dEnc, c.P);
}

/** What {@link recordSatLoss} leaves for reading and for the encoder's backward. */
export interface RecordedSatLoss {
  /** `[R·T, 2]`: log p(target) and weight·loss of each position. */
  rows: Tensor;
  /** `[R, P]`: the attention term's share of each row and pixel (to sum). */
  terms: Tensor;
  /** `[R·T, vocab]`. */
  logits: Tensor;
  /** `[N, P, C]`: the loss's gradient of the features (asked with `dFeatures`). */
  dFeatures?: Tensor;
}

/** Refuse an input that this model cannot take: misshaped features, or pixels to a frozen ResNet. */
function checkInput(m: SatTrain, input: EncoderInput): number {
  if ("pixels" in input) {
    if (m.encoderFrom === undefined) {
      throw new WebcapError(
        "BAD_OPTION",
        "the ResNet is frozen (loaded without trainEncoder): give its features, not pixels",
      );
    }
    return input.pixels.shape[0];
  }
  const features = input.states, cfg = m.config;
  if (features.shape.length !== 3 || features.shape[2] !== cfg.encoderDim) {
    throw new WebcapError(
      "BAD_SHAPE",
      `features [${features.shape}] are not [images, pixels, ${cfg.encoderDim}]`,
    );
  }
  return features.shape[0];
}

/**
 * Record the loss and the gradient of every trained parameter for `batch` (from {@link satBatch})
 * into `g`, over encoder features `states [N, pixels, C]` (from {@link satFeatures}) or, when the
 * ResNet trains, over `pixels [N, 3, H, W]` (its stages 2–4 back-propagated); with dropout
 * before `fc` when `dropout` is given, and with `dFeatures` (features given) the gradient of the
 * features (through the attention's context, `encoder_att` and the mean that starts the LSTM).
 * Everything returned is released after the submit.
 */
export function recordSatLoss(
  rec: Recorder,
  m: SatTrain,
  input: EncoderInput,
  batch: TokenBatch,
  g: Gradients,
  dropout?: TrainDropout,
  dFeatures = false,
): RecordedSatLoss {
  const N = checkInput(m, input), { R, T } = batch;
  if (batch.rowImage.some((i) => !(i >= 0 && i < N)) || batch.ids.length !== R * T) {
    throw new WebcapError(
      "BAD_SHAPE",
      `batch sizes disagree: ${R} captions (rows naming images ${batch.rowImage}) for ${N} images`,
    );
  }
  const res = rec.scope(() => record({ rec, m, input, batch, g, dropout, dFeatures }));
  rec.releaseAfterSubmit(res.rows, res.terms, res.logits);
  if (res.dFeatures) rec.releaseAfterSubmit(res.dFeatures);
  return res;
}

/**
 * Loss and the gradient of every trained parameter for `batch` (from {@link satBatch}) over
 * `input` (as {@link recordSatLoss}), in one submit (dropout before `fc` with `dropout`; the
 * features' gradient too with `dFeatures`).
 */
export async function satLossAndGrads(
  gpu: Gpu,
  m: SatTrain,
  input: EncoderInput,
  batch: TokenBatch,
  dropout?: TrainDropout,
  dFeatures = false,
): Promise<SatLossAndGrads> {
  const g = new Gradients(gpu, m.params);
  try {
    const rec = new Recorder(gpu);
    const res = recordSatLoss(rec, m, input, batch, g, dropout, dFeatures);
    const rows = rec.readTensor(res.rows), terms = rec.readTensor(res.terms);
    const dF = res.dFeatures && rec.readTensor(res.dFeatures);
    const logits = rec.readTensor(res.logits);
    const grads = g.read(rec);
    await rec.submit();
    const { loss: ce, logprobs } = lossOfRows((await rows) as Float32Array);
    const attention = ((await terms) as Float32Array).reduce((a, b) => a + b, 0);
    return {
      loss: ce + attention,
      ce,
      attention,
      logprobs,
      logits: (await logits) as Float32Array,
      grads: await grads,
      dFeatures: dF && (await dF) as Float32Array,
    };
  } finally {
    g.dispose();
  }
}

/** The arguments of {@link recordSatLoss}, checked. */
interface SatLossArgs {
  rec: Recorder;
  m: SatTrain;
  input: EncoderInput;
  batch: TokenBatch;
  g: Gradients;
  dropout?: TrainDropout;
  dFeatures: boolean;
}

/** Forward and backward, recorded in one scope (the ResNet's too over pixels); returns what is read back. */
function record(a: SatLossArgs): RecordedSatLoss {
  if (!("pixels" in a.input)) return recordDecoder(a, a.input.states, a.dFeatures);
  const { rec, m, g } = a;
  const enc = resnetTrainForward(rec, m.resnet, a.input.pixels, m.encoderFrom!);
  const res = recordDecoder(a, enc.features, true);
  resnetTrainBackward(rec, m.resnet, enc.saved, res.dFeatures!, g);
  return res;
}

/** The decoder's forward and backward over `features [N, P, C]`. */
function recordDecoder(
  { rec, m, batch, g, dropout }: SatLossArgs,
  features: Tensor,
  dFeatures: boolean,
): RecordedSatLoss {
  const [N, P, C] = features.shape, { R, T } = batch, w = m.decoder;
  const { embedDim: E, decoderDim: H, attentionDim: A } = m.config;
  const enc = features.view([N * P, C]);
  const c: Ctx = {
    rec,
    m,
    R,
    T,
    P,
    enc,
    encAtt: linear(rec, enc, w.encAtt),
    rowImage: rec.upload(batch.rowImage, [R], "i32"),
    alpha: rec.output([R, T, P]),
  };
  const ids = rec.upload(batch.ids, [R * T], "i32");
  const targets = rec.upload(batch.targets, [R * T], "i32");
  const init = initState(c, features);
  const emb = embedding(rec, w.embedding, ids); // [R·T, E]
  const hs = rec.output([R * T, H]);
  const steps: SavedStep[] = [];
  let state = { h: init.h, c: init.c };
  for (let t = 0; t < T; t++) {
    const { s, next } = stepForward(c, emb, hs, state.h, state.c, t);
    steps.push(s);
    state = next;
  }
  const fcSite = { d: dropout, p: m.dropout, site: 4 << 20 };
  const hsDrop = drop(rec, fcSite, hs);
  const logits = linear(rec, hsDrop, w.fc); // [R·T, V]
  const ce = crossEntropy(rec, logits, targets, rec.upload(batch.weights, [R * T], "f32"));
  const cov = attentionCoverage(rec, c.alpha, targets, m.alphaC / (R * P));
  const dhs = drop(rec, fcSite, linearBackward(rec, hsDrop, w.fc, ce.dLogits, g)!); // [R·T, Hd]
  const rowOf = (t: number) => {
    const d = rec.output([R, H]);
    copy2d(rec, dhs, d, rowsOf(R, H, t * H, T * H, 0, H));
    return d;
  };
  const out: StepGrads = {
    dEmb: rec.output([R * T, E]),
    dEncAtt: rec.upload(new Float32Array(N * P * A), [N, P * A], "f32"),
    dAlpha: cov.dAlpha,
    dEnc: dFeatures ? rec.upload(new Float32Array(N * P * C), [N, P, C], "f32") : undefined,
  };
  let d: { h: Tensor; c?: Tensor } = { h: rowOf(T - 1) };
  for (let t = T - 1; t >= 0; t--) {
    const below = t > 0 ? rowOf(t - 1) : undefined;
    d = stepBackward(c, steps[t], t, { ...d, below }, out, g);
  }
  initStateBackward(c, init.mean, { h: d.h, c: d.c! }, g, out.dEnc);
  const dEnc = linearBackward(rec, enc, w.encAtt, out.dEncAtt.view([N * P, A]), g, {
    noDx: !dFeatures,
    residual: out.dEnc?.view([N * P, C]),
  });
  const dEmb = g.of(w.embedding);
  if (dEmb) embeddingBackward(rec, out.dEmb, ids, dEmb);
  return { rows: ce.rows, terms: cov.terms, logits, dFeatures: dEnc?.view([N, P, C]) };
}
