/**
 * The pieces of `deno task train --demo shapes`: cross-entropy from `--init random` on generated
 * data lowers the loss; the table holds every metric of the three models; the CLI refuses
 * options that contradict the demo or `--init random` before any file or GPU work.
 */
import assert from "node:assert/strict";
import { readCaptionData, splitEntries } from "../../src/train/data.ts";
import { demoTable } from "../../src/train/demo/demo.ts";
import { initRandom } from "../../src/train/init_random.ts";
import { trainCaptioner } from "../../src/train/scst.ts";
import { writeShapes } from "../../src/train/demo/shapes.ts";
import { Trainer } from "../../src/train/trainer.ts";
import { loadSplitImages } from "../../src/train/data.ts";
import { fixture, getGpu } from "../util.ts";

Deno.test("demo pieces: XE from random weights on generated shapes lowers the loss", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-demo-" });
  const file = await writeShapes(`${tmp}/data`, { train: 4, val: 2, test: 0, seed: 1 });
  const splits = await readCaptionData(file);
  const train = splitEntries(splits, "train", file), val = splitEntries(splits, "val", file);
  await initRandom(fixture("shapes/model-config"), `${tmp}/init`, {
    captions: train.flatMap((e) => e.captions),
  });
  const trainer = await Trainer.fromPretrained(`${tmp}/init`, {
    optimizer: { kind: "adamw", lr: 3e-3, weightDecay: 0 },
    dropout: false,
    gpu: await getGpu(),
  });
  const losses: number[] = [];
  try {
    const metrics = await trainCaptioner(
      trainer,
      { entries: train, images: await loadSplitImages(train) },
      { entries: val, images: await loadSplitImages(val) },
      { mode: "xe", steps: 4, batchSize: 4, onStep: (r) => void losses.push(r.loss) },
    );
    assert.equal(typeof metrics.CIDEr, "number");
  } finally {
    trainer.dispose();
  }
  assert.equal(losses.length, 4);
  assert.ok(losses[3] < losses[0], `losses ${losses}`);
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("demo table: a row per metric, a column per model, the signature last", () => {
  const m = (x: number) => ({ Bleu_4: x, CIDEr: 2 * x });
  const table = demoTable({ init: m(0), xe: m(0.25), scst: m(0.5), signature: "SCST K=5" });
  const lines = table.split("\n");
  assert.deepEqual(lines[0].split(/\s+/), ["metric", "untrained", "XE", "SCST"]);
  assert.deepEqual(lines[2].split(/\s+/), ["CIDEr", "0.0000", "0.5000", "1.0000"]);
  assert.equal(lines.at(-1), "SCST K=5");
});

async function cli(args: string[]): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/train.ts", ...args],
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    signal: AbortSignal.timeout(60_000),
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("CLI: --demo and --init refuse contradictory options before any work", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-demo-cli-" });
  const cases: [string[], RegExp][] = [
    [["--demo", "shapes", "--data", "x.json"], /--data contradicts --demo shapes/],
    [["--demo", "shapes", "--mode", "xe"], /--mode contradicts --demo shapes/],
    [["--demo", "shapes", "--steps", "3"], /--steps contradicts --demo shapes/],
    [["--demo", "coco"], /--demo must be shapes/],
    [["--quick", "--data", "x.json"], /--quick is an option of --demo shapes/],
    [
      ["--data", "x.json", "--resume", "r", "--init", "random"],
      /--init random contradicts --resume/,
    ],
    [["--data", "x.json", "--model", "m", "--init", "zeros"], /--init must be random/],
  ];
  for (const [args, want] of cases) {
    const r = await cli([...args, "--out", `${tmp}/out`]);
    assert.equal(r.code, 2, `${args}: ${r.stderr}`);
    assert.match(r.stderr, /error BAD_OPTION/);
    assert.match(r.stderr, want);
  }
  const left = [...Deno.readDirSync(tmp)];
  assert.deepEqual(left, [], "nothing written");
  await Deno.remove(tmp, { recursive: true });
});
