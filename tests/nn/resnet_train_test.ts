/**
 * The trainable ResNet stages (layer2–4 of the Show-Attend-Tell fixture: a downsample block, an
 * identity block, two more downsample blocks): the gradients of the loss Σ r·features (r random)
 * against finite differences of a float64 host forward along random directions per group.
 */
import assert from "node:assert/strict";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { Gradients } from "../../src/nn/grads.ts";
import { ParamLoader } from "../../src/nn/params.ts";
import {
  loadResNet,
  type ResNetConfig,
  resNetConfig,
  resnetEncode,
  resnetStages,
} from "../../src/nn/resnet.ts";
import { resnetTrainBackward, resnetTrainForward } from "../../src/nn/resnet_train.ts";
import { convRef } from "../shaders/reference.ts";
import { assertCode, fixture, getGpu, randomF32, relL2, rng, runAndRead } from "../util.ts";

const DIR = fixture("hf/show-attend-tell");
const gpu = await getGpu();

async function setup() {
  const json = JSON.parse(await Deno.readTextFile(`${DIR}/config.json`));
  const config = resNetConfig(json, "config.json");
  const store = await openSafetensors(`${DIR}/model.safetensors`);
  const ref = await openSafetensors(`${DIR}/reference.safetensors`);
  const p = new ParamLoader(gpu, store, "f32");
  const w = await loadResNet(p, "encoder.resnet", config, { keepBatchNormFrom: 1 });
  const pixels = uploadTensor(gpu, await ref.readF32("images"), ref.info("images").shape, "f32");
  store.close();
  ref.close();
  const trained = p.params.filter((q) => q.trainable);
  const dispose = () => (pixels.release(), p.dispose());
  return { w, pixels, p, trained, [Symbol.dispose]: dispose };
}

Deno.test("ResNet training forward: the features of resnetEncode, the trained stages' parameters only", async () => {
  using s = await setup();
  const names = s.trained.map((q) => q.name);
  assert.ok(names.length > 0);
  for (const n of names) assert.match(n, /^encoder\.resnet\.[567]\./, n);
  for (const n of ["5.0.downsample.0.weight", "5.1.bn2.weight", "7.0.bn3.bias"]) {
    assert.ok(names.includes(`encoder.resnet.${n}`), n);
  }
  assert.ok(!names.some((n) => n.includes("running")), "running statistics stay frozen");
  const want = await runAndRead(gpu, (rec) => resnetEncode(rec, s.w, s.pixels));
  const got = await runAndRead(gpu, (rec) => resnetTrainForward(rec, s.w, s.pixels, 1).features);
  assert.deepEqual(got, want);
  assertCode(() => resnetTrainForward(new Recorder(gpu), s.w, s.pixels, 4), "BAD_OPTION", "0…3");
});

Deno.test("ResNet training: a stage loaded folded is refused", async () => {
  using s = await setup();
  assertCode(
    () => resnetTrainForward(new Recorder(gpu), s.w, s.pixels, 0),
    "BAD_OPTION",
    "keepBatchNormFrom",
  );
});

/** Parameter values by name (float64), for the host reference. */
type Values = Map<string, Float64Array>;

/** act(bn(conv(x)) + res) in float64 with BatchNorm on its running statistics. */
function convBnRef(
  v: Values,
  [conv, bn]: [string, string],
  x: { a: Float64Array; shape: number[] },
  o: { stride: number; ws: number[]; act: "relu" | "none"; res?: Float64Array },
) {
  const { out, shape } = convRef(x.a, x.shape, v.get(`${conv}.weight`)!, o.ws, {
    stride: o.stride,
    padding: (o.ws[2] - 1) >> 1,
  });
  const [, C, H, W] = shape,
    [g, b, m, va] = ["weight", "bias", "running_mean", "running_var"]
      .map((k) => v.get(`${bn}.${k}`)!);
  out.forEach((y, i) => {
    const c = Math.floor(i / (H * W)) % C;
    const z = (y - m[c]) / Math.sqrt(va[c] + 1e-5) * g[c] + b[c] + (o.res?.[i] ?? 0);
    out[i] = o.act === "relu" ? Math.max(z, 0) : z;
  });
  return { a: out, shape };
}

