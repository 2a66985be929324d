/**
 * `deno task bench --dtypes` end to end on the fixture ViT-GPT2 and a few images of the shapes
 * data set: the table's structure (every dtype, sizes in order, the metrics `deno task eval`
 * names) and f32's quality equal to itself across two runs. The captions are nonsense (random
 * weights): no value is checked.
 */
import assert from "node:assert/strict";
import { fixture } from "../util.ts";

/** The rows `deno task bench --dtypes` writes as JSON, and its stdout. */
async function runDtypes(): Promise<{ rows: Record<string, number | string>[]; stdout: string }> {
  const json = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "bench/main.ts",
        "--dtypes",
        "--model",
        fixture("hf/vit-gpt2"),
        "--data",
        fixture("shapes/dataset_shapes.json"),
        "--max-images",
        "2",
        "--reps",
        "1",
        "--json",
        json,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    return { rows: JSON.parse(await Deno.readTextFile(json)).dtypes, stdout };
  } finally {
    await Deno.remove(json);
  }
}

Deno.test("bench --dtypes: f32/f16/q8/q4 sizes, metrics and speed; f32 quality repeats", async () => {
  const first = await runDtypes();
  const { rows } = first;
  assert.deepEqual(rows.map((r) => r.dtype), ["f32", "f16", "q8", "q4"]);
  assert.match(first.stdout, /## dtypes\n.*dtype.*bytes.*pctOfF32.*msPerCaption.*CIDEr/);
  const bytes = rows.map((r) => r.bytes as number);
  assert.ok(bytes[0] > bytes[1] && bytes[1] > bytes[2] && bytes[2] > bytes[3], `${bytes}`);
  assert.equal(rows[0].pctOfF32, 100);
  for (const r of rows) {
    assert.ok((r.msPerCaption as number) > 0);
    for (const m of ["Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr"]) {
      assert.ok(Number.isFinite(r[m]), `${r.dtype}: ${m} is ${r[m]}`);
    }
    assert.ok(Object.keys(r).some((k) => k.startsWith("METEOR")));
  }
  const again = await runDtypes();
  const quality = (r: Record<string, unknown>) =>
    Object.fromEntries(
      Object.entries(r).filter(([k]) => !["msPerCaption", "held", "dtype"].includes(k)),
    );
  assert.deepEqual(quality(again.rows[0]), quality(rows[0]));
});
