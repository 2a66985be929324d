/**
 * Backward kernels against finite differences of float64 CPU forwards: for a forward y = f(x)
 * and a random output gradient dY, the gradient of L = Σ dY·f(x) by central differences.
 */
import assert from "node:assert/strict";
import { Recorder } from "../../src/gpu/recorder.ts";
import { uploadTensor } from "../../src/gpu/tensor.ts";
import { attention, attentionBackward } from "../../src/shaders/attention.ts";
import { accumulate, unaryBackward } from "../../src/shaders/elementwise.ts";
import { embeddingBackward } from "../../src/shaders/embedding.ts";
import { layerNormBackward, layerNormTrain } from "../../src/shaders/layernorm.ts";
import { matmulBackward } from "../../src/shaders/matmul.ts";
import { crossEntropy } from "../../src/shaders/softmax.ts";
import { dot, getGpu, randomF32, readAll, relL2 } from "../util.ts";
import { actRef, fd, philox4x32 } from "./reference.ts";

function matmulRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  t: boolean,
) {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = b[n];
      for (let k = 0; k < K; k++) s += x[m * K + k] * (t ? w[n * K + k] : w[k * N + n]);
      y[m * N + n] = s;
    }
  }
  return y;
}

for (const transposeW of [false, true]) {
  Deno.test(`matmulBackward transposeW=${transposeW}: dX, dW, db by finite differences; accumulates`, async () => {
    const gpu = await getGpu();
    for (const [M, N, K] of [[5, 9, 7], [13, 3, 70]]) {
      const x = randomF32(M * K, 1), w = randomF32(N * K, 2), b = randomF32(N, 3);
      const dy = randomF32(M * N, 4), g0 = randomF32(N * K, 5), r = randomF32(M * K, 6);
      const up = (a: Float32Array, s: number[]) => uploadTensor(gpu, a, s, "f32");
      const [tx, tw, tdy, tdW, tdb, tr] = [
        up(x, [M, K]),
        up(w, transposeW ? [N, K] : [K, N]),
        up(dy, [M, N]),
        up(g0, transposeW ? [N, K] : [K, N]),
        up(new Float32Array(N), [N]),
        up(r, [M, K]),
      ];
      const rec = new Recorder(gpu);
      const dx = matmulBackward(rec, tx, tw, tdy, { dW: tdW, db: tdb }, {
        transposeW,
        residual: tr,
      })!;
      const [gx, gw, gb] = await readAll(rec, [dx, tdW, tdb]);
      const L = (xx: ArrayLike<number>, ww: ArrayLike<number>, bb: ArrayLike<number>) =>
        dot(dy, matmulRef(xx, ww, bb, M, N, K, transposeW));
      const wantX = fd((v) => L(v, w, b), x).map((v, i) => v + r[i]);
      const wantW = fd((v) => L(x, v, b), w).map((v, i) => v + g0[i]);
      assert.ok(relL2(gx, wantX) < 1e-5, `dX ${relL2(gx, wantX)}`);
      assert.ok(relL2(gw, wantW) < 1e-5, `dW ${relL2(gw, wantW)}`);
      assert.ok(relL2(gb, fd((v) => L(x, w, v), b)) < 1e-5, "db");
      for (const t of [tx, tw, tdy, tdW, tdb, tr, dx]) t.release();
    }
  });
}

Deno.test("layerNormBackward (odd width, offset mean): dX + residual, dgamma, dbeta", async () => {
  const gpu = await getGpu();
  const [rows, D, eps] = [3, 37, 1e-5];
  const x = randomF32(rows * D, 7, 2).map((v) => v + 3), gm = randomF32(D, 8), bt = randomF32(D, 9);
  const dy = randomF32(rows * D, 10), r = randomF32(rows * D, 11);
  const ln = (xx: ArrayLike<number>, gg: ArrayLike<number>, bb: ArrayLike<number>) => {
    let s = 0;
    for (let q = 0; q < rows; q++) {
      let m = 0, v = 0;
      for (let i = 0; i < D; i++) m += xx[q * D + i] / D;
      for (let i = 0; i < D; i++) v += (xx[q * D + i] - m) ** 2 / D;
      for (let i = 0; i < D; i++) {
        s += dy[q * D + i] * ((xx[q * D + i] - m) / Math.sqrt(v + eps) * gg[i] + bb[i]);
      }
    }
    return s;
  };
  const up = (a: Float32Array) => uploadTensor(gpu, a, [a.length], "f32");
  const [tx, tg, tb, tdy, tr] = [up(x), up(gm), up(bt), up(dy), up(r)];
  const [dG, dB] = [up(new Float32Array(D)), up(new Float32Array(D))];
  const rec = new Recorder(gpu);
  const saved = layerNormTrain(rec, tx.view([rows, D]), tg, tb, eps);
  const dx = layerNormBackward(rec, saved, tg, tdy, { dGamma: dG, dBeta: dB }, tr);
  const [gx, gg, gb] = await readAll(rec, [dx, dG, dB]);
  const wantX = fd((v) => ln(v, gm, bt), x, 1e-4).map((v, i) => v + r[i]);
  assert.ok(relL2(gx, wantX) < 1e-4, `dX ${relL2(gx, wantX)}`);
  assert.ok(relL2(gg, fd((v) => ln(x, v, bt), gm)) < 1e-5, "dgamma");
  assert.ok(relL2(gb, fd((v) => ln(x, gm, v), bt)) < 1e-5, "dbeta");
});

