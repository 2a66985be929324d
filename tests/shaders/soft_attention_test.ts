import assert from "node:assert/strict";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { softAttention } from "../../src/shaders/soft_attention.ts";
import { firstNonFinite, getGpu, poisoned, randomF32, relL2 } from "../util.ts";

/** Float64 soft attention: α `[R, P]` and gated context z `[R, C]`. */
function softAttentionRef(
  encAtt: Float32Array,
  decAtt: Float32Array,
  w: Float32Array,
  enc: Float32Array,
  gate: Float32Array,
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