/** Stages 1… of the config in float64 from layer1's output `x`, then the adaptive pool: `[N, P, C]`. */
function stagesRef(v: Values, cfg: ResNetConfig, x: { a: Float64Array; shape: number[] }) {
  for (let s = 1; s < cfg.layers.length; s++) {
    const planes = cfg.planes[s], outC = 4 * planes;
    for (let b = 0; b < cfg.layers[s]; b++) {
      const n = `encoder.resnet.${4 + s}.${b}`, inC = x.shape[1];
      const stride = b === 0 ? cfg.strides[s] : 1;
      const idn = v.has(`${n}.downsample.0.weight`)
        ? convBnRef(v, [`${n}.downsample.0`, `${n}.downsample.1`], x, {
          stride,
          ws: [outC, inC, 1, 1],
          act: "none",
        }).a
        : x.a;
      const cb = (i: number) => [`${n}.conv${i}`, `${n}.bn${i}`] as [string, string];
      const a = convBnRef(v, cb(1), x, { stride: 1, ws: [planes, inC, 1, 1], act: "relu" });
      const c = convBnRef(v, cb(2), a, { stride, ws: [planes, planes, 3, 3], act: "relu" });
      x = convBnRef(v, cb(3), c, { stride: 1, ws: [outC, planes, 1, 1], act: "relu", res: idn });
    }
  }
  const [N, C, H, W] = x.shape, S = cfg.encodedImageSize;
  const out = new Float64Array(N * S * S * C);
  for (let n = 0; n < N; n++) {
    for (let oy = 0; oy < S; oy++) {
      for (let ox = 0; ox < S; ox++) {
        const [y0, y1] = [Math.floor(oy * H / S), Math.ceil((oy + 1) * H / S)];
        const [x0, x1] = [Math.floor(ox * W / S), Math.ceil((ox + 1) * W / S)];
        for (let c = 0; c < C; c++) {
          let sum = 0;
          for (let y = y0; y < y1; y++) {
            for (let xx = x0; xx < x1; xx++) sum += x.a[((n * C + c) * H + y) * W + xx];
          }
          out[((n * S + oy) * S + ox) * C + c] = sum / ((y1 - y0) * (x1 - x0));
        }
      }
    }
  }
  return out;
}

Deno.test("ResNet training backward: stages 2–4 (conv, BatchNorm γ and β, shortcuts) against float64 finite differences", async () => {
  using s = await setup();
  const cfg = s.w.config;
  const store = await openSafetensors(`${DIR}/model.safetensors`);
  const base: Values = new Map();
  for (const n of store.names().filter((n) => /^encoder\.resnet\.[567]\./.test(n))) {
    base.set(n, Float64Array.from(await store.readF32(n)));
  }
  store.close();
  let shape: number[] = [];
  const x1 = await runAndRead(gpu, (rec) => {
    const t = resnetStages(rec, s.w, s.pixels, 1); // layer1's output, frozen
    shape = [...t.shape];
    rec.releaseAfterSubmit(t);
    return t;
  });
  // the loss of image 0 only (r is 0 on the others): the host forward runs on one image
  const x = {
    a: Float64Array.from(x1.subarray(0, x1.length / shape[0])),
    shape: [1, ...shape.slice(1)],
  };
  const r = new Float32Array(shape[0] * cfg.encodedImageSize ** 2 * cfg.planes.at(-1)! * 4);
  r.set(randomF32(r.length / shape[0], 7));
  const lossAt = (v: Values) => stagesRef(v, cfg, x).reduce((a, f, i) => a + f * r[i], 0);

  const g = new Gradients(gpu, s.trained);
  const rec = new Recorder(gpu);
  const { features, saved } = resnetTrainForward(rec, s.w, s.pixels, 1);
  const dF = rec.upload(r, features.shape, "f32");
  resnetTrainBackward(rec, s.w, saved, dF, g);
  rec.releaseAfterSubmit(features, dF);
  const feats = rec.readTensor(features), read = g.read(rec);
  await rec.submit();
  const grads = await read;
  g.dispose();
  const want = stagesRef(base, cfg, x);
  const got = (await feats as Float32Array).subarray(0, want.length);
  assert.ok(relL2(got, want) < 1e-5, `the forward: rel L2 ${relL2(got, want)}`);

  const groups: [string, RegExp][] = [
    ["layer2 convs", /resnet\.5\..*conv\d\.weight/],
    ["layer2 downsample", /resnet\.5\.0\.downsample\.0/],
    ["layer2 BatchNorm γ", /resnet\.5\..*bn\d\.weight/],
    ["layer2 BatchNorm β", /resnet\.5\..*bn\d\.bias|downsample\.1\.bias/],
    ["layer3 and layer4", /resnet\.[67]\./],
  ];
  const h = 1e-6;
  for (const [i, [what, re]] of groups.entries()) {
    const rand = rng(60 + i), dir = new Map<string, Float64Array>();
    let analytic = 0;
    for (const q of s.trained.filter((q) => re.test(q.name))) {
      const d = Float64Array.from(grads.get(q.name)!, () => (rand() < 0.5 ? -1 : 1));
      d.forEach((v, j) => analytic += v * grads.get(q.name)![j]);
      dir.set(q.name, d);
    }
    assert.ok(dir.size > 0, what);
    const at = (k: number) =>
      lossAt(
        new Map([...base].map(([n, b]) => {
          const d = dir.get(n);
          return [n, d ? b.map((v, j) => v + k * h * d[j]) : b];
        })),
      );
    const numeric = (8 * (at(1) - at(-1)) - (at(2) - at(-2))) / (12 * h);
    const rel = Math.abs(analytic - numeric) / Math.abs(numeric);
    assert.ok(rel < 1e-3, `${what}: analytic ${analytic} vs float64 finite differences ${numeric}`);
  }
});
