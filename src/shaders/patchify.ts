/**
 * Patch extraction for convolutions whose kernel equals their stride (ViT / CLIP patch
 * embedding): `[N, C, H, W]` → `[N·P, C·p·p]` rows in the (c, ky, kx) order of a PyTorch conv
 * weight `[out, C, p, p]`, so the embedding is one matmul with the weight seen as `[out, C·p·p]`.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Params, type Recorder } from "../gpu/recorder.ts";
import { emptyTensor, type Tensor } from "../gpu/tensor.ts";
import { grid } from "./matmul.ts";

const WGSL = `
struct P { C: u32, H: u32, W: u32, p: u32, gw: u32, nPatches: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let r = wg.y * 65535u + wg.x;
  if (r >= p.rows) { return; }
  let n = r / p.nPatches;
  let q = r % p.nPatches;
  let y0 = (q / p.gw) * p.p;
  let x0 = (q % p.gw) * p.p;
  let width = p.C * p.p * p.p;
  for (var j = lid.x; j < width; j += 64u) {
    let c = j / (p.p * p.p);
    let ky = (j / p.p) % p.p;
    let kx = j % p.p;
    Y[r * width + j] = X[((n * p.C + c) * p.H + y0 + ky) * p.W + x0 + kx];
  }
}`;

/** Non-overlapping `patch`×`patch` patches of `x [N, C, H, W]` as `[N·P, C·patch²]`. */
export function patchify(rec: Recorder, x: Tensor, patch: number): Tensor {
  const [N, C, H, W] = x.shape;
  if (H % patch || W % patch) {
    throw new WebcapError(
      "BAD_SHAPE",
      `patchify: image ${H}×${W} is not a multiple of patch ${patch}`,
    );
  }
  const gw = W / patch;
  const nPatches = (H / patch) * gw;
  const y = emptyTensor(rec.gpu, [N * nPatches, C * patch * patch]);
  const params = new Params().u32(C).u32(H).u32(W).u32(patch).u32(gw).u32(nPatches).u32(
    N * nPatches,
  );
  rec.dispatch(rec.gpu.pipelines.get(WGSL), params, [x, y], grid(N * nPatches));
  return y;
}
