/**
 * The high-level API: `Captioner.fromPretrained(idOrDirOrUrl)` loads a model folder, a folder at a
 * URL, or a hub repo (downloaded into the cache in Deno, fetched directly in a browser), its image
 * processor and tokenizer; `caption(images, options)` runs the encoder
 * once per batch and any decoding strategy on the GPU-resident decoder step.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { type AdapterClass, checkNotLost, getGpu, type Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import type { CaptionModel, EncoderState } from "../arch/caption_model.ts";
import { generateOnGpu } from "./gpu_decoder.ts";
import type { ResolveModelOptions } from "../io/hub.ts";
import {
  decodeImage,
  type ImageDataLike,
  loadImage,
  maxPixelsOption,
  rgbFromRgba,
  type RgbImage,
} from "../image/decode.ts";
import { fileLocation } from "../io/model_files.ts";
import { openModelFiles } from "../io/model_source.ts";
import { loadCaptionModel, loadPreprocessor, loadTokenizer, readModelJson } from "../arch/load.ts";
import type { WeightDtype } from "../nn/params.ts";
import type { Preprocessor } from "../image/preprocess.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { checkVocabulary, type GenerateOptions, resolveOptions } from "../decode/options.ts";
import type { GeneratedSequence } from "../decode/search.ts";
import { checkRerank, rerank, type Reranker } from "../decode/rerank.ts";
import {
  defaultsTaken,
  type GenerationDefaults,
  readGenerationConfig,
  withDefaults,
} from "./generation_config.ts";

/**
 * An image: a file path (Deno), encoded bytes (JPEG/PNG/WebP/…), decoded RGB pixels, or RGBA
 * pixels as a canvas's `ImageData` (alpha dropped, as PIL's `convert("RGB")`).
 */
export type ImageInput = string | Uint8Array | RgbImage | ImageDataLike;

/** Options of {@link Captioner.fromPretrained}. */
export interface CaptionerOptions extends ResolveModelOptions {
  /**
   * Matrix storage on the GPU: "f32" (default, reference parity), "f16" (needs shader-f16), or
   * the weights of matmuls and embeddings quantized to "q8" or "q4" (a folder written by
   * `deno task quantize` loads as stored).
   */
  dtype?: WeightDtype;
  /** q4: elements of the input dimension per scale and offset (default 32; must divide it). */
  groupSize?: number;
  /** Largest accepted image in pixels (default 100e6). */
  maxPixels?: number;
  /** GPU to use (default: the process-wide one). */
  gpu?: Gpu;
}

/** Decoding options of {@link Captioner.caption}: transformers' `generate` names plus a text prompt. */
export interface CaptionOptions
  extends Omit<GenerateOptions, "promptIds" | "eosTokenId" | "padTokenId"> {
  /** Text every caption starts from (BLIP-style conditional captioning). */
  prompt?: string;
  /**
   * Reorder each image's captions by search score + weight · reranker score (controllable
   * captions from an n-best list, e.g. sentiment); `score` stays the search's score.
   */
  rerank?: { reranker: Reranker; weight?: number };
}

/** One caption of an image. */
export interface Caption {
  /** Decoded text (the prompt included), special tokens skipped. */
  text: string;
  /** Sequence score (sum of `logprobs`, length-penalised for beam methods). */
  score: number;
  /** Generated token ids (without the prompt). */
  tokens: number[];
  /** Per-token log-probabilities used by the search. */
  logprobs: number[];
}

/** The result for one input image: captions, or the error that kept it from being captioned. */
export interface CaptionResult {
  /** The file path, or `image[i]` for bytes and pixels. */
  source: string;
  /** Captions, best first (empty when `error` is set). */
  captions: Caption[];
  /** Why the image could not be captioned (e.g. it failed to load); absent on success. */
  error?: WebcapError;
}

/** Encoder states of a batch, reusable by many decodings (a feature cache). */
export interface EncodedImages {
  /** One entry per input: its source and, for images that failed to load, the error. */
  readonly inputs: { source: string; error?: WebcapError }[];
  /** Index of each input among the encoded images (-1 when it failed). */
  readonly slot: number[];
  /** Encoder states of the images that loaded; `undefined` when none did. */
  readonly state: EncoderState | undefined;
  /** Release the encoder states' GPU memory. */
  dispose(): void;
}

function sourceOf(img: ImageInput, i: number): string {
  return typeof img === "string" ? img : `image[${i}]`;
}

/** An options argument: `undefined` means none; anything but a plain object is BAD_OPTION. */
function optionsObject<T extends object>(v: T | undefined, what: string): T {
  if (v === undefined) return {} as T;
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    const got = v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
    throw new WebcapError("BAD_OPTION", `${what} options must be an object, got ${got}`);
  }
  return v;
}

