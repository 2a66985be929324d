/**
 * Philox4x32-10 (Salmon et al., Random123) in WGSL, u32 only: `philox(counter, key)` returns the
 * four output words; the high half of each product comes from 16-bit halves. One generator for
 * every kernel that draws (sampling, dropout), so a seed means the same numbers everywhere; the
 * host twin is `philox4x32` in `src/decode/rng.ts`.
 * @module
 */

/** `fn mulhi` and `fn philox(counter: vec4u, key: vec2u) -> vec4u`. */
export const PHILOX_WGSL = `
fn mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu; let ah = a >> 16u; let bl = b & 0xffffu; let bh = b >> 16u;
  let m1 = ah * bl; let m2 = al * bh;
  let mid = ((al * bl) >> 16u) + (m1 & 0xffffu) + (m2 & 0xffffu);
  return ah * bh + (m1 >> 16u) + (m2 >> 16u) + (mid >> 16u);
}
fn philox(counter: vec4u, k: vec2u) -> vec4u {
  var c = counter;
  var key = k;
  for (var r = 0u; r < 10u; r++) {
    let hi0 = mulhi(0xd2511f53u, c.x); let lo0 = 0xd2511f53u * c.x;
    let hi1 = mulhi(0xcd9e8d57u, c.z); let lo1 = 0xcd9e8d57u * c.z;
    c = vec4u(hi1 ^ c.y ^ key.x, lo1, hi0 ^ c.w ^ key.y, lo0);
    key += vec2u(0x9e3779b9u, 0xbb67ae85u);
  }
  return c;
}`;
