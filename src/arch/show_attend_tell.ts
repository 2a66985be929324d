/**
 * Show, Attend and Tell (Xu et al. 2015) in the layout of sgrvinod's PyTorch implementation:
 * a ResNet encoder (`encoder.resnet.*`) and an LSTM decoder with soft attention over pixels
 * (`decoder.*`). One decoding step, given encoder output E `[pixels, C]` and state (h, c):
 * `α = softmax_p(full_att(relu(encoder_att(E) + decoder_att(h))))`,
 * `z = σ(f_beta(h)) ⊙ Σ_p α·E`, `(h, c) = LSTMCell([embedding(token); z], (h, c))`,
 * `logits = fc(h)` (dropout only in training). Initial state `init_h/init_c(mean_p(E))`.
 * The LSTM state (h, c) is the decoding cache: one row per hypothesis, gathered on `reorder`.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { ownedTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { preprocessorFromConfig } from "../image/preprocess.ts";
import { type Linear, linear, loadLinear } from "../nn/modules.ts";
import type { ParamLoader } from "../nn/params.ts";
import { loadResNet, type ResNetConfig, resNetConfig, resnetEncode } from "../nn/resnet.ts";
import { copy2d } from "../shaders/copy.ts";
import { embedding } from "../shaders/embedding.ts";
import { lstmCell } from "../shaders/lstm.ts";
import { meanAxis1 } from "../shaders/reduce.ts";
import { softAttention } from "../shaders/soft_attention.ts";
import { Tokenizer } from "../text/tokenizer.ts";
import {
  type Architecture,
  type CaseCheck,
  loadWithParams,
  type ParityContext,
} from "./architecture.ts";
import { setAttention } from "./attention_maps.ts";
import type { CaptionModel, DecodeState, EncoderState } from "./caption_model.ts";
import { EncoderDecoderModel, hiddenState, type StepDecoder } from "./encoder_decoder.ts";

type Json = Record<string, unknown>;

/**
 * Longest decoding when `config.json` has no `max_positions`: the LSTM has no position table,
 * so this only bounds runaway loops (sgrvinod's beam search stops after 50 steps).
 */
export const SAT_DEFAULT_MAX_POSITIONS = 256;

/** Sizes and token ids of a Show-Attend-Tell `config.json`. */
export interface ShowAttendTellConfig {
  resnet: ResNetConfig;
  /** Channels of the encoder output (4 · last ResNet planes). */
  encoderDim: number;
  attentionDim: number;
  embedDim: number;
  decoderDim: number;
  vocabSize: number;
  startTokenId: number;
  endTokenId: number;
  /** `pad_token_id`, default 0 (`<pad>` of sgrvinod's word maps). */
  padTokenId: number;
  /** `max_positions`, default {@link SAT_DEFAULT_MAX_POSITIONS}. */
  maxPositions: number;
}

/** Read and check a Show-Attend-Tell config (`encoder` must be `resnet-bottleneck`). */
export function showAttendTellConfig(c: Json, where: string): ShowAttendTellConfig {
  if ((c.encoder ?? "resnet-bottleneck") !== "resnet-bottleneck") {
    throw new WebcapError(
      "UNSUPPORTED_ARCH",
      `${where}: encoder "${c.encoder}" is not supported (resnet-bottleneck is)`,
    );
  }
  const int = (k: string, d?: number, min = 1): number => {
    const v = c[k] ?? d;
    if (!Number.isInteger(v) || (v as number) < min) {
      throw new WebcapError(
        "BAD_CONFIG",
        `${where}: "${k}" must be an integer ≥ ${min}, got ${JSON.stringify(v)}`,
      );
    }
    return v as number;
  };
  const resnet = resNetConfig(c, where);
  const cfg: ShowAttendTellConfig = {
    resnet,
    encoderDim: resnet.planes.at(-1)! * 4,
    attentionDim: int("attention_dim"),
    embedDim: int("embed_dim"),
    decoderDim: int("decoder_dim"),
    vocabSize: int("vocab_size"),
    startTokenId: int("start_token_id", undefined, 0),
    endTokenId: int("end_token_id", undefined, 0),
    padTokenId: int("pad_token_id", 0, 0),
    maxPositions: int("max_positions", SAT_DEFAULT_MAX_POSITIONS),
  };
  for (const k of ["startTokenId", "endTokenId", "padTokenId"] as const) {
    if (cfg[k] >= cfg.vocabSize) {
      throw new WebcapError(
        "BAD_CONFIG",
        `${where}: ${k} ${cfg[k]} is not below vocab_size ${cfg.vocabSize}`,
      );
    }
  }
  return cfg;
}

