/**
 * Parity against a fixture directory in the layout of `shared/fixtures/hf/<model>/`: a model
 * folder with `reference.safetensors` (inputs and transformers' outputs) and `generate.json`
 * (generate() cases). Compares every reference tensor by relative L2 error and runs every case;
 * what is compared is each architecture's parity procedure (`src/arch/registry.ts`), run with
 * the tools here.
 *
 * Bounds (see `shared/fixtures/hf/README.md`): relative L2 error 1e-3 for logits (with random
 * weights of initializer_range 0.5 they are large sums with heavy cancellation, so float32 in any
 * summation order lands up to ~5e-4 from float64) and 1e-4 for everything else. With f16 weights
 * the floor is the rounding of the weights itself: each tensor is held to the error of the float32
 * path run on f16-rounded weights plus the float32 bound, not to a fixed number. With q8 / q4
 * weights the floor is the float32 path run on the dequantized weights (each quantized parameter
 * quantized and back, as the model holds it) the same way.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { CaptionModel, EncoderState } from "../arch/caption_model.ts";
import type { CaseCheck } from "../arch/architecture.ts";
import { findArchitecture } from "../arch/registry.ts";
import { generateOnGpu } from "./gpu_decoder.ts";
import { loadCaptionModel, readJson } from "../arch/load.ts";
import { openSafetensors, parseSafetensorsHeader } from "../io/safetensors.ts";
import { localFiles, type ModelFiles } from "../io/model_files.ts";
import { f16ToF32 } from "../io/dtype.ts";
import { f32ToF16, type Param, type WeightDtype } from "../nn/params.ts";
import { quantizedValues } from "../nn/quant.ts";
import type { WeightStore } from "../io/weights.ts";
import { optionsFromHF } from "../decode/hf_kwargs.ts";
import type { GenerateOptions } from "../decode/options.ts";
import type { GeneratedSequence } from "../decode/search.ts";

export type { CaseCheck } from "../arch/architecture.ts";

/** One compared tensor. */
export interface TensorCheck {
  /** Name of the reference tensor in `reference.safetensors` (e.g. `logits`). */
  name: string;
  /** Relative L2 error of ours against the reference, `||ours - ref|| / ||ref||`. */
  relL2: number;
  /** The float32 bound: 1e-3 for logits, 1e-4 for other tensors (or the run's `tolerance`). */
  bound: number;
  /**
   * f16, q8 and q4 runs: `relL2` of the float32 path run on f16-rounded (or quantized and
   * dequantized) weights: the rounding floor.
   */
  floor?: number;
  /** Whether `relL2 ≤ (floor ?? 0) + bound`. */
  pass: boolean;
}

/** Everything a parity run measured. */
export interface ParityReport {
  /** The fixture model folder. */
  dir: string;
  /** The loaded model's {@link CaptionModel.architecture}. */
  architecture: string;
  /** Weight dtype the model ran in. */
  dtype: WeightDtype;
  /** Every compared reference tensor. */
  tensors: TensorCheck[];
  /** Every generate case. */
  cases: CaseCheck[];
}

/** ||a - b|| / ||b|| in float64. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

interface Fixture {
  gpu: Gpu;
  model: CaptionModel;
  ref: WeightStore;
  tolerance?: number;
  tensors: TensorCheck[];
}

/** The float32 bound of a reference tensor: 1e-3 for logits, 1e-4 for the rest. */
export function tensorBound(name: string): number {
  return /logits/.test(name) ? 1e-3 : 1e-4;
}

async function readTensors(gpu: Gpu, record: (rec: Recorder) => Tensor[]): Promise<Float32Array[]> {
  const rec = new Recorder(gpu);
  const outs = record(rec);
  const reads = outs.map((t) => rec.readTensor(t));
  await rec.submit();
  return (await Promise.all(reads)) as Float32Array[];
}

function check(f: Fixture, name: string, got: Float32Array, ref: Float32Array): void {
  const e = relL2(got, ref);
  const bound = f.tolerance ?? tensorBound(name);
  f.tensors.push({ name, relL2: e, bound, pass: e <= bound });
}

