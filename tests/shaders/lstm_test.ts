import assert from "node:assert/strict";
import { lstmCell, lstmCellBackward } from "../../src/shaders/lstm.ts";
import { matmul } from "../../src/shaders/matmul.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { firstNonFinite, getGpu, poisoned, randomF32, relL2 } from "../util.ts";
import { fd } from "./reference.ts";

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

/** Float64 cell from pre-activation gates `[rows, 4H]` and c: `[h', c']`. */
function cellRef(g: ArrayLike<number>, c: ArrayLike<number>, rows: number, H: number) {
  const h = new Float64Array(rows * H), cn = new Float64Array(rows * H);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < H; j++) {
      const at = (k: number) => g[r * 4 * H + k * H + j];
      const v = sigmoid(at(1)) * c[r * H + j] + sigmoid(at(0)) * Math.tanh(at(2));
      cn[r * H + j] = v;
      h[r * H + j] = sigmoid(at(3)) * Math.tanh(v);
    }
  }
  return { h, c: cn };
}

for (const [rows, H, withDc] of [[3, 5, true], [2, 300, false]] as const) {
  Deno.test(`lstmCellBackward rows=${rows} H=${H} dc'=${withDc}: float64 finite differences`, async () => {
    const gpu = await getGpu();
    const g = randomF32(rows * 4 * H, 31, 2), c = randomF32(rows * H, 32);
    const dH = randomF32(rows * H, 33), dCn = randomF32(rows * H, 34);
    const up = (a: Float32Array, shape: number[]) => uploadTensor(gpu, a, shape, "f32");
    const t = [up(g, [rows, 4 * H]), up(c, [rows, H]), up(dH, [rows, H]), up(dCn, [rows, H])];
    const rec = new Recorder(gpu);
    const out = lstmCellBackward(rec, t[0], t[1], t[2], withDc ? t[3] : undefined);
    const [pg, pc] = [rec.readTensor(out.dGates), rec.readTensor(out.dC)];
    await rec.submit();
    const loss = (gg: ArrayLike<number>, cc: ArrayLike<number>) => {
      const r = cellRef(gg, cc, rows, H);
      let s = 0;
      for (let i = 0; i < rows * H; i++) s += dH[i] * r.h[i] + (withDc ? dCn[i] * r.c[i] : 0);
      return s;
    };
    const eg = relL2((await pg) as Float32Array, fd((x) => loss(x, c), g));
    const ec = relL2((await pc) as Float32Array, fd((x) => loss(g, x), c));
    assert.ok(eg < 1e-5 && ec < 1e-5, `rel L2 dGates ${eg}, dC ${ec}`);
    for (const x of [...t, out.dGates, out.dC]) x.release();
  });
}
