import assert from "node:assert/strict";
import { attention, attentionPlan } from "../../src/shaders/attention.ts";
import { emptyTensor, uploadTensor } from "../../src/gpu/tensor.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import {
  ADAPTER_CLASSES,
  asAdapterClass,
  firstNonFinite,
  getGpu,
  poisoned,
  randomF32,
  relL2,
} from "../util.ts";

/** Reference over packed QKV `[B, S, 3, H, D]` (q) and keys `[KB, L, 2, H, D]` (k, v). */
function attnRef(
  q: Float32Array,
  kv: Float32Array,
  B: number,
  S: number,
  H: number,
  D: number,
  L: number,
  kvIndex: number[],
  past: number | undefined,
  scale: number,
  keyLen?: number[],
): { out: Float64Array; probs: Float64Array } {
  const out = new Float64Array(B * S * H * D);
  const probs = new Float64Array(B * H * S * L);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let s = 0; s < S; s++) {
        const n = Math.min(past === undefined ? L : Math.min(L, past + s + 1), keyLen?.[b] ?? L);
        const sc = new Float64Array(n);
        for (let j = 0; j < n; j++) {
          let x = 0;
          for (let d = 0; d < D; d++) {
            x += q[((b * S + s) * 3 * H + h) * D + d] *
              kv[(((kvIndex[b] * L + j) * 2) * H + h) * D + d];
          }
          sc[j] = x * scale;
        }
        const m = Math.max(...sc);
        let z = 0;
        for (let j = 0; j < n; j++) z += Math.exp(sc[j] - m);
        for (let j = 0; j < n; j++) {
          const pr = Math.exp(sc[j] - m) / z;
          probs[((b * H + h) * S + s) * L + j] = pr;
          for (let d = 0; d < D; d++) {
            out[((b * S + s) * H + h) * D + d] += pr *
              kv[(((kvIndex[b] * L + j) * 2 + 1) * H + h) * D + d];
          }
        }
      }
    }
  }
  return { out, probs };
}

const cases = [
  {
    name: "encoder self-attention 2×12 heads×197 tokens, D=64",
    B: 1,
    KB: 1,
    S: 197,
    L: 197,
    H: 12,
    D: 64,
    past: undefined,
    idx: [0],
  },
  {
    name: "causal prompt B=2 S=5 with past 3",
    B: 2,
    KB: 2,
    S: 5,
    L: 8,
    H: 3,
    D: 20,
    past: 3,
    idx: [0, 1],
  },
  {
    name: "causal B=3 S=6 with right padding (keyLengths 6, 2, 4)",
    B: 3,
    KB: 3,
    S: 6,
    L: 6,
    H: 2,
    D: 8,
    past: 0,
    idx: [0, 1, 2],
    keyLen: [6, 2, 4],
  },
  {
    name: "decode step, beams share cross keys via kvIndex, L=1500 (two chunks)",
    B: 4,
    KB: 2,
    S: 1,
    L: 1500,
    H: 2,
    D: 8,
    past: undefined,
    idx: [1, 1, 0, 1],
  },
  {
    name: "head size 6 (not a multiple of 4: the workgroup kernel on every adapter), S=70",
    B: 1,
    KB: 1,
    S: 70,
    L: 70,
    H: 2,
    D: 6,
    past: 0,
    idx: [0],
  },
];

// Each case in both adapter classes, with the probabilities asked for (the workgroup kernel)
// and without (the CPU adapter's register kernel where the head size allows it).
const runs = cases.flatMap((c) =>
  ADAPTER_CLASSES.flatMap((cls) => [false, true].map((withProbs) => ({ c, cls, withProbs })))
);

for (const { c, cls, withProbs } of runs) {
  const what = withProbs ? "with probabilities" : "output only";
  Deno.test(`attention (${cls} kernels, ${what}): ${c.name}`, async () => {
    const gpu = await getGpu();
    const { B, KB, S, L, H, D, past, idx } = c;
    const keyLen = "keyLen" in c ? c.keyLen : undefined;
    const q = randomF32(B * S * 3 * H * D, 1);
    const kv = randomF32(KB * L * 2 * H * D, 2);
    const tq = uploadTensor(gpu, q, [B * S, 3 * H * D], "f32");
    const tkv = uploadTensor(gpu, kv, [KB * L, 2 * H * D], "f32");
    const tidx = uploadTensor(gpu, Int32Array.from(idx), [B], "i32");
    const tlen = keyLen && uploadTensor(gpu, Int32Array.from(keyLen), [B], "i32");
    const out = poisoned(gpu, [B, S, H * D]);
    const probs = withProbs ? emptyTensor(gpu, [B, H, S, L]) : undefined;
    const scale = 1 / Math.sqrt(D);
    const rec = new Recorder(gpu);
    const args = {
      q: { t: tq, offset: 0, posStride: 3 * H * D, rowStride: S * 3 * H * D },
      k: { t: tkv, offset: 0, posStride: 2 * H * D, rowStride: L * 2 * H * D },
      v: { t: tkv, offset: H * D, posStride: 2 * H * D, rowStride: L * 2 * H * D },
      batch: B,
      queries: S,
      heads: H,
      headDim: D,
      keys: L,
      causal: past === undefined ? undefined : { past },
      kvIndex: tidx,
      keyLengths: tlen,
      scale,
      probs,
      out,
    };
    const cpuKernel = cls === "cpu" && !withProbs && D % 4 === 0;
    assert.equal(attentionPlan(cls, args), cpuKernel ? "cpu" : "workgroup");
    await asAdapterClass(gpu, cls, () => Promise.resolve(attention(rec, args)));
    const po = rec.readTensor(out), pp = probs && rec.readTensor(probs);
    await rec.submit();
    const got = await po as Float32Array;
    assert.equal(firstNonFinite(got), -1);
    const ref = attnRef(q, kv, B, S, H, D, L, idx, past, scale, keyLen);
    assert.ok(relL2(got, ref.out) < 1e-5, `out rel L2 ${relL2(got, ref.out)}`);
    if (pp) {
      const gotP = await pp as Float32Array;
      assert.ok(relL2(gotP, ref.probs) < 1e-5, `probs rel L2 ${relL2(gotP, ref.probs)}`);
    }
    for (const t of [tq, tkv, tidx, out]) t.release();
    probs?.release();
    tlen?.release();
  });
}
