/**
 * Caption images: files, folders, URLs, lists and WebDataset tars, in one process or as one
 * task of a sharded, resumable job; and merge the outputs of a job's tasks.
 *
 *   deno task caption photo.jpg [more.png folder/] [--model DIR|org/name] [--json] [decoding flags]
 *   deno task caption shards/*.tar --shard 0/4 --output part-0.jsonl
 *   deno task caption merge part-*.jsonl --output results.json --format coco
 *
 * `deno task caption --help` lists every flag with its meaning (the table is
 * `CAPTION_HELP` in src/cli/options.ts).
 * @module
 */
import { Captioner, type CaptionOptions, type CaptionResult } from "../src/captioner/captioner.ts";
import { folderAttentionMaps } from "../src/captioner/caption_attention.ts";
import { openModelFiles } from "../src/io/model_source.ts";
import { WebcapError } from "../src/errors.ts";
import { checkInputs, expandRanges } from "../src/jobs/inputs.ts";
import { cocoResults, mergeJobs, reportLines } from "../src/jobs/merge.ts";
import { headerLine, type JobCommand, jobLine, JobOutput } from "../src/jobs/output.ts";
import { type JobSink, runJob, summaryLine } from "../src/jobs/run.ts";
import { jobCommand, jobFlagsFrom, MERGE_USAGE, parseMergeArgs } from "../src/cli/job_options.ts";
import {
  captionOptionsFromFlags,
  captionUsage,
  flagWarnings,
  inFlagNames,
  parseCaptionArgs,
  runSettingsFromFlags,
} from "../src/cli/options.ts";

function printResult(r: CaptionResult, json: boolean): void {
  if (json) {
    const line: Record<string, unknown> = { image: r.source, captions: r.captions };
    if (r.error) line.error = { code: r.error.code, message: r.error.message };
    console.log(JSON.stringify(line));
    return;
  }
  if (r.error) {
    console.log(`${r.source}\tERROR ${r.error.code}: ${r.error.message}`);
    return;
  }
  for (const c of r.captions) console.log(`${r.source}\t${c.text}\t(score ${c.score.toFixed(4)})`);
}

/** Where the attention picture of image `i` of `n` goes: `out` for one, `out-1.png`, … for several. */
function attentionPath(out: string, i: number, n: number): string {
  if (n === 1) return out;
  const dot = out.lastIndexOf(".");
  return dot > out.lastIndexOf("/")
    ? `${out.slice(0, dot)}-${i + 1}${out.slice(dot)}`
    : `${out}-${i + 1}`;
}

/** One attention picture per image that was captioned. */
async function writeAttentionMaps(
  captioner: Captioner,
  results: CaptionResult[],
  options: CaptionOptions,
  out: string,
): Promise<void> {
  const { writeAttentionMap } = await import("../src/captioner/attention_picture.ts");
  for (const [i, r] of results.entries()) {
    if (r.error) {
      console.error(`no attention map for ${r.source}: ${r.error.code}`);
      continue;
    }
    const path = attentionPath(out, i, results.length);
    await writeAttentionMap(captioner, r.source, options, path, {}, r);
  }
}

/** Attention pictures are drawn from image files (read again), not URLs, lists or tars. */
function checkAttentionInputs(inputs: string[]): void {
  const other = inputs.find((i) => /^https?:|\.(tar|txt|jsonl)$/i.test(i));
  if (other) {
    throw new WebcapError(
      "BAD_OPTION",
      `--attention-map draws image files and folders only, and ${other} is not one`,
    );
  }
}

/** Prefix models (ClipCap) have no cross-attention to draw: refused from the config, before any GPU work. */
async function checkAttentionMap(modelId: string, offline: boolean | undefined): Promise<void> {
  const files = await openModelFiles(modelId, { offline });
  const { architecture, attentionMaps } = await folderAttentionMaps(files);
  if (!attentionMaps) {
    throw new WebcapError(
      "BAD_OPTION",
      `--attention-map: ${architecture} has no cross-attention (the image is ` +
        "a prefix of the text), so there is no attention map to draw; drop the flag or use another model",
    );
  }
}

/** Where each batch goes: the output file, else stdout; kept for attention maps when asked. */
function resultSink(
  out: JobOutput | undefined,
  json: boolean,
  keep: CaptionResult[] | undefined,
  seen: (n: number) => void,
): JobSink {
  return async (batch) => {
    if (Deno.stderr.isTerminal()) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
    if (out) await out.append(batch.map(({ item, result }) => jobLine(item, result)));
    else for (const { result } of batch) printResult(result, json);
    keep?.push(...batch.map((b) => b.result));
    seen(batch.filter((b) => !b.result.error).length);
  };
}

/**
 * On a CPU adapter, one note on stderr: which adapter it is, the measured seconds per caption
 * after the first batch (which compiles the kernels), and that a GPU is far faster. `seen(n)`
 * after each batch, `n` its captions; `end()` notes the first batch's time when no other came.
 */
