/** Inputs as items: ranges, lists relative to their folder, folders with subfolders, shards. */
import assert from "node:assert/strict";
import { WebcapError } from "../../src/errors.ts";
import { DEFAULT_FETCH } from "../../src/jobs/fetch.ts";
import { checkInputs, expandRanges, jobItems } from "../../src/jobs/inputs.ts";
import { images, writeFiles } from "./data.ts";

Deno.test("inputs: {a..b} ranges expand zero-padded, left to right", () => {
  assert.deepEqual(expandRanges("s-{08..10}.tar"), ["s-08.tar", "s-09.tar", "s-10.tar"]);
  assert.deepEqual(expandRanges("{0..1}/{5..6}"), ["0/5", "0/6", "1/5", "1/6"]);
  assert.deepEqual(expandRanges("plain.tar"), ["plain.tar"]);
  assert.throws(() => expandRanges("{3..1}.tar"), WebcapError);
});

Deno.test("inputs: lists, folders and files as keyed items; a task sees only its shard", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-inputs-" });
  try {
    await writeFiles(dir, new Map([...images(4)].map(([n, b], i) => [i < 2 ? `sub/${n}` : n, b])));
    await Deno.writeTextFile(`${dir}/list.txt`, "# two\nimg002.png\n\n  img003.png  \n");
    const all: string[] = [];
    const problems: string[] = [];
    for (const index of [0, 1]) {
      const opts = { shard: { index, count: 2 }, shardByTar: false, fetch: DEFAULT_FETCH };
      const items = jobItems([dir, `${dir}/list.txt`, `${dir}/gone.png`], opts, () => true, (i) => {
        problems.push(i);
      });
      for await (const item of items) {
        if (item.source.endsWith("gone.png")) {
          await assert.rejects(item.read(), /MISSING|gone\.png: cannot read the image file/);
        } else assert.ok((await item.read()).length > 100);
        all.push(`${item.key.replace(dir, "D")} ${item.source.replace(dir, "D")}`);
      }
    }
    // img002 and img003 are in the folder and in the list: the job's select refuses the second
    assert.deepEqual(all.sort(), [
      "D/gone.png D/gone.png",
      "img002.png D/img002.png",
      "img002.png D/img002.png",
      "img003.png D/img003.png",
      "img003.png D/img003.png",
      "sub/img000.png D/sub/img000.png",
      "sub/img001.png D/sub/img001.png",
    ]);
    assert.equal(problems.length, 0);
    const whole = { shard: { index: 0, count: 1 }, shardByTar: false, fetch: DEFAULT_FETCH };
    await assert.rejects(checkInputs([`${dir}/nothing.tar`], whole), /nothing\.tar: no such file/);
    const byTar = { ...whole, shard: { index: 0, count: 2 }, shardByTar: true };
    await assert.rejects(checkInputs([dir], byTar), /--shard-by tar splits tar files only/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
