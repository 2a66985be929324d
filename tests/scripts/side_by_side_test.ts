/**
 * `scripts/side_by_side.ts` on a synthetic pair of files shaped as `deno task bench --json` and
 * `torch_caption_bench.py` write them: the section appended to `BENCHMARKS.md` names the GPU and
 * the date, and its ratios are webcap's ms over PyTorch's from the inputs (real-size rows only);
 * missing or foreign files are refused.
 */
import assert from "node:assert/strict";

const SCRIPT = new URL("../../scripts/side_by_side.ts", import.meta.url).pathname;

/** As `deno task bench --caption --train --train-real --json` writes (bench/caption.ts, bench/train.ts). */
const WEBCAP = {
  adapter: "NVIDIA H100 80GB HBM3 (vulkan)",
  caption: [
    {
      model: "vit-gpt2",
      strategy: "greedy",
      ms: 9.5,
      tokensPerSec: 2105,
      submits: 3,
      hostWaits: 2,
      dispatches: 622,
      bindGroups: 33,
      pipelines: 0,
      buffers: 4,
      bytesRead: 160,
      peakBytes: 400_000,
    },
    { model: "clipcap", strategy: "greedy", ms: 8, peakBytes: 300_000 },
  ],
  train: [
    {
      model: "vit-gpt2 (real sizes, random)",
      encoder: "trained",
      batch: 8,
      tokens: 24,
      params: 239_000_000,
      stepMs: 150,
      samplesPerS: 53.3,
      peakGpuMiB: 4096,
    },
    {
      model: "vit-gpt2 (real sizes, random)",
      encoder: "frozen",
      batch: 8,
      tokens: 24,
      params: 153_000_000,
      stepMs: 90,
      samplesPerS: 88.9,
      peakGpuMiB: 3000,
    },
  ],
};

/** A real-size caption row as `bench --caption --real` writes it (bench/real_caption.ts). */
const REAL_ROW = {
  model: "vit-gpt2 (real sizes, random)",
  adapter: "NVIDIA H100 80GB HBM3 (vulkan)",
  wallMs: 30,
  encoderMs: 4,
  msPerToken: 1.3,
  peakPoolMiB: 700,
  peakRssMiB: 900,
  tokens: "1 2 3",
};

/** As `torch_caption_bench.py` writes (its `res` dict; figures of `bench` and `bench_train`). */
const TORCH = {
  gpu: "NVIDIA H100 80GB HBM3",
  torch: "2.5.1",
  transformers: "4.46.0",
  "vit-gpt2_params_M": 239.2,
  "vit-gpt2:float32": {
    encoder_b1_ms: 5,
    encoder_b8_ms: 9,
    greedy20_b1_ms: 300,
    beam3_20_b1_ms: 380,
    beam5_20_b1_ms: 400,
    sample20_b1_ms: 310,
    greedy20_b8_ms: 320,
    beam3_20_b8_ms: 450,
    peak_mem_mb: 1100,
  },
  "vit-gpt2:float16": {
    encoder_b1_ms: 4,
    encoder_b8_ms: 6,
    greedy20_b1_ms: 280,
    beam3_20_b1_ms: 370,
    beam5_20_b1_ms: 390,
    sample20_b1_ms: 300,
    greedy20_b8_ms: 310,
    beam3_20_b8_ms: 430,
    greedy20_b1_static_cache_ms: 60,
    peak_mem_mb: 600,
  },
  "vit-gpt2:train_fp32": {
    train_step_b8_ms: 120,
    train_peak_mem_b8_mb: 5000,
    train_step_b32_ms: 300,
    train_peak_mem_b32_mb: 9000,
  },
};

async function run(cwd: string, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, ...args],
    cwd,
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** The cells of the table row of `md` whose first cells are `first`. */
function row(md: string, ...first: string[]): string[] {
  const rows = md.split("\n").filter((l) => l.startsWith("|")).map((l) =>
    l.slice(1, -1).split("|").map((c) => c.trim())
  );
  const r = rows.find((cells) => first.every((f, i) => cells[i] === f));
  assert.ok(r, `no row ${first} in\n${md}`);
  return r;
}

