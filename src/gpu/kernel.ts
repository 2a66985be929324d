/**
 * The kernel schema. A compute kernel is declared once: its uniform fields with their types,
 * its storage bindings with access mode and element type, its workgroup size, and its WGSL body
 * as a function of its variant keys. Everything that must agree with that declaration is
 * generated from it: the WGSL uniform struct and `@group(0) @binding(n)` lines, the bind group
 * layout, the byte packing of the uniforms, the pipeline cache key, and the folding of its grid
 * into dimensions of at most 65,535 workgroups.
 *
 * Element types are variant keys. A `float` binding is `array<f32>` or `array<f16>` after the
 * tensor bound to it, and the body sees it through the alias `<name>_t`: it reads `f32(X[i])`
 * and writes `Y[i] = Y_t(v)`, so one body serves every element type. An optional binding that
 * is left out is not declared, and the body learns it from `has`.
 *
 * The generated entry point `main` unfolds the workgroup id into the logical grid of the call
 * and calls the body's `fn kernel(wg: vec3u, lid: vec3u)` with it (`wg`: the logical workgroup,
 * `lid`: the local invocation id); workgroups past the logical grid return before it.
 *
 * A kernel that declares `subgroups: true` is told by its body's third argument whether this
 * device's kernels use subgroup operations; where they do, the header enables them as the
 * device wants and `main` sets the private `SG_SIZE` (the subgroup size) before the body runs.
 * Elsewhere the body writes its fallback, so every such kernel runs on every device.
 * @module
 */
import { WebcapError } from "../errors.ts";
import type { CompiledKernel } from "./pipeline.ts";
import type { Binding, Recorder } from "./recorder.ts";
import type { DType } from "./tensor.ts";

/** Types of uniform fields (each 4 bytes). */
export type UniformType = "u32" | "i32" | "f32";
/**
 * Element types of storage bindings; `float` is f32 or f16, after the bound tensor; `float4` is
 * the same tensor read four elements at a time (`array<vec4<X_t>>`, for CPU adapters, where a
 * vector load is one gather instead of four).
 */
export type StorageType = "float" | "float4" | "i32" | "u32";

/** One storage binding of a kernel. */
export interface StorageSpec<T extends StorageType = StorageType, O extends boolean = boolean> {
  /** WGSL access mode. */
  readonly access: "read" | "read_write";
  /** Element type (`float`: f32 or f16, after the bound tensor). */
  readonly type: T;
  /** Whether a call may leave the binding out. */
  readonly optional: O;
}

/** A storage binding the kernel only reads (a `float` one by default). */
export function read<T extends StorageType = "float">(type?: T): StorageSpec<T, false> {
  return { access: "read", type: type ?? "float" as T, optional: false };
}
/** A storage binding the kernel writes (and may read). */
export function readWrite<T extends StorageType = "float">(type?: T): StorageSpec<T, false> {
  return { access: "read_write", type: type ?? "float" as T, optional: false };
}
/** The same binding, optional: a call may leave it out. */
export function optional<T extends StorageType>(s: StorageSpec<T, false>): StorageSpec<T, true> {
  return { ...s, optional: true };
}

/** Uniform fields of a kernel, by name. */
export type UniformSpecs = Record<string, UniformType>;
/** Storage bindings of a kernel, by name. */
export type StorageSpecs = Record<string, StorageSpec>;

/** The tensors of one call, by binding name; optional bindings may be absent. */
export type Bindings<S extends StorageSpecs> =
  & { [K in keyof S as S[K]["optional"] extends true ? never : K]: Binding }
  & { [K in keyof S as S[K]["optional"] extends true ? K : never]?: Binding };

/** A kernel's declaration. `V` holds its variant keys other than element types and presence. */
export interface KernelSpec<U extends UniformSpecs, S extends StorageSpecs, V> {
  /** Names the kernel in cache keys, pipeline labels and errors. */
  name: string;
  /** Uniform fields in struct order (`p.<name>` in WGSL). */
  uniforms: U;
  /** Storage bindings in binding order (`<name>` in WGSL), from @binding(1). */
  storage: S;
  /** `[x, y?, z?]`; the body sees it as `WG_X`, `WG_Y`, `WG_Z`. */
  workgroupSize: readonly [number, number?, number?];
  /**
   * Whether the body can use subgroup operations (`subgroupAdd`, …, and `SG_SIZE`); it is
   * told by `sg.subgroups` whether it may, and writes its workgroup-memory fallback where not.
   */
  subgroups?: boolean;
  /** WGSL defining `fn kernel(wg: vec3u, lid: vec3u)` and its helpers. */
  body: (
    v: V,
    has: { readonly [K in keyof S]: boolean },
    sg: { readonly subgroups: boolean },
  ) => string;
}

