/**
 * ResNet encoder with Bottleneck blocks in torchvision's layout ("ResNet v1.5": the stride sits
 * on the 3×3 conv), as Show-Attend-Tell keeps it: `<prefix>.{0..7}` = conv 7×7/2, BatchNorm,
 * ReLU, max-pool 3×3/2 pad 1, then one `nn.Sequential` of blocks per stage; followed by adaptive
 * average pooling to `encodedImageSize`² and laid out `[N, pixels, C]`.
 * By default each BatchNorm is folded into its conv on the host at load time, so a block is three
 * conv dispatches (the last one adds the shortcut and applies ReLU) plus the downsample conv;
 * folded parameters are frozen and hold the folded values (see {@link loadConvBn}).
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { Activation } from "../shaders/activations.ts";
import {
  batchNorm2d,
  type BatchNormHost,
  type BatchNormWeights,
  foldBatchNorm,
} from "../shaders/batchnorm.ts";
import { conv2d } from "../shaders/conv2d.ts";
import { adaptiveAvgPool2d, maxPool2d } from "../shaders/pool.ts";
import type { Conv2d, Module } from "./modules.ts";
import type { ParamLoader } from "./params.ts";

/** The shape of a Bottleneck ResNet. ResNet-101: stem 64, layers [3, 4, 23, 3], planes [64, 128, 256, 512]. */
export interface ResNetConfig {
  /** Channels of the 7×7 stem conv. */
  stemChannels: number;
  /** Blocks per stage. */
  layers: number[];
  /** Bottleneck width per stage; a stage outputs 4·planes channels. */
  planes: number[];
  /** Stride of each stage's first block. */
  strides: number[];
  /** Side of the adaptive average pool's output grid. */
  encodedImageSize: number;
  /** BatchNorm epsilon. */
  bnEps: number;
}

/** Bottleneck output channels per `planes`. */
export const BOTTLENECK_EXPANSION = 4;

/**
 * Read a ResNet config from a Show-Attend-Tell style `config.json`: `stem_channels` (default 64),
 * `resnet_layers`, `resnet_planes`, `resnet_strides` (default [1, 2, 2, 2]), `encoded_image_size`,
 * and, when present, `encoder_dim` (checked to be 4 · the last planes).
 */
export function resNetConfig(c: Record<string, unknown>, where: string): ResNetConfig {
  const bad = (msg: string) => new WebcapError("BAD_CONFIG", `${where}: ${msg}`);
  const ints = (k: string, d?: number[]): number[] => {
    const v = c[k] ?? d;
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => Number.isInteger(x) && x >= 1)) {
      throw bad(`"${k}" must be a list of positive integers, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const int = (k: string, d?: number): number => {
    const v = c[k] ?? d;
    if (!Number.isInteger(v) || (v as number) < 1) {
      throw bad(`"${k}" must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v as number;
  };
  const cfg: ResNetConfig = {
    stemChannels: int("stem_channels", 64),
    layers: ints("resnet_layers"),
    planes: ints("resnet_planes"),
    strides: ints("resnet_strides", [1, 2, 2, 2]),
    encodedImageSize: int("encoded_image_size"),
    bnEps: 1e-5,
  };
  if (cfg.planes.length !== cfg.layers.length || cfg.strides.length !== cfg.layers.length) {
    throw bad(`resnet_layers, resnet_planes and resnet_strides must have one entry per stage`);
  }
  const dim = cfg.planes.at(-1)! * BOTTLENECK_EXPANSION;
  if (c.encoder_dim !== undefined && c.encoder_dim !== dim) {
    throw bad(
      `encoder_dim ${c.encoder_dim} is not ${BOTTLENECK_EXPANSION} × the last resnet_planes (${dim})`,
    );
  }
  return cfg;
}

/** A conv followed by a BatchNorm: folded into the conv's weight and bias, or kept as `bn`. */
export interface ConvBn extends Conv2d {
  bn?: BatchNormWeights; // when not folded
}

