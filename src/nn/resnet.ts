/**
 * ResNet encoder with Bottleneck blocks in torchvision's layout ("ResNet v1.5": the stride sits
 * on the 3×3 conv), as Show-Attend-Tell keeps it: `<prefix>.{0..7}` = conv 7×7/2, BatchNorm,
 * ReLU, max-pool 3×3/2 pad 1, then one `nn.Sequential` of blocks per stage; followed by adaptive
 * average pooling to `encodedImageSize`² and laid out `[N, pixels, C]`.
 * By default each BatchNorm is folded into its conv on the host at load time, so a block is three
 * conv dispatches (the last one adds the shortcut and applies ReLU) plus the downsample conv.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import type { Activation } from "../shaders/activations.ts";
import {
  batchNorm2d,
  type BatchNormHost,
  type BatchNormWeights,
  foldBatchNorm,
} from "../shaders/batchnorm.ts";
import { conv2d } from "../shaders/conv2d.ts";
import { adaptiveAvgPool2d, maxPool2d } from "../shaders/pool.ts";
import { f32ToF16 } from "./params.ts";
import type { WeightStore } from "../io/weights.ts";

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

/** A conv followed by a BatchNorm: folded (weight + bias) or kept (weight + bn). */
export interface ConvBn {
  weight: Tensor; // [Cout, Cin, k, k]
  bias?: Tensor; // [Cout], when folded
  bn?: BatchNormWeights; // when not folded
  stride: number;
  padding: number;
}

/** One Bottleneck block. */
export interface BottleneckWeights {
  conv1: ConvBn; // 1×1 → planes
  conv2: ConvBn; // 3×3 (stride) → planes
  conv3: ConvBn; // 1×1 → 4·planes
  downsample?: ConvBn; // 1×1 (stride) → 4·planes
}

/** ResNet encoder weights on the GPU. */
export interface ResNetWeights {
  config: ResNetConfig;
  stem: ConvBn;
  /** Blocks per stage. */
  stages: BottleneckWeights[][];
  /** Every tensor owned, for {@link disposeResNet}. */
  tensors: Tensor[];
}

/** Options of {@link loadResNet}. */
export interface LoadResNetOptions {
  /** Fold each BatchNorm into its conv (default true). */
  foldBatchNorm?: boolean;
  /** Storage type of conv weights; "f16" needs `shader-f16` (default "f32"). */
  convDtype?: "f32" | "f16";
}

class Loader {
  readonly tensors: Tensor[] = [];
  constructor(
    readonly gpu: Gpu,
    readonly store: WeightStore,
    readonly fold: boolean,
    readonly convDtype: "f32" | "f16",
  ) {}

  async read(name: string, shape: number[]): Promise<Float32Array> {
    if (!this.store.has(name)) {
      throw new WebcapError(
        "BAD_WEIGHTS",
        `${this.store.source}: tensor "${name}" is missing (the ResNet config expects shape [${shape}])`,
      );
    }
    const got = this.store.info(name).shape;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new WebcapError(
        "BAD_WEIGHTS",
        `${this.store.source}: tensor "${name}" has shape [${got}] but the ResNet config implies [${shape}]`,
      );
    }
    return await this.store.readF32(name);
  }

  upload(data: Float32Array, shape: number[], name: string, conv = false): Tensor {
    const t = conv && this.convDtype === "f16"
      ? uploadTensor(this.gpu, f32ToF16(data), shape, "f16", name)
      : uploadTensor(this.gpu, data, shape, "f32", name);
    this.tensors.push(t);
    return t;
  }

  async bnHost(name: string, C: number, eps: number): Promise<BatchNormHost> {
    return {
      weight: await this.read(`${name}.weight`, [C]),
      bias: await this.read(`${name}.bias`, [C]),
      runningMean: await this.read(`${name}.running_mean`, [C]),
      runningVar: await this.read(`${name}.running_var`, [C]),
      eps,
    };
  }

  /** Conv `convName` (no bias) followed by BatchNorm `bnName`. */
  async convBn(
    convName: string,
    bnName: string,
    shape: [number, number, number, number],
    stride: number,
    eps: number,
  ): Promise<ConvBn> {
    const w = await this.read(`${convName}.weight`, shape);
    const bn = await this.bnHost(bnName, shape[0], eps);
    const padding = (shape[2] - 1) >> 1;
    if (this.fold) {
      const f = foldBatchNorm(w, undefined, bn);
      const weight = this.upload(f.weight, shape, `${convName}.weight+${bnName}`, true);
      return {
        weight,
        bias: this.upload(f.bias, [shape[0]], `${bnName}.folded_bias`),
        stride,
        padding,
      };
    }
    const C = [shape[0]];
    return {
      weight: this.upload(w, shape, `${convName}.weight`, true),
      bn: {
        weight: this.upload(bn.weight, C, `${bnName}.weight`),
        bias: this.upload(bn.bias, C, `${bnName}.bias`),
        runningMean: this.upload(bn.runningMean, C, `${bnName}.running_mean`),
        runningVar: this.upload(bn.runningVar, C, `${bnName}.running_var`),
        eps,
      },
      stride,
      padding,
    };
  }
}