/** The `dtype` option, default applied. */
function dtypeOption(v: unknown): WeightDtype {
  if (v === undefined || v === "f32" || v === "f16" || v === "q8" || v === "q4") return v ?? "f32";
  throw new WebcapError(
    "BAD_OPTION",
    `option dtype: must be "f32", "f16", "q8" or "q4", got ${JSON.stringify(v)}`,
  );
}

/** A tokenizer that lacks some of the model's token ids would drop them from the text. */
function checkTokenizer(tokenizer: Tokenizer, model: CaptionModel, source: string): void {
  const V = model.decoder.vocabSize;
  if (tokenizer.vocabSize < V) {
    throw new WebcapError(
      "BAD_TOKENIZER",
      `${source}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary ` +
        `has ${V}; ids ${tokenizer.vocabSize}…${V - 1} could not be turned into text. ` +
        "Use the tokenizer that belongs to the model.",
    );
  }
}

/** An image captioner: model + image processor + tokenizer. */
export class Captioner {
  private constructor(
    readonly gpu: Gpu,
    /** The model's folder or base URL. */
    readonly dir: string,
    readonly model: CaptionModel,
    readonly preprocessor: Preprocessor,
    readonly tokenizer: Tokenizer,
    readonly maxPixels: number,
    /** Decoding defaults from the model's `generation_config.json`. */
    readonly generation: GenerationDefaults,
  ) {}

  /**
   * Load a model: an `http(s)://` base URL of a model folder (fetched, not cached), a local
   * folder or a hub id `org/name` (Deno: downloaded into the HF cache). In a browser a hub id is
   * fetched from `{endpoint}/{id}/resolve/{revision}/` without a disk cache, and `/`, `./`,
   * `../` paths are URLs relative to the page (see {@link openModelFiles}).
   */
  static async fromPretrained(
    idOrDirOrUrl: string,
    options?: CaptionerOptions,
  ): Promise<Captioner> {
    const opts = optionsObject(options, "fromPretrained");
    const dtype = dtypeOption(opts.dtype);
    const maxPixels = maxPixelsOption(opts.maxPixels);
    const files = await openModelFiles(idOrDirOrUrl, opts);
    const generation = readGenerationConfig(
      await readModelJson(files, "generation_config.json", true),
      fileLocation(files, "generation_config.json"),
    );
    const prep = await loadPreprocessor(files);
    const tokenizer = await loadTokenizer(files);
    const gpu = opts.gpu ?? await getGpu();
    checkNotLost(gpu);
    const model = await loadCaptionModel(gpu, files, { dtype, groupSize: opts.groupSize });
    try {
      checkTokenizer(tokenizer, model, files.source);
    } catch (e) {
      model.dispose();
      throw e;
    }
    return new Captioner(gpu, files.source, model, prep, tokenizer, maxPixels, generation);
  }