/** Decoder weights on the GPU (`nn.Linear` weights out×in). */
export interface SatDecoderWeights {
  embedding: Tensor; // [vocab, embed]
  encAtt: Linear; // [A, C]
  decAtt: Linear; // [A, Hd]
  fullAtt: Tensor; // [1, A] (its bias cancels in the softmax and is not loaded)
  fBeta: Linear; // [C, Hd]
  initH: Linear; // [Hd, C]
  initC: Linear; // [Hd, C]
  wih: Linear; // [4Hd, embed + C], bias_ih
  whh: Linear; // [4Hd, Hd], bias_hh
  fc: Linear; // [vocab, Hd]
}

/** The LSTMCell's input (`ih`) or hidden (`hh`) projection: `weight_<x>`, `bias_<x>`. */
function loadLstmLinear(p: ParamLoader, x: "ih" | "hh", out: number, inp: number) {
  const step = "decoder.decode_step";
  return p.owning(async () => ({
    w: await p.matrix(`${step}.weight_${x}`, [out, inp]),
    b: await p.f32(`${step}.bias_${x}`, [out]),
    inOut: false,
  }));
}

/** Load the decoder (`decoder.*`); matrices in the loader's matrix dtype. */
export async function loadSatDecoder(
  p: ParamLoader,
  c: ShowAttendTellConfig,
): Promise<SatDecoderWeights> {
  const { encoderDim: C, attentionDim: A, embedDim: E, decoderDim: H, vocabSize: V } = c;
  return {
    embedding: await p.matrix("decoder.embedding.weight", [V, E]),
    encAtt: await loadLinear(p, "decoder.attention.encoder_att", A, C),
    decAtt: await loadLinear(p, "decoder.attention.decoder_att", A, H),
    fullAtt: await p.f32("decoder.attention.full_att.weight", [1, A]),
    fBeta: await loadLinear(p, "decoder.f_beta", C, H),
    initH: await loadLinear(p, "decoder.init_h", H, C),
    initC: await loadLinear(p, "decoder.init_c", H, C),
    wih: await loadLstmLinear(p, "ih", 4 * H, E + C),
    whh: await loadLstmLinear(p, "hh", 4 * H, H),
    fc: await loadLinear(p, "decoder.fc", V, H),
  };
}

/** The LSTM state of every row, plus per-image data computed once in `begin`. */
interface SatState extends DecodeState {
  maxLength: number;
  pixels: number;
  /** Encoder output `[images·pixels, C]`, shared with the EncoderState (not owned). */
  enc: Tensor;
  /** `encoder_att(E)` `[images·pixels, A]`, owned. */
  encAtt: Tensor;
  rowImageGpu: Tensor; // i32 [rows]
  /** Current state and the spare buffers the next step writes (the LSTM kernel needs c' ≠ c). */
  h: Tensor; // [rows, Hd]
  c: Tensor;
  hNext: Tensor;
  cNext: Tensor;
}

function stateTensors(
  rec: Recorder,
  rows: number,
  H: number,
): Pick<SatState, "h" | "c" | "hNext" | "cNext"> {
  const t = (label: string) => ownedTensor(rec.gpu, [rows, H], "f32", label);
  return { h: t("sat-h"), c: t("sat-c"), hNext: t("sat-h"), cNext: t("sat-c") };
}

/**
 * Load from a parsed `config.json` and a weight loader (`encoder.resnet.*`, `decoder.*`).
 * Matrices and conv weights are stored in the loader's matrix dtype.
 */
async function loadShowAttendTell(
  p: ParamLoader,
  config: Json,
  where: string,
): Promise<CaptionModel> {
  const cfg = showAttendTellConfig(config, where);
  const resnet = await loadResNet(p, "encoder.resnet", cfg.resnet);
  const weights = await loadSatDecoder(p, cfg);
  return new EncoderDecoderModel(SHOW_ATTEND_TELL.name, {
    vocabSize: cfg.vocabSize,
    decoderStartTokenId: cfg.startTokenId,
    eosTokenId: cfg.endTokenId,
    padTokenId: cfg.padTokenId,
    maxPositions: cfg.maxPositions,
  }, {
    // pixels [N, 3, H, W] → hidden [N, pixels, C]
    encode: (rec, pixels) => hiddenState(rec.keep(resnetEncode(rec, resnet, pixels))),
    text: new SatDecoder(cfg, weights),
    params: p.params,
    dispose: () => p.dispose(),
  });
}

/** The soft-attention LSTM decoder: its state is the decoding cache, one row per hypothesis. */
class SatDecoder implements StepDecoder<SatState> {
  readonly crossAttention = true;
  constructor(readonly config: ShowAttendTellConfig, readonly weights: SatDecoderWeights) {}

