/**
 * Training ClipCap: CLIP vision frozen (its `image_embeds` computed once per image), the mapping
 * network (Linear, Tanh, …, Linear) and GPT-2 trained. GPT-2 runs over `[prefix; caption]` as
 * input embeddings; the loss skips the prefix positions (−100), so the last prefix vector
 * predicts the first caption token as ClipCap's training script does
 * (`logits[:, prefix_length - 1 : -1]` against the caption).
 * @module
 */
import { WebcapError } from "../errors.ts";
import {
  CLIPCAP_CONFIG,
  CLIPCAP_VISION_DIR,
  type ClipCapConfig,
  clipCapConfig,
  loadProjection,
  openClipCapWeights,
} from "../arch/clipcap.ts";
import { readModelJson } from "../arch/model_json.ts";
import type { Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { asModelFiles, fileLocation, subFolder } from "../io/model_files.ts";
import { openWeights } from "../io/weights.ts";
import {
  clipVisionConfig,
  clipVisionEncode,
  type ClipVisionWeights,
  loadClipVision,
} from "../nn/clip_vision.ts";
import { type Gpt2Weights, loadGpt2 } from "../nn/gpt2.ts";
import { gpt2TrainBackward, gpt2TrainForward } from "../nn/gpt2_train.ts";
import { floatWeight } from "../shaders/quant/qmatrix.ts";
import { Gradients, linearBackward, type TrainDropout } from "../nn/grads.ts";
import { type Linear, linear } from "../nn/modules.ts";
import { type Param, ParamLoader } from "../nn/params.ts";
import { copy2d } from "../shaders/copy.ts";
import { unary, unaryBackward } from "../shaders/elementwise.ts";
import { embedding, embeddingBackward } from "../shaders/embedding.ts";
import { crossEntropy, IGNORE_INDEX } from "../shaders/softmax.ts";
import { lossOfRows, teacherForcing, type TokenBatch } from "./batch.ts";
import type { LossAndGrads } from "./vit_gpt2.ts";

/** ClipCap held for training (f32). */
export interface ClipCapTrain {
  config: ClipCapConfig;
  /** Frozen: only run once per image by {@link clipCapImageEmbeds}. */
  vision: ClipVisionWeights;
  /** The mapping network `prefix_size → prefix_length·n_embd`, Tanh between layers. */
  project: Linear[];
  gpt2: Gpt2Weights;
  /** Trainable: the mapping network and GPT-2. */
  params: Param[];
  /** Frozen: CLIP vision. */
  frozen: Param[];
  dispose(): void;
}

/** Load a ClipCap folder (`clipcap-config.json`, weights, `clip-vision/`) for training, in f32. */
export async function loadClipCapTrain(gpu: Gpu, dir: string): Promise<ClipCapTrain> {
  const files = asModelFiles(dir);
  const where = fileLocation(files, CLIPCAP_CONFIG);
  const cfg = clipCapConfig(await readModelJson(files, CLIPCAP_CONFIG), where);
  const visionFiles = subFolder(files, CLIPCAP_VISION_DIR);
  const vc = clipVisionConfig(
    await readModelJson(visionFiles, "config.json"),
    fileLocation(visionFiles, "config.json"),
  );
  if (vc.projection_dim !== cfg.prefixSize) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where}: prefix_size ${cfg.prefixSize} differs from the CLIP projection_dim ${vc.projection_dim}`,
    );
  }
  const loaders: ParamLoader[] = [];
  try {
    const vStore = await openWeights(visionFiles);
    loaders.push(new ParamLoader(gpu, vStore, "f32"));
    const vision = await loadClipVision(loaders[0], vc, visionFiles.source).finally(() =>
      vStore.close()
    );
    const store = await openClipCapWeights(files);
    loaders.push(new ParamLoader(gpu, store, "f32"));
    const p = loaders[1];
    const [project, gpt2] = await (async () =>
      [
        await loadProjection(p, cfg),
        await loadGpt2(p, cfg.gpt2, "gpt.transformer.", where, "gpt.lm_head.weight"),
      ] as const)().finally(() => store.close());
    return {
      config: cfg,
      vision,
      project,
      gpt2,
      params: p.params,
      frozen: loaders[0].params,
      dispose: () => loaders.forEach((l) => l.dispose()),
    };
  } catch (e) {
    loaders.forEach((l) => l.dispose());
    throw e;
  }
}

/** CLIP `image_embeds [N, prefix_size]` of `pixels [N, 3, H, W]`, computed once; the caller releases it. */
export async function clipCapImageEmbeds(
  gpu: Gpu,
  m: ClipCapTrain,
  pixels: Tensor,
): Promise<Tensor> {
  const rec = new Recorder(gpu);
  const out = clipVisionEncode(rec, m.vision, pixels);
  rec.releaseAfterSubmit(out.hidden);
  await rec.submit();
  return out.imageEmbeds;
}

/**
 * ClipCap's batch over `labels [N, T]` (one caption per image, −100 padding): row r is
 * `[prefix (L); caption tokens 0..T-2]`, `L − 1 + T` positions; ids are −1 at the L prefix
 * positions (filled from the mapping network), targets −100 before position L − 1, whose output
 * predicts token 0. Mean over the caption's tokens.
 */
export function clipCapBatch(labels: Int32Array, N: number, m: ClipCapTrain): TokenBatch {
  const c = m.config, L = c.prefixLength;
  const tf = teacherForcing(labels, N, {
    startId: -1,
    padId: c.padTokenId,
    vocab: c.gpt2.vocab_size,
  });
  const T = tf.T, S = L - 1 + T;
  const ids = new Int32Array(N * S).fill(-1), targets = new Int32Array(N * S).fill(IGNORE_INDEX);
  const weights = new Float32Array(N * S);
  for (let r = 0; r < N; r++) {
    for (let t = 0; t < T; t++) {
      const p = r * S + L - 1 + t, q = r * T + t;
      if (t > 0) ids[p] = tf.ids[q];
      targets[p] = tf.targets[q];
      weights[p] = tf.weights[q];
    }
  }
  return { R: N, T: S, ids, targets, weights, rowImage: tf.rowImage };
}

/** The mapping network forward, keeping each layer's input and each pre-Tanh output. */
function projectForward(rec: Recorder, m: ClipCapTrain, imageEmbeds: Tensor) {
  const inputs: Tensor[] = [], pre: Tensor[] = [];
  let x = imageEmbeds; // [N, prefix_size]
  m.project.forEach((l, i) => {
    inputs.push(x);
    x = linear(rec, x, l);
    if (i < m.project.length - 1) {
      pre.push(x);
      x = unary(rec, x, "tanh");
    }
  });
  rec.releaseAfterSubmit(...inputs.slice(1), ...pre);
  return { prefix: x, inputs, pre }; // prefix [N, L·h]
}

/** Backward of {@link projectForward} from `dPrefix [N, L·h]` (no gradient for the frozen embeds). */
function projectBackward(
  rec: Recorder,
  m: ClipCapTrain,
  s: { inputs: Tensor[]; pre: Tensor[] },
  dPrefix: Tensor,
  g: Gradients,
): void {
  let dy = dPrefix;
  for (let i = m.project.length - 1; i >= 0; i--) {
    const dx = linearBackward(rec, s.inputs[i], m.project[i], dy, g, { noDx: i === 0 });
    if (!dx) return;
    dy = unaryBackward(rec, s.pre[i - 1], dx, "tanh");
    rec.releaseAfterSubmit(dx, dy);
  }
}

/**
 * Record the loss and the gradient of every trainable parameter (mapping network, GPT-2) for
 * `batch` (from {@link clipCapBatch}) over `imageEmbeds [N, prefix_size]` into `g`, GPT-2's
 * dropouts applied when `dropout` is given. Every tensor
 * it makes, `rows [R·T, 2]` and `logits` included, is released after the submit.
 */
export function recordClipCapLoss(
  rec: Recorder,
  m: ClipCapTrain,
  imageEmbeds: Tensor,
  batch: TokenBatch,
  g: Gradients,
  dropout?: TrainDropout,
): { rows: Tensor; logits: Tensor } {
  const N = imageEmbeds.shape[0], { R, T } = batch, L = m.config.prefixLength;
  const h = m.gpt2.config.n_embd;
  if (R !== N || batch.ids.length !== R * T || imageEmbeds.size !== N * m.config.prefixSize) {
    throw new WebcapError(
      "BAD_SHAPE",
      `batch sizes disagree: ${R} captions of ${T} positions for image embeddings [${imageEmbeds.shape}]`,
    );
  }
  const up = <A extends Int32Array | Float32Array>(a: A, dtype: "i32" | "f32") =>
    rec.upload(a, [a.length], dtype);
  const ids = up(batch.ids, "i32");
  const proj = projectForward(rec, m, imageEmbeds);
  const embeds = embedding(rec, m.gpt2.wte, ids); // [R·T, h]; prefix rows are written next
  const prefixRows = { n: N, width: L * h, srcOff: 0, group: 1, dstOff: 0, dstInner: 0 };
  copy2d(rec, proj.prefix, embeds, { ...prefixRows, srcStride: L * h, dstOuter: T * h });
  const dec = gpt2TrainForward(rec, m.gpt2, { embeds }, R, T, undefined, dropout);
  const ce = crossEntropy(rec, dec.logits, up(batch.targets, "i32"), up(batch.weights, "f32"));
  const dEmbeds = uploadTensor(rec.gpu, new Float32Array(R * T * h), [R * T, h], "f32", "d-embeds");
  gpt2TrainBackward(rec, m.gpt2, dec.saved, ce.dLogits, g, false, dEmbeds);
  const dWte = g.of(floatWeight(m.gpt2.wte, "clipcap backward"));
  if (dWte) embeddingBackward(rec, dEmbeds, ids, dWte); // prefix ids −1 add nothing
  const dPrefix = rec.temp([N, L * h]);
  copy2d(rec, dEmbeds, dPrefix, { ...prefixRows, srcStride: T * h, dstOuter: L * h });
  projectBackward(rec, m, proj, dPrefix, g);
  rec.releaseAfterSubmit(embeds, dEmbeds, proj.prefix, dec.logits, ce.rows, ce.dLogits);
  return { rows: ce.rows, logits: dec.logits };
}

/**
 * Loss and the gradient of every trainable parameter (mapping network, GPT-2) for `batch`
 * (from {@link clipCapBatch}) over `imageEmbeds [N, prefix_size]`, in one submit (GPT-2's
 * dropouts with `dropout`).
 */
export async function clipCapLossAndGrads(
  gpu: Gpu,
  m: ClipCapTrain,
  imageEmbeds: Tensor,
  batch: TokenBatch,
  dropout?: TrainDropout,
): Promise<LossAndGrads> {
  const g = new Gradients(gpu, m.params);
  try {
    const rec = new Recorder(gpu);
    const out = recordClipCapLoss(rec, m, imageEmbeds, batch, g, dropout);
    const rows = rec.readTensor(out.rows), logits = rec.readTensor(out.logits);
    const grads = g.read(rec);
    await rec.submit();
    return {
      ...lossOfRows((await rows) as Float32Array),
      logits: (await logits) as Float32Array,
      grads: await grads,
    };
  } finally {
    g.dispose();
  }
}