  async #decode(img: ImageInput, i: number): Promise<RgbImage> {
    if (typeof img === "string") return await loadImage(img, { maxPixels: this.maxPixels });
    if (img instanceof Uint8Array) {
      return decodeImage(img, sourceOf(img, i), { maxPixels: this.maxPixels });
    }
    if (img?.data instanceof Uint8ClampedArray) {
      return rgbFromRgba(img as ImageDataLike, sourceOf(img, i));
    }
    if (
      !img || !(img.data instanceof Uint8Array) || img.data.length !== img.width * img.height * 3 ||
      img.width < 1 || img.height < 1
    ) {
      throw new WebcapError(
        "BAD_IMAGE",
        `${
          sourceOf(img, i)
        }: RGB pixels must be {width, height, data: Uint8Array[width·height·3]} with width, height ≥ 1`,
      );
    }
    return img as RgbImage;
  }

  /** Decode, preprocess and encode images; images that fail are reported, not fatal. */
  async encode(images: ImageInput[]): Promise<EncodedImages> {
    if (!Array.isArray(images)) {
      throw new WebcapError(
        "BAD_OPTION",
        `encode takes an array of images, got ${images === null ? "null" : typeof images}`,
      );
    }
    const inputs: EncodedImages["inputs"] = [];
    const slot: number[] = [];
    const pixels: Float32Array[] = [];
    for (const [i, img] of images.entries()) {
      const source = sourceOf(img, i);
      try {
        pixels.push(this.preprocessor.apply(await this.#decode(img, i)));
        slot.push(pixels.length - 1);
        inputs.push({ source });
      } catch (e) {
        if (!(e instanceof WebcapError)) throw e;
        slot.push(-1);
        inputs.push({ source, error: e });
      }
    }
    let state: EncoderState | undefined;
    if (pixels.length) {
      const { height: H, width: W } = this.preprocessor;
      const batch = new Float32Array(pixels.length * 3 * H * W);
      pixels.forEach((p, i) => batch.set(p, i * p.length));
      const rec = new Recorder(this.gpu);
      const t = uploadTensor(this.gpu, batch, [pixels.length, 3, H, W], "f32", "pixel_values");
      rec.releaseAfterSubmit(t);
      try {
        state = this.model.encode(rec, t);
      } finally {
        // after a failed recording too, so the pixels and temporaries are freed
        await rec.submit().catch((e) => {
          state?.dispose();
          throw e;
        });
      }
    }
    let disposed = false;
    const dispose = () => {
      if (!disposed) state?.dispose();
      disposed = true;
    };
    return { inputs, slot, state, dispose };
  }

  /** Token ids fed before generation: the decoder start token, then the prompt's tokens. */
  promptIds(prompt: string | undefined): number[] {
    const start = this.model.decoder.decoderStartTokenId;
    if (!prompt) return [start];
    return [start, ...this.tokenizer.encode(prompt, { addSpecialTokens: false })];
  }

  /** Caption images (paths, bytes or pixels), or reuse {@link encode}'s states. */
  async caption(
    images: ImageInput | ImageInput[] | EncodedImages,
    callOptions?: CaptionOptions,
  ): Promise<CaptionResult[]> {
    const options = optionsObject(callOptions, "caption");
    const gen = this.#generateOptions(options); // refuse bad options before any GPU work
    checkNotLost(this.gpu);
    const encoded = isEncoded(images)
      ? images
      : await this.encode(Array.isArray(images) ? images : [images]);
    try {
      return await this.#captionEncoded(encoded, options, gen);
    } finally {
      if (encoded !== images) encoded.dispose();
    }
  }

  /**
   * The generate options of a caption call (the model's decoding defaults under them), validated
   * against the model's vocabulary.
   */
  #generateOptions(options: CaptionOptions): GenerateOptions {
    const { prompt, rerank, ...rest } = options;
    if (rerank !== undefined) checkRerank(rerank);
    const d = this.model.decoder;
    const gen: GenerateOptions = {
      ...withDefaults(this.generation, rest, this.promptIds(prompt).length),
      eosTokenId: d.eosTokenId,
      padTokenId: d.padTokenId,
    };
    try {
      checkVocabulary(resolveOptions(gen), d.vocabSize);
    } catch (e) {
      const taken = defaultsTaken(this.generation, rest);
      if (!(e instanceof WebcapError) || taken.length === 0) throw e;
      throw new WebcapError(
        e.code,
        `${e.message} (with ${taken.join(", ")} from ${this.generation.source}; ` +
          "pass the option to override it)",
        { cause: e },
      );
    }
    return gen;
  }

  async #captionEncoded(
    enc: EncodedImages,
    options: CaptionOptions,
    gen: GenerateOptions,
  ): Promise<CaptionResult[]> {
    const prompt_ = this.promptIds(options.prompt);
    let sequences: GeneratedSequence[][] = [];
    if (enc.state) sequences = await this.generate(enc.state, prompt_, gen);
    return enc.inputs.map((input, i) => {
      let captions: Caption[] = enc.slot[i] < 0 ? [] : sequences[enc.slot[i]].map((s) => ({
        text: this.tokenizer.decode([...prompt_.slice(1), ...s.tokens], { skipSpecialTokens: true })
          .trim(),
        score: s.score,
        tokens: s.tokens,
        logprobs: s.logprobs,
      }));
      if (options.rerank) {
        captions = rerank(captions, options.rerank.reranker, options.rerank.weight)
          .map(({ text, score, tokens, logprobs }) => ({ text, score, tokens, logprobs }));
      }
      return { source: input.source, error: input.error, captions };
    });
  }

  /** Run a decoding strategy over encoded images with explicit prompt ids (all images share them). */
  generate(
    enc: EncoderState,
    promptIds: number[],
    options: GenerateOptions,
  ): Promise<GeneratedSequence[][]> {
    const prompts = Array.from({ length: enc.images }, () => promptIds.slice());
    return generateOnGpu(this.gpu, this.model, enc, prompts, options);
  }

  /** The WebGPU adapter's name (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"). */
  get adapterName(): string {
    return this.gpu.adapterName;
  }

  /** `"cpu"` when the adapter is a software rasterizer (far slower than a GPU), else `"gpu"`. */
  get adapterClass(): AdapterClass {
    return this.gpu.adapterClass;
  }

  /**
   * Free the model's GPU memory (WebGPU keeps what submitted work still reads until it is done)
   * and wait for the queue: the returned promise resolves when the work in flight is done, and
   * until then it keeps the process alive, so a script that ends right after `dispose()` does
   * not exit under work in flight (which panics inside Deno's WebGPU).
   */
  dispose(): Promise<void> {
    this.model.dispose();
    return this.gpu.device.queue.onSubmittedWorkDone().catch(() => {});
  }
}

function isEncoded(x: unknown): x is EncodedImages {
  return typeof x === "object" && x !== null && "slot" in x && "inputs" in x;
}
