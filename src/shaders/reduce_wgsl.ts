/**
 * The workgroup reduction shared by row kernels (softmax, layernorm, logits processing,
 * attention): `reduce(t, v, is_max)` combines one value per invocation into their sum or max,
 * visible to every invocation.
 * @module
 */

/** WGSL of `reduce` for a workgroup of `size` invocations (a power of two). */
export function workgroupReduceWgsl(size: number): string {
  return `
var<workgroup> red: array<f32, ${size}>;
fn reduce(t: u32, v: f32, is_max: bool) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var s = ${size / 2}u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] = select(red[t] + red[t + s], max(red[t], red[t + s]), is_max); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
}
