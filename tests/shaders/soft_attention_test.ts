import assert from "node:assert/strict";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import {
  attentionCoverage,
  softAttention,
  softAttentionBackward,
  softAttentionDFeatures,
} from "../../src/shaders/soft_attention.ts";
import { firstNonFinite, getGpu, poisoned, randomF32, relL2 } from "../util.ts";
import { fd } from "./reference.ts";
import { meanAxis1Backward } from "../../src/shaders/reduce.ts";

/** Float64 soft attention: α `[R, P]` and gated context z `[R, C]`. */
function softAttentionRef(
  encAtt: ArrayLike<number>,
  decAtt: ArrayLike<number>,
  w: ArrayLike<number>,
  enc: ArrayLike<number>,
  gate: ArrayLike<number>,
  rowImage: number[],
  P: number,
  A: number,
  C: number,
): { alpha: Float64Array; z: Float64Array } {
  const R = rowImage.length;
  const alpha = new Float64Array(R * P), z = new Float64Array(R * C);
  rowImage.forEach((im, r) => {
    const e = Array.from({ length: P }, (_, p) => {
      let s = 0;
      for (let a = 0; a < A; a++) {
        s += w[a] * Math.max(encAtt[(im * P + p) * A + a] + decAtt[r * A + a], 0);
      }
      return s;
    });
    const m = Math.max(...e);
    const ex = e.map((v) => Math.exp(v - m));
    const sum = ex.reduce((x, y) => x + y, 0);
    for (let p = 0; p < P; p++) alpha[r * P + p] = ex[p] / sum;
    for (let c = 0; c < C; c++) {
      let acc = 0;
      for (let p = 0; p < P; p++) acc += alpha[r * P + p] * enc[(im * P + p) * C + c];
      z[r * C + c] = gate[r * C + c] * acc;
    }
  });
  return { alpha, z };
}

/** Rows of a strided output: `width` values at `off + r·stride`. */
function gather(
  x: Float32Array,
  rows: number,
  off: number,
  stride: number,
  width: number,
): Float32Array {
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    out.set(x.subarray(off + r * stride, off + r * stride + width), r * width);
  }
  return out;
}

for (
  const [N, P, A, C, rowImage] of [[1, 9, 32, 256, [0]], [2, 300, 40, 300, [1, 0, 1]], [
    3,
    196,
    17,
    70,
    [2, 2, 0, 1, 0],
  ]] as const
) {
  Deno.test(`softAttention images=${N} pixels=${P} A=${A} C=${C} rows=${rowImage.length} (strided outputs)`, async () => {
    const gpu = await getGpu();
    const R = rowImage.length;
    const data = {
      encAtt: randomF32(N * P * A, 1, 2),
      decAtt: randomF32(R * A, 2, 2),
      w: randomF32(A, 3),
      enc: randomF32(N * P * C, 4, 3),
      gate: randomF32(R * C, 5).map((v) => (v + 1) / 2),
    };
    const t = {
      encAtt: uploadTensor(gpu, data.encAtt, [N * P, A], "f32"),
      decAtt: uploadTensor(gpu, data.decAtt, [R, A], "f32"),
      w: uploadTensor(gpu, data.w, [1, A], "f32"),
      enc: uploadTensor(gpu, data.enc, [N, P, C], "f32"),
      gate: uploadTensor(gpu, data.gate, [R, C], "f32"),
      img: uploadTensor(gpu, Int32Array.from(rowImage), [R], "i32"),
    };
    // α at step 1 of 2 per row ([R, 2, P]); z after 5 leading values of each row ([R, 5 + C]).
    const alphaOut = poisoned(gpu, [R, 2, P]), zOut = poisoned(gpu, [R, 5 + C]);
    const rec = new Recorder(gpu);
    softAttention(rec, {
      encAtt: t.encAtt,
      decAtt: t.decAtt,
      wFull: t.w,
      enc: t.enc,
      gate: t.gate,
      rowImage: t.img,
      pixels: P,
      alpha: { t: alphaOut, offset: P, rowStride: 2 * P },
      z: { t: zOut, offset: 5, rowStride: 5 + C },
    });
    const pa = rec.readTensor(alphaOut), pz = rec.readTensor(zOut);
    await rec.submit();
    const [ga, gz] = [(await pa) as Float32Array, (await pz) as Float32Array];
    const alpha = gather(ga, R, P, 2 * P, P), z = gather(gz, R, 5, 5 + C, C);
    assert.equal(firstNonFinite(alpha), -1);
    assert.equal(firstNonFinite(z), -1);
    assert.ok(Number.isNaN(ga[0]) && Number.isNaN(gz[0]), "only the strided slots are written");
    const ref = softAttentionRef(
      data.encAtt,
      data.decAtt,
      data.w,
      data.enc,
      data.gate,
      [...rowImage],
      P,
      A,
      C,
    );
    const [ea, ez] = [relL2(alpha, ref.alpha), relL2(z, ref.z)];
    assert.ok(ea < 1e-5 && ez < 1e-5, `rel L2 alpha ${ea}, z ${ez}`);
    for (const x of [...Object.values(t), alphaOut, zOut]) x.release();
  });
}