/** Upload the reference pixels and encode them (one pass). */
async function encodeReference(f: Fixture, name: string): Promise<EncoderState> {
  const data = await f.ref.readF32(name);
  const rec = new Recorder(f.gpu);
  const enc = f.model.encode(rec, rec.upload(data, f.ref.info(name).shape, "f32"));
  await rec.submit();
  return enc;
}

/** Teacher-forced logits (and optionally attention) of `ids [N, T]` over all rows at once. */
async function teacherForced(
  f: Fixture,
  enc: EncoderState,
  ids: number[][],
  attention = false,
): Promise<{ logits: Float32Array; attention?: Float32Array }> {
  const N = ids.length, T = ids[0].length;
  const rec = new Recorder(f.gpu);
  const st = f.model.beginDecode(rec, enc, Int32Array.from({ length: N }, (_, i) => i), T);
  const pl = rec.scope(() => {
    const tokens = rec.upload(Int32Array.from(ids.flat()), [N * T], "i32");
    return rec.readTensor(f.model.step(rec, st, tokens, T, { attention }));
  });
  const pa = attention && st.attention ? rec.readTensor(st.attention) : undefined;
  await rec.submit();
  const out = {
    logits: (await pl) as Float32Array,
    attention: pa ? (await pa) as Float32Array : undefined,
  };
  st.dispose();
  return out;
}

async function idsOf(ref: WeightStore, name: string): Promise<number[][]> {
  const flat = Array.from(await ref.readF32(name), Math.round);
  const [N, T] = ref.info(name).shape;
  return Array.from({ length: N }, (_, i) => flat.slice(i * T, (i + 1) * T));
}

/** Generated part of a reference row: after the prompt, cut after the first eos (padding follows). */
function generatedPart(seq: number[], promptLen: number, eos: number): number[] {
  const gen = seq.slice(promptLen);
  const end = gen.indexOf(eos);
  return end < 0 ? gen : gen.slice(0, end + 1);
}

function sameTokens(
  got: GeneratedSequence[][],
  want: number[][],
  perImage: number,
): string | undefined {
  for (let i = 0; i < got.length; i++) {
    for (let j = 0; j < perImage; j++) {
      const g = got[i][j]?.tokens ?? [], w = want[i * perImage + j];
      if (g.join() !== w.join()) return `image ${i} sequence ${j}: got [${g}] want [${w}]`;
    }
  }
  return undefined;
}

type Case = Record<string, unknown> & {
  kwargs?: Record<string, unknown>;
  sequences?: number[][];
  sequences_scores?: number[];
  error?: string;
};

/** Properties that must hold where no reference sequences exist. */
function propertyCheck(
  kwargs: Record<string, unknown>,
  out: GeneratedSequence[][],
): string | undefined {
  const force = kwargs.force_words_ids as number[][] | undefined;
  for (const [i, seqs] of out.entries()) {
    for (const s of seqs) {
      for (const word of force ?? []) {
        const hit = s.tokens.some((_, k) => word.every((t, m) => s.tokens[k + m] === t));
        if (!hit) return `image ${i}: forced word [${word}] missing from [${s.tokens}]`;
      }
    }
    const groups = Number(kwargs.num_beam_groups ?? 1);
    if (
      groups > 1 && new Set(seqs.map((s) => s.tokens.join())).size < Math.min(groups, seqs.length)
    ) {
      return `image ${i}: diverse groups returned identical sequences`;
    }
  }
  return undefined;
}