for (const act of ["gelu", "gelu_new", "quick_gelu", "tanh", "sigmoid", "relu"] as const) {
  Deno.test(`unaryBackward ${act}`, async () => {
    const gpu = await getGpu();
    const x = randomF32(301, 12, 4), dy = randomF32(301, 13);
    const [tx, tdy] = [uploadTensor(gpu, x, [301], "f32"), uploadTensor(gpu, dy, [301], "f32")];
    const rec = new Recorder(gpu);
    const [got] = await readAll(rec, [unaryBackward(rec, tx, tdy, act)]);
    const want = Array.from(
      x,
      (v, i) => dy[i] * (actRef(act, v + 1e-6) - actRef(act, v - 1e-6)) / 2e-6,
    );
    assert.ok(relL2(got, want) < 1e-5, `rel L2 ${relL2(got, want)}`);
  });
}

/**
 * Σ dO · attention(q, k, v) in float64; q [B,S,H·D], k and v [B,L,H·D]; `kept(i)` multiplies
 * probability i of [B,H,S,L] (a fixed dropout mask).
 */
function attentionLoss(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dO: ArrayLike<number>,
  a: { B: number; S: number; L: number; H: number; D: number; causal: boolean; scale: number },
  kept: (i: number) => number = () => 1,
) {
  const { B, S, L, H, D } = a, W = H * D;
  let total = 0;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let s = 0; s < S; s++) {
        const n = a.causal ? s + 1 : L;
        const sc = Array.from({ length: n }, (_, j) => {
          let x = 0;
          for (let d = 0; d < D; d++) {
            x += q[(b * S + s) * W + h * D + d] * k[(b * L + j) * W + h * D + d];
          }
          return x * a.scale;
        });
        const m = Math.max(...sc),
          e = sc.map((x) => Math.exp(x - m)),
          z = e.reduce((x, y) => x + y);
        for (let d = 0; d < D; d++) {
          let o = 0;
          for (let j = 0; j < n; j++) {
            const f = kept(((b * H + h) * S + s) * L + j);
            o += e[j] / z * f * v[(b * L + j) * W + h * D + d];
          }
          total += dO[(b * S + s) * W + h * D + d] * o;
        }
      }
    }
  }
  return total;
}

for (const [causal, p] of [[true, 0], [false, 0], [true, 0.4], [false, 0.4]] as const) {
  const what = `${causal ? "causal self" : "cross"}-attention${
    p ? `, probabilities dropped at ${p}` : ""
  }`;
  Deno.test(`attentionBackward ${what}, 2 heads, odd sizes`, async () => {
    const gpu = await getGpu();
    const [B, H, D] = [2, 2, 3];
    const [S, L] = causal ? [5, 5] : [4, 7];
    const W = H * D, scale = 0.7;
    const q = randomF32(B * S * W, 14), k = randomF32(B * L * W, 15), v = randomF32(B * L * W, 16);
    const dO = randomF32(B * S * W, 17);
    // k and v packed as one [B·L, 2W] tensor, as cross keys/values are
    const kv = new Float32Array(B * L * 2 * W);
    for (let r = 0; r < B * L; r++) {
      kv.set(k.subarray(r * W, (r + 1) * W), r * 2 * W);
      kv.set(v.subarray(r * W, (r + 1) * W), r * 2 * W + W);
    }
    const [tq, tkv, tdO] = [q, kv, dO].map((a) => uploadTensor(gpu, a, [a.length], "f32"));
    const ops = {
      q: { t: tq, offset: 0, posStride: W, rowStride: S * W },
      k: { t: tkv, offset: 0, posStride: 2 * W, rowStride: L * 2 * W },
      v: { t: tkv, offset: W, posStride: 2 * W, rowStride: L * 2 * W },
      batch: B,
      queries: S,
      heads: H,
      headDim: D,
      keys: L,
      scale,
      dropout: { p, key: { seed: 2 ** 33 + 5, step: 7, site: 3 } },
    };
    const rec = new Recorder(gpu);
    const probs = rec.temp([B, H, S, L]);
    const out = attention(rec, { ...ops, probs, causal: causal ? { past: 0 } : undefined });
    const [dQ, dKV] = [rec.temp([B * S, W]), rec.temp([B * L, 2 * W])];
    attentionBackward(rec, { ...ops, probs, dO: tdO, dQ, dKV });
    const [o, gq, gkv] = await readAll(rec, [out, dQ, dKV]);
    const a = { B, S, L, H, D, causal, scale };
    // The mask as Philox draws it for the key, fixed through the finite differences.
    const mask = Array.from({ length: B * H * S * L }, (_, i) => {
      const draw = philox4x32([i, 3, 7, 0], [5, 2])[0];
      return draw >= Math.round(p * 2 ** 32) ? 1 / (1 - p) : 0;
    });
    if (p) assert.ok(mask.includes(0) && mask.some((m) => m > 1), "the mask drops and keeps");
    const kept = (i: number) => mask[i];
    const fwd = attentionLoss(q, k, v, dO, a, kept);
    assert.ok(
      Math.abs(dot(o, dO) - fwd) < 1e-5 * (1 + Math.abs(fwd)),
      `forward ${dot(o, dO)} vs ${fwd}`,
    );
    const gk = new Float32Array(B * L * W), gv = new Float32Array(B * L * W);
    for (let r = 0; r < B * L; r++) {
      gk.set(gkv.subarray(r * 2 * W, r * 2 * W + W), r * W);
      gv.set(gkv.subarray(r * 2 * W + W, (r + 1) * 2 * W), r * W);
    }
    const checks: [string, Float32Array, Float64Array][] = [
      ["dQ", gq, fd((x) => attentionLoss(x, k, v, dO, a, kept), q)],
      ["dK", gk, fd((x) => attentionLoss(q, x, v, dO, a, kept), k)],
      ["dV", gv, fd((x) => attentionLoss(q, k, x, dO, a, kept), v)],
    ];
    for (const [name, got, want] of checks) {
      assert.ok(relL2(got, want) < 1e-5, `${name} rel L2 ${relL2(got, want)}`);
    }
  });
}