Deno.test("softAttention refuses mismatched shapes and outputs too small", async () => {
  const gpu = await getGpu();
  const f = (shape: number[]) =>
    uploadTensor(gpu, new Float32Array(shape.reduce((a, b) => a * b)), shape, "f32");
  const t = { encAtt: f([4, 3]), decAtt: f([2, 3]), w: f([3]), enc: f([4, 5]), gate: f([2, 5]) };
  const img = uploadTensor(gpu, Int32Array.of(0, 1), [2], "i32");
  const args = {
    encAtt: t.encAtt,
    decAtt: t.decAtt,
    wFull: t.w,
    enc: t.enc,
    gate: t.gate,
    rowImage: img,
    pixels: 2,
    alpha: { t: f([2, 2]), offset: 0, rowStride: 2 },
    z: { t: f([2, 5]), offset: 0, rowStride: 5 },
  };
  const rec = undefined as never;
  assert.throws(() => softAttention(rec, { ...args, pixels: 3 }), /are not \[images·3, C\]/);
  assert.throws(() => softAttention(rec, { ...args, gate: t.decAtt }), /gate \[2,3\] are not/);
  assert.throws(
    () => softAttention(rec, { ...args, z: { ...args.z, offset: 1 } }),
    /does not hold every row/,
  );
  for (const x of [...Object.values(t), img, args.alpha.t, args.z.t]) x.release();
});

Deno.test("softAttentionBackward: every input's gradient by float64 finite differences (strided dZ, dα)", async () => {
  const gpu = await getGpu();
  const [N, P, A, C, rowImage] = [2, 5, 6, 7, [1, 0, 1]];
  const R = rowImage.length;
  const d = {
    encAtt: randomF32(N * P * A, 11, 2),
    decAtt: randomF32(R * A, 12, 2),
    w: randomF32(A, 13, 2),
    enc: randomF32(N * P * C, 14, 3),
    gate: randomF32(R * C, 15).map((v) => (v + 1) / 2),
    dZ: randomF32(R * (3 + C), 16),
    dAlpha: randomF32(R * 2 * P, 17),
  };
  const up = (a: Float32Array, shape: number[], dtype: "f32" | "i32" = "f32") =>
    uploadTensor(gpu, a, shape, dtype);
  const t = {
    encAtt: up(d.encAtt, [N * P, A]),
    decAtt: up(d.decAtt, [R, A]),
    wFull: up(d.w, [1, A]),
    enc: up(d.enc, [N, P, C]),
    gate: up(d.gate, [R, C]),
    rowImage: uploadTensor(gpu, Int32Array.from(rowImage), [R], "i32"),
    alpha: up(new Float32Array(R * 2 * P), [R, 2, P]),
    z: up(new Float32Array(R * (3 + C)), [R, 3 + C]),
    dZ: up(d.dZ, [R, 3 + C]),
    dAlpha: up(d.dAlpha, [R, 2, P]),
  };
  const args = { ...t, pixels: P, alpha: { t: t.alpha, offset: P, rowStride: 2 * P } };
  const rec = new Recorder(gpu);
  softAttention(rec, { ...args, z: { t: t.z, offset: 3, rowStride: 3 + C } });
  const g = softAttentionBackward(rec, {
    ...args,
    dZ: { t: t.dZ, offset: 3, rowStride: 3 + C },
    dAlpha: t.dAlpha,
  });
  const dEnc0 = randomF32(N * P * C, 18); // accumulated into
  const dEnc = up(dEnc0, [N, P, C]);
  softAttentionDFeatures(rec, { ...args, dZ: { t: t.dZ, offset: 3, rowStride: 3 + C } }, dEnc);
  const reads = [g.dGate, g.dDecAtt, g.dWFull, g.dEncAtt, dEnc].map((x) => rec.readTensor(x));
  await rec.submit();
  const [dGate, dDecAtt, dWRows, dEARows, dEncSum] = (await Promise.all(reads)) as Float32Array[];
  // L = Σ dZ·z + Σ dα·α in float64, as a function of one input at a time
  const loss = (
    x: Partial<Record<"encAtt" | "decAtt" | "w" | "gate" | "enc", ArrayLike<number>>>,
  ) => {
    const r = softAttentionRef(
      x.encAtt ?? d.encAtt,
      x.decAtt ?? d.decAtt,
      x.w ?? d.w,
      x.enc ?? d.enc,
      x.gate ?? d.gate,
      rowImage,
      P,
      A,
      C,
    );
    let s = 0;
    for (let i = 0; i < R; i++) {
      for (let c = 0; c < C; c++) s += d.dZ[i * (3 + C) + 3 + c] * r.z[i * C + c];
      for (let p = 0; p < P; p++) s += d.dAlpha[i * 2 * P + P + p] * r.alpha[i * P + p];
    }
    return s;
  };
  const dW = new Float32Array(A), dEA = new Float32Array(N * P * A);
  rowImage.forEach((im, r) => {
    for (let a = 0; a < A; a++) dW[a] += dWRows[r * A + a];
    for (let i = 0; i < P * A; i++) dEA[im * P * A + i] += dEARows[r * P * A + i];
  });
  const checks: [string, Float32Array, Float64Array][] = [
    ["gate", dGate, fd((x) => loss({ gate: x }), d.gate)],
    ["decAtt", dDecAtt, fd((x) => loss({ decAtt: x }), d.decAtt)],
    ["wFull", dW, fd((x) => loss({ w: x }), d.w)],
    ["encAtt", dEA, fd((x) => loss({ encAtt: x }), d.encAtt)],
    ["enc (through z)", dEncSum.map((v, i) => v - dEnc0[i]), fd((x) => loss({ enc: x }), d.enc)],
  ];
  for (const [name, got, want] of checks) {
    assert.ok(relL2(got, want) < 1e-4, `${name}: rel L2 ${relL2(got, want)}`);
  }
  for (const x of [...Object.values(t), ...Object.values(g), dEnc]) x.release();
});

