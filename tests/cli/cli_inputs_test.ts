/**
 * What the caption CLI does with its inputs: a progress bar for lists of files, one attention
 * picture per image, ClipCap's --attention-map refused before captioning, and a folder without
 * images refused.
 */
import assert from "node:assert/strict";
import { decode } from "fast-png";
import { fixture } from "../util.ts";
import { caption, imageFolder } from "./run.ts";

const model = fixture("hf/vit-gpt2");

Deno.test("cli inputs: a list of files gets a progress bar (--progress draws it into a pipe)", async () => {
  const dir = await imageFolder();
  try {
    const files = [`${dir}/a.png`, `${dir}/c.png`, `${dir}/b.jpg`];
    const args = [...files, "--model", model, "--max-new-tokens", "2", "--batch-size", "1"];
    const r = await caption([...args, "--progress"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /captioning \[#+\] 100% 3\/3/);
    const quiet = await caption(args);
    assert.doesNotMatch(quiet.stderr, /captioning/, "no bar in a pipe unless asked");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli inputs: --attention-map writes one picture per image", async () => {
  const dir = await imageFolder();
  try {
    const files = [`${dir}/a.png`, `${dir}/c.png`, `${dir}/d.jpg`];
    const out = `${dir}/att.png`;
    const r = await caption([
      ...files,
      "--model",
      model,
      "--max-new-tokens",
      "3",
      "--attention-map",
      out,
    ]);
    assert.equal(r.code, 1, "d.jpg is not an image: " + r.stderr);
    const [a, c] = [
      await Deno.readFile(`${dir}/att-1.png`),
      await Deno.readFile(`${dir}/att-2.png`),
    ];
    assert.notDeepEqual(decode(a).data, decode(c).data, "each image its own picture");
    assert.match(r.stderr, /att-1\.png/);
    assert.match(r.stderr, /att-2\.png/);
    assert.match(r.stderr, /no attention map for .*d\.jpg: BAD_IMAGE/);
    await assert.rejects(Deno.stat(`${dir}/att-3.png`));
    await assert.rejects(Deno.stat(out));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli inputs: ClipCap refuses --attention-map before captioning anything", async () => {
  const dir = await imageFolder();
  try {
    const r = await caption([
      `${dir}/a.png`,
      `${dir}/c.png`,
      "--model",
      fixture("hf/clipcap"),
      "--json",
      "--attention-map",
      `${dir}/att.png`,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^error BAD_OPTION: --attention-map: ClipCap has no cross-attention/);
    assert.equal(r.lines.length, 0, "no image was captioned");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli inputs: a folder with no images is an error, before the model loads", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-empty-" });
  try {
    await Deno.writeTextFile(`${dir}/notes.txt`, "no pictures here");
    const r = await caption([dir, "--model", "/nonexistent-webcap-model"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^error MISSING_FILE: .*webcap-empty-.*holds no images/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
