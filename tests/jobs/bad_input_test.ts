/**
 * Bad input gets a clear error and loses nothing: a tar with a truncated member, a sample with no
 * image, a key in two shards, a malformed JSON line — each is reported and the rest is captioned;
 * a shard spec that cannot be is refused before the model loads.
 */
import assert from "node:assert/strict";
import { caption } from "../cli/run.ts";
import { images, outputLines, quick, samples, tar } from "./data.ts";

Deno.test("bad input: truncated member, sample without image, duplicate key, bad JSON line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-bad-" });
  try {
    const files = [...images(6)];
    const text = new TextEncoder().encode("no picture");
    await Deno.writeFile(
      `${dir}/good.tar`,
      tar([...samples(new Map(files.slice(0, 2))), ["lonely.txt", text]]),
    );
    await Deno.writeFile(`${dir}/dup.tar`, tar(samples(new Map([files[1], files[2]]))));
    const cut = tar(samples(new Map(files.slice(3, 5))));
    const at = new TextDecoder("latin1").decode(cut).indexOf("img004.png") + 512;
    await Deno.writeFile(`${dir}/cut.tar`, cut.subarray(0, at + 200));
    await Deno.writeFile(`${dir}/img005.png`, files[5][1]);
    await Deno.writeTextFile(
      `${dir}/list.jsonl`,
      '{"key": "five", "path": "img005.png", "image_id": 5}\n{"path": 7}\nnot json\n',
    );
    const inputs = ["good.tar", "dup.tar", "cut.tar", "list.jsonl"].map((f) => `${dir}/${f}`);
    const out = `${dir}/out.jsonl`;
    const r = await caption([...inputs, ...quick, "--output", out]);
    assert.equal(r.code, 1, r.stderr);
    const lines = await outputLines(out);
    const byKey = new Map(lines.map((l) => [l.key, l]));
    assert.equal(byKey.size, lines.length, "each key once");
    const ok = lines.filter((l) => l.captions).map((l) => l.key);
    assert.deepEqual(ok, ["img000", "img001", "img002", "img003", "five"]);
    assert.match(byKey.get("lonely")!.error!.message, /sample "lonely" has no image member/);
    assert.match(byKey.get("img004")!.error!.message, /cut\.tar: the tar ends inside img004\.png/);
    assert.match(
      r.stderr,
      /key "img001" appears twice \(.*good\.tar:img001 and .*dup\.tar:img001\)/,
    );
    assert.match(r.stderr, /list\.jsonl:2: each line must be \{"key"\?: string, "path" or "url"/);
    assert.match(r.stderr, /list\.jsonl:3: not a JSON object/);
    assert.match(r.stderr, /done 5, skipped 0, failed 3, 3 inputs not read through/);
    const coco = await caption(["merge", out, "--output", `${dir}/r.json`, "--format", "coco"]);
    assert.equal(coco.code, 0, coco.stderr);
    const ids = JSON.parse(await Deno.readTextFile(`${dir}/r.json`)).map((
      x: { image_id: unknown },
    ) => x.image_id);
    assert.deepEqual(ids, ["img000", "img001", "img002", "img003", 5]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input: impossible shards and flags are refused before the model loads", async () => {
  const noModel = ["--model", "/nonexistent-webcap-model"];
  const cases: [string[], Record<string, string>, RegExp][] = [
    [
      ["--shard", "3/3"],
      {},
      /--shard 3\/3: the task index is 0-based, so with 3 tasks it must be 0…2/,
    ],
    [["--shard", "1/0"], {}, /--shard 1\/0: the task count must be at least 1/],
    [[], { JOB_COMPLETION_INDEX: "2" }, /JOB_COMPLETION_INDEX is set .* --shard-count N/],
    [["--shard-by", "file"], {}, /--shard-by must be key or tar/],
    [["x.tar", "--attention-map", "a.png"], {}, /--attention-map draws image files .*x\.tar/],
  ];
  for (const [flags, env, message] of cases) {
    const r = await caption(["x.png", ...noModel, ...flags], env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^error BAD_OPTION: ${message.source}`));
  }
});
