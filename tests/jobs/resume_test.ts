/**
 * Outputs that survive being killed: a task SIGKILLed mid-run and rerun ends with every key once
 * in a valid file, the captions of an uninterrupted run; a torn last line is cut and redone; a
 * file of another command, or not webcap's, is refused with the reason and left as it was.
 */
import assert from "node:assert/strict";
import { caption } from "../cli/run.ts";
import { fixture } from "../util.ts";
import { captionsByKey, images, outputLines, quick, writeFiles } from "./data.ts";

const script = new URL("../../examples/caption.ts", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "webcap-resume-" });
await writeFiles(`${dir}/imgs`, images(30));
/** Slow enough per image (one image a batch, beam search) to be killed in the middle. */
const slow = [`${dir}/imgs`, ...quick, "--batch-size", "1", "--num-beams", "3"];

const lineCount = async (path: string) =>
  (await Deno.readTextFile(path).catch(() => "")).split("\n").length - 1;

Deno.test("resume: a task killed mid-run (SIGKILL) and rerun writes every key once", async () => {
  const out = `${dir}/killed.jsonl`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...slow, "--output", out],
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 60_000;
  while (await lineCount(out) < 4 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill("SIGKILL");
  const status = await child.status;
  assert.equal(status.signal, "SIGKILL", "killed, not finished");
  const before = await lineCount(out);
  assert.ok(before >= 4 && before < 31, `killed mid-run with ${before} lines`);
  const fast = [...slow, "--batch-size", "8"]; // the same command: batch size is not recorded
  const rerun = await caption([...fast, "--output", out]);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.match(rerun.stderr, /skipped (\d+)/);
  const skipped = Number(rerun.stderr.match(/skipped (\d+)/)![1]);
  assert.ok(skipped >= 3 && skipped < 30, rerun.stderr);
  const resumed = captionsByKey(await outputLines(out)); // asserts each key once, whole lines
  assert.equal(resumed.size, 30);
  const clean = await caption([...fast, "--output", `${dir}/clean.jsonl`]);
  assert.equal(clean.code, 0, clean.stderr);
  assert.deepEqual(resumed, captionsByKey(await outputLines(`${dir}/clean.jsonl`)));
});

Deno.test("resume: a torn last line is cut and its image captioned again", async () => {
  const out = `${dir}/torn.jsonl`;
  const full = await Deno.readTextFile(`${dir}/clean.jsonl`);
  const lines = full.split("\n");
  const lastWhole = lines.slice(0, -3).join("\n") + "\n"; // two items fewer
  await Deno.writeTextFile(out, lastWhole + lines.at(-3)!.slice(0, 25)); // and one torn
  const r = await caption([...slow, "--output", out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /cut a torn last line/);
  assert.match(r.stderr, /done 2, skipped 28, failed 0/);
  assert.ok((await Deno.readTextFile(out)).startsWith(lastWhole), "whole lines kept as they were");
  // scores may differ in the last bits with the batch's makeup; the captions may not
  assert.deepEqual(
    captionsByKey(await outputLines(out)),
    captionsByKey(await outputLines(`${dir}/clean.jsonl`)),
  );
});

Deno.test("resume: another command's output is refused, saying why, and left unchanged", async () => {
  const out = `${dir}/clean.jsonl`;
  const bytes = await Deno.readFile(out);
  const beams = await caption([...slow, "--num-beams", "2", "--output", out]);
  assert.equal(beams.code, 2);
  assert.match(
    beams.stderr,
    /^error BAD_OPTION: --output .*clean\.jsonl was made by another command, so nothing is appended to it \(--num-beams: the file has "3", this command "2"\)/,
  );
  const other = await caption([...slow, "--model", fixture("hf/blip"), "--output", out]);
  assert.equal(other.code, 2);
  assert.match(other.stderr, /model: the file has ".*vit-gpt2", this command ".*blip"/);
  const shard = await caption([...slow, "--shard", "0/2", "--output", out]);
  assert.match(shard.stderr, /shard: the file has "0\/1", this command "0\/2"/);
  assert.deepEqual(await Deno.readFile(out), bytes);
});

Deno.test("resume: a file that is not webcap's output, or was edited, is not touched", async () => {
  const results = `${dir}/results.json`;
  await Deno.writeTextFile(results, '[{"image_id": 1, "caption": "a dog"}]');
  const r = await caption([...slow, "--output", results]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /results\.json is not a webcap caption output/);
  assert.equal(await Deno.readTextFile(results), '[{"image_id": 1, "caption": "a dog"}]');
  const edited = `${dir}/edited.jsonl`;
  const text = (await Deno.readTextFile(`${dir}/clean.jsonl`)).replace(/\n\{"key"/, "\n{oops");
  await Deno.writeTextFile(edited, text);
  const e = await caption([...slow, "--output", edited]);
  assert.equal(e.code, 2);
  assert.match(e.stderr, /^error BAD_INPUT: .*edited\.jsonl line 2 is not JSON/);
  assert.equal(await Deno.readTextFile(edited), text);
});

Deno.test("resume: clean up", async () => {
  await Deno.remove(dir, { recursive: true });
});
