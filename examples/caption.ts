/**
 * Caption image files or folders.
 *
 *   deno task caption photo.jpg [more.png folder/] [--model DIR|org/name] [--json] [decoding flags]
 *
 * `deno task caption --help` lists every flag with its meaning (the table is
 * `CAPTION_HELP` in src/cli/options.ts).
 * @module
 */
import { Captioner, type CaptionOptions, type CaptionResult } from "../src/captioner/captioner.ts";
import { hasAttentionMaps } from "../src/captioner/caption_attention.ts";
import { WebcapError } from "../src/errors.ts";
import { ProgressBar } from "../src/io/progress.ts";
import {
  captionOptionsFromFlags,
  captionUsage,
  flagWarnings,
  inFlagNames,
  parseCaptionArgs,
  runSettingsFromFlags,
} from "../src/cli/options.ts";

const IMAGE_EXT = /\.(jpe?g|png|webp|bmp|tiff?|gif)$/i;

/** The image files a folder holds (sorted); MISSING_FILE when it holds none. */
async function folderImages(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && IMAGE_EXT.test(e.name)) files.push(`${dir.replace(/\/$/, "")}/${e.name}`);
  }
  if (files.length === 0) {
    throw new WebcapError(
      "MISSING_FILE",
      `${dir}: the folder holds no images (.jpg, .jpeg, .png, .webp, .bmp, .tif, .tiff, .gif)`,
    );
  }
  return files.sort();
}

/** Expand folders into the image files they hold, keep files as given. */
async function expandInputs(paths: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const p of paths) {
    let info: Deno.FileInfo | undefined;
    try {
      info = await Deno.stat(p);
    } catch {
      files.push(p); // reported per image as MISSING_FILE
      continue;
    }
    files.push(...(info.isDirectory ? await folderImages(p) : [p]));
  }
  return files;
}

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

/** Prefix models (ClipCap) have no cross-attention to draw. */
function checkAttentionMap(captioner: Captioner): void {
  if (!hasAttentionMaps(captioner.model)) {
    throw new WebcapError(
      "BAD_OPTION",
      `--attention-map: ${captioner.model.architecture} has no cross-attention (the image is ` +
        "a prefix of the text), so there is no attention map to draw; drop the flag or use another model",
    );
  }
}

/** Caption `files` in batches, printing each result; returns every result in order. */
async function captionAll(
  captioner: Captioner,
  files: string[],
  options: CaptionOptions,
  flags: { batch: number; json: boolean; progress: boolean },
): Promise<CaptionResult[]> {
  const bar = files.length > 1
    ? new ProgressBar({ total: files.length, label: "captioning", force: flags.progress })
    : undefined;
  bar?.update(0);
  const all: CaptionResult[] = [];
  for (let i = 0; i < files.length; i += flags.batch) {
    const results = await captioner.caption(files.slice(i, i + flags.batch), options);
    if (bar && Deno.stderr.isTerminal()) {
      Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
    }
    for (const r of results) printResult(r, flags.json);
    all.push(...results);
    bar?.update(all.length);
  }
  bar?.done();
  return all;
}

async function main(): Promise<number> {
  const { values, positionals } = parseCaptionArgs(Deno.args);
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
  for (const w of flagWarnings(values)) console.error(`warning: ${w}`);
  const files = await expandInputs(positionals);
  const captioner = await Captioner.fromPretrained(
    values.model ?? "nlpconnect/vit-gpt2-image-captioning",
    { dtype, offline: values.offline, maxPixels },
  );
  if (captioner.tokenizer.kind === "ids") {
    console.error("note: the model has no tokenizer.json or word_map.json; captions are token ids");
  }
  try {
    const options: CaptionOptions = captionOptionsFromFlags(values, captioner.tokenizer);
    const mapOut = values["attention-map"];
    if (mapOut) checkAttentionMap(captioner);
    const results = await captionAll(captioner, files, options, {
      batch,
      json: !!values.json,
      progress: !!values.progress,
    });
    if (mapOut) await writeAttentionMaps(captioner, results, options, mapOut);
    return results.some((r) => r.error) ? 1 : 0;
  } finally {
    captioner.dispose();
  }
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
