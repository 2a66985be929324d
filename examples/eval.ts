/**
 * COCO caption evaluation (pycocoevalcap pipeline: PTB tokenization, BLEU-1..4, METEOR,
 * ROUGE-L, CIDEr-D, SPICE-ts).
 *
 *   deno task eval --results results.json --annotations captions.json [--out per_image.json]
 *   deno task eval --fixture shared/fixtures/eval/coco-public.json
 *
 * `--results`: COCO results `[{image_id, caption}]`. `--annotations`: COCO `captions_*.json` or
 * `{image_id: [refs]}`. `--subset`: evaluate only the images that have a result (default: every
 * annotated image needs one). `--fixture`: a file in the eval-fixture layout (`images` or `cases`
 * with `refs` and `candidate`); prints the corpus metrics as JSON under the key names of the
 * fixture's `expected` (or `expected_set`) scores, computing only those (all metrics when it has
 * neither). `--skip-slow`: no METEOR and SPICE. `--metrics BLEU,ROUGE_L,CIDEr`: choose families.
 * `--tokenized`: captions are already PTB-tokenized. `--meteor-resources DIR`: Meteor resource
 * files instead of the built-in ones. `--meteor-paraphrase FILE`: Meteor's paraphrase table
 * (`paraphrase-en.gz` of the Meteor 1.5 distribution), which makes METEOR the standard COCO
 * METEOR; without it the variant computed is `METEOR_noparaphrase`, and a note on stderr says so.
 * @module
 */
import { parseArgs } from "node:util";
import {
  type EvaluateOptions,
  evaluatePaired,
  type EvaluationResult,
  METRIC_FAMILIES,
  type MetricFamily,
} from "../src/eval/coco.ts";
import {
  fixtureMetricNames,
  pairCaptions,
  type PairedCaptions,
  parseFixture,
  parseReferences,
  parseResults,
  readJsonFile,
} from "../src/eval/coco_input.ts";
import { MeteorScorer } from "../src/eval/meteor/meteor.ts";
import { ParaphraseTable } from "../src/eval/meteor/paraphrase.ts";
import { WebcapError } from "../src/errors.ts";

const USAGE =
  "usage: deno task eval --results R.json --annotations A.json [--out per_image.json] " +
  "[--subset] [--skip-slow] [--metrics BLEU,METEOR,ROUGE_L,CIDEr,SPICE] [--tokenized] " +
  "[--meteor-resources DIR] [--meteor-paraphrase paraphrase-en.gz]\n       deno task eval --fixture F.json [--skip-slow] [--metrics …]";

const METEOR_NOTE =
  "note: METEOR_noparaphrase is METEOR 1.5 with exact, stem and synonym matching but no " +
  "paraphrase module (no paraphrase table was given), so it is at most the standard COCO " +
  "METEOR. For the full METEOR pass Meteor 1.5's table: --meteor-paraphrase paraphrase-en.gz";

