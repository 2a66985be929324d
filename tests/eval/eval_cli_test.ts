import assert from "node:assert/strict";
import { assertClose, EVAL_FIXTURES, loadCoco, loadEdge, SCORER_METRICS } from "./eval_fixtures.ts";

const REPO = new URL("../../", import.meta.url);
const CLI = new URL("examples/eval.ts", REPO).pathname;

async function runCli(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    cwd: REPO,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("eval CLI --fixture prints the fixture's metrics as JSON, under its key names", async () => {
  for (
    const [name, load] of [["coco-public.json", loadCoco], ["edge-cases.json", loadEdge]] as const
  ) {
    const r = await runCli("--fixture", new URL(name, EVAL_FIXTURES).pathname);
    assert.equal(r.code, 0, r.stderr);
    const metrics: Record<string, number> = JSON.parse(r.stdout);
    const fx = await load();
    const expected = "expected" in fx ? fx.expected : fx.expected_set;
    assert.deepEqual(Object.keys(metrics), Object.keys(expected), name);
    for (const [m, v] of Object.entries(metrics)) assertClose(v, expected[m], `${name} ${m}`, 1e-6);
    for (const m of SCORER_METRICS) assertClose(metrics[m], expected[m], `${name} ${m}`);
  }
});

Deno.test("eval CLI refuses an unknown flag with BAD_OPTION and the usage", async () => {
  const r = await runCli("--fixtures", "x.json");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error BAD_OPTION: .*--fixtures/);
  assert.match(r.stderr, /usage: deno task eval/);
});

Deno.test("eval CLI --results/--annotations prints a table and writes per-image scores", async () => {
  const fx = await loadCoco();
  const dir = await Deno.makeTempDir();
  const images = fx.images.slice(0, 30);
  await Deno.writeTextFile(
    `${dir}/caps.json`,
    JSON.stringify({
      images: fx.images.map((im) => ({ id: im.id })),
      annotations: fx.images.flatMap((im) =>
        im.refs.map((caption) => ({ image_id: im.id, caption }))
      ),
    }),
  );
  await Deno.writeTextFile(
    `${dir}/res.json`,
    JSON.stringify(images.map((im) => ({ image_id: im.id, caption: im.candidate }))),
  );
  const args = ["--results", `${dir}/res.json`, "--annotations", `${dir}/caps.json`, "--skip-slow"];
  const strict = await runCli(...args);
  assert.equal(strict.code, 2);
  assert.match(strict.stderr, /BAD_EVAL_INPUT: .*res\.json: no result for image_id/);

  const ok = await runCli(...args, "--subset", "--out", `${dir}/per_image.json`);
  assert.equal(ok.code, 0, ok.stderr);
  for (const m of SCORER_METRICS) {
    assert.match(ok.stdout, new RegExp(`^${m}\\s+\\d\\.\\d{6}$`, "m"));
  }
  assert.match(ok.stdout, /30 images/);
  const per = JSON.parse(await Deno.readTextFile(`${dir}/per_image.json`));
  assert.deepEqual(per.map((p: { image_id: number }) => p.image_id), images.map((im) => im.id));

  await Deno.writeTextFile(`${dir}/broken.json`, '[{"image_id": 1, "caption": "a"');
  const broken = await runCli(
    "--results",
    `${dir}/broken.json`,
    "--annotations",
    `${dir}/caps.json`,
  );
  assert.equal(broken.code, 2);
  assert.match(broken.stderr, /broken\.json: malformed JSON/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("eval CLI says which METEOR it computed; --meteor-paraphrase gives the full one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/para.txt`, "0.8\nnext to\nbeside\n");
    await Deno.writeTextFile(`${dir}/ann.json`, '{"1": ["a cat sits next to a laptop"]}');
    await Deno.writeTextFile(
      `${dir}/res.json`,
      '[{"image_id": 1, "caption": "a cat sits beside a laptop"}]',
    );
    const args = ["--results", `${dir}/res.json`, "--annotations", `${dir}/ann.json`];
    const plain = await runCli(...args, "--metrics", "METEOR");
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^METEOR_noparaphrase\s+\d/m);
    assert.match(plain.stderr, /METEOR_noparaphrase .*no paraphrase .*--meteor-paraphrase/s);
    const full = await runCli(
      ...args,
      "--metrics",
      "METEOR",
      "--meteor-paraphrase",
      `${dir}/para.txt`,
    );
    assert.equal(full.code, 0, full.stderr);
    assert.match(full.stdout, /^METEOR\s+\d/m);
    assert.doesNotMatch(full.stderr, /noparaphrase/);
    const score = (out: string) => Number(out.match(/^METEOR\S*\s+([\d.]+)/m)![1]);
    assert.ok(score(full.stdout) > score(plain.stdout), "the paraphrase module matched");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
