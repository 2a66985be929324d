/**
 * `deno task parity DIR --train`: gradients against PyTorch's. Reads the folder's
 * `train-reference.safetensors` and `train.json` (see `shared/fixtures/hf/README.md`, "Training
 * references") and the images of its `reference.safetensors`; computes the teacher-forced CE
 * loss, logits and every parameter gradient, and the SCST token log-probabilities, loss and
 * gradients on the given samples, rewards and greedy baselines; compares each with the reference.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { BLIP } from "../arch/blip.ts";
import { folderArchitecture } from "../arch/load.ts";
import { VISION_ENCODER_DECODER } from "../arch/vision_encoder_decoder.ts";
import type { Gpu } from "../gpu/device.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { asModelFiles } from "../io/model_files.ts";
import { openSafetensors } from "../io/safetensors.ts";
import type { WeightStore } from "../io/weights.ts";
import { meanOfOthersBaseline, scstBatch, teacherForcing, type TokenBatch } from "./batch.ts";
import { blipCaptionBatch, loadBlipTrain } from "./blip.ts";
import { type LossAndGrads, lossAndGrads } from "./vision_text.ts";
import { loadVitGpt2 } from "./vit_gpt2.ts";

/** Bound on the relative L2 error of every tensor, and on the relative error of each loss. */
export const TENSOR_BOUND = 1e-3;
export const LOSS_BOUND = 1e-5;

/** One compared tensor. */
export interface TrainTensorCheck {
  name: string;
  relL2: number;
  pass: boolean;
}

/** The result of {@link runTrainParity}. */
export interface TrainParity {
  dir: string;
  tensors: TrainTensorCheck[];
  losses: { ce: LossCheck; scst: LossCheck };
}

/** A loss and its reference. */
export interface LossCheck {
  value: number;
  reference: number;
  pass: boolean;
}

function norm(a: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += a[i] ** 2;
  return Math.sqrt(n);
}

/**
 * `‖a − b‖ / max(‖b‖, floor)`. A gradient that is zero in exact arithmetic (a key bias: softmax
 * does not see it) has a reference of rounding noise; `floor` judges it on the whole gradient's
 * scale instead.
 */
function relL2(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-30): number {
  let d = 0;
  for (let i = 0; i < b.length; i++) d += (a[i] - b[i]) ** 2;
  return Math.sqrt(d) / Math.max(norm(b), floor);
}

/** Relative to this part of the norm of all of one loss's reference gradients (see {@link relL2}). */
const GRAD_FLOOR = 1e-4;

async function ints(ref: WeightStore, name: string): Promise<Int32Array> {
  return Int32Array.from(await ref.readF32(name), Math.round);
}

function lossCheck(value: number, reference: unknown, what: string): LossCheck {
  if (typeof reference !== "number") {
    throw new WebcapError("BAD_CONFIG", `train.json: "${what}" must be a number`);
  }
  const pass = Math.abs(value - reference) <= LOSS_BOUND * Math.max(Math.abs(reference), 1e-30);
  return { value, reference, pass };
}

/**
 * One architecture as `parity --train` drives it: its loss and gradients, the teacher-forced
 * batch of the reference's `ce.*` inputs, and its parameters' names as the reference spells them.
 */
interface TrainParityModel {
  vocab: number;
  /** Loss and every parameter's gradient of `batch` over `pixels`, label smoothing `eps`. */
  lossAndGrads(pixels: Tensor, batch: TokenBatch, eps: number): Promise<LossAndGrads>;
  /** The CE batch of the reference's `ce.*` tensors over N images, and its label smoothing. */
  ceBatch(ref: WeightStore, N: number): Promise<{ batch: TokenBatch; eps: number }>;
  /** A parameter's name as the reference (saved by transformers 5) spells it. */
  referenceName(name: string): string;
  dispose(): void;
}

/** Classic ViT names (`encoder.encoder.layer.N.attention.attention.query`) → transformers 5's. */
const VIT_RENAMES: [RegExp, string][] = [
  [/^encoder\.encoder\.layer\.(\d+)\./, "encoder.layers.$1."],
  [/\.attention\.attention\.query\./, ".attention.q_proj."],
  [/\.attention\.attention\.key\./, ".attention.k_proj."],
  [/\.attention\.attention\.value\./, ".attention.v_proj."],
  [/\.attention\.output\.dense\./, ".attention.o_proj."],
  [/\.intermediate\.dense\./, ".mlp.fc1."],
  [/\.output\.dense\./, ".mlp.fc2."],
];

/** ViT-GPT2: `VisionEncoderDecoderModel`'s loss, `ce.labels` against `ce.decoder_input_ids`. */
async function vitGpt2Parity(gpu: Gpu, dir: string): Promise<TrainParityModel> {
  const m = await loadVitGpt2(gpu, dir);
  return {
    vocab: m.vocab,
    lossAndGrads: (pixels, batch, eps) => lossAndGrads(gpu, m, pixels, batch, eps),
    ceBatch: async (ref, N) => {
      const ids = { startId: m.startId, padId: m.padId, vocab: m.vocab };
      const inputs = await ints(ref, "ce.decoder_input_ids");
      return { batch: teacherForcing(await ints(ref, "ce.labels"), N, ids, inputs), eps: 0 };
    },
    referenceName: (name) => VIT_RENAMES.reduce((n, [re, to]) => n.replace(re, to), name),
    dispose: () => m.dispose(),
  };
}

