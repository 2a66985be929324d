/**
 * The caption CLI as a user runs it: a folder of generated images (PNG, JPEG, grayscale, one
 * broken file), JSON lines out, and the decoding flags of the CLI contract.
 */
import assert from "node:assert/strict";
import { fixture } from "../util.ts";
import { caption, imageFolder } from "./run.ts";

const model = fixture("hf/vit-gpt2");

Deno.test("cli: a folder is captioned image by image; a broken file is reported, not fatal", async () => {
  const dir = await imageFolder();
  const r = await caption([dir, "--model", model, "--json", "--max-new-tokens", "6"]);
  assert.equal(r.lines.length, 4, r.stderr);
  assert.deepEqual(r.lines.map((l) => l.image.split("/").at(-1)), [
    "a.png",
    "b.jpg",
    "c.png",
    "d.jpg",
  ]);
  for (const l of r.lines.slice(0, 3)) {
    assert.equal(l.captions.length, 1);
    assert.ok(l.captions[0].tokens.length >= 1 && l.captions[0].tokens.length <= 6);
    assert.equal(l.captions[0].tokens.length, l.captions[0].logprobs.length);
  }
  assert.equal(r.lines[3].error?.code, "BAD_IMAGE");
  assert.match(r.lines[3].error!.message, /d\.jpg/);
  assert.equal(r.code, 1, "exit status 1 when an image failed");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("cli: decoding flags of the contract", async (t) => {
  const dir = await imageFolder();
  const img = `${dir}/a.png`;
  await t.step(
    "--num-beams --num-return-sequences: n captions, best first, score = Σ logprobs / len^lp",
    async () => {
      const r = await caption([
        img,
        "--model",
        model,
        "--json",
        "--num-beams",
        "4",
        "--num-return-sequences",
        "3",
        "--max-new-tokens",
        "6",
        "--length-penalty",
        "0.5",
      ]);
      const caps = r.lines[0].captions;
      assert.equal(caps.length, 3);
      for (let i = 1; i < caps.length; i++) assert.ok(caps[i - 1].score >= caps[i].score);
      for (const c of caps) {
        const sum = c.logprobs.reduce((a, b) => a + b, 0);
        assert.ok(Math.abs(c.score - sum / c.tokens.length ** 0.5) < 1e-4, `${c.score} vs ${sum}`);
      }
    },
  );
  await t.step("--force-words: every caption contains the word's tokens", async () => {
    const r = await caption([
      img,
      "--model",
      model,
      "--json",
      "--num-beams",
      "4",
      "--num-return-sequences",
      "2",
      "--force-words",
      "he",
      "--max-new-tokens",
      "8",
    ]);
    assert.ok(r.lines[0].captions.length >= 1);
    for (const c of r.lines[0].captions) assert.match(c.text, /he/);
  });
  await t.step("--bad-words: never generated", async () => {
    const free = await caption([img, "--model", model, "--json", "--max-new-tokens", "6"]);
    const word = free.lines[0].captions[0].text.trim().split(/\s+/)[0];
    const r = await caption([
      img,
      "--model",
      model,
      "--json",
      "--max-new-tokens",
      "6",
      "--bad-words",
      word,
    ]);
    assert.ok(
      !r.lines[0].captions[0].text.includes(word) || word.length === 0,
      `${word} in ${r.lines[0].captions[0].text}`,
    );
  });
  await t.step(
    "--do-sample --seed: the same seed gives the same samples, another seed differs",
    async () => {
      const args = [
        img,
        "--model",
        model,
        "--json",
        "--do-sample",
        "--temperature",
        "1.5",
        "--top-k",
        "50",
        "--top-p",
        "0.95",
        "--num-return-sequences",
        "3",
        "--max-new-tokens",
        "8",
      ];
      const a = await caption([...args, "--seed", "7"]),
        b = await caption([...args, "--seed", "7"]),
        c = await caption([...args, "--seed", "8"]);
      assert.deepEqual(a.lines[0].captions, b.lines[0].captions);
      assert.notDeepEqual(
        a.lines[0].captions.map((x) => x.tokens),
        c.lines[0].captions.map((x) => x.tokens),
      );
    },
  );
  await t.step("--min-new-tokens: no eos before the minimum", async () => {
    const r = await caption([
      img,
      "--model",
      model,
      "--json",
      "--min-new-tokens",
      "7",
      "--max-new-tokens",
      "9",
    ]);
    assert.ok(r.lines[0].captions[0].tokens.length >= 7);
  });
  await t.step(
    "--num-beam-groups --diversity-penalty: groups return different captions",
    async () => {
      const r = await caption([
        img,
        "--model",
        model,
        "--json",
        "--num-beams",
        "4",
        "--num-beam-groups",
        "2",
        "--diversity-penalty",
        "2",
        "--num-return-sequences",
        "4",
        "--max-new-tokens",
        "6",
      ]);
      const texts = r.lines[0].captions.map((c) => c.tokens.join());
      assert.ok(new Set(texts).size >= 2);
    },
  );
  await t.step("--prompt: BLIP captions continue the prompt text", async () => {
    const r = await caption([
      img,
      "--model",
      fixture("hf/blip"),
      "--json",
      "--prompt",
      "a",
      "--max-new-tokens",
      "5",
    ]);
    const c = r.lines[0].captions[0];
    assert.ok(c.text.startsWith("a"), c.text);
    assert.equal(c.tokens.length, 5);
  });
  await t.step(
    "impossible options are refused with the option named, before any work",
    async () => {
      for (
        const [flags, name] of [
          [["--top-p", "1.5", "--do-sample"], /--top-p/],
          [["--num-beams", "2", "--num-return-sequences", "3"], /--num-return-sequences/],
          [["--temperature", "0", "--do-sample"], /--temperature/],
          [["--num-beams", "3", "--num-beam-groups", "2"], /--num-beam-groups/],
          [["--min-new-tokens", "9", "--max-new-tokens", "3"], /--min-new-tokens/],
        ] as const
      ) {
        const r = await caption([img, "--model", model, "--json", ...flags]);
        assert.equal(r.code, 2, `${flags}: ${r.stderr}`);
        assert.match(r.stderr, /BAD_OPTION/);
        assert.match(r.stderr, name);
      }
    },
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("cli: malformed flags are refused with BAD_OPTION naming the flag, before the model loads", async () => {
  for (
    const [flags, name] of [
      [["--num-beams"], /--num-beams/], // value missing
      [["--prompt", "-x"], /--prompt=-/], // values starting with "-" that are not numbers need "="
      [["--bogus", "3"], /--bogus/],
      [["--batch-size", "abc"], /--batch-size/],
      [["--batch-size", "0"], /--batch-size/],
      [["--max-pixels=2.5"], /--max-pixels/],
      [["--dtype", "f64"], /--dtype/],
    ] as const
  ) {
    // a model folder that does not exist: a flag checked after loading would report the folder
    const r = await caption(["x.png", "--model", "/nonexistent-webcap-model", ...flags]);
    assert.equal(r.code, 2, `${flags}: ${r.stderr}`);
    assert.match(r.stderr, /^error BAD_OPTION: /, `${flags}`);
    assert.match(r.stderr, name);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  }
});

Deno.test("cli: every architecture captions with beam, sampling, diverse and constrained decoding", async () => {
  const dir = await imageFolder();
  // Show-Attend-Tell checkpoints come with a word map instead of tokenizer.json
  const sat = await Deno.makeTempDir({ prefix: "webcap-sat-" });
  for (const f of ["config.json", "model.safetensors"]) {
    await Deno.symlink(fixture(`hf/show-attend-tell/${f}`), `${sat}/${f}`);
  }
  const words: Record<string, number> = { "<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 3 };
  for (let i = 4; i < 300; i++) words[`w${i}`] = i;
  await Deno.writeTextFile(`${sat}/word_map.json`, JSON.stringify(words));
  const decodings = [
    ["--num-beams", "3", "--num-return-sequences", "2"],
    ["--do-sample", "--top-k", "20", "--seed", "3"],
    ["--num-beams", "4", "--num-beam-groups", "2", "--diversity-penalty", "1"],
  ];
  for (const m of [fixture("hf/clipcap"), fixture("hf/blip"), sat]) {
    for (const flags of decodings) {
      const r = await caption([
        `${dir}/a.png`,
        "--model",
        m,
        "--json",
        "--max-new-tokens",
        "5",
        ...flags,
      ]);
      assert.equal(r.code, 0, `${m} ${flags}: ${r.stderr}`);
      assert.ok(
        r.lines[0].captions.length >= 1 && r.lines[0].captions[0].tokens.length >= 1,
        `${m} ${flags}`,
      );
    }
  }
  const bare = await caption([
    `${dir}/a.png`,
    "--model",
    fixture("hf/show-attend-tell"),
    "--json",
    "--num-beams",
    "2",
    "--force-words",
    "42",
    "--max-new-tokens",
    "5",
  ]);
  assert.equal(bare.code, 0, bare.stderr);
  assert.match(bare.stderr, /captions are token ids/);
  for (const c of bare.lines[0].captions) {
    assert.ok(c.tokens.includes(42));
    assert.equal(
      c.text,
      c.tokens.filter((t) => t !== 2).join(" "),
      "text is the ids, the end token skipped",
    );
  }
  const forced = await caption([
    `${dir}/a.png`,
    "--model",
    sat,
    "--json",
    "--num-beams",
    "3",
    "--force-words",
    "w42",
    "--max-new-tokens",
    "6",
  ]);
  assert.equal(forced.code, 0, forced.stderr);
  for (const c of forced.lines[0].captions) assert.ok(c.tokens.includes(42), `${c.tokens}`);
  await Deno.remove(sat, { recursive: true });
  await Deno.remove(dir, { recursive: true });
});
