/**
 * `--init random` from the shapes fixture's `model-config`: the folder has transformers' initial
 * statistics (std ≈ initializer_range, c_proj scaled by 1/√(2·n_layer), zero biases, unit
 * LayerNorms), a seed gives the same weights, the word-level tokenizer trained on the training
 * captions round-trips them and its ids are those of config.json and generation_config.json,
 * the folder loads for training and captioning, and other architectures are refused.
 */
import assert from "node:assert/strict";
import { Captioner } from "../../src/captioner/captioner.ts";
import { WebcapError } from "../../src/errors.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { Tokenizer } from "../../src/text/tokenizer.ts";
import { readCaptionData } from "../../src/train/data.ts";
import { initRandom } from "../../src/train/init_random.ts";
import { Trainer } from "../../src/train/trainer.ts";
import { fixture, getGpu } from "../util.ts";

const CONFIG = fixture("shapes/model-config");

async function trainCaptions(): Promise<string[]> {
  const splits = await readCaptionData(fixture("shapes/dataset_shapes.json"));
  return splits.train.flatMap((e) => e.captions);
}

async function weights(dir: string): Promise<Map<string, Float32Array>> {
  const st = await openSafetensors(`${dir}/model.safetensors`);
  try {
    const out = new Map<string, Float32Array>();
    for (const name of st.names()) out.set(name, await st.readF32(name));
    return out;
  } finally {
    st.close();
  }
}

function std(x: Float32Array): number {
  const m = x.reduce((a, b) => a + b, 0) / x.length;
  return Math.sqrt(x.reduce((a, b) => a + (b - m) ** 2, 0) / x.length);
}

/** All values of the tensors whose names match `re`, concatenated. */
function pooled(w: Map<string, Float32Array>, re: RegExp): Float32Array {
  const parts = [...w].filter(([n]) => re.test(n)).map(([, v]) => [...v]).flat();
  assert.ok(parts.length > 0, `no tensor matches ${re}`);
  return Float32Array.from(parts);
}

