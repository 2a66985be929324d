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
import { emptyTensor, ownedTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { copy2d } from "../shaders/copy.ts";
import { embedding } from "../shaders/embedding.ts";
import { lstmCell } from "../shaders/lstm.ts";
import { matmul } from "../shaders/matmul.ts";
import { meanAxis1 } from "../shaders/reduce.ts";
import { softAttention } from "../shaders/soft_attention.ts";
import type {
  CaptionModel,
  DecoderConfig,
  DecodeState,
  EncoderState,
  StepOptions,
} from "./caption_model.ts";
import type { ParamLoader } from "../nn/params.ts";
import {
  disposeResNet,
  loadResNet,
  type ResNetConfig,
  resNetConfig,
  resnetEncode,
  type ResNetWeights,
} from "../nn/resnet.ts";

type Json = Record<string, unknown>;

/** The `architecture` value of a Show-Attend-Tell `config.json`. */
export const SHOW_ATTEND_TELL = "show-attend-tell";

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

interface Linear {
  w: Tensor; // [out, in]
  b: Tensor; // [out]
}

/** Decoder weights on the GPU (`nn.Linear` weights out×in). */
interface SatDecoderWeights {
  embedding: Tensor; // [vocab, embed]
  encAtt: Linear; // [A, C]
  decAtt: Linear; // [A, Hd]
  fullAtt: Tensor; // [1, A] (its bias cancels in the softmax)
  fBeta: Linear; // [C, Hd]
  initH: Linear; // [Hd, C]
  initC: Linear; // [Hd, C]
  wih: Linear; // [4Hd, embed + C], bias_ih
  whh: Linear; // [4Hd, Hd], bias_hh
  fc: Linear; // [vocab, Hd]
}

async function linear(p: ParamLoader, name: string, out: number, inp: number): Promise<Linear> {
  return { w: await p.matrix(`${name}.weight`, [out, inp]), b: await p.f32(`${name}.bias`, [out]) };
}

async function loadDecoder(p: ParamLoader, c: ShowAttendTellConfig): Promise<SatDecoderWeights> {
  const { encoderDim: C, attentionDim: A, embedDim: E, decoderDim: H, vocabSize: V } = c;
  const step = "decoder.decode_step";
  return {
    embedding: await p.matrix("decoder.embedding.weight", [V, E]),
    encAtt: await linear(p, "decoder.attention.encoder_att", A, C),
    decAtt: await linear(p, "decoder.attention.decoder_att", A, H),
    fullAtt: await p.f32("decoder.attention.full_att.weight", [1, A]),
    fBeta: await linear(p, "decoder.f_beta", C, H),
    initH: await linear(p, "decoder.init_h", H, C),
    initC: await linear(p, "decoder.init_c", H, C),
    wih: {
      w: await p.matrix(`${step}.weight_ih`, [4 * H, E + C]),
      b: await p.f32(`${step}.bias_ih`, [4 * H]),
    },
    whh: {
      w: await p.matrix(`${step}.weight_hh`, [4 * H, H]),
      b: await p.f32(`${step}.bias_hh`, [4 * H]),
    },
    fc: await linear(p, "decoder.fc", V, H),
  };
}

/** `x·Wᵀ + b` (+ act) for an `nn.Linear`. */
function lin(rec: Recorder, x: Tensor, l: Linear, act?: "sigmoid"): Tensor {
  return matmul(rec, x, l.w, { transposeW: true, bias: l.b, act });
}

/** The LSTM state of every row, plus per-image data computed once in `beginDecode`. */
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

/** Show-Attend-Tell captioner: ResNet encoder + soft-attention LSTM decoder. */
export class ShowAttendTell implements CaptionModel {
  readonly architecture = SHOW_ATTEND_TELL;
  readonly decoder: DecoderConfig;
  private constructor(
    readonly config: ShowAttendTellConfig,
    readonly resnet: ResNetWeights,
    readonly weights: SatDecoderWeights,
    readonly params: ParamLoader,
  ) {
    this.decoder = {
      vocabSize: config.vocabSize,
      decoderStartTokenId: config.startTokenId,
      eosTokenId: config.endTokenId,
      padTokenId: config.padTokenId,
      maxPositions: config.maxPositions,
    };
  }

  /**
   * Load from a parsed `config.json` and a weight loader (`encoder.resnet.*`, `decoder.*`).
   * Matrices and conv weights are stored in the loader's matrix dtype.
   */
  static async load(p: ParamLoader, config: Json, where: string): Promise<ShowAttendTell> {
    const cfg = showAttendTellConfig(config, where);
    const convDtype = p.matrixDtype === "f16" ? "f16" : "f32";
    const resnet = await loadResNet(p.store, "encoder.resnet", cfg.resnet, p.gpu, { convDtype });
    try {
      return new ShowAttendTell(cfg, resnet, await loadDecoder(p, cfg), p);
    } catch (e) {
      disposeResNet(resnet);
      throw e;
    }
  }

  /** `pixels [N, 3, H, W]` → `hidden [N, pixels, C]`. */
  encode(rec: Recorder, pixels: Tensor): EncoderState {
    const hidden = resnetEncode(rec, this.resnet, pixels);
    return { images: hidden.shape[0], hidden, dispose: () => hidden.release() };
  }

  /** Per image: `encoder_att(E)` and `init_h/init_c(mean(E))`, then gathered into each row's state. */
  beginDecode(
    rec: Recorder,
    enc: EncoderState,
    rowImage: Int32Array,
    maxLength: number,
  ): DecodeState {
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
    const mean = emptyTensor(rec.gpu, [N, C]);
    meanAxis1(rec, enc.hidden, N, P, C, mean, 0);
    const h0 = lin(rec, mean, w.initH), c0 = lin(rec, mean, w.initC); // [N, Hd]
    const rows = rowImage.length;
    const rowImageGpu = uploadTensor(rec.gpu, rowImage, [rows], "i32", "row-image");
    const hc = stateTensors(rec, rows, H);
    embedding(rec, h0, rowImageGpu, { out: hc.h });
    embedding(rec, c0, rowImageGpu, { out: hc.c });
    rec.releaseAfterSubmit(mean, h0, c0);
    const st: SatState = {
      rows,
      length: 0,
      rowImage: rowImage.slice(),
      maxLength,
      pixels: P,
      enc: flat,
      encAtt: lin(rec, flat, w.encAtt),
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
   * LSTM steps run in sequence (teacher forcing). With `opts.attention`, `st.attention` becomes
   * α `[1, rows, S, pixels]`.
   */
  step(
    rec: Recorder,
    st: DecodeState,
    tokens: Tensor,
    perRow: number,
    opts: StepOptions = {},
  ): Tensor {
    const s = st as SatState, w = this.weights, S = perRow, R = s.rows;
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
    const x = emptyTensor(rec.gpu, [R, E + C]); // LSTM input [embedding; z]
    const alpha = emptyTensor(rec.gpu, [R, S, s.pixels]);
    const hs = S > 1 ? emptyTensor(rec.gpu, [R * S, H]) : undefined;
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
    const logits = lin(rec, hs ?? s.h, w.fc);
    rec.releaseAfterSubmit(emb, x);
    if (hs) rec.releaseAfterSubmit(hs);
    if (opts.attention) {
      if (s.attention) rec.releaseAfterSubmit(s.attention); // work recorded before may still read it
      s.attention = alpha.view([1, R, S, s.pixels]);
    } else {
      rec.releaseAfterSubmit(alpha);
    }
    s.length += S;
    return logits;
  }

  /** Attention and one LSTMCell step; `x [R, E + C]` holds the embedding, z is written after it. */
  #lstmStep(
    rec: Recorder,
    s: SatState,
    x: Tensor,
    alpha: { t: Tensor; offset: number; rowStride: number },
  ): void {
    const w = this.weights, { embedDim: E, encoderDim: C } = this.config;
    const decAtt = lin(rec, s.h, w.decAtt); // [R, A]
    const gate = lin(rec, s.h, w.fBeta, "sigmoid"); // [R, C]
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
    const gx = lin(rec, x, w.wih); // [R, 4Hd]
    const gates = matmul(rec, s.h, w.whh.w, { transposeW: true, bias: w.whh.b, residual: gx });
    lstmCell(rec, gates, s.c, { hOut: s.hNext, cOut: s.cNext });
    [s.h, s.hNext] = [s.hNext, s.h];
    [s.c, s.cNext] = [s.cNext, s.c];
    rec.releaseAfterSubmit(decAtt, gate, gx, gates);
  }

  /** Row i continues row `parents[i]`: h and c gathered into fresh buffers, row→image remapped. */
  reorder(rec: Recorder, st: DecodeState, parents: Int32Array): void {
    const s = st as SatState;
    if (parents.some((p) => p < 0 || p >= s.rows)) {
      throw new WebcapError("BAD_OPTION", `reorder: parents must index the ${s.rows} current rows`);
    }
    const R = parents.length;
    const ids = uploadTensor(rec.gpu, parents, [R], "i32", "parents");
    const next = stateTensors(rec, R, this.config.decoderDim);
    embedding(rec, s.h, ids, { out: next.h });
    embedding(rec, s.c, ids, { out: next.c });
    rec.releaseAfterSubmit(ids, s.h, s.c, s.hNext, s.cNext, s.rowImageGpu);
    Object.assign(s, next);
    s.rowImage = Int32Array.from(parents, (p) => s.rowImage[p]);
    s.rowImageGpu = uploadTensor(rec.gpu, s.rowImage, [R], "i32", "row-image");
    s.rows = R;
  }

  /** Free the weights. */
  dispose(): void {
    disposeResNet(this.resnet);
    this.params.dispose();
  }
}
