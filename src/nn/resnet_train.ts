/**
 * ResNet for training, as sgrvinod's `Encoder.fine_tune` does: the stem and the stages before
 * `from` (layer1 for `from` = 1) run frozen, without a backward; the stages from `from` on keep
 * every activation their backward needs (each conv's input and output, each BatchNorm's output
 * after its residual and ReLU) and their backward fills a {@link Gradients} with the convs' and
 * the BatchNorms' weight and bias gradients.
 *
 * BatchNorm runs as in eval mode: the running statistics normalize, stay frozen and are not
 * updated (γ and β train). sgrvinod's `train.py` calls `encoder.train()`, which normalizes by the
 * batch's statistics and moves the running ones; here the frozen statistics keep a batch's
 * features independent of the other images in it, the same as at inference, as in the frozen
 * BatchNorm of torchvision's detection models.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { Activation } from "../shaders/activations.ts";
import { batchNorm2d, batchNorm2dBackward } from "../shaders/batchnorm.ts";
import { conv2d, conv2dBackward } from "../shaders/conv2d.ts";
import { unaryBackward } from "../shaders/elementwise.ts";
import { adaptiveAvgPool2d, adaptiveAvgPool2dBackward } from "../shaders/pool.ts";
import type { Gradients } from "./grads.ts";
import type { BottleneckWeights, ConvBn, ResNetWeights } from "./resnet.ts";
import { resnetStages } from "./resnet.ts";

/** One conv + BatchNorm (+ residual, activation) as the forward left it. */
interface SavedConvBn {
  x: Tensor; // [N, Cin, H, W] the conv's input
  y: Tensor; // [N, Cout, Ho, Wo] the conv's output
  out: Tensor; // [N, Cout, Ho, Wo] act(bn(y) + residual)
  act: Activation;
}

interface SavedBlock {
  conv1: SavedConvBn;
  conv2: SavedConvBn;
  conv3: SavedConvBn;
  downsample?: SavedConvBn;
}

/** What {@link resnetTrainForward} kept for {@link resnetTrainBackward}. */
export interface ResNetSaved {
  /** The first trained stage. */
  from: number;
  blocks: SavedBlock[];
  /** `[N, C, h, w]`: the last block's output, before the pooling. */
  last: Tensor;
}

/** The trained stages' blocks, in order. */
function trainedBlocks(w: ResNetWeights, from: number): BottleneckWeights[] {
  return w.stages.slice(from).flat();
}

function convBnTrain(
  rec: Recorder,
  u: ConvBn,
  x: Tensor,
  act: Activation,
  residual?: Tensor,
): SavedConvBn {
  const y = conv2d(rec, x, u.weight, { stride: u.stride, padding: u.padding });
  return { x, y, out: batchNorm2d(rec, y, u.bn!, { act, residual }), act };
}

function blockTrain(rec: Recorder, b: BottleneckWeights, x: Tensor): SavedBlock {
  const downsample = b.downsample && convBnTrain(rec, b.downsample, x, "none");
  const conv1 = convBnTrain(rec, b.conv1, x, "relu");
  const conv2 = convBnTrain(rec, b.conv2, conv1.out, "relu");
  const conv3 = convBnTrain(rec, b.conv3, conv2.out, "relu", downsample?.out ?? x);
  return { conv1, conv2, conv3, downsample };
}

/**
 * Record the encoder for training: pixels `[N, 3, H, W]` → features `[N, encodedImageSize², C]`
 * (as `resnetEncode`) and what the backward of stages `from`… needs. Everything is the caller's
 * scope's (one forward and backward per submit).
 */
