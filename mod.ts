/**
 * webcap: image captioning on the GPU through WebGPU.
 *
 * ```ts
 * import { Captioner } from "@webcap/webcap";
 * const captioner = await Captioner.fromPretrained("nlpconnect/vit-gpt2-image-captioning");
 * const [result] = await captioner.caption("photo.jpg", { numBeams: 3 });
 * console.log(result.captions[0].text);
 * ```
 * @module
 */

/** The captioner: model + image processor + tokenizer, any decoding strategy. */
export { Captioner } from "./src/captioner/captioner.ts";
export type { GenerationDefaults } from "./src/captioner/generation_config.ts";
export type {
  Caption,
  CaptionerOptions,
  CaptionOptions,
  CaptionResult,
  EncodedImages,
  ImageInput,
} from "./src/captioner/captioner.ts";
/** The one error type, with a stable `code`. */
export { WebcapError } from "./src/errors.ts";
export type { WebcapErrorCode } from "./src/errors.ts";
/** Parity against a fixture folder of transformers' reference outputs. */
export { runParity } from "./src/captioner/parity.ts";
export type { CaseCheck, ParityReport, TensorCheck } from "./src/captioner/parity.ts";
/** Models: the CaptionModel interface, loading by architecture, and the GPU decoder bridge. */
export type {
  CaptionModel,
  DecoderConfig,
  DecodeState,
  EncoderState,
  StepOptions,
} from "./src/arch/caption_model.ts";
export { loadCaptionModel, loadPreprocessor, loadTokenizer } from "./src/arch/load.ts";
export type { LoadOptions } from "./src/arch/load.ts";
export type { Param, WeightDtype } from "./src/nn/params.ts";
export type { QuantMatrix, QuantScheme } from "./src/shaders/quant/qmatrix.ts";
/** Training: parameter groups and gradients, AdamW / SGD on the GPU, schedules, memory plan, checkpoints, the trainer. */
export { Gradients } from "./src/nn/grads.ts";
export { noWeightDecay, paramGroups } from "./src/train/param_groups.ts";
export type {
  ParamGroupOptions,
  ParamGroups,
  Segment,
  TrainTensor,
} from "./src/train/param_groups.ts";
export { Optimizer, resolveOptimizer } from "./src/train/optim.ts";
export type {
  AdamWOptions,
  OptimizerConfig,
  OptimizerOptions,
  ResolvedStep,
  SgdOptions,
  StepOptions as TrainStepOptions,
} from "./src/train/optim.ts";
export {
  constantSchedule,
  cosineSchedule,
  linearSchedule,
  scheduleOf,
} from "./src/train/schedule.ts";
export type { Schedule, ScheduleConfig } from "./src/train/schedule.ts";
export { planMemory } from "./src/train/memory.ts";
export type { MemoryPlan, MemoryPlanOptions } from "./src/train/memory.ts";
export {
  HF_LAYOUT,
  loadOptimizerState,
  readTrainerState,
  saveCheckpoint,
} from "./src/train/checkpoint.ts";
export type { CheckpointLayout, Saved, SaveOptions, TrainerState } from "./src/train/checkpoint.ts";
export { Trainer } from "./src/train/trainer.ts";
export type { FitOptions, StepReport, TrainBatch, TrainerOptions } from "./src/train/trainer.ts";
/** SCST and cross-entropy training over a caption data set (what `deno task train` runs). */
export {
  ciderReward,
  epochShuffle,
  greedyBaseline,
  loopSteps,
  meanBaseline,
  readLoopState,
  scstSignature,
  scstStep,
  trainCaptioner,
  validate,
} from "./src/train/scst.ts";
export type {
  BaselineFn,
  BatchChooser,
  LoadedSplit,
  LoopState,
  LoopStep,
  RewardFn,
  ScstOptions,
  ScstReport,
  TrainLoopOptions,
} from "./src/train/scst.ts";
/** Example SCST rewards (keywords, length, BLEU-4) and weighted sums of rewards. */
export {
  bleu4Reward,
  combineRewards,
  keywordReward,
  lengthReward,
  parseRewardWeights,
  REWARD_NAMES,
  rewardName,
  rewardTerms,
} from "./src/train/rewards.ts";
export type { RewardContext, RewardTerm, RewardWeights } from "./src/train/rewards.ts";
/** The training log (JSON lines), progress line and curve picture of a training run. */
export {
  readTrainLog,
  stepLine,
  TRAIN_CURVE,
  TRAIN_LOG,
  trainCurveSvg,
  TrainLog,
  TrainProgress,
} from "./src/train/train_log.ts";
export type {
  LogEval,
  LogLine,
  LogSave,
  LogStart,
  LogStep,
  TrainLogOptions,
  TrainProgressOptions,
} from "./src/train/train_log.ts";
export { loadSplitImages, readCaptionData } from "./src/train/data.ts";
export type {
  CaptionEntry,
  CaptionSplits,
  ReadDataOptions,
  SkipCounts,
  SplitName,
} from "./src/train/data.ts";
export type { TokenBatch } from "./src/train/batch.ts";
export { writeSafetensors } from "./src/io/safetensors_write.ts";
export type { TensorToWrite } from "./src/io/safetensors_write.ts";
export { generateOnGpu, GpuDecoder } from "./src/captioner/gpu_decoder.ts";
/** The WebGPU runtime: device, tensors, one-pass recording, readback and timing. */
export { getGpu, requestGpu } from "./src/gpu/device.ts";
export type { AdapterClass, Gpu, GpuOptions } from "./src/gpu/device.ts";
export { Recorder, tensorWindow } from "./src/gpu/recorder.ts";
export type { Binding, TensorWindow } from "./src/gpu/recorder.ts";
/** The kernel schema: declare a WGSL kernel once, record it with typed uniforms and bindings. */
export { foldGrid, Kernel, optional, read, readWrite } from "./src/gpu/kernel.ts";
export type {
  Bindings,
  Groups,
  KernelCall,
  KernelSpec,
  StorageSpec,
  StorageSpecs,
  StorageType,
  UniformSpecs,
  UniformType,
} from "./src/gpu/kernel.ts";
export { emptyTensor, ownedTensor, Tensor, uploadTensor, writeTensor } from "./src/gpu/tensor.ts";
export type { DType, HostData } from "./src/gpu/tensor.ts";
export { BufferPool } from "./src/gpu/pool.ts";
export { PipelineCache } from "./src/gpu/pipeline.ts";
export type { CompiledKernel } from "./src/gpu/pipeline.ts";
export { BindGroupCache } from "./src/gpu/bind_groups.ts";
export { GpuCounters } from "./src/gpu/counters.ts";
export type { BufferRange } from "./src/gpu/bind_groups.ts";
/** Hub downloads: `resolveModel("org/name")` → a local model directory in the HF cache. */
export { hubCacheDir, resolveModel } from "./src/io/hub.ts";
export type { ProgressCallback, ResolveModelOptions } from "./src/io/hub.ts";
/** A one-line terminal progress bar on stderr. */
export { ProgressBar } from "./src/io/progress.ts";
export type { ProgressBarOptions, ProgressWriter } from "./src/io/progress.ts";
/** Checkpoint reading, tensor by tensor: safetensors (single or sharded) and torch.save pickles. */
export {
  bf16ToF32,
  f16ToF32,
  openPickleCheckpoint,
  openSafetensors,
  openShardedWeights,
  openWeights,
  parseSafetensorsHeader,
  withTiedWeights,
} from "./src/io/weights.ts";
export type { Dtype, TensorInfo, WeightStore } from "./src/io/weights.ts";
export type { SafetensorsEntry, SafetensorsHeader } from "./src/io/safetensors.ts";
/** METEOR 1.5 (COCO settings: `-l en -norm`, exact/stem/synonym, optional paraphrase table). */
export { MeteorScorer } from "./src/eval/meteor/meteor.ts";
export type { MeteorModule, MeteorOptions, MeteorResult } from "./src/eval/meteor/meteor.ts";
export type { MeteorResourceTexts } from "./src/eval/meteor/resources.ts";
export { ParaphraseTable } from "./src/eval/meteor/paraphrase.ts";
export type { ParaphrasePath } from "./src/eval/meteor/paraphrase.ts";
/** WordNet 3.0 synonym dictionary (Meteor's synsets, exceptions and suffix rules). */
export { loadWordNet, parseMeteorWordNet } from "./src/eval/wordnet.ts";
export type { LoadWordNetOptions, WordNet } from "./src/eval/wordnet.ts";
/** The Snowball English (Porter2) stemmer. */
export { snowballEnglishStem } from "./src/eval/meteor/snowball_english.ts";
/** SPICE-ts: a scene-graph caption metric after SPICE (rule-based parse; not the Java SPICE). */
export { SpiceScorer } from "./src/eval/spice/spice.ts";
export type {
  SpiceImageDetail,
  SpiceOptions,
  SpiceResult,
  SpiceTupleView,
} from "./src/eval/spice/spice.ts";
export { parseSceneGraph } from "./src/eval/spice/scene_graph.ts";
export type { SceneGraph } from "./src/eval/spice/scene_graph.ts";
/** Image decoding to RGB as transformers' `load_image` (EXIF orientation, PIL `convert("RGB")`). */
export {
  applyOrientation,
  decodeImage,
  DEFAULT_MAX_PIXELS,
  loadImage,
} from "./src/image/decode.ts";
export type { DecodeImageOptions, RgbImage } from "./src/image/decode.ts";
/** `preprocessor_config.json` → pixel_values [3, H, W], as transformers 5 (torchvision). */
export { preprocessorFromConfig, resizeRgb } from "./src/image/preprocess.ts";
export type { Preprocessor } from "./src/image/preprocess.ts";
/** Tokenizers: HF `tokenizer.json` (BPE, WordPiece, Unigram) and Show-Attend-Tell word maps. */
export { cleanUpTokenization, Tokenizer } from "./src/text/tokenizer.ts";
export type {
  DecodeOptions,
  EncodeOptions,
  TokenizerBackend,
  TokenizerConfig,
  TokenizerKind,
  TokenizerOptions,
} from "./src/text/tokenizer.ts";
/** Decoding over any {@link DecoderStep}: greedy, sampling, beam, diverse and constrained beam search. */
export { generate } from "./src/decode/generate.ts";
export type { DecoderFactory } from "./src/decode/generate.ts";
export type {
  BeamPlan,
  DecoderStep,
  LoopOut,
  LoopPlan,
  RowProcessing,
  StepOut,
  StepWant,
} from "./src/decode/step.ts";
export type { ForceWord, GenerateOptions } from "./src/decode/options.ts";
export type { GeneratedSequence } from "./src/decode/search.ts";
/** transformers `generate` kwargs (snake_case) to {@link GenerateOptions}. */
export { optionsFromHF } from "./src/decode/hf_kwargs.ts";
/** CPU reference of the step contract, and a DecoderStep over any CPU language model. */
export { processRows } from "./src/decode/processors.ts";
export type { ProcessorRules } from "./src/decode/processors.ts";
export type { WarpSettings } from "./src/decode/warpers.ts";
export { CpuDecoder, cpuDecoderFactory } from "./src/decode/cpu_decoder.ts";
export type { CpuDecoderFactory, CpuLanguageModel } from "./src/decode/cpu_decoder.ts";
/** Controllable captions: n-best reranking (sentiment lexicon) and length control. */
export {
  LENGTH_RANGES,
  lengthControl,
  LexiconSentiment,
  rerank,
  SENTIMENT_LEXICON,
} from "./src/decode/rerank.ts";
export type { RerankCandidate, Reranker } from "./src/decode/rerank.ts";
/** Attention pictures: per-word cross-attention (or Show-Attend-Tell α) maps as PNG tiles. */
export {
  captionAttention,
  hasAttentionMaps,
  imageGrid,
  tokenAttention,
  tokenWord,
} from "./src/captioner/caption_attention.ts";
export type {
  AttentionOptions,
  CaptionAttention,
  TokenAttention,
} from "./src/captioner/caption_attention.ts";
export {
  attentionPictureLayout,
  renderAttentionPicture,
  writeAttentionMap,
} from "./src/captioner/attention_picture.ts";
export type {
  AttentionPictureLayout,
  AttentionPictureOptions,
} from "./src/captioner/attention_picture.ts";
/** A 5×8 bitmap font for printable ASCII, and an 8-bit RGB PNG writer (Paeth-filtered). */
export { drawText, textWidth } from "./src/image/bitmap_font.ts";
export type { RgbCanvas } from "./src/image/bitmap_font.ts";
export { encodeRgbPng } from "./src/image/png_writer.ts";
/** COCO caption evaluation as pycocoevalcap: PTB tokenization, BLEU, ROUGE-L, CIDEr-D, harness. */
export { evaluateCaptions, evaluatePaired, METRIC_FAMILIES } from "./src/eval/coco.ts";
export type {
  EvaluateOptions,
  EvaluationResult,
  MetricFamily,
  PerImageScores,
} from "./src/eval/coco.ts";
export {
  pairCaptions,
  parseFixture,
  parseReferences,
  parseResults,
  readJsonFile,
} from "./src/eval/coco_input.ts";
export type {
  CandidateTable,
  CaptionResult as CocoCaptionResult,
  ImageId,
  PairedCaptions,
  ReferenceTable,
} from "./src/eval/coco_input.ts";
export { PTB_PUNCTUATION, ptbTokenize, ptbTokenizeOne } from "./src/eval/ptb/tokenizer.ts";
export { Bleu } from "./src/eval/bleu.ts";
export type { BleuResult, BleuStats } from "./src/eval/bleu.ts";
export { RougeL } from "./src/eval/rouge.ts";
export type { RougeResult } from "./src/eval/rouge.ts";
export { CiderD, documentFrequency } from "./src/eval/cider.ts";
export type { CiderOptions, CiderResult, DocumentFrequency } from "./src/eval/cider.ts";
/** Model files from a local folder (Deno) or a base URL (anywhere), and what a model string names. */
export { asModelFiles, localFiles, subFolder, urlFiles } from "./src/io/model_files.ts";
export type { ModelFiles } from "./src/io/model_files.ts";
export { openModelFiles } from "./src/io/model_source.ts";
export { hubResolveUrl } from "./src/io/hub.ts";
export { openWeightFile } from "./src/io/weights.ts";
/** Canvas `ImageData` (RGBA) to RGB as PIL's `convert("RGB")`: alpha dropped. */
export { rgbFromRgba } from "./src/image/decode.ts";
export type { ImageDataLike } from "./src/image/decode.ts";
