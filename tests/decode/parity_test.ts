/**
 * Greedy and beam search against transformers on the recorded per-step scores of the fixtures.
 * The recorded `step_i` rows are the reference's processed scores: raw logits for greedy (no
 * processor in that case) and log-softmax of the logits for beam3 (no processor either;
 * log-softmax is idempotent up to rounding). Replaying them as logits through the CpuDecoder
 * gives each row the reference's distribution as long as the search keeps the reference's rows
 * in the reference's order, so identical sequences and scores test the selection logic,
 * row bookkeeping and finished-image dropping together.
 */
import assert from "node:assert/strict";
import { cpuDecoderFactory } from "../../src/decode/cpu_decoder.ts";
import { generate } from "../../src/decode/generate.ts";
import { optionsFromHF } from "../../src/decode/hf_kwargs.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { HF_FIXTURES, hfFixture, replayModel } from "./helpers.ts";

interface Case {
  kwargs: Record<string, unknown>;
  sequences: number[][];
  sequences_scores?: number[];
}

/** Model folders with a generate.json and recorded scores for `name`. */
function casesWithScores(name: string): { dir: string; arch: string }[] {
  const out: { dir: string; arch: string }[] = [];
  for (const e of Deno.readDirSync(HF_FIXTURES)) {
    if (!e.isDirectory) continue;
    let config: { architectures?: string[] };
    try {
      Deno.statSync(hfFixture(`${e.name}/generate.json`));
      config = JSON.parse(Deno.readTextFileSync(hfFixture(`${e.name}/config.json`)));
    } catch {
      continue;
    }
    const arch = config.architectures?.[0];
    if (!arch) continue;
    try {
      Deno.statSync(hfFixture(`scores-${arch}-${name}.safetensors`));
      out.push({ dir: e.name, arch });
    } catch {
      continue;
    }
  }
  return out;
}

/** Generated ids of a reference row: after the prompt, cut after the first eos (padding). */
function generatedPart(seq: number[], promptLen: number, eos: number[]): number[] {
  const gen = seq.slice(promptLen);
  const end = gen.findIndex((t) => eos.includes(t));
  return end < 0 ? gen : gen.slice(0, end + 1);
}

async function runCase(dir: string, arch: string, name: string): Promise<void> {
  const all = JSON.parse(Deno.readTextFileSync(hfFixture(`${dir}/generate.json`)));
  const c: Case = all[name];
  const gc = JSON.parse(Deno.readTextFileSync(hfFixture(`${dir}/generation_config.json`)));
  const start: number = gc.decoder_start_token_id ?? gc.bos_token_id;
  const eos: number[] = [gc.eos_token_id].flat();
  const store = await openSafetensors(hfFixture(`scores-${arch}-${name}.safetensors`));
  const stepNames = store.names().filter((n) => n.startsWith("step_"));
  const steps: Float32Array[] = [];
  for (let t = 0; t < stepNames.length; t++) steps.push(await store.readF32(`step_${t}`));
  const [rows, vocab] = store.info("step_0").shape;
  store.close();
  const opts = { ...optionsFromHF(c.kwargs), eosTokenId: eos, padTokenId: gc.pad_token_id };
  const perImage = opts.numReturnSequences ?? 1;
  const images = c.sequences.length / perImage;
  const rowsPerImage = rows / images;
  const factory = cpuDecoderFactory(replayModel(steps, rowsPerImage, vocab, 1), vocab, images);
  const prompts = Array.from({ length: images }, () => [start]);
  const result = await generate(factory, prompts, opts);
  for (let i = 0; i < images; i++) {
    assert.deepEqual(result[i].length, perImage, `${dir} ${name} image ${i}: sequences returned`);
    for (let j = 0; j < perImage; j++) {
      const ref = c.sequences[i * perImage + j];
      assert.deepEqual(ref[0], start, `${dir} ${name}: reference starts with the prompt`);
      const got = result[i][j];
      assert.deepEqual(
        got.tokens,
        generatedPart(ref, 1, eos),
        `${dir} ${name} image ${i} seq ${j}`,
      );
      const refScore = c.sequences_scores?.[i * perImage + j];
      if (refScore !== undefined) {
        assert(
          Math.abs(got.score - refScore) < 1e-5 * Math.max(1, Math.abs(refScore)),
          `${dir} ${name} image ${i} seq ${j}: score ${got.score} vs ${refScore}`,
        );
      }
    }
  }
}

for (const name of ["greedy", "beam3"]) {
  Deno.test(`decode parity: ${name} replays the reference's recorded scores`, async () => {
    const cases = casesWithScores(name);
    assert(cases.length > 0, `no scores-*-${name}.safetensors fixtures found`);
    for (const { dir, arch } of cases) await runCase(dir, arch, name);
  });
}