Deno.test("init random: transformers' initial statistics, seeded", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-init-" });
  const captions = await trainCaptions();
  await initRandom(CONFIG, `${tmp}/a`, { seed: 1, captions });
  await initRandom(CONFIG, `${tmp}/b`, { seed: 1, captions });
  await initRandom(CONFIG, `${tmp}/c`, { seed: 2, captions });
  const w = await weights(`${tmp}/a`);
  const cfg = JSON.parse(await Deno.readTextFile(`${CONFIG}/config.json`));
  const range = cfg.decoder.initializer_range, L = cfg.decoder.n_layer;
  const near = (got: number, want: number) =>
    assert.ok(Math.abs(got / want - 1) < 0.08, `std ${got}, want ${want}`);
  near(std(pooled(w, /transformer\.wte\.weight$/)), range);
  near(std(pooled(w, /attn\.c_attn\.weight$|mlp\.c_fc\.weight$|q_attn\.weight$/)), range);
  near(std(pooled(w, /c_proj\.weight$/)), range / Math.sqrt(2 * L));
  near(
    std(pooled(w, /encoder\..*(query|key|value|dense)\.weight$/)),
    cfg.encoder.initializer_range,
  );
  near(std(pooled(w, /position_embeddings$|projection\.weight$/)), cfg.encoder.initializer_range);
  assert.ok(pooled(w, /\.bias$/).every((v) => v === 0), "biases are zero");
  assert.ok(pooled(w, /(ln_\w+|layernorm\w*)\.weight$/).every((v) => v === 1), "norms are 1");
  assert.ok(!w.has("decoder.lm_head.weight"), "the LM head is tied to wte, not stored");
  const [a, b, c] = await Promise.all(
    ["a", "b", "c"].map((d) => Deno.readFile(`${tmp}/${d}/model.safetensors`)),
  );
  assert.deepEqual(a, b, "the same seed gives the same weights");
  assert.notDeepEqual(a, c, "another seed gives other weights");
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("init random: the word-level tokenizer round-trips the training captions; ids follow config", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-init-" });
  const captions = await trainCaptions();
  const r = await initRandom(CONFIG, `${tmp}/m`, { captions });
  assert.ok(r.trainedTokenizer);
  const tok = await Tokenizer.fromFile(`${tmp}/m/tokenizer.json`);
  for (const c of captions) {
    const ids = tok.encode(c, { addSpecialTokens: false });
    assert.ok(!ids.includes(tok.tokenToId("<unk>")!), c);
    assert.equal(tok.decode([r.ids.bos, ...ids, r.ids.eos, r.ids.pad]), c);
  }
  assert.equal(tok.encode("a zebra", { addSpecialTokens: false })[1], tok.tokenToId("<unk>"));
  const cfg = JSON.parse(await Deno.readTextFile(`${tmp}/m/config.json`));
  const gen = JSON.parse(await Deno.readTextFile(`${tmp}/m/generation_config.json`));
  const words = new Set(captions.flatMap((c) => c.split(" ")));
  assert.equal(cfg.decoder.vocab_size, words.size + 4);
  assert.equal(tok.vocabSize, cfg.decoder.vocab_size);
  for (const [key, token] of [["bos", "<bos>"], ["eos", "<eos>"], ["pad", "<pad>"]]) {
    assert.equal(cfg.decoder[`${key}_token_id`], tok.tokenToId(token), key);
    assert.equal(cfg[`${key}_token_id`], tok.tokenToId(token), key);
    assert.equal(gen[`${key}_token_id`], tok.tokenToId(token), key);
  }
  assert.equal(cfg.decoder_start_token_id, tok.tokenToId("<bos>"));
  const tc = JSON.parse(await Deno.readTextFile(`${tmp}/m/tokenizer_config.json`));
  assert.equal(tok.tokenToId(tc.eos_token), cfg.eos_token_id, "transformers' names agree");
  const pre = JSON.parse(await Deno.readTextFile(`${tmp}/m/preprocessor_config.json`));
  assert.deepEqual(pre.size, { height: cfg.encoder.image_size, width: cfg.encoder.image_size });
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("init random: the folder loads for training and for captioning", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-init-" });
  await initRandom(CONFIG, `${tmp}/m`, { captions: await trainCaptions() });
  const gpu = await getGpu();
  const trainer = await Trainer.fromPretrained(`${tmp}/m`, {
    optimizer: { kind: "adamw", lr: 1e-3 },
    gpu,
  });
  const names = trainer.params.map((p) => p.name);
  trainer.dispose();
  assert.ok(names.includes("decoder.transformer.wte.weight"));
  assert.ok(names.includes("encoder.embeddings.cls_token"));
  const captioner = await Captioner.fromPretrained(`${tmp}/m`, { gpu });
  try {
    const img = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3).fill(200) };
    const [r] = await captioner.caption([img], { maxNewTokens: 3 });
    assert.equal(typeof r.captions[0].text, "string");
  } finally {
    captioner.dispose();
  }
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("init random: other architectures, a used folder and a missing tokenizer are refused", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "webcap-init-" });
  const refused = async (p: Promise<unknown>, ...mentions: RegExp[]) => {
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof WebcapError && e.code === "BAD_OPTION", String(e));
      for (const m of mentions) assert.match(e.message, m);
      return true;
    });
  };
  await refused(initRandom(fixture("hf/blip"), `${tmp}/x`, { captions: ["a"] }), /ViT and GPT-2/);
  await refused(initRandom(CONFIG, `${tmp}/y`), /no tokenizer\.json and no training captions/);
  await Deno.writeTextFile(`${tmp}/keep.txt`, "mine");
  await refused(initRandom(CONFIG, tmp, { captions: ["a"] }), /not empty/);
  assert.equal(await Deno.readTextFile(`${tmp}/keep.txt`), "mine");
  await Deno.remove(tmp, { recursive: true });
});