/** One Bottleneck block. */
export interface BottleneckWeights {
  conv1: ConvBn; // 1×1 → planes
  conv2: ConvBn; // 3×3 (stride) → planes
  conv3: ConvBn; // 1×1 → 4·planes
  downsample?: ConvBn; // 1×1 (stride) → 4·planes
}

/** ResNet encoder weights on the GPU. */
export interface ResNetWeights extends Module {
  config: ResNetConfig;
  stem: ConvBn;
  /** Blocks per stage. */
  stages: BottleneckWeights[][];
}

/** Options of {@link loadResNet}. */
export interface LoadResNetOptions {
  /** Fold each BatchNorm into its conv (default true). */
  foldBatchNorm?: boolean;
  /**
   * Keep the BatchNorms of the stages from this index on as stored, folding the stem's and the
   * earlier stages' (e.g. 1: layer2–4 can train; default: every stage as `foldBatchNorm` says).
   */
  keepBatchNormFrom?: number;
}

/** BatchNorm `name`'s four `[C]` tensors on the host. */
async function bnHost(
  p: ParamLoader,
  name: string,
  C: number,
  eps: number,
): Promise<BatchNormHost> {
  return {
    weight: await p.read(`${name}.weight`, [C]),
    bias: await p.read(`${name}.bias`, [C]),
    runningMean: await p.read(`${name}.running_mean`, [C]),
    runningVar: await p.read(`${name}.running_var`, [C]),
    eps,
  };
}

/**
 * Conv `convName` (no bias) followed by BatchNorm `bnName`. Folded, the parameters are the folded
 * weight (as `<conv>.weight`) and bias (as `<bn>.bias`), frozen; the BatchNorm's weight and
 * running statistics are folded in and not held. Kept, every tensor is held as stored, the
 * running statistics frozen.
 */
async function loadConvBn(
  p: ParamLoader,
  fold: boolean,
  convName: string,
  bnName: string,
  shape: [number, number, number, number],
  stride: number,
  eps: number,
): Promise<ConvBn> {
  const w = await p.read(`${convName}.weight`, shape);
  const bn = await bnHost(p, bnName, shape[0], eps);
  const padding = (shape[2] - 1) >> 1;
  const C = [shape[0]];
  return await p.owning(() => {
    if (fold) {
      const f = foldBatchNorm(w, undefined, bn);
      return {
        weight: p.upload(f.weight, shape, [`${convName}.weight`], "matrix", false),
        bias: p.upload(f.bias, C, [`${bnName}.bias`], "f32", false),
        stride,
        padding,
      };
    }
    return {
      weight: p.upload(w, shape, [`${convName}.weight`], "matrix"),
      bn: {
        weight: p.upload(bn.weight, C, [`${bnName}.weight`], "f32"),
        bias: p.upload(bn.bias, C, [`${bnName}.bias`], "f32"),
        runningMean: p.upload(bn.runningMean, C, [`${bnName}.running_mean`], "f32", false),
        runningVar: p.upload(bn.runningVar, C, [`${bnName}.running_var`], "f32", false),
        eps,
      },
      stride,
      padding,
    };
  });
}

async function loadBlock(
  p: ParamLoader,
  fold: boolean,
  name: string,
  [inC, planes, stride]: [number, number, number],
  eps: number,
): Promise<BottleneckWeights> {
  const outC = planes * BOTTLENECK_EXPANSION;
  const convBn = (i: number, shape: [number, number, number, number], s: number) =>
    loadConvBn(p, fold, `${name}.conv${i}`, `${name}.bn${i}`, shape, s, eps);
  return {
    conv1: await convBn(1, [planes, inC, 1, 1], 1),
    conv2: await convBn(2, [planes, planes, 3, 3], stride),
    conv3: await convBn(3, [outC, planes, 1, 1], 1),
    downsample: stride !== 1 || inC !== outC
      ? await loadConvBn(
        p,
        fold,
        `${name}.downsample.0`,
        `${name}.downsample.1`,
        [outC, inC, 1, 1],
        stride,
        eps,
      )
      : undefined,
  };
}

