/**
 * Quantized models end to end: parity of q8 / q4 against the dequantized-weights floor, a folder
 * written by `deno task quantize` read as stored, and the refusals (a layout that does not fit,
 * a group size that does not divide, another dtype, training).
 */
import assert from "node:assert/strict";
import { getGpu } from "../../src/gpu/device.ts";
import { Captioner } from "../../src/captioner/captioner.ts";
import { loadCaptionModel } from "../../src/arch/load.ts";
import { runParity } from "../../src/captioner/parity.ts";
import { embedding } from "../../src/shaders/embedding.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { openSafetensors, parseSafetensorsHeader } from "../../src/io/safetensors.ts";
import { writeSafetensors } from "../../src/io/safetensors_write.ts";
import { paramGroups } from "../../src/train/param_groups.ts";
import type { CaptionModel } from "../../src/arch/caption_model.ts";
import type { LoadOptions } from "../../src/arch/load.ts";
import { assertRejectsCode, fixture, runAndRead } from "../util.ts";
import { caption } from "../cli/run.ts";
import { QUANT_METADATA, QUANT_VERSION, quantizedEntries } from "../../src/nn/quant.ts";
import { DTYPE_BYTES, numelOf } from "../../src/io/dtype.ts";
import type { TensorInfo } from "../../src/io/weights.ts";

for (const model of ["vit-gpt2", "blip"]) {
  for (const dtype of ["q8", "q4"] as const) {
    Deno.test(`parity: ${model} in ${dtype} is held to the dequantized-weights floor`, async () => {
      const r = await runParity(await getGpu(), fixture(`hf/${model}`), { dtype });
      assert.ok(r.tensors.length > 0);
      for (const t of r.tensors) {
        console.log(`  ${t.name}: rel L2 ${t.relL2.toExponential(2)} floor ${t.floor}`);
        assert.ok(t.floor! > 1e-3, `${t.name}: the floor is quantization, not float32`);
        assert.ok(t.pass, `${t.name}: ${t.relL2} above ${t.floor} + ${t.bound}`);
      }
    });
  }
}

/** `deno task quantize` of fixture `model` into a new folder; returns its path. */
async function quantizeFixture(model: string, dtype: string): Promise<string> {
  const out = await Deno.makeTempDir({ prefix: "webcap-quant-" });
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "examples/quantize.ts",
      fixture(`hf/${model}`),
      "--dtype",
      dtype,
      "--out",
      out,
    ],
    stdout: "piped",
    stderr: "piped",
  });
  const r = await cmd.output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  return out;
}

/** Every row of GPT-2's `wte` as the model holds it (dequantized on the GPU). */
async function wteRows(m: CaptionModel): Promise<Float32Array> {
  const gpu = await getGpu();
  const p = m.params.find((p) => p.name.endsWith("wte.weight"))!;
  const V = p.shape[0];
  const ids = uploadTensor(gpu, Int32Array.from({ length: V }, (_, i) => i), [V], "i32");
  try {
    return await runAndRead(gpu, (rec) => embedding(rec, p.quant!, ids));
  } finally {
    ids.release();
  }
}

async function load(dir: string, opts: LoadOptions): Promise<CaptionModel> {
  return await loadCaptionModel(await getGpu(), dir, opts);
}