/** BLIP: its text decoder's own loss over `ce.input_ids`, `ce.labels`, `ce.attention_mask`. */
async function blipParity(gpu: Gpu, dir: string): Promise<TrainParityModel> {
  const m = await loadBlipTrain(gpu, dir);
  return {
    vocab: m.vocab,
    lossAndGrads: (pixels, batch, eps) => lossAndGrads(gpu, m, pixels, batch, eps),
    ceBatch: async (ref, N) => {
      const [ids, labels] = [await ints(ref, "ce.input_ids"), await ints(ref, "ce.labels")];
      const batch = blipCaptionBatch(ids, labels, await ref.readF32("ce.attention_mask"), N, m);
      return { batch, eps: m.labelSmoothing };
    },
    referenceName: (name) => name,
    dispose: () => m.dispose(),
  };
}

/** The training parity of each architecture, by the registry's name. */
const TRAIN_PARITY: Record<string, (gpu: Gpu, dir: string) => Promise<TrainParityModel>> = {
  [VISION_ENCODER_DECODER.name]: vitGpt2Parity,
  [BLIP.name]: blipParity,
};

/** The training parity model of the folder `dir`, by the architecture its config names. */
async function loadTrainParity(gpu: Gpu, dir: string): Promise<TrainParityModel> {
  const { arch, where } = await folderArchitecture(asModelFiles(dir));
  const load = TRAIN_PARITY[arch.name];
  if (!load) {
    throw new WebcapError(
      "UNSUPPORTED_ARCH",
      `${where}: no training for ${arch.name} (training: ${Object.keys(TRAIN_PARITY).join(", ")})`,
    );
  }
  return await load(gpu, dir);
}

/** Run the training parity of the folder `dir` (an architecture of `TRAIN_PARITY`). */
export async function runTrainParity(gpu: Gpu, dir: string): Promise<TrainParity> {
  const info = JSON.parse(await Deno.readTextFile(`${dir}/train.json`)) as Record<string, unknown>;
  const ref = await openSafetensors(`${dir}/train-reference.safetensors`);
  const inputs = await openSafetensors(`${dir}/reference.safetensors`);
  const m = await loadTrainParity(gpu, dir);
  try {
    const [N, ...chw] = inputs.info("pixel_values").shape;
    const pixels = uploadTensor(gpu, await inputs.readF32("pixel_values"), [N, ...chw], "f32");
    const refs = new Map<string, Float32Array>();
    for (const name of ref.names()) refs.set(name, await ref.readF32(name));
    const floors = new Map<string, number>();
    for (const loss of ["ce", "scst"]) {
      const grads = [...refs].filter(([n]) => n.startsWith(`${loss}.grad.`));
      floors.set(loss, GRAD_FLOOR * Math.hypot(...grads.map(([, g]) => norm(g))));
    }
    const tensors: TrainTensorCheck[] = [];
    const check = (name: string, got: ArrayLike<number>) => {
      const want = refs.get(name);
      const floor = name.includes(".grad.") ? floors.get(name.split(".")[0]) : undefined;
      const e = want?.length === got.length ? relL2(got, want, floor) : Infinity;
      tensors.push({ name, relL2: e, pass: e <= TENSOR_BOUND });
    };

    const ce = await m.ceBatch(ref, N);
    const ceOut = await m.lossAndGrads(pixels, ce.batch, ce.eps);
    check("ce.logits", ceOut.logits);
    for (const [name, g] of ceOut.grads) check(`ce.grad.${m.referenceName(name)}`, g);

    const rewards = refs.get("scst.rewards")!;
    const K = Number(info.K);
    const samples = {
      samples: await ints(ref, "scst.samples"),
      mask: refs.get("scst.mask")!,
      rewards,
      baselines: refs.get("scst.baseline_greedy")!,
      N,
      K,
    };
    check("scst.baseline_mean_of_others", meanOfOthersBaseline(rewards, K));
    const scst = await m.lossAndGrads(pixels, scstBatch(samples, m.vocab), 0);
    check("scst.token_logprobs", scst.logprobs);
    for (const [name, g] of scst.grads) check(`scst.grad.${m.referenceName(name)}`, g);
    pixels.release();
    for (const name of refs.keys()) {
      const isGrad = name.startsWith("ce.grad.") || name.startsWith("scst.grad.");
      if (isGrad && !tensors.some((t) => t.name === name)) check(name, []); // no such parameter
    }
    return {
      dir,
      tensors,
      losses: {
        ce: lossCheck(ceOut.loss, info.ce_loss, "ce_loss"),
        scst: lossCheck(scst.loss, info.scst_loss, "scst_loss"),
      },
    };
  } finally {
    m.dispose();
    ref.close();
    inputs.close();
  }
}