function parseFlags() {
  try {
    return parseArgs({
      args: Deno.args,
      options: {
        results: { type: "string" },
        annotations: { type: "string" },
        out: { type: "string" },
        fixture: { type: "string" },
        subset: { type: "boolean" },
        "skip-slow": { type: "boolean" },
        metrics: { type: "string" },
        tokenized: { type: "boolean" },
        "meteor-resources": { type: "string" },
        "meteor-paraphrase": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    // node:util throws a TypeError (code ERR_PARSE_ARGS_*) for unknown or malformed flags.
    console.error(`error BAD_OPTION: ${e instanceof Error ? e.message : e}\n${USAGE}`);
    Deno.exit(2);
  }
}

const values = parseFlags();

function metricFamilies(list: string | undefined): MetricFamily[] | undefined {
  if (list === undefined) return undefined;
  const names = list.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const bad = names.find((n) => !(METRIC_FAMILIES as readonly string[]).includes(n));
  if (bad !== undefined) {
    throw new WebcapError(
      "BAD_OPTION",
      `--metrics: unknown metric ${bad}; choose from ${METRIC_FAMILIES.join(",")}`,
    );
  }
  return names as MetricFamily[];
}

/** The family that computes a metric name (`Bleu_4` → BLEU, `METEOR_noparaphrase` → METEOR). */
function familyOf(name: string): MetricFamily | undefined {
  if (/^Bleu_\d+$/.test(name)) return "BLEU";
  return METRIC_FAMILIES.find((f) => name.startsWith(f));
}

/** The images to score and, for a fixture, the metric names of its `expected` scores. */
async function loadInput(): Promise<{ paired: PairedCaptions; fixtureNames?: string[] }> {
  if (values.fixture !== undefined) {
    const json = await readJsonFile(values.fixture);
    return { paired: parseFixture(json, values.fixture), fixtureNames: fixtureMetricNames(json) };
  }
  if (values.results === undefined || values.annotations === undefined) {
    throw new WebcapError("BAD_OPTION", `give --results and --annotations, or --fixture\n${USAGE}`);
  }
  const refs = parseReferences(await readJsonFile(values.annotations), values.annotations);
  const cands = parseResults(await readJsonFile(values.results), values.results);
  const paired = pairCaptions(refs, cands, {
    subset: values.subset,
    refsSource: values.annotations,
    resultsSource: values.results,
  });
  return { paired };
}

/** Corpus metrics under the fixture's key names, in its order (all of them without names). */
function fixtureOutput(metrics: Record<string, number>, names?: string[]): Record<string, number> {
  if (names === undefined) return metrics;
  const missing = names.filter((n) => !(n in metrics));
  if (missing.length > 0) console.error(`note: not computed: ${missing.join(", ")}`);
  return Object.fromEntries(names.filter((n) => n in metrics).map((n) => [n, metrics[n]]));
}

function printTable(r: EvaluationResult, seconds: number): void {
  const names = Object.keys(r.metrics);
  const width = Math.max(6, ...names.map((n) => n.length));
  console.log(`${"metric".padEnd(width)}  score`);
  console.log(`${"-".repeat(width)}  --------`);
  for (const n of names) console.log(`${n.padEnd(width)}  ${r.metrics[n].toFixed(6)}`);
  console.log(`(${r.perImage.length} images, ${seconds.toFixed(2)} s)`);
}

async function main(): Promise<number> {
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const opts: EvaluateOptions = {
    metrics: metricFamilies(values.metrics),
    skipSlow: values["skip-slow"],
    tokenized: values.tokenized,
  };
  const paraphraseFile = values["meteor-paraphrase"];
  if (values["meteor-resources"] !== undefined || paraphraseFile !== undefined) {
    opts.meteor = await MeteorScorer.create({
      resourceDir: values["meteor-resources"],
      paraphrase: paraphraseFile === undefined
        ? undefined
        : await ParaphraseTable.load(paraphraseFile),
    });
  }
  const { paired, fixtureNames } = await loadInput();
  const needed = fixtureNames?.map(familyOf).filter((f) => f !== undefined);
  if (opts.metrics === undefined && needed?.length) opts.metrics = [...new Set(needed)];
  const t0 = performance.now();
  const result = await evaluatePaired(paired, opts);
  if (values.fixture !== undefined) {
    console.log(JSON.stringify(fixtureOutput(result.metrics, fixtureNames), null, 2));
  } else {
    printTable(result, (performance.now() - t0) / 1000);
  }
  if ("METEOR_noparaphrase" in result.metrics) console.error(METEOR_NOTE);
  if (values.out !== undefined) {
    await Deno.writeTextFile(values.out, JSON.stringify(result.perImage, null, 1) + "\n");
  }
  return 0;
}

try {
  Deno.exit(await main());
} catch (e) {
  if (!(e instanceof WebcapError)) throw e;
  console.error(`error ${e.code}: ${e.message}`);
  Deno.exit(2);
}
