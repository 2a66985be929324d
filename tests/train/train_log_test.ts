/**
 * The training log, progress and curve: the log keeps a resumed run's lines up to its step
 * (from its own file or the resumed checkpoint's); the curve SVG of a log parses as XML (a
 * strict parser below) with one polyline per series whose point count equals the logged steps
 * and evaluations, and ticks on both axes; progress lines carry step/total, ETA, loss, reward,
 * lr and samples/s, one per step when the writer is not a terminal.
 */
import assert from "node:assert/strict";
import {
  type LogLine,
  niceTicks,
  readTrainLog,
  TRAIN_CURVE,
  trainCurveSvg,
  TrainLog,
  TrainProgress,
} from "../../src/train/train_log.ts";

interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
}

/** A strict parser of the XML subset SVG uses (no DTD, CDATA or comments): throws when not well-formed. */
function parseXml(text: string): XmlElement {
  const body = text.replace(/^<\?xml[^?]*\?>\s*/, "");
  const root: XmlElement = { name: "#root", attrs: {}, children: [] };
  const stack = [root];
  const token = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  let m: RegExpExecArray | null, at = 0;
  while (at < body.length && (m = token.exec(body))) {
    at = token.lastIndex;
    const [, close, name, attrText, selfClose, chars] = m;
    if (chars !== undefined) {
      assert.ok(!/&(?!(amp|lt|gt|quot|apos);)/.test(chars), `bad entity in ${chars}`);
      continue;
    }
    if (close) {
      assert.equal(stack.pop()!.name, name, `</${name}> closes another element`);
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of attrText.matchAll(/([\w:.-]+)="([^"]*)"/g)) {
      assert.ok(!(a[1] in attrs), `attribute ${a[1]} twice`);
      attrs[a[1]] = a[2];
    }
    const el = { name, attrs, children: [] };
    stack.at(-1)!.children.push(el);
    if (!selfClose) stack.push(el);
  }
  assert.equal(at, body.length, `not XML at ${JSON.stringify(body.slice(at, at + 40))}`);
  assert.equal(stack.length, 1, "unclosed elements");
  assert.equal(root.children.length, 1, "one root element");
  return root.children[0];
}

function all(el: XmlElement, name: string): XmlElement[] {
  return [...(el.name === name ? [el] : []), ...el.children.flatMap((c) => all(c, name))];
}

/** A log of `n` steps (reward from step `rewardFrom`) and evaluations every `every` steps. */
function fakeLog(n: number, rewardFrom: number, every: number): LogLine[] {
  const lines: LogLine[] = [{ event: "start", step: 0, mode: "xe", time: "t" }];
  for (let s = 1; s <= n; s++) {
    lines.push({
      event: "step",
      step: s,
      epoch: s / 4,
      loss: 3 / s,
      ...(s >= rewardFrom ? { reward: 0.1 * s } : {}),
      lr: 1e-3,
      grad_norm: 1,
      samples_per_s: 8,
    });
    if (s % every === 0) {
      lines.push({ event: "eval", step: s, metrics: { CIDEr: s / 10, Bleu_4: 0 }, captions: [] });
    }
  }
  return lines;
}

Deno.test("the curve SVG parses as XML: a polyline per series with a point per logged step, ticks and labels", () => {
  const svg = parseXml(trainCurveSvg(fakeLog(17, 9, 5)));
  assert.equal(svg.name, "svg");
  const panels = all(svg, "g");
  assert.deepEqual(panels.map((g) => g.attrs["data-series"]), [
    "loss",
    "reward (mean of samples)",
    "validation CIDEr-D",
  ]);
  const points = panels.map((g) => all(g, "polyline")).map((p) => {
    assert.equal(p.length, 1);
    return p[0].attrs.points.split(" ").map((xy) => xy.split(",").map(Number));
  });
  assert.deepEqual(points.map((p) => p.length), [17, 9, 3]);
  assert.ok(points.flat(2).every(Number.isFinite));
  for (const g of panels) {
    assert.ok(all(g, "line").length >= 6, "ticks on both axes");
    assert.ok(all(g, "text").length >= 6, "tick labels, title and axis label");
  }
  const resumed = fakeLog(17, 9, 5);
  resumed.splice(resumed.findIndex((l) => l.step === 9), 0, {
    event: "start",
    step: 8,
    mode: "scst",
    time: "t",
  });
  const markedText = trainCurveSvg(resumed);
  const marked = parseXml(markedText);
  const dashed = all(marked, "line").filter((l) => l.attrs["stroke-dasharray"]);
  assert.equal(dashed.length, 3, "a mark of the resumed run in each panel");
  assert.equal(markedText.match(/>scst<\/text>/g)?.length, 3);
  const xe = parseXml(trainCurveSvg(fakeLog(3, 99, 2)));
  assert.deepEqual(all(xe, "g").map((g) => g.attrs["data-series"]), ["loss", "validation CIDEr-D"]);
  assert.equal(parseXml(trainCurveSvg([])).name, "svg");
});

