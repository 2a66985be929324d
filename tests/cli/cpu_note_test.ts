/** The caption CLI says once on stderr when the WebGPU adapter runs on the CPU, with measured times. */
import assert from "node:assert/strict";
import { fixture, getGpu } from "../util.ts";
import { caption, imageFolder } from "./run.ts";

const model = fixture("hf/vit-gpt2");
const NOTE = /note: the WebGPU adapter is (.+), which runs on the CPU: (\d+\.\d) s per caption/g;

Deno.test("cli: a CPU adapter is named once on stderr with the measured seconds per caption", async () => {
  const gpu = await getGpu();
  const dir = await imageFolder();
  try {
    const files = [`${dir}/a.png`, `${dir}/c.png`, `${dir}/b.jpg`];
    const flags = ["--model", model, "--max-new-tokens", "2", "--batch-size", "1"];
    const several = await caption([...files, ...flags]);
    const one = await caption([files[0], ...flags]);
    const runs = [[several, "after the first"], [one, "the first ones compiling"]] as const;
    for (const [r, what] of runs) {
      assert.equal(r.code, 0, r.stderr);
      const notes = [...r.stderr.matchAll(NOTE)];
      if (gpu.adapterClass === "gpu") {
        assert.equal(notes.length, 0, r.stderr);
        continue;
      }
      assert.equal(notes.length, 1, r.stderr);
      assert.equal(notes[0][1], gpu.adapterName);
      assert.ok(Number(notes[0][2]) >= 0);
      assert.match(r.stderr, new RegExp(`per caption,? ${what}.*; a GPU is far faster`));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
