import assert from "node:assert/strict";
import { benchCaption, STRATEGIES, TOKENS } from "../bench/caption.ts";
import { benchImage, benchRealCaption } from "../bench/real_caption.ts";
import { writeRandomModel } from "../bench/random_model.ts";

/** The keys every caption row has, and each value's check (GPU ms by the adapter's features). */
function checkCaptionRow(r: Record<string, unknown>, batch: number) {
  for (const k of ["ms", "submits", "hostWaits", "dispatches", "bytesRead", "peakBytes"]) {
    assert.ok(typeof r[k] === "number" && (r[k] as number) > 0, `${r.strategy}: ${k} = ${r[k]}`);
  }
  for (const k of ["bindGroups", "pipelines", "buffers"]) assert.equal(typeof r[k], "number", k);
  assert.equal(r.tokensPerSec, (batch * TOKENS * 1000) / (r.ms as number));
  const timed = r.gpuMs !== null;
  assert.equal(timed, typeof r.gpuMs === "number" && r.gpuMs > 0, `gpuMs ${r.gpuMs}`);
  return timed;
}

Deno.test("bench --caption rows: tokens/s from the wall time, GPU ms where the adapter has timestamp-query", async () => {
  const rows = await benchCaption(1, ["vit-gpt2"], ["f32"]);
  assert.deepEqual(rows.map((r) => r.strategy), STRATEGIES.map(([s]) => s));
  const { getGpu } = await import("../src/gpu/device.ts");
  const hasTimestamps = (await getGpu()).hasTimestamps;
  for (const [i, r] of rows.entries()) {
    assert.equal(checkCaptionRow({ ...r }, STRATEGIES[i][2]), hasTimestamps, r.strategy);
  }
});

Deno.test("bench --caption --real rows carry the --caption keys (random BLIP at tiny sizes)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sizes = { hidden: 32, heads: 4, layers: 1, vitInner: 64, image: 32, patch: 16 };
    await writeRandomModel(dir, { ...sizes, vocab: 200, positions: 64 }, "blip");
    const rows = await benchRealCaption(dir, "blip (tiny, random)", await benchImage(), 1, true);
    assert.deepEqual(
      rows.map((r) => r.strategy),
      ["greedy", "beam 3", "beam 5", "sampling", "batch 8 greedy"],
    );
    for (const r of rows) {
      checkCaptionRow({ ...r }, r.strategy.startsWith("batch 8") ? 8 : 1);
      assert.equal(r.ms, r.wallMs);
      assert.equal(r.peakPoolMiB, r.peakBytes / 2 ** 20);
      assert.equal(r.tokens.split(" ").length, TOKENS);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench --all without --caption --real is refused with BAD_OPTION naming the flags", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../bench/main.ts", import.meta.url).pathname,
      "--caption",
      "--all",
    ],
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 2);
  assert.match(
    new TextDecoder().decode(r.stderr),
    /^error BAD_OPTION: --all needs --caption --real/,
  );
});