async function runTransformerCases(
  f: Fixture,
  enc: EncoderState,
  cases: Record<string, Case>,
): Promise<CaseCheck[]> {
  const d = f.model.decoder;
  const out: CaseCheck[] = [];
  for (const [name, c] of Object.entries(cases)) {
    if (c.prompt) { // BLIP conditional captioning: the reference drops the processor's trailing [SEP]
      const prompts = (c.prompt as number[][]).map((p) => p.slice(0, -1));
      const want = c.sequences!.map((s) => generatedPart(s, prompts[0].length, d.eosTokenId));
      const maxNewTokens = c.sequences![0].length - prompts[0].length;
      const got = await generateOnGpu(f.gpu, f.model, enc, prompts, {
        maxNewTokens,
        eosTokenId: d.eosTokenId,
        padTokenId: d.padTokenId,
      });
      const bad = sameTokens(got, want, 1);
      out.push({
        name,
        status: bad ? "fail" : "pass",
        detail: bad ?? `prompt [${prompts[0]}], ${want.length} sequences identical`,
      });
      continue;
    }
    const kwargs = c.kwargs ?? {};
    const opts: GenerateOptions = {
      ...optionsFromHF(kwargs),
      eosTokenId: d.eosTokenId,
      padTokenId: d.padTokenId,
    };
    const prompts = Array.from({ length: enc.images }, () => [d.decoderStartTokenId]);
    let got: GeneratedSequence[][];
    try {
      got = await generateOnGpu(f.gpu, f.model, enc, prompts, opts);
    } catch (e) {
      out.push({ name, status: "fail", detail: `${(e as Error).message}` });
      continue;
    }
    if (!c.sequences) {
      const bad = propertyCheck(kwargs, got);
      out.push({
        name,
        status: bad ? "fail" : "no-reference",
        detail: bad ??
          `fixture has no reference (${String(c.error ?? "").slice(0, 80)}…); properties hold`,
      });
      continue;
    }
    const perImage = Number(kwargs.num_return_sequences ?? 1);
    const want = c.sequences.map((s) => generatedPart(s, 1, d.eosTokenId));
    const bad = sameTokens(got, want, perImage);
    let detail = bad ?? `${want.length} sequences identical`;
    if (!bad && c.sequences_scores) {
      const scores = got.flatMap((g) => g.slice(0, perImage).map((s) => s.score));
      const worst = Math.max(...scores.map((s, k) => Math.abs(s - c.sequences_scores![k])));
      detail += `; sequences_scores max |Δ| ${worst.toExponential(2)}`;
    }
    out.push({ name, status: bad ? "fail" : "pass", detail });
  }
  return out;
}

/** Greedy tokens of a ClipCap / Show-Attend-Tell case (`tokens`, `max_new_tokens`). */
async function runGreedyTokens(f: Fixture, enc: EncoderState, c: Case): Promise<CaseCheck> {
  const d = f.model.decoder;
  const want = c.tokens as number[][];
  const got = await generateOnGpu(
    f.gpu,
    f.model,
    enc,
    Array.from({ length: enc.images }, () => [d.decoderStartTokenId]),
    {
      maxNewTokens: Number(c.max_new_tokens),
      eosTokenId: d.eosTokenId,
      padTokenId: d.padTokenId,
    },
  );
  const bad = sameTokens(got, want.map((w) => generatedPart(w, 0, d.eosTokenId)), 1);
  return {
    name: "greedy",
    status: bad ? "fail" : "pass",
    detail: bad ?? `${want.length} sequences identical`,
  };
}

/** The architecture's parity procedure, run with this fixture's tools. */
function parityOf(
  f: Fixture,
  dir: string,
  cases: Record<string, Case>,
): Promise<CaseCheck[]> {
  const arch = findArchitecture(f.model.architecture);
  if (!arch) {
    throw new WebcapError(
      "UNSUPPORTED_ARCH",
      `${dir}: no parity procedure for ${f.model.architecture}`,
    );
  }
  return arch.parity({
    model: f.model,
    ref: f.ref,
    cases,
    encode: (name) => encodeReference(f, name),
    read: (tensors) => readTensors(f.gpu, () => tensors),
    check: (name, got, want) => check(f, name, got, want),
    ids: (name) => idsOf(f.ref, name),
    teacherForced: (enc, ids, attention) => teacherForced(f, enc, ids, attention),
    generateCases: (enc) => runTransformerCases(f, enc, cases),
    greedyCase: (enc) => runGreedyTokens(f, enc, cases.greedy),
  });
}

