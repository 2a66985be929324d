/**
 * The 64×64 register-tiled inner product shared by the tiled matmul and the implicit-GEMM
 * convolution: a workgroup of 16×16 invocations, each accumulating a 4×4 block of outputs from
 * two 16-deep slices staged in workgroup memory.
 * @module
 */

/**
 * WGSL: workgroup tiles `As` `[16 k][64 rows]` and `Bs` `[16 k][64 cols]`, and
 * `tile_fma(lid, &acc)` adding `As[k][lid.y + 16i] · Bs[k][lid.x + 16j]` over the 16 k to
 * `acc[4i + j]`. Callers fill the tiles, barrier, call it, barrier.
 */
export const TILE_WGSL = `
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;
fn tile_fma(lid: vec3u, acc: ptr<function, array<f32, 16>>) {
  for (var kk = 0u; kk < 16u; kk++) {
    var a: array<f32, 4>;
    var b: array<f32, 4>;
    for (var i = 0u; i < 4u; i++) {
      a[i] = As[kk * 64u + lid.y + i * 16u];
      b[i] = Bs[kk * 64u + lid.x + i * 16u];
    }
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) { (*acc)[i * 4u + j] = fma(a[i], b[j], (*acc)[i * 4u + j]); }
    }
  }
}`;

/**
 * WGSL statements staging the rows of the A operand, inside the loop over `i` that fills the
 * tiles (`e = tid + i · 256`, slice from `k0`): `As[k][r] = at(row0 + r, k0 + k)`, 0 outside
 * `rows` × `p.K`. `at(row, k)` is the WGSL expression of one element.
 */
export function stageRowsWgsl(
  row0: string,
  rows: string,
  at: (row: string, k: string) => string,
): string {
  return `let mm = e / 16u; let ka = e % 16u;
      let gr = ${row0} + mm; let gk = k0 + ka;
      var a = 0.0;
      if (gr < ${rows} && gk < p.K) { a = ${at("gr", "gk")}; }
      As[ka * 64u + mm] = a;`;
}

/** `[0, n)` as a list: the indices of an unrolled register tile when generating WGSL. */
export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