Deno.test("embeddingBackward: repeated and negative ids, accumulates, same bits every run", async () => {
  const gpu = await getGpu();
  const [V, D] = [6, 67];
  const ids = Int32Array.from([3, 0, 3, -1, 5, 3, 0]);
  const dy = randomF32(ids.length * D, 18), t0 = randomF32(V * D, 19);
  const want = Float64Array.from(t0);
  ids.forEach((id, r) => {
    if (id >= 0) { for (let d = 0; d < D; d++) want[id * D + d] += dy[r * D + d]; }
  });
  const runs: Float32Array[] = [];
  for (let i = 0; i < 2; i++) {
    const [tdy, tids, tT] = [
      uploadTensor(gpu, dy, [ids.length, D], "f32"),
      uploadTensor(gpu, ids, [ids.length], "i32"),
      uploadTensor(gpu, t0, [V, D], "f32"),
    ];
    const rec = new Recorder(gpu);
    embeddingBackward(rec, tdy, tids, tT);
    runs.push((await readAll(rec, [tT]))[0]);
  }
  assert.ok(relL2(runs[0], want) < 1e-6);
  assert.deepEqual(new Uint32Array(runs[0].buffer), new Uint32Array(runs[1].buffer));
});

Deno.test("crossEntropy: −100 ignored, label smoothing, weights; loss and dLogits by finite differences", async () => {
  const gpu = await getGpu();
  const [R, V, eps] = [4, 11, 0.1];
  const x = randomF32(R * V, 20, 5), labels = Int32Array.from([3, -100, 10, 0]);
  const w = Float32Array.from([0.5, 0.9, -0.3, 0.25]);
  const loss = (xx: ArrayLike<number>) => {
    let s = 0;
    for (let r = 0; r < R; r++) {
      if (labels[r] === -100) continue;
      const row = Array.from({ length: V }, (_, i) => xx[r * V + i]);
      const m = Math.max(...row), lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
      const mean = row.reduce((a, v) => a + v - lse, 0) / V;
      s += -w[r] * ((1 - eps) * (row[labels[r]] - lse) + eps * mean);
    }
    return s;
  };
  const rec = new Recorder(gpu);
  const out = crossEntropy(
    rec,
    uploadTensor(gpu, x, [R, V], "f32"),
    uploadTensor(gpu, labels, [R], "i32"),
    uploadTensor(gpu, w, [R], "f32"),
    eps,
  );
  const [rows, dx] = await readAll(rec, [out.rows, out.dLogits]);
  const got = Array.from({ length: R }, (_, r) => rows[2 * r + 1]).reduce((a, b) => a + b);
  assert.ok(Math.abs(got - loss(x)) < 1e-5 * Math.abs(loss(x)), `loss ${got} vs ${loss(x)}`);
  assert.ok(relL2(dx, fd(loss, x)) < 1e-5, `dLogits ${relL2(dx, fd(loss, x))}`);
  assert.equal(rows[2], 0); // the ignored row: no log-probability, no loss
  assert.ok(dx.subarray(V, 2 * V).every((v) => v === 0));
});

Deno.test("accumulate adds in place", async () => {
  const gpu = await getGpu();
  const a = randomF32(300, 21), b = randomF32(300, 22);
  const [ta, tb] = [uploadTensor(gpu, a, [300], "f32"), uploadTensor(gpu, b, [300], "f32")];
  const rec = new Recorder(gpu);
  accumulate(rec, ta, tb);
  const [got] = await readAll(rec, [ta]);
  assert.ok(relL2(got, Array.from(a, (v, i) => v + b[i])) < 1e-7);
});