Deno.test("side_by_side.ts appends the GPU, the date and ratios computed from both files to BENCHMARKS.md", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-sbs-" });
  const web = { ...WEBCAP, caption: [...WEBCAP.caption, REAL_ROW] };
  await Deno.writeTextFile(`${tmp}/webcap.json`, JSON.stringify(web));
  await Deno.writeTextFile(`${tmp}/torch.json`, JSON.stringify(TORCH));
  await Deno.writeTextFile(`${tmp}/BENCHMARKS.md`, "# Benchmarks\n\nEarlier text.\n");
  const r = await run(tmp, "webcap.json", "torch.json");
  assert.equal(r.code, 0, r.stderr);
  const md = await Deno.readTextFile(`${tmp}/BENCHMARKS.md`);
  assert.ok(md.startsWith("# Benchmarks\n\nEarlier text.\n\n## webcap and PyTorch side by side"));
  const date = new Date().toISOString().slice(0, 10);
  assert.ok(md.includes(`(${TORCH.gpu}, ${date})`), md);
  assert.ok(md.includes(WEBCAP.adapter) && md.includes(`PyTorch ${TORCH.torch}`), md);
  const fp32 = TORCH["vit-gpt2:float32"], fp16 = TORCH["vit-gpt2:float16"];
  const real = row(md, REAL_ROW.model, "greedy");
  const best = Math.min(fp16.greedy20_b1_ms, fp16.greedy20_b1_static_cache_ms);
  assert.deepEqual(real.slice(2).map(Number), [
    REAL_ROW.wallMs,
    fp32.greedy20_b1_ms,
    Number((REAL_ROW.wallMs / fp32.greedy20_b1_ms).toFixed(2)),
    best,
    Number((REAL_ROW.wallMs / best).toFixed(2)),
    REAL_ROW.peakPoolMiB,
    fp32.peak_mem_mb,
    fp16.peak_mem_mb,
  ]);
  const fixture = row(md, "vit-gpt2 (fixture)", "greedy");
  assert.equal(Number(fixture[2]), WEBCAP.caption[0].ms);
  assert.equal(fixture[4], "—"); // a tiny fixture model gets no ratio
  assert.ok(!md.includes("| clipcap"), "PyTorch has no ClipCap figures");
  const t = TORCH["vit-gpt2:train_fp32"], step = WEBCAP.train[0];
  const train = row(md, step.model, "8");
  assert.equal(Number(train[3]), step.stepMs);
  assert.equal(Number(train[4]), t.train_step_b8_ms);
  assert.equal(Number(train[5]), Number((step.stepMs / t.train_step_b8_ms).toFixed(2)));
  assert.equal(Number(train[7]), t.train_peak_mem_b8_mb);
  assert.equal(md.split("\n").filter((l) => l.startsWith(`| ${step.model}`)).length, 2);
  assert.ok(r.stdout.includes("## webcap and PyTorch side by side"));
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("side_by_side.ts refuses missing or foreign files and a folder without BENCHMARKS.md", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-sbs-bad-" });
  await Deno.writeTextFile(`${tmp}/webcap.json`, JSON.stringify(WEBCAP));
  await Deno.writeTextFile(`${tmp}/torch.json`, JSON.stringify(TORCH));
  await Deno.writeTextFile(`${tmp}/list.json`, "[1, 2]");
  const cases: [string[], string][] = [
    [["webcap.json"], "error BAD_OPTION: usage"],
    [["webcap.json", "none.json"], "error MISSING_FILE: none.json"],
    [["webcap.json", "list.json"], "list.json is not the JSON object torch_caption_bench.py"],
    [["torch.json", "torch.json"], 'torch.json has no "adapter"'],
    [["webcap.json", "webcap.json"], 'webcap.json has no "gpu"'],
    [["webcap.json", "torch.json"], "no BENCHMARKS.md here"],
  ];
  for (const [args, message] of cases) {
    const r = await run(tmp, ...args);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(message), r.stderr);
  }
  await Deno.remove(tmp, { recursive: true });
});