/** Rounds the float32 values of one stored tensor, by name; undefined leaves it as stored. */
type Rounding = (name: string, values: Float32Array) => Float32Array | undefined;

/** `bytes` of a safetensors file with its F32 tensors rounded by `round`. */
function roundF32Tensors(bytes: Uint8Array, source: string, round: Rounding): Uint8Array {
  const header = parseSafetensorsHeader(bytes, source);
  const out = bytes.slice();
  for (const [name, t] of header.tensors) {
    if (t.dtype !== "F32") continue;
    const [begin, end] = [header.headerBytes + t.begin, header.headerBytes + t.end];
    const values = new Float32Array(out.slice(begin, end).buffer); // [elements], aligned copy
    const rounded = round(name, values);
    if (rounded) out.set(new Uint8Array(rounded.buffer), begin);
  }
  return out;
}

/** The files of `dir` with the float32 weights of its safetensors files rounded by `round`. */
function roundedFiles(dir: string, what: string, round: Rounding): ModelFiles {
  const files = localFiles(dir);
  return {
    source: `${dir} (${what})`,
    text: files.text,
    list: files.list,
    bytes: async (name) => {
      const bytes = await files.bytes(name);
      return bytes && name.endsWith(".safetensors") ? roundF32Tensors(bytes, name, round) : bytes;
    },
  };
}

/** The rounding of the floor of a `dtype` run whose quantized parameters are `params`. */
function floorRounding(dtype: WeightDtype, params: readonly Param[]): Rounding {
  if (dtype === "f16") return (_, values) => f16ToF32(f32ToF16(values));
  const quantized = new Map(params.filter((p) => p.quant).map((p) => [p.name, p]));
  return (name, values) => {
    const p = quantized.get(name);
    return p && quantizedValues(values, p);
  };
}

/** Compare the model in `files` (run in `dtype`) with the fixture folder `dir`. */
async function measure(
  gpu: Gpu,
  dir: string,
  files: string | ModelFiles,
  load: { dtype: WeightDtype; groupSize?: number },
  tolerance?: number,
  seen: (params: readonly Param[]) => void = () => {},
): Promise<ParityReport> {
  const { dtype } = load;
  const cases = await readJson(`${dir}/generate.json`) as Record<string, Case>;
  const ref = await openSafetensors(`${dir}/reference.safetensors`);
  let model: CaptionModel;
  try {
    model = await loadCaptionModel(gpu, files, load);
    seen(model.params);
  } catch (e) {
    ref.close();
    throw e;
  }
  const f: Fixture = { gpu, model, ref, tolerance, tensors: [] };
  try {
    const caseChecks = await parityOf(f, dir, cases);
    return { dir, architecture: model.architecture, dtype, tensors: f.tensors, cases: caseChecks };
  } finally {
    ref.close();
    model.dispose();
  }
}

/**
 * Run parity on a fixture model folder. With `dtype: "f16"` the float32 path also runs on
 * f16-rounded weights, with `"q8"` / `"q4"` on the weights quantized and dequantized as the model
 * holds them, and each tensor is held to that rounding floor plus its float32 bound.
 */
export async function runParity(
  gpu: Gpu,
  dir: string,
  opts: { dtype?: WeightDtype; groupSize?: number; tolerance?: number } = {},
): Promise<ParityReport> {
  let params: readonly Param[] = [];
  const load = { dtype: opts.dtype ?? "f32", groupSize: opts.groupSize };
  const report = await measure(gpu, dir, dir, load, opts.tolerance, (p) => params = [...p]);
  if (report.dtype === "f32") return report;
  const floorFiles = roundedFiles(
    dir,
    `${report.dtype}-rounded`,
    floorRounding(report.dtype, params),
  );
  const floor = await measure(gpu, dir, floorFiles, { dtype: "f32" }, opts.tolerance);
  for (const t of report.tensors) {
    t.floor = floor.tensors.find((x) => x.name === t.name)?.relL2 ?? 0;
    t.pass = t.relL2 <= t.floor + t.bound;
  }
  return report;
}
