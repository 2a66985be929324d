/**
 * First use of the CLIs: `--help` texts, option errors in flag names, warnings, negative numbers
 * and the messages of malformed flags. A model that does not exist shows what is checked before
 * any model loads.
 */
import assert from "node:assert/strict";
import { CAPTION_FLAGS } from "../../src/cli/options.ts";
import { fixture } from "../util.ts";
import { caption } from "./run.ts";

const model = fixture("hf/vit-gpt2");
const image = fixture("hf/preprocess/pattern.png");
const noModel = "/nonexistent-webcap-model";

Deno.test("cli help: --help lists every flag with its meaning", async () => {
  const r = await caption(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  for (const flag of Object.keys(CAPTION_FLAGS)) {
    const line = r.stdout.split("\n").find((l) => new RegExp(`^\\s+(-\\w, )?--${flag}\\b`).test(l));
    assert.ok(line, `--${flag} is listed`);
    const meaning = line.replace(new RegExp(`^.*--${flag}( \\S+)?\\s+`), "");
    assert.match(meaning, /\w+ \w+/, `--${flag} has a meaning: ${line}`);
  }
});

Deno.test("cli help: deno task bench --help prints usage, no stack trace", async () => {
  const bench = new URL("../../bench/main.ts", import.meta.url).pathname;
  const run = async (args: string[]) => {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", bench, ...args],
      env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    return { code: r.code, text };
  };
  const help = await run(["--help"]);
  assert.equal(help.code, 0, help.text);
  for (const flag of ["--kernels", "--strategies", "--eval", "--json", "--reps", "--model"]) {
    assert.match(help.text, new RegExp(`\\n\\s+${flag}\\b.*\\w+ \\w+`), flag);
  }
  const bad = await run(["--bogus"]);
  assert.equal(bad.code, 2, bad.text);
  assert.match(bad.text, /^error BAD_OPTION: .*--bogus/);
  assert.doesNotMatch(bad.text, /\n\s+at /, "no stack trace");
});

Deno.test("cli help: option errors name the CLI flag, not the API field", async () => {
  for (
    const [flags, flag, field] of [
      [["--top-p", "1.5", "--do-sample"], "--top-p", /topP/],
      [["--num-beams", "2", "--num-return-sequences", "3"], "--num-return-sequences", /numBeams/],
      [["--min-new-tokens", "9", "--max-new-tokens", "3"], "--min-new-tokens", /NewTokens/],
    ] as const
  ) {
    const r = await caption([image, "--model", model, ...flags]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^error BAD_OPTION: option ${flag}: `));
    assert.doesNotMatch(r.stderr, field);
  }
});

Deno.test("cli help: sampling flags without --do-sample warn", async () => {
  for (const flag of ["--temperature", "--top-k", "--top-p"]) {
    const r = await caption([image, "--model", noModel, flag, "0.7"]);
    assert.match(r.stderr, new RegExp(`warning: ${flag} has no effect without --do-sample`));
    const sampled = await caption([image, "--model", noModel, flag, "0.7", "--do-sample"]);
    assert.doesNotMatch(sampled.stderr, /warning/);
  }
});

Deno.test("cli help: negative numbers parse as --flag -1", async () => {
  const r = await caption([
    image,
    "--model",
    model,
    "--json",
    "--num-beams",
    "2",
    "--length-penalty",
    "-0.5",
    "--max-new-tokens",
    "3",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.lines.length, 1);
  const topK = await caption([image, "--model", model, "--do-sample", "--top-k", "-1"]);
  assert.equal(topK.code, 2, topK.stderr);
  assert.match(
    topK.stderr,
    /^error BAD_OPTION: option --top-k: .*-1/,
    "the value reached the check",
  );
});

Deno.test("cli help: the unknown-flag message has balanced quotes and names the flag", async () => {
  const r = await caption([image, "--model", noModel, "--bogus", "3"]);
  assert.equal(r.code, 2);
  const message = r.stderr.trim();
  assert.match(message, /^error BAD_OPTION: unknown flag --bogus\b/);
  for (const q of ["'", '"']) {
    assert.equal(message.split(q).length % 2, 1, `balanced ${q} in ${message}`);
  }
});
