import assert from "node:assert/strict";
import { ProgressBar, type ProgressWriter } from "../../src/io/progress.ts";

/** A writer that records what is drawn; `terminal` says what isTerminal answers. */
function recorder(terminal?: boolean): ProgressWriter & { text(): string } {
  const chunks: Uint8Array[] = [];
  const writer = {
    writeSync(p: Uint8Array) {
      chunks.push(p.slice());
      return p.length;
    },
    text: () => new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c]))),
  };
  return terminal === undefined ? writer : { ...writer, isTerminal: () => terminal };
}

Deno.test("ProgressBar draws label, bar, percent and counts, then ends the line", () => {
  const out = recorder(true);
  const bar = new ProgressBar({
    label: "model.safetensors",
    total: 4000,
    unit: "bytes",
    writer: out,
    width: 10,
    intervalMs: 0,
  });
  bar.update(1000);
  bar.update(4000);
  bar.done();
  bar.done();
  const lines = out.text().split("\r").filter((l) => l !== "");
  assert.equal(lines.length, 2);
  assert.match(lines[0], /^model\.safetensors \[##\.{8}\] {2}25% 1\.0 kB\/4\.0 kB/);
  assert.match(lines[1], /^model\.safetensors \[#{10}\] 100% 4\.0 kB\/4\.0 kB/);
  assert.ok(out.text().endsWith("\n"));
  assert.equal(out.text().split("\n").length, 2, "done() ends the line once");
});

Deno.test("ProgressBar is silent when not a terminal unless forced", () => {
  for (const out of [recorder(false), recorder()]) {
    const bar = new ProgressBar({ total: 3, writer: out, intervalMs: 0 });
    bar.update(3);
    bar.done();
    assert.equal(out.text(), "");
  }
  const forced = recorder(false);
  const bar = new ProgressBar({
    label: "images",
    total: 3,
    writer: forced,
    force: true,
    intervalMs: 0,
  });
  bar.update(2);
  bar.done();
  assert.match(forced.text(), /images \[[#.]+\] {2}66% 2\/3/);
});

Deno.test("ProgressBar throttles redraws but always draws completion; unknown total shows a count", () => {
  const out = recorder(true);
  const bar = new ProgressBar({ total: 100, writer: out, intervalMs: 60_000 });
  for (let i = 1; i <= 99; i++) bar.update(i);
  bar.update(100);
  assert.equal(out.text().split("\r").filter((l) => l !== "").length, 2);
  const open = new ProgressBar({ label: "files", writer: out, force: true, intervalMs: 0 });
  open.update(7);
  assert.equal(open.render(), "files 7");
});

Deno.test("ProgressBar shows the time left at the rate so far, until the end", () => {
  const bar = new ProgressBar({ total: 100, writer: recorder(true) });
  const start = performance.now();
  bar.update(25);
  assert.match(bar.render(start + 10_000), / 25\/100 \d+\/s ETA 30s$/);
  bar.update(1);
  assert.match(bar.render(start + 30_000), /ETA 49m30s$/);
  assert.match(bar.render(start + 3_600_000), /ETA 99h00m$/);
  bar.update(100);
  assert.doesNotMatch(bar.render(start + 10_000), /ETA/);
});