Deno.test("attentionCoverage: terms and dα against float64, masked steps excluded", async () => {
  const gpu = await getGpu();
  const [R, T, P] = [3, 4, 5];
  const alpha = randomF32(R * T * P, 21).map((v) => (v + 1) / 4);
  const targets = Int32Array.from([3, 4, 2, -100, 7, 2, -100, -100, 1, 1, 1, 2]);
  const scale = 0.7 / (R * P);
  const f = (a: ArrayLike<number>) => {
    let s = 0;
    for (let r = 0; r < R; r++) {
      for (let p = 0; p < P; p++) {
        let u = 1;
        for (let t = 0; t < T; t++) if (targets[r * T + t] >= 0) u -= a[(r * T + t) * P + p];
        s += scale * u * u;
      }
    }
    return s;
  };
  const ta = uploadTensor(gpu, alpha, [R, T, P], "f32");
  const tt = uploadTensor(gpu, targets, [R * T], "i32");
  const rec = new Recorder(gpu);
  const out = attentionCoverage(rec, ta, tt, scale);
  const [pt, pd] = [rec.readTensor(out.terms), rec.readTensor(out.dAlpha)];
  await rec.submit();
  const terms = (await pt) as Float32Array, dAlpha = (await pd) as Float32Array;
  const sum = terms.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - f(alpha)) < 1e-6 * f(alpha), `${sum} vs ${f(alpha)}`);
  assert.ok(relL2(dAlpha, fd(f, alpha)) < 1e-5, `dα rel L2 ${relL2(dAlpha, fd(f, alpha))}`);
  assert.equal(dAlpha[3 * P], 0, "a step past the caption gets no gradient");
  for (const x of [ta, tt, out.terms, out.dAlpha]) x.release();
});

Deno.test("meanAxis1Backward adds dY / H over the middle axis", async () => {
  const gpu = await getGpu();
  const [A, H, B] = [3, 5, 7];
  const x0 = randomF32(A * H * B, 31), dy = randomF32(A * B, 32);
  const dx = uploadTensor(gpu, x0, [A, H, B], "f32"), tdy = uploadTensor(gpu, dy, [A, B], "f32");
  const rec = new Recorder(gpu);
  meanAxis1Backward(rec, tdy, dx, H);
  const read = rec.readTensor(dx);
  await rec.submit();
  const got = (await read) as Float32Array;
  const want = Float64Array.from(x0, (v, i) => v + dy[Math.floor(i / (H * B)) * B + (i % B)] / H);
  assert.ok(relL2(got, want) < 1e-6, `rel L2 ${relL2(got, want)}`);
  assert.throws(() => meanAxis1Backward(rec, tdy, dx, 4), /meanAxis1Backward/);
  dx.release();
  tdy.release();
});
