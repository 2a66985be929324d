/**
 * Row kernels (softmax, layernorm, logits processing, attention, soft attention, …): a workgroup
 * of `WG_X` invocations (a power of two) cooperates on a row and combines its invocations' values
 * with `reduce(t, v, is_max)` — their sum or max, the same in every invocation.
 *
 * With subgroups, each subgroup combines its values in one `subgroupAdd` / `subgroupMax`, the
 * subgroups' partials meet in workgroup memory, and every subgroup combines those the same way:
 * two barriers instead of log2(WG_X) + 2. Subgroup `t / SG_SIZE` is taken to hold invocations
 * `t` of one block of `SG_SIZE` (how every driver lays out a one-dimensional workgroup); sizes 4
 * to 128 work with any `WG_X`, including a subgroup larger than the workgroup. Sums are added in
 * another order than the tree's; maxima are the same.
 * @module
 */
import { Kernel, type KernelSpec, type StorageSpecs, type UniformSpecs } from "../gpu/kernel.ts";

/** `reduce` over the `WG_X` invocations of a workgroup by a tree in workgroup memory. */
const REDUCE_TREE_WGSL = `
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

/** `reduce` by subgroup operations, the subgroups' partials `[WG_X / SG_SIZE]` in `red`. */
const REDUCE_SUBGROUP_WGSL = `
var<workgroup> red: array<f32, WG_X>;
fn reduce_subgroup(v: f32, is_max: bool) -> f32 {
  if (is_max) { return subgroupMax(v); }
  return subgroupAdd(v);
}
fn reduce(t: u32, v: f32, is_max: bool) -> f32 {
  let lane = t % SG_SIZE;
  let groups = (WG_X + SG_SIZE - 1u) / SG_SIZE; // subgroups in the workgroup
  let part = reduce_subgroup(v, is_max);
  if (lane == 0u) { red[t / SG_SIZE] = part; }
  workgroupBarrier();
  var acc = select(0.0, red[0], is_max); // lanes past the partials add nothing
  for (var i = lane; i < groups; i += SG_SIZE) {
    acc = select(acc + red[i], max(acc, red[i]), is_max);
  }
  let r = reduce_subgroup(acc, is_max);
  workgroupBarrier();
  return r;
}`;

/** WGSL of `reduce`: by subgroup operations where the kernel is given them, else the tree. */
function reduceWgsl(subgroups: boolean): string {
  return subgroups ? REDUCE_SUBGROUP_WGSL : REDUCE_TREE_WGSL;
}

/** A kernel whose body may call `reduce`. */
export function rowKernel<U extends UniformSpecs, S extends StorageSpecs, V>(
  spec: KernelSpec<U, S, V>,
): Kernel<U, S, V> {
  return new Kernel({
    ...spec,
    subgroups: true,
    body: (v, has, sg) => reduceWgsl(sg.subgroups) + spec.body(v, has, sg),
  });
}