Deno.test("nice ticks: round steps covering the range", () => {
  assert.deepEqual(niceTicks(0, 10), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceTicks(0.13, 0.61, 4), [0.2, 0.4, 0.6]);
  assert.deepEqual(niceTicks(0.13, 0.61, 8), [0.2, 0.3, 0.4, 0.5, 0.6]);
  assert.deepEqual(niceTicks(3, 3), [3]);
});

Deno.test("the log: a new run starts empty, a resumed one keeps its lines up to the step, from its own file or the checkpoint's", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-log-" });
  const lines = fakeLog(6, 1, 2);
  const write = async (path: string, l: LogLine[]) => {
    const log = await TrainLog.open(path);
    for (const line of l) await log.write(line);
    return log;
  };
  const log = await write(`${dir}/a/train_log.jsonl`, lines);
  assert.deepEqual(await readTrainLog(log.path), lines);
  assert.equal(await log.writeCurve(), `${dir}/a/${TRAIN_CURVE}`);
  parseXml(await Deno.readTextFile(`${dir}/a/${TRAIN_CURVE}`));
  const upTo4 = lines.filter((l) => l.step <= 4);
  await TrainLog.open(log.path, { resumeStep: 4 });
  assert.deepEqual(await readTrainLog(log.path), upTo4);
  const moved = await TrainLog.open(`${dir}/b/log.jsonl`, { resumeStep: 2, from: log.path });
  assert.deepEqual(await readTrainLog(moved.path), lines.filter((l) => l.step <= 2));
  await TrainLog.open(log.path);
  assert.deepEqual(await readTrainLog(log.path), []);
  await Deno.writeTextFile(log.path, '{"event":"step","step":1}\nnot json\n');
  await assert.rejects(readTrainLog(log.path), /line 2 is not a training log line/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("progress: plain lines per step off a terminal (step/total, ETA, loss, reward, lr, samples/s); a bar on one", () => {
  const written: string[] = [];
  const writer = (terminal: boolean) => ({
    writeSync: (p: Uint8Array) => (written.push(new TextDecoder().decode(p)), p.length),
    isTerminal: () => terminal,
  });
  const report = { step: 1, loss: 2.5, lr: 1e-3, gradNorm: 1, epoch: 0.5, samplesPerSec: 12.25 };
  const plain = new TrainProgress({ total: 4, writer: writer(false) });
  plain.step(report);
  plain.step({ ...report, step: 2, reward: 0.75 });
  plain.note("val @ 2");
  plain.done();
  assert.equal(written.length, 3);
  assert.match(
    written[0],
    /^step \[#+\.+\] +25% 1\/4 .*loss 2\.5000 lr 1\.00e-3 12\.3 samples\/s\n$/,
  );
  assert.match(written[1], /2\/4 .*loss 2\.5000 reward 0\.7500 lr/);
  assert.equal(written[2], "val @ 2\n");
  written.length = 0;
  const bar = new TrainProgress({ total: 4, writer: writer(true) });
  bar.step(report);
  bar.done();
  assert.ok(written[0].startsWith("\rstep [") && written[0].includes("loss 2.5000"));
  assert.equal(written.at(-1), "\n");
  written.length = 0;
  const json = new TrainProgress({ total: 4, writer: writer(true), plain: true });
  json.step(report);
  assert.ok(written.length === 1 && !written[0].includes("\r") && written[0].endsWith("\n"));
});
