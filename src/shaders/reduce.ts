/**
 * Mean over the middle axis: `[A, H, B]` → `[A, B]` (attention probabilities averaged over
 * heads), written at an element offset of the output so several layers can share one tensor.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";

const MEAN_AXIS1 = new Kernel({
  name: "mean_axis1",
  uniforms: { A: "u32", H: "u32", B: "u32", outOff: "u32" },
  storage: { X: read(), Y: readWrite() },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.A * p.B) { return; }
  let a = i / p.B;
  let b = i % p.B;
  var s = 0.0;
  for (var h = 0u; h < p.H; h++) { s += f32(X[(a * p.H + h) * p.B + b]); }
  Y[p.outOff + i] = Y_t(s / f32(p.H));
}`,
});

/** Average `x [A, H, B]` over H into `out` at element `outOffset`. */
export function meanAxis1(
  rec: Recorder,
  x: Tensor,
  A: number,
  H: number,
  B: number,
  out: Tensor,
  outOffset: number,
): void {
  if (x.size !== A * H * B || outOffset + A * B > out.size) {
    throw new WebcapError(
      "BAD_SHAPE",
      `meanAxis1: [${x.shape}] is not [${A}, ${H}, ${B}] or the output is too small`,
    );
  }
  MEAN_AXIS1.record(rec, {
    uniforms: { A, H, B, outOff: outOffset },
    bind: { X: x, Y: out },
    groups: Math.ceil((A * B) / 64),
  });
}

const MEAN_AXIS1_BACKWARD = new Kernel({
  name: "mean_axis1_backward",
  uniforms: { A: "u32", H: "u32", B: "u32" },
  storage: { dY: read(), dX: readWrite() },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let i = wg.x * WG_X + lid.x;
  if (i >= p.A * p.H * p.B) { return; }
  let a = i / (p.H * p.B);
  dX[i] = dX_t(f32(dX[i]) + f32(dY[a * p.B + i % p.B]) / f32(p.H));
}`,
});

/** Backward of {@link meanAxis1}: `dx [A, H, B] += dy [A, B] / H` broadcast over H. */
export function meanAxis1Backward(rec: Recorder, dy: Tensor, dx: Tensor, H: number): void {
  const B = dx.shape[dx.shape.length - 1], A = dy.size / B;
  if (!Number.isInteger(A) || dx.size !== A * H * B || dx.dtype !== "f32") {
    throw new WebcapError(
      "BAD_SHAPE",
      `meanAxis1Backward: dY [${dy.shape}] and dX ${dx.dtype} [${dx.shape}] are not [A, B] and f32 [A, ${H}, B]`,
    );
  }
  MEAN_AXIS1_BACKWARD.record(rec, {
    uniforms: { A, H, B },
    bind: { dY: dy, dX: dx },
    groups: Math.ceil(dx.size / 64),
  });
}