/** Workgroups of a call: a count, or a logical grid `[x, y, z]`. */
export type Groups = number | readonly [number, number?, number?];

/** One recorded launch of a kernel. */
export type KernelCall<U extends UniformSpecs, S extends StorageSpecs, V> =
  & {
    uniforms: { readonly [K in keyof U]: number };
    bind: Bindings<S>;
    groups: Groups;
  }
  & ([keyof V] extends [never] ? { variant?: V } : { variant: V });

/** Largest workgroup count per grid dimension that every WebGPU device takes. */
export const MAX_GROUPS_PER_DIM = 65535;

const GRID_FIELDS = ["grid_x", "grid_y", "grid_n"];

/**
 * A logical grid of `n` workgroups as dispatch dimensions of at most 65,535 each: x first, then
 * y, then z (the generated `main` unfolds it as `(z · 65535 + y) · 65535 + x`).
 */
export function foldGrid(n: number): [number, number, number] {
  const M = MAX_GROUPS_PER_DIM;
  if (n <= M) return [n, 1, 1];
  const rows = Math.ceil(n / M);
  return rows <= M ? [M, rows, 1] : [M, M, Math.ceil(rows / M)];
}

function dtypeOf(b: Binding): DType {
  return "shape" in b ? b.dtype : b.tensor.dtype;
}

/** What one compiled variant of a kernel is built from. */
interface Build<V> {
  variant: V;
  /** The bindings of the call, in declaration order, and their element types. */
  names: string[];
  types: DType[];
  /** How this device enables subgroups, where the kernel uses them. */
  sg: { readonly enable: boolean } | undefined;
}

/** A declared kernel: records launches, compiling each variant once per device. */
export class Kernel<U extends UniformSpecs, S extends StorageSpecs, V = Record<never, never>> {
  readonly #uniformBytes: number;

  /** Declare a kernel. */
  constructor(readonly spec: KernelSpec<U, S, V>) {
    const fields = Object.keys(spec.uniforms).length + GRID_FIELDS.length;
    this.#uniformBytes = Math.ceil((fields * 4) / 16) * 16;
  }

  /** Record one launch of the kernel on `rec`. */
  record(rec: Recorder, call: KernelCall<U, S, V>): void {
    const bind = call.bind as Record<string, Binding | undefined>;
    const names = Object.keys(this.spec.storage).filter((n) => bind[n] !== undefined);
    const bindings = names.map((n) => bind[n]!);
    const types = names.map((n, i) => this.#elementType(rec, n, bindings[i]));
    const grid = this.#grid(call.groups);
    const variant = (call.variant ?? {}) as V;
    const sg = this.spec.subgroups && rec.gpu.useSubgroups ? rec.gpu.subgroups : undefined;
    const key = `${this.spec.name}|${JSON.stringify(variant)}|${
      names.map((n, i) => `${n}:${types[i]}`).join(",")
    }${sg ? "|subgroups" : ""}`;
    const compiled = rec.gpu.pipelines.get(
      key,
      () => this.#compile(rec.gpu.device, key, { variant, names, types, sg }),
    );
    rec.dispatch(compiled, this.#pack(call.uniforms, grid), bindings, foldGrid(grid[3]));
  }

  #elementType(rec: Recorder, name: string, b: Binding): DType {
    const want = this.spec.storage[name].type;
    const got = dtypeOf(b);
    const float = want === "float" || want === "float4";
    const ok = float ? got === "f32" || got === "f16" : got === want;
    if (!ok) {
      throw new WebcapError(
        "BAD_DTYPE",
        `${this.spec.name}: ${name} is ${got}, wants ${float ? "f32 or f16" : want}`,
      );
    }
    if (got === "f16" && !rec.gpu.hasF16) {
      throw new WebcapError(
        "BAD_DTYPE",
        `${this.spec.name}: ${name} is f16, but this device has no shader-f16`,
      );
    }
    return got;
  }

