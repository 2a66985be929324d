import assert from "node:assert/strict";
import { assertClose, EVAL_FIXTURES, loadCoco, SCORER_METRICS } from "./eval_fixtures.ts";

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

Deno.test("eval CLI --fixture prints the fixture's metrics as JSON", async () => {
  const path = new URL("coco-public.json", EVAL_FIXTURES).pathname;
  const r = await runCli("--fixture", path);
  assert.equal(r.code, 0, r.stderr);
  const metrics: Record<string, number> = JSON.parse(r.stdout);
  const expected = (await loadCoco()).expected;
  for (const m of SCORER_METRICS) assertClose(metrics[m], expected[m], m);
  // Every metric the fixture and the CLI both have must agree (METEOR_noparaphrase when built).
  for (const [m, v] of Object.entries(metrics)) if (m in expected) assertClose(v, expected[m], m);
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
