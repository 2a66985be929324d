import assert from "node:assert/strict";
import { lstmCell } from "../../src/shaders/lstm.ts";
import { matmul } from "../../src/shaders/matmul.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { firstNonFinite, getGpu, poisoned, randomF32, relL2 } from "../util.ts";

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** Float64 LSTMCell (PyTorch gate order i, f, g, o) from inputs, state and weights. */
function lstmRef(
  x: Float32Array,
  h: Float32Array,
  c: Float32Array,
  wih: Float32Array,
  whh: Float32Array,
  bih: Float32Array,
  bhh: Float32Array,
  rows: number,
  I: number,
  H: number,
): { h: Float64Array; c: Float64Array } {
  const hn = new Float64Array(rows * H), cn = new Float64Array(rows * H);
  for (let r = 0; r < rows; r++) {
    const g = new Float64Array(4 * H);
    for (let j = 0; j < 4 * H; j++) {
      let s = bih[j] + bhh[j];
      for (let k = 0; k < I; k++) s += x[r * I + k] * wih[j * I + k];
      for (let k = 0; k < H; k++) s += h[r * H + k] * whh[j * H + k];
      g[j] = s;
    }
    for (let j = 0; j < H; j++) {
      const cv = sigmoid(g[H + j]) * c[r * H + j] + sigmoid(g[j]) * Math.tanh(g[2 * H + j]);
      cn[r * H + j] = cv;
      hn[r * H + j] = sigmoid(g[3 * H + j]) * Math.tanh(cv);
    }
  }
  return { h: hn, c: cn };
}

for (const [rows, I, H] of [[1, 24, 48], [5, 7, 70], [3, 33, 300]]) {
  Deno.test(`lstmCell rows=${rows} input=${I} hidden=${H} (gates from two matmuls)`, async () => {
    const gpu = await getGpu();
    const x = randomF32(rows * I, 1, 2), h = randomF32(rows * H, 2), c = randomF32(rows * H, 3, 3);
    const wih = randomF32(4 * H * I, 4, 0.5), whh = randomF32(4 * H * H, 5, 0.5);
    const bih = randomF32(4 * H, 6), bhh = randomF32(4 * H, 7);
    const [tx, th, tc] = [
      uploadTensor(gpu, x, [rows, I], "f32"),
      uploadTensor(gpu, h, [rows, H], "f32"),
      uploadTensor(gpu, c, [rows, H], "f32"),
    ];
    const [twih, twhh] = [
      uploadTensor(gpu, wih, [4 * H, I], "f32"),
      uploadTensor(gpu, whh, [4 * H, H], "f32"),
    ];
    const [tbih, tbhh] = [
      uploadTensor(gpu, bih, [4 * H], "f32"),
      uploadTensor(gpu, bhh, [4 * H], "f32"),
    ];
    const hOut = poisoned(gpu, [rows, H]), cOut = poisoned(gpu, [rows, H]);
    const rec = new Recorder(gpu);
    const xg = matmul(rec, tx, twih, { transposeW: true, bias: tbih });
    const gates = matmul(rec, th, twhh, { transposeW: true, bias: tbhh, residual: xg });
    const out = lstmCell(rec, gates, tc, { hOut, cOut });
    assert.equal(out.h, hOut);
    const ph = rec.readTensor(out.h), pc = rec.readTensor(out.c);
    await rec.submit();
    const [gh, gc] = [(await ph) as Float32Array, (await pc) as Float32Array];
    assert.equal(firstNonFinite(gh), -1);
    assert.equal(firstNonFinite(gc), -1);
    const ref = lstmRef(x, h, c, wih, whh, bih, bhh, rows, I, H);
    const [eh, ec] = [relL2(gh, ref.h), relL2(gc, ref.c)];
    assert.ok(eh < 1e-5 && ec < 1e-5, `rel L2 h ${eh}, c ${ec}`);
    for (const t of [tx, th, tc, twih, twhh, tbih, tbhh, hOut, cOut, xg, gates]) t.release();
  });
}

Deno.test("lstmCell refuses mismatched shapes and an output aliasing c", async () => {
  const gpu = await getGpu();
  const g = uploadTensor(gpu, new Float32Array(2 * 12), [2, 12], "f32");
  const c = uploadTensor(gpu, new Float32Array(2 * 4), [2, 4], "f32");
  const c3 = uploadTensor(gpu, new Float32Array(2 * 3), [2, 3], "f32");
  assert.throws(() => lstmCell(undefined as never, g, c), /gates \[rows, 4·H\]/);
  assert.throws(() => lstmCell(undefined as never, g, c3, { cOut: c3 }), /must not share/);
  for (const t of [g, c, c3]) t.release();
});