Deno.test("quantize: the folder holds the documented layout and loads as stored", async () => {
  const out = await quantizeFixture("vit-gpt2", "q4");
  try {
    const bytes = await Deno.readFile(`${out}/model.safetensors`);
    const header = parseSafetensorsHeader(bytes, "q4");
    assert.equal(header.metadata["webcap.quantization"], "q4");
    assert.equal(header.metadata["webcap.group_size"], "32");
    assert.equal(header.metadata["webcap.original_dtype"], "F32");
    const wte = header.tensors.get("decoder.transformer.wte.weight")!;
    assert.equal(wte.dtype, "U8");
    assert.equal(header.tensors.get("decoder.transformer.wte.weight.qoffset")?.dtype, "F16");
    assert.equal(header.tensors.get("decoder.transformer.ln_f.weight")?.dtype, "F16");
    assert.equal(header.metadata["webcap.quant_version"], "2");
    const patch = "encoder.embeddings.patch_embeddings.projection.weight";
    assert.equal(header.tensors.get(patch)?.dtype, "U8", "the patch projection is quantized");
    const float = (await Deno.stat(fixture("hf/vit-gpt2/model.safetensors"))).size;
    assert.ok(bytes.length < 0.5 * float, `${bytes.length} B of ${float} B`);
    assert.ok((await Deno.stat(`${out}/tokenizer.json`)).isFile, "other files copied");

    const [stored, atLoad] = [
      await load(out, { dtype: "q4" }),
      await load(fixture("hf/vit-gpt2"), { dtype: "q4" }),
    ];
    try {
      assert.deepEqual(await wteRows(stored), await wteRows(atLoad));
    } finally {
      stored.dispose();
      atLoad.dispose();
    }
    await assert.rejects(
      () => load(out, { dtype: "q8" }),
      /stored as q4, but the model is loaded as q8/,
    );
    await assert.rejects(
      () => load(out, { dtype: "f32" }),
      /stored quantized; load the model with the dtype/,
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("quantize: a stored scale that does not fit the layout is BAD_WEIGHTS naming it", async () => {
  const out = await quantizeFixture("vit-gpt2", "q8");
  try {
    const store = await openSafetensors(`${out}/model.safetensors`);
    const name = "decoder.transformer.h.0.mlp.c_fc.weight.qscale";
    const tensors = await Promise.all(
      store.names().map(async (n) => {
        const { dtype, shape } = store.info(n);
        const data = await store.read(n);
        if (n !== name) return { name: n, dtype, shape, read: () => data };
        return { name: n, dtype, shape: [shape[0] - 1], read: () => data.slice(2) };
      }),
    );
    store.close();
    await writeSafetensors(`${out}/model.safetensors`, tensors);
    await assert.rejects(
      () => load(out, { dtype: "q8" }),
      (e: Error & { code?: string }) =>
        e.code === "BAD_WEIGHTS" && e.message.includes(name) && /wants F16 \[\d+\]/.test(e.message),
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("q4: a group size that does not divide the input dimension is refused", async () => {
  await assert.rejects(
    () => load(fixture("hf/vit-gpt2"), { dtype: "q4", groupSize: 24 }),
    (e: Error & { code?: string }) =>
      e.code === "BAD_OPTION" &&
      /group size 24 does not divide the input dimension 32/.test(e.message),
  );
});

Deno.test("training a quantized model is refused, naming quantization", async () => {
  const m = await load(fixture("hf/vit-gpt2"), { dtype: "q8" });
  try {
    assert.throws(
      () => paramGroups(m.params),
      (e: Error & { code?: string }) =>
        e.code === "BAD_DTYPE" && /it is quantized to q8.*dtype f32/.test(e.message),
    );
  } finally {
    m.dispose();
  }
});

/** Bytes of the tensors `entries` (without the header). */
function dataBytes(entries: readonly TensorInfo[]): number {
  return entries.reduce((s, e) => s + numelOf(e.shape) * DTYPE_BYTES[e.dtype], 0);
}

/** Size of a safetensors file holding `entries`: 8 + header JSON + data (padding aside). */
function fileBytes(entries: readonly TensorInfo[]): number {
  let at = 0;
  const header = Object.fromEntries(entries.map((e) => {
    const end = at + numelOf(e.shape) * DTYPE_BYTES[e.dtype];
    const entry = [e.name, { dtype: e.dtype, shape: e.shape, data_offsets: [at, end] }];
    at = end;
    return entry;
  }));
  return 8 + JSON.stringify({ __metadata__: { format: "pt" }, ...header }).length + at;
}

/** The layout of each tensor of fixture `model` loaded as `dtype`, by name. */
async function fixtureLayout(dtype: "q8" | "q4") {
  const m = await load(fixture("hf/vit-gpt2"), { dtype });
  try {
    return new Map(m.params.filter((p) => p.quant).map((p) => [p.name, p]));
  } finally {
    m.dispose();
  }
}

/**
 * `nlpconnect/vit-gpt2-image-captioning`'s tensors (ViT-base/16 at 224, GPT-2 small with
 * cross-attention; the LM head tied and absent) from its config's sizes.
 */
function vitGpt2RealSize(): TensorInfo[] {
  const [h, inter, V, positions, patches, ps] = [768, 3072, 50257, 1024, (224 / 16) ** 2, 16];
  const t = (name: string, ...shape: number[]): TensorInfo => ({ name, dtype: "F32", shape });
  const linear = (name: string, out: number, inp: number) => [
    t(`${name}.weight`, out, inp),
    t(`${name}.bias`, out),
  ];
  const conv1d = (name: string, inp: number, out: number) => [
    t(`${name}.weight`, inp, out),
    t(`${name}.bias`, out),
  ];
  const ln = (name: string) => [t(`${name}.weight`, h), t(`${name}.bias`, h)];
  const vit = Array.from({ length: 12 }, (_, i) => `encoder.encoder.layer.${i}.`).flatMap((l) => [
    ...["query", "key", "value"].flatMap((n) => linear(`${l}attention.attention.${n}`, h, h)),
    ...linear(`${l}attention.output.dense`, h, h),
    ...linear(`${l}intermediate.dense`, inter, h),
    ...linear(`${l}output.dense`, h, inter),
    ...ln(`${l}layernorm_before`),
    ...ln(`${l}layernorm_after`),
  ]);
  const gpt = Array.from({ length: 12 }, (_, i) => `decoder.transformer.h.${i}.`).flatMap((l) => [
    ...conv1d(`${l}attn.c_attn`, h, 3 * h),
    ...conv1d(`${l}attn.c_proj`, h, h),
    ...conv1d(`${l}crossattention.c_attn`, h, 2 * h),
    ...conv1d(`${l}crossattention.q_attn`, h, h),
    ...conv1d(`${l}crossattention.c_proj`, h, h),
    ...conv1d(`${l}mlp.c_fc`, h, inter),
    ...conv1d(`${l}mlp.c_proj`, inter, h),
    ...["ln_1", "ln_2", "ln_cross_attn"].flatMap((n) => ln(l + n)),
  ]);
  return [
    t("encoder.embeddings.cls_token", 1, 1, h),
    t("encoder.embeddings.position_embeddings", 1, patches + 1, h),
    t("encoder.embeddings.patch_embeddings.projection.weight", h, 3, ps, ps),
    t("encoder.embeddings.patch_embeddings.projection.bias", h),
    ...vit,
    ...ln("encoder.layernorm"),
    ...linear("encoder.pooler.dense", h, h),
    t("decoder.transformer.wte.weight", V, h),
    t("decoder.transformer.wpe.weight", positions, h),
    ...gpt,
    ...ln("decoder.transformer.ln_f"),
  ];
}

for (const [dtype, goal] of [["q8", 0.27], ["q4", 0.16]] as const) {
  Deno.test(`quantize: the ${dtype} file is the layout's arithmetic, ≤ ${goal * 100} % of f32 at ViT-GPT2's real size`, async () => {
    const params = await fixtureLayout(dtype);
    const layoutOfName = (infos: readonly TensorInfo[]) => {
      const byRole = new Map(
        [...params].map(([n, p]) => [n.replace(/\.\d+\./, ".#."), p]),
      );
      return new Map(infos.flatMap((info) => {
        const p = byRole.get(info.name.replace(/\.\d+\./, ".#."));
        if (!p) return [];
        const K = p.transposed ? info.shape[0] : numelOf(info.shape) / info.shape[0];
        const G = dtype === "q8" ? K : p.quant!.groupSize;
        return [[info.name, { scheme: dtype, K, groupSize: G }]];
      }));
    };
    // the fixture: the written file is exactly the entries' data after its header
    const out = await quantizeFixture("vit-gpt2", dtype);
    try {
      const store = await openSafetensors(fixture("hf/vit-gpt2/model.safetensors"));
      const infos = store.names().map((n) => store.info(n));
      store.close();
      const entries = quantizedEntries(infos, layoutOfName(infos));
      const bytes = await Deno.readFile(`${out}/model.safetensors`);
      const header = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
      assert.equal(bytes.length - header, dataBytes(entries));
      const f32 = (await Deno.stat(fixture("hf/vit-gpt2/model.safetensors"))).size;
      console.log(
        `  fixture: ${bytes.length} B, ${(100 * bytes.length / f32).toFixed(1)} % of f32`,
      );
    } finally {
      await Deno.remove(out, { recursive: true });
    }
    // real size: the same layout rules over the real tensor list
    const real = vitGpt2RealSize();
    const numel = real.reduce((s, e) => s + numelOf(e.shape), 0);
    assert.ok(numel > 238.5e6 && numel < 239.5e6, `ViT-GPT2 holds 239M parameters, not ${numel}`);
    const layout = layoutOfName(real);
    // 6 projections per ViT layer, 7 per GPT-2 layer, wte and the patch projection
    assert.equal(layout.size, 12 * 6 + 12 * 7 + 2);
    const ratio = fileBytes(quantizedEntries(real, layout)) / fileBytes(real);
    console.log(`  ViT-GPT2 real size: ${(100 * ratio).toFixed(2)} % of f32`);
    assert.ok(ratio <= goal, `${dtype} is ${ratio} of f32`);
  });
}

const VERSION_KEY = QUANT_METADATA.version;

/** Greedy captions (tokens, log-probabilities) of a fixture image by the folder `dir` in q4. */
async function captionQ4(dir: string) {
  const cap = await Captioner.fromPretrained(dir, { gpu: await getGpu(), dtype: "q4" });
  try {
    const [r] = await cap.caption(fixture("images/baseline-444.jpg"), { maxNewTokens: 8 });
    assert.equal(r.error, undefined);
    return r.captions;
  } finally {
    cap.dispose();
  }
}

Deno.test("quantize: a version 1 q-file (no version key; floats and the patch projection as stored) loads and captions as the checkpoint quantized at load", async () => {
  const out = await quantizeFixture("vit-gpt2", "q4");
  const patch = "encoder.embeddings.patch_embeddings.projection.weight";
  try {
    const [q, f32] = [
      await openSafetensors(`${out}/model.safetensors`),
      await openSafetensors(fixture("hf/vit-gpt2/model.safetensors")),
    ];
    const v1 = q.names().filter((n) => !n.startsWith(`${patch}.`)).map((n) => {
      const from = (q.info(n).dtype === "F16" && f32.has(n)) || n === patch ? f32 : q;
      const { dtype, shape } = from.info(n);
      return { name: n, dtype, shape, read: () => from.read(n) };
    });
    const [v2Metadata] = q.fileMetadata().values();
    const v1Metadata = Object.entries(v2Metadata).filter(([k]) => k !== VERSION_KEY);
    await writeSafetensors(`${out}/v1.safetensors`, v1, Object.fromEntries(v1Metadata));
    q.close();
    f32.close();
    await Deno.rename(`${out}/v1.safetensors`, `${out}/model.safetensors`);
    const m = await load(out, { dtype: "q4" });
    try {
      const p = m.params.find((p) => p.name === patch)!;
      assert.equal(p.quant?.scheme, "q4", "the float patch projection is quantized at load");
      assert.equal(m.params.find((p) => p.name.endsWith("ln_f.weight"))?.tensor.dtype, "f32");
    } finally {
      m.dispose();
    }
    assert.deepEqual(await captionQ4(out), await captionQ4(fixture("hf/vit-gpt2")));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("quantize: a version 2 folder captions as the same tensors without any metadata", async () => {
  const out = await quantizeFixture("vit-gpt2", "q4");
  try {
    const v2 = await captionQ4(out);
    assert.ok(v2[0].tokens.length > 0);
    await editMetadata(out, () => ({})); // nothing declared: read by the tensors' dtypes alone
    assert.deepEqual(await captionQ4(out), v2);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

/** Rewrite `out/model.safetensors` with `edit` applied to each tensor (undefined: dropped). */
async function editTensors(
  out: string,
  edit: (name: string, dtype: string, shape: number[], data: Uint8Array) =>
    | { dtype: string; shape: number[]; data: Uint8Array }
    | undefined,
): Promise<void> {
  const store = await openSafetensors(`${out}/model.safetensors`);
  const tensors = [];
  for (const n of store.names()) {
    const { dtype, shape } = store.info(n);
    const t = edit(n, dtype, shape, (await store.read(n)).slice());
    if (t) tensors.push({ name: n, dtype: t.dtype as "F16", shape: t.shape, read: () => t.data });
  }
  store.close();
  await writeSafetensors(`${out}/model.safetensors`, tensors);
}

const FC = "decoder.transformer.h.0.mlp.c_fc.weight"; // q4: [128, 32] out×in, U8 [128, 16]
const Q4_BAD_LAYOUTS: [string, Parameters<typeof editTensors>[1], RegExp][] = [
  [
    "packed bytes of another shape",
    (n, dtype, shape, data) =>
      n === FC
        ? { dtype, shape: [shape[0], shape[1] / 2], data: data.slice(0, data.length / 2) }
        : { dtype, shape, data },
    /shape \[128,8\], the config implies \[128,16\]/,
  ],
  [
    "scales whose groups do not divide K",
    (n, dtype, shape, data) =>
      n === `${FC}.qscale` || n === `${FC}.qoffset`
        ? { dtype, shape: [shape[0], 3], data: new Uint8Array(shape[0] * 3 * 2) } // K / 3 groups
        : { dtype, shape, data },
    /qscale has 3 groups per row, which do not divide the input 32/,
  ],
  [
    "a missing offset",
    (n, dtype, shape, data) => n === `${FC}.qoffset` ? undefined : { dtype, shape, data },
    /qoffset is missing; wants F16 \[128,1\]/,
  ],
  [
    "a non-finite scale",
    (n, dtype, shape, data) => {
      if (n === `${FC}.qscale`) data.set([0x00, 0x7c], 2); // element 1: +Inf
      return { dtype, shape, data };
    },
    /scale 1 is not finite/,
  ],
];

for (const [what, edit, message] of Q4_BAD_LAYOUTS) {
  Deno.test(`quantize: a q4 file with ${what} is BAD_WEIGHTS naming the tensor`, async () => {
    const out = await quantizeFixture("vit-gpt2", "q4");
    try {
      await editTensors(out, edit);
      await assertRejectsCode(
        load(out, { dtype: "q4" }),
        "BAD_WEIGHTS",
        RegExp.escape(FC),
        message,
      );
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  });
}

Deno.test("quantize: ClipCap (its CLIP tower in clip-vision/) quantizes and loads as stored", async () => {
  const out = await quantizeFixture("clipcap", "q8");
  try {
    const [stored, atLoad] = [
      await load(out, { dtype: "q8" }),
      await load(fixture("hf/clipcap"), { dtype: "q8" }),
    ];
    try {
      assert.deepEqual(await wteRows(stored), await wteRows(atLoad));
    } finally {
      stored.dispose();
      atLoad.dispose();
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

/** Rewrite `out/model.safetensors` with its tensors as they are and `edit` of its metadata. */
async function editMetadata(
  out: string,
  edit: (meta: Record<string, string>) => Record<string, string>,
): Promise<void> {
  const path = `${out}/model.safetensors`;
  const bytes = await Deno.readFile(path);
  const header = parseSafetensorsHeader(bytes, path);
  const store = await openSafetensors(bytes, { name: path });
  const tensors = await Promise.all(
    store.names().map(async (n) => {
      const data = (await store.read(n)).slice();
      return { ...store.info(n), read: () => data };
    }),
  );
  store.close();
  await writeSafetensors(path, tensors, edit({ ...header.metadata }));
}

/** Pool counters of `gpu`, the peak since `resetPeak` included. */
function poolBytes(gpu: Awaited<ReturnType<typeof getGpu>>) {
  const { liveBytes, ownedBytes, freeBytes, peakBytes } = gpu.pool;
  return { liveBytes, ownedBytes, freeBytes, peakBytes };
}

for (const version of ["3", "two", "0"]) {
  Deno.test(`quantize: a folder of layout version "${version}" is BAD_WEIGHTS, refused before any upload`, async () => {
    const out = await quantizeFixture("vit-gpt2", "q4");
    try {
      await editMetadata(out, (m) => ({ ...m, [VERSION_KEY]: version }));
      const gpu = await getGpu();
      gpu.pool.resetPeak();
      const before = poolBytes(gpu);
      for (const dtype of ["q4", "f32"] as const) {
        const parts = [
          `${out}/model.safetensors`,
          `version "${version}"`,
          VERSION_KEY,
          `1 to ${QUANT_VERSION}, ${QUANT_VERSION} the newest`,
        ];
        await assertRejectsCode(load(out, { dtype }), "BAD_WEIGHTS", ...parts.map(RegExp.escape));
      }
      assert.deepEqual(poolBytes(gpu), before, "nothing was uploaded");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  });
}

const DISAGREEING: [string, (m: Record<string, string>) => Record<string, string>, RegExp][] = [
  [
    "another scheme",
    (m) => ({ ...m, [QUANT_METADATA.scheme]: "q8", [QUANT_METADATA.groupSize]: "0" }),
    /quantized tensor "[^"]+" is stored as q4, but the file declares q8 in __metadata__/,
  ],
  [
    "another group size",
    (m) => ({ ...m, [QUANT_METADATA.groupSize]: "16" }),
    /has groups of 32 \(1 per row of 32\), but the file declares q4, group size 16/,
  ],
  [
    "an unknown scheme",
    (m) => ({ ...m, [QUANT_METADATA.scheme]: "q3" }),
    /"webcap\.quantization" is "q3", not q8 or q4/,
  ],
  [
    "an odd group size",
    (m) => ({ ...m, [QUANT_METADATA.groupSize]: "7" }),
    /"webcap\.group_size" is "7", not an even integer for q4/,
  ],
];

for (const [what, edit, message] of DISAGREEING) {
  Deno.test(`quantize: a q4 file whose metadata declares ${what} is BAD_WEIGHTS naming the file`, async () => {
    const out = await quantizeFixture("vit-gpt2", "q4");
    try {
      await editMetadata(out, edit);
      const file = RegExp.escape(`${out}/model.safetensors`);
      await assertRejectsCode(load(out, { dtype: "q4" }), "BAD_WEIGHTS", file, message);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  });
}

/** Split safetensors `bytes` into two shards and an index in `out`, shard i with `metadata[i]`. */
async function shard(
  out: string,
  bytes: Uint8Array,
  metadata: Record<string, string>[],
): Promise<void> {
  const store = await openSafetensors(bytes);
  const names = store.names();
  const weightMap: Record<string, string> = {};
  for (
    const [i, part] of [names.slice(0, names.length / 2), names.slice(names.length / 2)].entries()
  ) {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    const tensors = part.map((n) => {
      weightMap[n] = file;
      return { ...store.info(n), read: () => store.read(n) };
    });
    await writeSafetensors(`${out}/${file}`, tensors, metadata[i]);
  }
  store.close();
  const index = JSON.stringify({ metadata: {}, weight_map: weightMap });
  await Deno.writeTextFile(`${out}/model.safetensors.index.json`, index);
}

Deno.test("quantize: a sharded q4 folder loads when its shards agree, and is refused naming both when not", async () => {
  const out = await quantizeFixture("vit-gpt2", "q4");
  try {
    const bytes = await Deno.readFile(`${out}/model.safetensors`);
    await Deno.remove(`${out}/model.safetensors`);
    const meta = { ...parseSafetensorsHeader(bytes, out).metadata };
    await shard(out, bytes, [meta, meta]);
    const [stored, atLoad] = [
      await load(out, { dtype: "q4" }),
      await load(fixture("hf/vit-gpt2"), { dtype: "q4" }),
    ];
    try {
      assert.deepEqual(await wteRows(stored), await wteRows(atLoad));
    } finally {
      stored.dispose();
      atLoad.dispose();
    }
    const other = { ...meta, [QUANT_METADATA.groupSize]: "16" };
    await shard(out, bytes, [meta, other]);
    const parts = ["00001-of-00002", "00002-of-00002", "group size 32", "group size 16"];
    await assertRejectsCode(load(out, { dtype: "q4" }), "BAD_WEIGHTS", ...parts.map(RegExp.escape));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("quantize: the caption CLI reports a folder of a newer layout in one line, no stack trace", async () => {
  const out = await quantizeFixture("vit-gpt2", "q4");
  try {
    await editMetadata(out, (m) => ({ ...m, [VERSION_KEY]: String(QUANT_VERSION + 1) }));
    const image = fixture("images/baseline-444.jpg");
    const r = await caption([image, "--model", out, "--dtype", "q4"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^error BAD_WEIGHTS: .*model\.safetensors: quantized layout version /);
    assert.ok(r.stderr.includes(`version "${QUANT_VERSION + 1}"`), r.stderr);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.equal(r.stdout, "");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