  /** `[x, y, z, x·y·z]` of a call's groups, refused past what a folded dispatch reaches. */
  #grid(groups: Groups): [number, number, number, number] {
    const [x, y = 1, z = 1] = typeof groups === "number" ? [groups] : groups;
    const n = x * y * z;
    if (n > MAX_GROUPS_PER_DIM ** 2) {
      throw new WebcapError(
        "BAD_SHAPE",
        `${this.spec.name}: ${n} workgroups exceed ${MAX_GROUPS_PER_DIM}² per dispatch`,
      );
    }
    return [x, y, z, n];
  }

  /** The uniform struct's bytes: declared fields in order, then the logical grid. */
  #pack(values: Record<string, number>, grid: readonly number[]): Uint8Array {
    const bytes = new Uint8Array(this.#uniformBytes);
    const view = new DataView(bytes.buffer);
    const fields = Object.entries(this.spec.uniforms);
    fields.forEach(([name, type], i) => {
      const v = values[name];
      if (type === "f32") view.setFloat32(4 * i, v, true);
      else if (type === "i32") view.setInt32(4 * i, v | 0, true);
      else view.setUint32(4 * i, v >>> 0, true);
    });
    const [x, y, , n] = grid;
    [x, y, n].forEach((v, j) => view.setUint32(4 * (fields.length + j), v, true));
    return bytes;
  }

  #compile(device: GPUDevice, label: string, build: Build<V>): CompiledKernel {
    const { variant, names, sg } = build;
    const has = Object.fromEntries(
      Object.keys(this.spec.storage).map((n) => [n, names.includes(n)]),
    ) as { [K in keyof S]: boolean };
    const code = this.#header(build) +
      this.spec.body(variant, has, { subgroups: sg !== undefined });
    const layout = device.createBindGroupLayout({
      label,
      entries: [
        {
          binding: 0,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: this.#uniformBytes },
        },
        ...names.map((n, i): GPUBindGroupLayoutEntry => ({
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: {
            type: this.spec.storage[n].access === "read" ? "read-only-storage" : "storage",
          },
        })),
      ],
    });
    const pipeline = device.createComputePipeline({
      label,
      layout: device.createPipelineLayout({ label, bindGroupLayouts: [layout] }),
      compute: { module: device.createShaderModule({ label, code }), entryPoint: "main" },
    });
    return { label, pipeline, layout, uniformBytes: this.#uniformBytes };
  }

  /** WGSL declarations of the uniforms, the bindings and the workgroup size, and `main`. */
  #header({ names, types, sg }: Build<V>): string {
    const { uniforms, storage, workgroupSize } = this.spec;
    const [wx, wy = 1, wz = 1] = workgroupSize;
    const fields = [
      ...Object.entries(uniforms).map(([n, t]) => `${n}: ${t}`),
      ...GRID_FIELDS.map((n) => `${n}: u32`),
    ];
    const lines = [
      types.includes("f16") ? "enable f16;" : "",
      sg?.enable ? "enable subgroups;" : "",
      sg ? "var<private> SG_SIZE: u32;" : "",
      `struct Uniforms { ${fields.join(", ")} }`,
      "@group(0) @binding(0) var<uniform> p: Uniforms;",
    ];
    names.forEach((n, i) => {
      const s = storage[n];
      if (s.type === "float" || s.type === "float4") lines.push(`alias ${n}_t = ${types[i]};`);
      const elem = s.type === "float" ? `${n}_t` : s.type === "float4" ? `vec4<${n}_t>` : s.type;
      lines.push(`@group(0) @binding(${i + 1}) var<storage, ${s.access}> ${n}: array<${elem}>;`);
    });
    const M = MAX_GROUPS_PER_DIM;
    return `${lines.join("\n")}
const WG_X = ${wx}u; const WG_Y = ${wy}u; const WG_Z = ${wz}u;
@compute @workgroup_size(${wx}, ${wy}, ${wz})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u${
      sg ? ", @builtin(subgroup_size) sg_size: u32" : ""
    }) {${sg ? "\n  SG_SIZE = sg_size;" : ""}
  let f = (wg.z * ${M}u + wg.y) * ${M}u + wg.x;
  if (f >= p.grid_n) { return; }
  kernel(vec3u(f % p.grid_x, f / p.grid_x % p.grid_y, f / (p.grid_x * p.grid_y)), lid);
}
`;
  }
}