  /** Per image: `encoder_att(E)` and `init_h/init_c(mean(E))`, then gathered into each row's state. */
  begin(rec: Recorder, enc: EncoderState, rowImage: Int32Array, maxLength: number): SatState {
    const w = this.weights, H = this.config.decoderDim;
    const [N, P, C] = enc.hidden.shape;
    if (maxLength > this.config.maxPositions) {
      throw new WebcapError(
        "BAD_OPTION",
        `max length ${maxLength} exceeds the decoder's max_positions ${this.config.maxPositions}`,
      );
    }
    if (rowImage.some((i) => i < 0 || i >= N)) {
      throw new WebcapError(
        "BAD_OPTION",
        `beginDecode: rowImage must index the ${N} encoded images`,
      );
    }
    const flat = enc.hidden.view([N * P, C]);
    const mean = rec.temp([N, C]);
    meanAxis1(rec, enc.hidden, N, P, C, mean, 0);
    const h0 = linear(rec, mean, w.initH), c0 = linear(rec, mean, w.initC); // [N, Hd]
    const rows = rowImage.length;
    const rowImageGpu = uploadTensor(rec.gpu, rowImage, [rows], "i32", "row-image");
    const hc = stateTensors(rec, rows, H);
    embedding(rec, h0, rowImageGpu, { out: hc.h });
    embedding(rec, c0, rowImageGpu, { out: hc.c });
    const st: SatState = {
      rows,
      length: 0,
      rowImage: rowImage.slice(),
      maxLength,
      pixels: P,
      enc: flat,
      encAtt: rec.keep(linear(rec, flat, w.encAtt)),
      rowImageGpu,
      ...hc,
      dispose: () => {
        for (const t of [st.h, st.c, st.hNext, st.cNext, st.encAtt, st.rowImageGpu, st.attention]) {
          if (t?.alive) t.release();
        }
      },
    };
    return st;
  }

  /**
   * `tokens [rows·S]` (row-major: row r's S tokens together) → logits `[rows·S, vocab]`; the S
   * LSTM steps run in sequence (teacher forcing). With `attention`, `st.attention` becomes
   * α `[1, rows, S, pixels]`.
   */
  forward(rec: Recorder, s: SatState, tokens: Tensor, S: number, attention: boolean): Tensor {
    const w = this.weights, R = s.rows;
    const { embedDim: E, encoderDim: C, decoderDim: H } = this.config;
    if (tokens.size !== R * S) {
      throw new WebcapError("BAD_SHAPE", `step: ${tokens.size} tokens are not ${R} rows × ${S}`);
    }
    if (s.length + S > s.maxLength) {
      throw new WebcapError(
        "BAD_OPTION",
        `decoding was begun for ${s.maxLength} positions; ${s.length + S} requested`,
      );
    }
    const emb = embedding(rec, w.embedding, tokens); // [R·S, E]
    const x = rec.temp([R, E + C]); // LSTM input [embedding; z]
    const alpha = rec.temp([R, S, s.pixels]);
    const hs = S > 1 ? rec.temp([R * S, H]) : undefined;
    for (let t = 0; t < S; t++) {
      copy2d(rec, emb, x, {
        n: R,
        width: E,
        srcOff: t * E,
        srcStride: S * E,
        group: 1,
        dstOff: 0,
        dstOuter: E + C,
        dstInner: 0,
      });
      this.#lstmStep(rec, s, x, { t: alpha, offset: t * s.pixels, rowStride: S * s.pixels });
      if (hs) {
        copy2d(rec, s.h, hs, {
          n: R,
          width: H,
          srcOff: 0,
          srcStride: H,
          group: 1,
          dstOff: t * H,
          dstOuter: S * H,
          dstInner: 0,
        });
      }
    }
    if (attention) setAttention(rec, s, alpha.view([1, R, S, s.pixels]));
    s.length += S;
    return linear(rec, hs ?? s.h, w.fc);
  }