async function loadBlock(
  l: Loader,
  p: string,
  inC: number,
  planes: number,
  stride: number,
  eps: number,
): Promise<BottleneckWeights> {
  const outC = planes * BOTTLENECK_EXPANSION;
  return {
    conv1: await l.convBn(`${p}.conv1`, `${p}.bn1`, [planes, inC, 1, 1], 1, eps),
    conv2: await l.convBn(`${p}.conv2`, `${p}.bn2`, [planes, planes, 3, 3], stride, eps),
    conv3: await l.convBn(`${p}.conv3`, `${p}.bn3`, [outC, planes, 1, 1], 1, eps),
    downsample: stride !== 1 || inC !== outC
      ? await l.convBn(`${p}.downsample.0`, `${p}.downsample.1`, [outC, inC, 1, 1], stride, eps)
      : undefined,
  };
}

/**
 * Load a ResNet encoder from `store`: `<prefix>.0` stem conv, `<prefix>.1` its BatchNorm,
 * `<prefix>.{4+s}.{b}` the blocks of stage `s` (e.g. prefix `encoder.resnet`).
 * @throws WebcapError BAD_WEIGHTS naming a missing or misshaped tensor; NO_FEATURE for f16
 * weights without `shader-f16`.
 */
export async function loadResNet(
  store: WeightStore,
  prefix: string,
  config: ResNetConfig,
  gpu: Gpu,
  opts: LoadResNetOptions = {},
): Promise<ResNetWeights> {
  const convDtype = opts.convDtype ?? "f32";
  if (convDtype === "f16" && !gpu.hasF16) {
    throw new WebcapError(
      "NO_FEATURE",
      `loadResNet: convDtype "f16" needs the shader-f16 feature, which ${gpu.adapterName} lacks; use "f32"`,
    );
  }
  const l = new Loader(gpu, store, opts.foldBatchNorm ?? true, convDtype);
  try {
    const eps = config.bnEps;
    const stem = await l.convBn(
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
        blocks.push(
          await loadBlock(l, `${prefix}.${4 + s}.${b}`, inC, config.planes[s], stride, eps),
        );
        inC = config.planes[s] * BOTTLENECK_EXPANSION;
      }
      stages.push(blocks);
    }
    return { config, stem, stages, tensors: l.tensors };
  } catch (e) {
    for (const t of l.tensors) t.release();
    throw e;
  }
}

/** Free every tensor of the encoder. */
export function disposeResNet(w: ResNetWeights): void {
  for (const t of w.tensors) t.release();
  w.tensors.length = 0;
}

/** `act(bn(conv(x)) + residual)`, as one conv dispatch when folded. */
function convBn(rec: Recorder, u: ConvBn, x: Tensor, act: Activation, residual?: Tensor): Tensor {
  const geo = { stride: u.stride, padding: u.padding };
  if (!u.bn) return conv2d(rec, x, u.weight, { ...geo, bias: u.bias, act, residual });
  const y = conv2d(rec, x, u.weight, geo);
  rec.releaseAfterSubmit(y);
  return batchNorm2d(rec, y, u.bn, { act, residual });
}

function bottleneck(rec: Recorder, b: BottleneckWeights, x: Tensor): Tensor {
  const identity = b.downsample ? convBn(rec, b.downsample, x, "none") : x;
  const a = convBn(rec, b.conv1, x, "relu");
  const c = convBn(rec, b.conv2, a, "relu");
  const out = convBn(rec, b.conv3, c, "relu", identity);
  rec.releaseAfterSubmit(a, c);
  if (b.downsample) rec.releaseAfterSubmit(identity);
  return out;
}

/**
 * Record the encoder: pixels `[N, 3, H, W]` → features `[N, encodedImageSize², 4·planes[-1]]`.
 * Intermediates are released after the recorder's submit.
 */
export function resnetEncode(rec: Recorder, w: ResNetWeights, pixels: Tensor): Tensor {
  if (pixels.shape.length !== 4 || pixels.shape[1] !== 3 || pixels.dtype !== "f32") {
    throw new WebcapError(
      "BAD_SHAPE",
      `resnetEncode wants f32 pixels [N, 3, H, W], got ${pixels.dtype} [${pixels.shape}]`,
    );
  }
  const stem = convBn(rec, w.stem, pixels, "relu");
  let x = maxPool2d(rec, stem, { kernel: 3, stride: 2, padding: 1 });
  rec.releaseAfterSubmit(stem);
  for (const stage of w.stages) {
    for (const block of stage) {
      const next = bottleneck(rec, block, x);
      rec.releaseAfterSubmit(x);
      x = next;
    }
  }
  const out = adaptiveAvgPool2d(rec, x, w.config.encodedImageSize, { channelsLast: true });
  rec.releaseAfterSubmit(x);
  return out;
}
