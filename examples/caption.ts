/**
 * Caption image files or folders.
 *
 *   deno task caption photo.jpg [more.png folder/] [--model DIR|org/name] [--json] [decoding flags]
 *
 * Decoding flags follow transformers' `generate` names: --num-beams N --num-return-sequences N
 * --num-beam-groups N --diversity-penalty X --force-words "w1,w2" --bad-words "w" --do-sample
 * --temperature T --top-k K --top-p P --typical-p P --seed S --min-new-tokens N --max-new-tokens N
 * --length-penalty X --repetition-penalty X --no-repeat-ngram-size N --early-stopping true|false|never
 * --prompt "text" --length short|detailed --sentiment positive|negative
 * Other: --dtype f32|f16 --batch-size N --offline --max-pixels N --attention-map out.png
 * @module
 */
import { Captioner, type CaptionOptions, type CaptionResult } from "../src/captioner/captioner.ts";
import { WebcapError } from "../src/errors.ts";
import { ProgressBar } from "../src/io/progress.ts";
import {
  captionOptionsFromFlags,
  parseCaptionArgs,
  runSettingsFromFlags,
} from "../src/cli/options.ts";

const IMAGE_EXT = /\.(jpe?g|png|webp|bmp|tiff?|gif)$/i;

/** Expand folders into the image files they hold (sorted), keep files as given. */
async function expandInputs(paths: string[]): Promise<{ files: string[]; fromFolder: boolean }> {
  const files: string[] = [];
  let fromFolder = false;
  for (const p of paths) {
    let info: Deno.FileInfo | undefined;
    try {
      info = await Deno.stat(p);
    } catch {
      files.push(p); // reported per image as MISSING_FILE
      continue;
    }
    if (!info.isDirectory) {
      files.push(p);
      continue;
    }
    fromFolder = true;
    const inDir: string[] = [];
    for await (const e of Deno.readDir(p)) {
      if (e.isFile && IMAGE_EXT.test(e.name)) inDir.push(`${p.replace(/\/$/, "")}/${e.name}`);
    }
    files.push(...inDir.sort());
  }
  return { files, fromFolder };
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

async function main(): Promise<number> {
  const { values, positionals } = parseCaptionArgs(Deno.args);
  if (values.help || positionals.length === 0) {
    console.log(
      "usage: deno task caption IMAGE|FOLDER... [--model DIR|org/name] [--json] [decoding flags]\n(see examples/caption.ts for all flags)",
    );
    return values.help ? 0 : 2;
  }
  const { dtype, maxPixels, batchSize: batch } = runSettingsFromFlags(values);
  const captioner = await Captioner.fromPretrained(
    values.model ?? "nlpconnect/vit-gpt2-image-captioning",
    { dtype, offline: values.offline, maxPixels },
  );
  if (captioner.tokenizer.kind === "ids") {
    console.error("note: the model has no tokenizer.json or word_map.json; captions are token ids");
  }
  try {
    const options: CaptionOptions = captionOptionsFromFlags(values, captioner.tokenizer);
    const { files, fromFolder } = await expandInputs(positionals);
    const bar = fromFolder
      ? new ProgressBar({ total: files.length, label: "captioning", unit: "items" })
      : undefined;
    let failed = 0;
    let first: CaptionResult | undefined; // files[0]'s result, for --attention-map
    for (let i = 0; i < files.length; i += batch) {
      const results = await captioner.caption(files.slice(i, i + batch), options);
      first ??= results[0];
      for (const r of results) {
        if (r.error) failed++;
        printResult(r, !!values.json);
      }
      bar?.update(Math.min(i + batch, files.length));
    }
    bar?.done();
    if (values["attention-map"]) {
      const { writeAttentionMap } = await import("../src/captioner/attention_picture.ts");
      await writeAttentionMap(captioner, files[0], options, values["attention-map"], {}, first);
    }
    return failed ? 1 : 0;
  } finally {
    captioner.dispose();
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    if (e instanceof WebcapError) {
      console.error(`error ${e.code}: ${e.message}`);
      Deno.exit(2);
    }
    throw e;
  }
}
