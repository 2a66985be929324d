/**
 * Elementwise ops: an activation (`gelu`, `gelu_new`, `quick_gelu`, `relu`, `tanh`,
 * `sigmoid`), and `a ⊕ b` (add, mul) where `b` repeats over `a` (`b.size` divides `a.size`:
 * a bias `[D]` or position table `[S, D]` broadcast over leading dimensions).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { Params, type Recorder } from "../gpu/recorder.ts";
import { emptyTensor, type Tensor } from "../gpu/tensor.ts";
import { type Activation, activationWgsl } from "./activations.ts";
import { grid } from "./matmul.ts";

function unaryWgsl(act: Activation): string {
  return `
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
${activationWgsl(act)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = (wg.y * 65535u + wg.x) * 256u + lid.x;
  if (i < p.n) { Y[i] = act(X[i]); }
}`;
}

/** Binary operations. */
export type BinaryOp = "add" | "mul";

function binaryWgsl(op: BinaryOp): string {
  return `
struct P { n: u32, nb: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = (wg.y * 65535u + wg.x) * 256u + lid.x;
  if (i < p.n) { Y[i] = A[i] ${op === "add" ? "+" : "*"} B[i % p.nb]; }
}`;
}

/** `act(x)` elementwise. */
export function unary(rec: Recorder, x: Tensor, act: Activation, out?: Tensor): Tensor {
  const y = out ?? emptyTensor(rec.gpu, x.shape);
  rec.dispatch(
    rec.gpu.pipelines.get(unaryWgsl(act)),
    new Params().u32(x.size),
    [x, y],
    grid(Math.ceil(x.size / 256)),
  );
  return y;
}

/** `a op b` with `b` repeated over `a`. */
export function binary(rec: Recorder, a: Tensor, b: Tensor, op: BinaryOp, out?: Tensor): Tensor {
  if (b.size === 0 || a.size % b.size !== 0) {
    throw new WebcapError("BAD_SHAPE", `${op}: [${b.shape}] does not repeat over [${a.shape}]`);
  }
  const y = out ?? emptyTensor(rec.gpu, a.shape);
  rec.dispatch(
    rec.gpu.pipelines.get(binaryWgsl(op)),
    new Params().u32(a.size).u32(b.size),
    [a, b, y],
    grid(Math.ceil(a.size / 256)),
  );
  return y;
}