function cpuNote(captioner: Captioner) {
  const start = performance.now();
  let first: { at: number; count: number } | undefined;
  let count = 0;
  let noted = captioner.adapterClass !== "cpu";
  const note = (what: string) => {
    noted = true;
    console.error(
      `note: the WebGPU adapter is ${captioner.adapterName}, which runs on the CPU: ${what}; ` +
        "a GPU is far faster",
    );
  };
  return {
    seen(n: number) {
      count += n;
      if (noted || n === 0) return;
      const now = performance.now();
      if (!first) first = { at: now, count };
      else {
        const each = (now - first.at) / 1000 / (count - first.count);
        note(`${each.toFixed(1)} s per caption after the first`);
      }
    },
    end() {
      if (noted || !first) return;
      const each = (first.at - start) / 1000 / first.count;
      note(`${each.toFixed(1)} s per caption, the first ones compiling the kernels`);
    },
  };
}

/** Open `--output` for this command (refusing another command's file). */
async function openOutput(path: string, command: JobCommand): Promise<JobOutput> {
  const out = await JobOutput.open(path, command);
  if (out.repaired) {
    console.error(`note: ${path}: cut a torn last line (the last run was killed writing it)`);
  }
  if (out.done.size) console.error(`note: ${path} holds ${out.done.size} images; they are skipped`);
  return out;
}

async function caption(args: string[]): Promise<number> {
  const { values, positionals } = parseCaptionArgs(args);
  if (values.help) {
    console.log(captionUsage());
    return 0;
  }
  if (positionals.length === 0) {
    throw new WebcapError(
      "BAD_OPTION",
      "no image given: deno task caption IMAGE|FOLDER... (see --help)",
    );
  }
  const { dtype, maxPixels, batchSize: batch } = runSettingsFromFlags(values);
  const job = jobFlagsFrom(values, batch, Deno.env.toObject());
  for (const w of flagWarnings(values)) console.error(`warning: ${w}`);
  const inputs = positionals.flatMap(expandRanges);
  if (values["attention-map"]) checkAttentionInputs(inputs);
  await checkInputs(inputs, job.input);
  const modelId = values.model ?? "nlpconnect/vit-gpt2-image-captioning";
  const out = values.output
    ? await openOutput(values.output, jobCommand(modelId, job.input, values))
    : undefined;
  let captioner: Captioner | undefined;
  try {
    if (values["attention-map"]) await checkAttentionMap(modelId, values.offline);
    captioner = await Captioner.fromPretrained(modelId, {
      dtype,
      offline: values.offline,
      maxPixels,
    });
    if (captioner.tokenizer.kind === "ids") {
      console.error(
        "note: the model has no tokenizer.json or word_map.json; captions are token ids",
      );
    }
    const options: CaptionOptions = captionOptionsFromFlags(values, captioner.tokenizer);
    const mapOut = values["attention-map"];
    await captioner.caption([], options); // refuses bad options before any image is read
    const kept = mapOut ? [] : undefined;
    const cpu = cpuNote(captioner);
    const summary = await runJob(
      captioner,
      {
        inputs,
        input: job.input,
        options,
        batchSize: batch,
        prefetch: job.prefetch,
        decodeWorkers: job.decodeWorkers,
        progress: !!values.progress,
      },
      out?.done ?? new Set(),
      resultSink(out, !!values.json, kept, cpu.seen),
      (msg) => console.error(msg),
    );
    if (mapOut) await writeAttentionMaps(captioner, kept!, options, mapOut);
    cpu.end();
    console.error(summaryLine(summary));
    return summary.failed || summary.badInputs ? 1 : 0;
  } finally {
    out?.close();
    await captioner?.dispose();
  }
}

/** `deno task caption merge`: join task outputs, report what is missing or doubled. */
async function merge(args: string[]): Promise<number> {
  const a = parseMergeArgs(args);
  if (a.help) {
    console.log(MERGE_USAGE);
    return 0;
  }
  const output = a.output!;
  if (a.parts.includes(output)) {
    throw new WebcapError("BAD_OPTION", `merge: --output ${output} is one of the parts`);
  }
  const { command, lines, report } = await mergeJobs(a.parts, a.expect.flatMap(expandRanges));
  const text = a.format === "coco"
    ? JSON.stringify(cocoResults(lines)) + "\n"
    : headerLine(command) + lines.map((l) => JSON.stringify(l) + "\n").join("");
  await Deno.writeTextFile(`${output}.partial`, text);
  await Deno.rename(`${output}.partial`, output);
  for (const line of reportLines(report)) console.error(line);
  return report.missing.length || report.duplicates.length || report.missingTasks.length ? 1 : 0;
}

function main(): Promise<number> {
  return Deno.args[0] === "merge" ? merge(Deno.args.slice(1)) : caption(Deno.args);
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    if (e instanceof WebcapError) {
      console.error(
        `error ${e.code}: ${e.code === "BAD_OPTION" ? inFlagNames(e.message) : e.message}`,
      );
      Deno.exit(2);
    }
    throw e;
  }
}