  /** Attention and one LSTMCell step; `x [R, E + C]` holds the embedding, z is written after it. */
  #lstmStep(
    rec: Recorder,
    s: SatState,
    x: Tensor,
    alpha: { t: Tensor; offset: number; rowStride: number },
  ): void {
    const w = this.weights, { embedDim: E, encoderDim: C } = this.config;
    const decAtt = linear(rec, s.h, w.decAtt); // [R, A]
    const gate = linear(rec, s.h, w.fBeta, { act: "sigmoid" }); // [R, C]
    softAttention(rec, {
      encAtt: s.encAtt,
      decAtt,
      wFull: w.fullAtt,
      enc: s.enc,
      gate,
      rowImage: s.rowImageGpu,
      pixels: s.pixels,
      alpha,
      z: { t: x, offset: E, rowStride: E + C },
    });
    const gx = linear(rec, x, w.wih); // [R, 4Hd]
    const gates = linear(rec, s.h, w.whh, { residual: gx });
    lstmCell(rec, gates, s.c, { hOut: s.hNext, cOut: s.cNext });
    [s.h, s.hNext] = [s.hNext, s.h];
    [s.c, s.cNext] = [s.cNext, s.c];
  }

  /**
   * Row i continues row `parents[i]`: h and c gathered into fresh buffers, row→image remapped;
   * GPU parents (i32 `[rows]`, rows keep their images): gathered into `hNext`/`cNext`, swapped.
   */
  reorder(rec: Recorder, s: SatState, parents: Int32Array | Tensor): void {
    if (!(parents instanceof Int32Array)) return this.#gather(rec, s, parents);
    if (parents.some((p) => p < 0 || p >= s.rows)) {
      throw new WebcapError("BAD_OPTION", `reorder: parents must index the ${s.rows} current rows`);
    }
    const R = parents.length;
    const ids = rec.upload(parents, [R], "i32");
    const next = stateTensors(rec, R, this.config.decoderDim);
    embedding(rec, s.h, ids, { out: next.h });
    embedding(rec, s.c, ids, { out: next.c });
    // the replaced state ends its life once the gathers reading it are submitted
    rec.releaseAfterSubmit(s.h, s.c, s.hNext, s.cNext, s.rowImageGpu);
    Object.assign(s, next);
    s.rowImage = Int32Array.from(parents, (p) => s.rowImage[p]);
    s.rowImageGpu = uploadTensor(rec.gpu, s.rowImage, [R], "i32", "row-image");
    s.rows = R;
  }

  /** The ping-pong reorder by GPU parents `[rows]`. */
  #gather(rec: Recorder, s: SatState, parents: Tensor): void {
    if (parents.size !== s.rows || parents.dtype !== "i32") {
      throw new WebcapError("BAD_SHAPE", `reorder: GPU parents must be i32 [${s.rows}]`);
    }
    embedding(rec, s.h, parents, { out: s.hNext });
    embedding(rec, s.c, parents, { out: s.cNext });
    [s.h, s.hNext] = [s.hNext, s.h];
    [s.c, s.cNext] = [s.cNext, s.c];
  }
}

/** ImageNet statistics, which Show-Attend-Tell's reference training code normalizes with. */
const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

/** Parity: encoder output, teacher-forced first-step logits and attention α, greedy tokens. */
async function parity(ctx: ParityContext): Promise<CaseCheck[]> {
  const enc = await ctx.encode("images");
  try {
    const [hidden] = await ctx.read([enc.hidden]);
    ctx.check("encoder_out", hidden, await ctx.ref.readF32("encoder_out"));
    const start = ctx.model.decoder.decoderStartTokenId;
    const tokens = ctx.cases.greedy.tokens as number[][];
    const steps = ctx.ref.info("alphas").shape[1];
    const fed = tokens.map((t) => [start, ...t].slice(0, steps));
    const tf = await ctx.teacherForced(enc, fed, true);
    const V = ctx.model.decoder.vocabSize;
    const first = Float32Array.from(
      { length: fed.length * V },
      (_, k) => tf.logits[Math.floor(k / V) * steps * V + (k % V)],
    );
    ctx.check("first_step_logits", first, await ctx.ref.readF32("first_step_logits"));
    ctx.check("alphas", tf.attention!, await ctx.ref.readF32("alphas"));
    return [await ctx.greedyCase(enc)];
  } finally {
    enc.dispose();
  }
}

/** Show-Attend-Tell (`"architecture": "show-attend-tell"` in `config.json`). */
export const SHOW_ATTEND_TELL: Architecture = {
  name: "show-attend-tell",
  load: (ctx) => loadWithParams(ctx, (p) => loadShowAttendTell(p, ctx.config, ctx.where)),
  parity,
  attentionMaps: { leadingPositions: 0 }, // α covers the pooled grid only
  /** Its checkpoints ship no image processor: bilinear resize to `image_size`, ImageNet mean/std. */
  defaultPreprocessor: (config, where) => {
    const size = config.image_size;
    if (typeof size !== "number") return undefined;
    return preprocessorFromConfig({
      image_processor_type: "ViTImageProcessor",
      size: { height: size, width: size },
      resample: 2,
      image_mean: IMAGENET_MEAN,
      image_std: IMAGENET_STD,
    }, `${where} (Show-Attend-Tell defaults)`);
  },
  /** Checkpoints without a vocabulary caption as token ids. */
  defaultTokenizer: (config, source) => {
    const vocab = config.vocab_size;
    if (typeof vocab !== "number") return undefined;
    const special = [config.start_token_id, config.end_token_id, config.pad_token_id ?? 0]
      .filter((id): id is number => typeof id === "number");
    return Tokenizer.fromIds(vocab, special, `${source} (no tokenizer.json or word_map.json)`);
  },
};
