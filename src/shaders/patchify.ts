/**
 * Patch extraction for convolutions whose kernel equals their stride (ViT / CLIP patch
 * embedding): `[N, C, H, W]` → `[N·P, C·p·p]` rows in the (c, ky, kx) order of a PyTorch conv
 * weight `[out, C, p, p]`, so the embedding is one matmul with the weight seen as `[out, C·p·p]`.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Kernel, read, readWrite } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";

const PATCHIFY = new Kernel({
  name: "patchify",
  uniforms: { C: "u32", H: "u32", W: "u32", p: "u32", gw: "u32", nPatches: "u32" },
  storage: { X: read(), Y: readWrite() },
  workgroupSize: [64],
  body: () => `
fn kernel(wg: vec3u, lid: vec3u) {
  let r = wg.x;
  let n = r / p.nPatches;
  let q = r % p.nPatches;
  let y0 = (q / p.gw) * p.p;
  let x0 = (q % p.gw) * p.p;
  let width = p.C * p.p * p.p;
  for (var j = lid.x; j < width; j += WG_X) {
    let c = j / (p.p * p.p);
    let ky = (j / p.p) % p.p;
    let kx = j % p.p;
    Y[r * width + j] = Y_t(f32(X[((n * p.C + c) * p.H + y0 + ky) * p.W + x0 + kx]));
  }
}`,
});

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
  const y = rec.output([N * nPatches, C * patch * patch]);
  PATCHIFY.record(rec, {
    uniforms: { C, H, W, p: patch, gw, nPatches },
    bind: { X: x, Y: y },
    groups: N * nPatches,
  });
  return y;
}
