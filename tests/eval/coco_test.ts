import assert from "node:assert/strict";
import { evaluateCaptions, evaluatePaired } from "../../src/eval/coco.ts";
import {
  pairCaptions,
  parseFixture,
  parseJsonText,
  parseReferences,
  parseResults,
  readJsonFile,
} from "../../src/eval/coco_input.ts";
import { WebcapError } from "../../src/errors.ts";
import { assertClose, loadCoco, loadEdge, SCORER_METRICS } from "./eval_fixtures.ts";

/** Assert that `fn` throws BAD_EVAL_INPUT with a message matching every pattern. */
async function assertBad(fn: () => unknown, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(async () => await fn(), (e: unknown) => {
    assert.ok(e instanceof WebcapError, String(e));
    assert.equal(e.code, "BAD_EVAL_INPUT");
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

Deno.test("coco: evaluateCaptions from raw captions reproduces coco-public.json", async () => {
  const fx = await loadCoco();
  const gts = new Map(fx.images.map((im) => [im.id, im.refs]));
  const res = fx.images.map((im) => ({ image_id: im.id, caption: im.candidate }));
  const r = await evaluateCaptions(gts, res, { skipSlow: true });
  assert.deepEqual(Object.keys(r.metrics), SCORER_METRICS);
  for (const m of SCORER_METRICS) assertClose(r.metrics[m], fx.expected[m], m);
  assert.equal(r.perImage.length, 200);
  r.perImage.forEach((p, i) => {
    assert.equal(p.image_id, fx.images[i].id);
    for (const m of ["Bleu_4", "ROUGE_L", "CIDEr"]) {
      assertClose(p[m], fx.per_image[String(p.image_id)][m], `${p.image_id} ${m}`);
    }
  });
  assert.deepEqual(r.tokenized.candidates, fx.images.map((im) => im.candidate_tok));
});

Deno.test("coco: COCO annotation file layout, subset of images, tokenized input", async () => {
  const fx = await loadEdge();
  const annotations = {
    images: fx.cases.map((c) => ({ id: c.id })),
    annotations: fx.cases.flatMap((c) => c.refs.map((caption) => ({ image_id: c.id, caption }))),
  };
  const refs = parseReferences(annotations, "captions.json");
  const all = parseResults(fx.cases.map((c) => ({ image_id: c.id, caption: c.candidate })), "r");
  const full = await evaluatePaired(pairCaptions(refs, all), { metrics: ["CIDEr", "BLEU"] });
  assert.deepEqual(Object.keys(full.metrics), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr"]);
  assertClose(full.metrics.CIDEr, fx.expected_set.CIDEr, "CIDEr");

  const two = parseResults(
    fx.cases.slice(0, 2).map((c) => ({ image_id: c.id, caption: c.candidate })),
    "r2",
  );
  await assertBad(() => pairCaptions(refs, two), /no result for image_id/, /--subset/);
  const sub = await evaluatePaired(pairCaptions(refs, two, { subset: true }), { skipSlow: true });
  assert.equal(sub.perImage.length, 2);

  const tok = await evaluateCaptions(
    Object.fromEntries(fx.cases.map((c) => [c.id, c.refs_tok])),
    Object.fromEntries(fx.cases.map((c) => [c.id, c.candidate_tok])),
    { tokenized: true, metrics: ["ROUGE_L"] },
  );
  assertClose(tok.metrics.ROUGE_L, fx.expected_set.ROUGE_L, "ROUGE_L");
});

Deno.test("coco: bad input is refused, naming the file and the entry", async () => {
  const gts = { 1: ["a dog"], 2: ["a cat"] };
  await assertBad(
    () => evaluateCaptions(gts, [{ image_id: 1, caption: "x" }, { image_id: 3, caption: "y" }]),
    /image_id 3 not found/,
  );
  await assertBad(
    () => evaluateCaptions(gts, [{ image_id: 1, caption: "x" }]),
    /no result for image_id 2/,
  );
  await assertBad(
    () => parseResults([{ image_id: 1, caption: "a" }, { image_id: 1, caption: "b" }], "res.json"),
    /res\.json: image_id 1 has two results \(\[0\] and \[1\]\)/,
  );
  await assertBad(
    () => parseResults([{ image_id: 7, caption: 42 }], "res.json"),
    /res\.json: result \[0\] \(image_id 7\): caption must be a string/,
  );
  await assertBad(() => parseResults([{ caption: "a" }], "res.json"), /result \[0\]: image_id/);
  await assertBad(() => parseResults({}, "res.json"), /must be a JSON array/);
  await assertBad(
    () => parseReferences({ annotations: [{ image_id: 5, caption: null }] }, "caps.json"),
    /caps\.json: annotations\[0\] \(image_id 5\): caption must be a string, got null/,
  );
  await assertBad(
    () => parseReferences({ 5: ["ok", ["nested"]] }, "map.json"),
    /map\.json: image_id 5 reference \[1\]/,
  );
  await assertBad(() => evaluateCaptions({ 1: [] }, { 1: "a" }), /image_id 1 has no reference/);
  await assertBad(
    () => parseJsonText('[{"image_id": 1,\n "caption": "a"\n,]', "res.json"),
    /res\.json: malformed JSON/,
    /line 3/,
  );
  await assertBad(() => parseFixture({ nothing: [] }, "f.json"), /not an eval fixture/);
});

Deno.test("coco: readJsonFile names the unreadable file", async () => {
  await assert.rejects(() => readJsonFile("/nonexistent/res.json"), (e: unknown) => {
    assert.ok(e instanceof WebcapError);
    assert.equal(e.code, "MISSING_FILE");
    assert.match(e.message, /\/nonexistent\/res\.json/);
    return true;
  });
});
