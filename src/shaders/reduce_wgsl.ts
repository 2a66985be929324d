/**
 * Row kernels (softmax, layernorm, logits processing, attention, soft attention): a workgroup
 * cooperates on a row and combines its invocations' values with `reduce(t, v, is_max)` — their
 * sum or max, visible to every invocation.
 * @module
 */
import { Kernel, type KernelSpec, type StorageSpecs, type UniformSpecs } from "../gpu/kernel.ts";

/** WGSL of `reduce` over the `WG_X` invocations of a workgroup (a power of two). */
const REDUCE_WGSL = `
var<workgroup> red: array<f32, WG_X>;
fn reduce(t: u32, v: f32, is_max: bool) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var s = WG_X / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] = select(red[t] + red[t + s], max(red[t], red[t + s]), is_max); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;

/** A kernel whose body may call `reduce`. */
export function rowKernel<U extends UniformSpecs, S extends StorageSpecs, V>(
  spec: KernelSpec<U, S, V>,
): Kernel<U, S, V> {
  return new Kernel({ ...spec, body: (v, has) => REDUCE_WGSL + spec.body(v, has) });
}