export function resnetTrainForward(
  rec: Recorder,
  w: ResNetWeights,
  pixels: Tensor,
  from: number,
): { features: Tensor; saved: ResNetSaved } {
  if (!(Number.isInteger(from) && from >= 0 && from < w.stages.length)) {
    throw new WebcapError(
      "BAD_OPTION",
      `the first ResNet stage to train is ${from}: want one of 0…${w.stages.length - 1}`,
    );
  }
  if (trainedBlocks(w, from).some((b) => !b.conv1.bn)) {
    throw new WebcapError(
      "BAD_OPTION",
      `ResNet stage ${from} has its BatchNorms folded: load with keepBatchNormFrom ≤ ${from} to train it`,
    );
  }
  let x = resnetStages(rec, w, pixels, from); // frozen: no backward
  const blocks = trainedBlocks(w, from).map((b) => {
    const s = blockTrain(rec, b, x);
    x = s.conv3.out;
    return s;
  });
  const features = adaptiveAvgPool2d(rec, x, w.config.encodedImageSize, { channelsLast: true });
  return { features, saved: { from, blocks, last: x } };
}

/**
 * Backward of one conv + BatchNorm from the gradient of its output: accumulates the conv's weight
 * and the BatchNorm's γ, β gradients (unless frozen); returns the gradient before the BatchNorm's
 * residual add (what the residual receives) and the conv's dX (+ `residual`) unless `noDx`.
 */
function convBnBackward(
  rec: Recorder,
  u: ConvBn,
  s: SavedConvBn,
  dOut: Tensor,
  g: Gradients,
  dx: { residual?: Tensor; noDx?: boolean } = {},
): { dSum: Tensor; dX?: Tensor } {
  const bn = u.bn!;
  // relu'(pre) = relu'(out): out > 0 exactly where pre > 0
  const dSum = s.act === "none" ? dOut : unaryBackward(rec, s.out, dOut, s.act);
  const dY = batchNorm2dBackward(rec, s.y, bn, dSum, {
    dGamma: g.of(bn.weight),
    dBeta: g.of(bn.bias),
  });
  const geo = { stride: u.stride, padding: u.padding };
  const dX = conv2dBackward(rec, s.x, u.weight, dY, { dW: g.of(u.weight) }, { ...geo, ...dx });
  return { dSum, dX };
}

/** Backward of one block from the gradient of its output; its input's gradient unless `noDx`. */
function blockBackward(
  rec: Recorder,
  b: BottleneckWeights,
  s: SavedBlock,
  dOut: Tensor,
  g: Gradients,
  noDx: boolean,
): Tensor | undefined {
  const c3 = convBnBackward(rec, b.conv3, s.conv3, dOut, g);
  const c2 = convBnBackward(rec, b.conv2, s.conv2, c3.dX!, g);
  if (!b.downsample) {
    // the identity shortcut: x receives conv3's pre-activation gradient as it is
    return convBnBackward(rec, b.conv1, s.conv1, c2.dX!, g, { residual: c3.dSum, noDx }).dX;
  }
  const main = convBnBackward(rec, b.conv1, s.conv1, c2.dX!, g, { noDx });
  const dx = { residual: main.dX, noDx };
  return convBnBackward(rec, b.downsample, s.downsample!, c3.dSum, g, dx).dX;
}

/**
 * Backward of {@link resnetTrainForward} from the features' gradient `dFeatures [N, P, C]`:
 * accumulates every trained stage's gradients into `g` (frozen parameters skipped); nothing
 * reaches the frozen stages.
 */
export function resnetTrainBackward(
  rec: Recorder,
  w: ResNetWeights,
  saved: ResNetSaved,
  dFeatures: Tensor,
  g: Gradients,
): void {
  const size = w.config.encodedImageSize;
  let d = adaptiveAvgPool2dBackward(rec, dFeatures, saved.last.shape, size, {
    channelsLast: true,
  });
  const blocks = trainedBlocks(w, saved.from);
  for (let i = blocks.length - 1; i >= 0; i--) {
    const dx = blockBackward(rec, blocks[i], saved.blocks[i], d, g, i === 0);
    if (dx) d = dx;
  }
}