/**
 * Load a ResNet encoder: `<prefix>.0` stem conv, `<prefix>.1` its BatchNorm, `<prefix>.{4+s}.{b}`
 * the blocks of stage `s` (e.g. prefix `encoder.resnet`). Conv weights are stored in the
 * loader's matrix dtype.
 * @throws WebcapError BAD_WEIGHTS naming a missing, misshaped or non-finite tensor.
 */
export function loadResNet(
  p: ParamLoader,
  prefix: string,
  config: ResNetConfig,
  opts: LoadResNetOptions = {},
): Promise<ResNetWeights> {
  const fold = opts.foldBatchNorm ?? true, eps = config.bnEps;
  const keepFrom = opts.keepBatchNormFrom ?? (fold ? config.layers.length : 0);
  return p.owning(async () => {
    const stem = await loadConvBn(
      p,
      keepFrom > 0,
      `${prefix}.0`,
      `${prefix}.1`,
      [config.stemChannels, 3, 7, 7],
      2,
      eps,
    );
    const stages: BottleneckWeights[][] = [];
    let inC = config.stemChannels;
    for (let s = 0; s < config.layers.length; s++) {
      const blocks: BottleneckWeights[] = [];
      for (let b = 0; b < config.layers[s]; b++) {
        const stride = b === 0 ? config.strides[s] : 1;
        const name = `${prefix}.${4 + s}.${b}`;
        const shape: [number, number, number] = [inC, config.planes[s], stride];
        blocks.push(await loadBlock(p, s < keepFrom, name, shape, eps));
        inC = config.planes[s] * BOTTLENECK_EXPANSION;
      }
      stages.push(blocks);
    }
    return { config, stem, stages };
  });
}

/** `act(bn(conv(x)) + residual)`, as one conv dispatch when folded (in resnetEncode's scope). */
function convBn(rec: Recorder, u: ConvBn, x: Tensor, act: Activation, residual?: Tensor): Tensor {
  const geo = { stride: u.stride, padding: u.padding };
  if (!u.bn) return conv2d(rec, x, u.weight, { ...geo, bias: u.bias, act, residual });
  return batchNorm2d(rec, conv2d(rec, x, u.weight, geo), u.bn, { act, residual });
}

function bottleneck(rec: Recorder, b: BottleneckWeights, x: Tensor): Tensor {
  const identity = b.downsample ? convBn(rec, b.downsample, x, "none") : x;
  const a = convBn(rec, b.conv1, x, "relu");
  const c = convBn(rec, b.conv2, a, "relu");
  return convBn(rec, b.conv3, c, "relu", identity);
}

/**
 * Record the stem, the max-pool and the first `stages` stages: pixels `[N, 3, H, W]` → the last
 * one's output `[N, C, h, w]` (C = 4·planes[stages − 1], or the stem's channels for 0).
 * Intermediates are released after the recorder's submit.
 */
export function resnetStages(
  rec: Recorder,
  w: ResNetWeights,
  pixels: Tensor,
  stages: number,
): Tensor {
  if (pixels.shape.length !== 4 || pixels.shape[1] !== 3 || pixels.dtype !== "f32") {
    throw new WebcapError(
      "BAD_SHAPE",
      `resnetEncode wants f32 pixels [N, 3, H, W], got ${pixels.dtype} [${pixels.shape}]`,
    );
  }
  return rec.scope(() => {
    const stem = convBn(rec, w.stem, pixels, "relu");
    let x = maxPool2d(rec, stem, { kernel: 3, stride: 2, padding: 1 });
    for (const block of w.stages.slice(0, stages).flat()) x = bottleneck(rec, block, x);
    return x;
  });
}

/**
 * Record the encoder: pixels `[N, 3, H, W]` → features `[N, encodedImageSize², 4·planes[-1]]`.
 * Intermediates are released after the recorder's submit.
 */
export function resnetEncode(rec: Recorder, w: ResNetWeights, pixels: Tensor): Tensor {
  return rec.scope(() => {
    const x = resnetStages(rec, w, pixels, w.stages.length);
    return adaptiveAvgPool2d(rec, x, w.config.encodedImageSize, { channelsLast: true });
  });
}
