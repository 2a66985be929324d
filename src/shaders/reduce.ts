/**
 * Mean over the middle axis: `[A, H, B]` → `[A, B]` (attention probabilities averaged over
 * heads), written at an element offset of the output so several layers can share one tensor.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Params, type Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { grid } from "./matmul.ts";

const WGSL = `
struct P { A: u32, H: u32, B: u32, outOff: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = (wg.y * 65535u + wg.x) * 64u + lid.x;
  if (i >= p.A * p.B) { return; }
  let a = i / p.B;
  let b = i % p.B;
  var s = 0.0;
  for (var h = 0u; h < p.H; h++) { s += X[(a * p.H + h) * p.B + b]; }
  Y[p.outOff + i] = s / f32(p.H);
}`;

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
  rec.dispatch(rec.gpu.pipelines.get(WGSL), new Params().u32(A).u32(H).u32(B).u32(outOffset), [
    x,
    out,
  ], grid(Math.ceil((A * B) / 64)));
}
