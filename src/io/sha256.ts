/**
 * SHA-256 (FIPS 180-4) fed chunk by chunk, for checking a download against the hub's sha256 ETag
 * while it streams (WebCrypto only digests a whole buffer at once).
 * @module
 */

/** The round constants. */
// deno-fmt-ignore
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));

/** An incremental SHA-256: `update` with each chunk, then `hex()` once. */
export class Sha256 {
  /** The hash so far: the initial values, then updated by each block. */
  // deno-fmt-ignore
  #state = new Int32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  /** The message schedule of one 64-byte block. */
  #w = new Int32Array(64);
  /** Bytes not yet compressed (fewer than 64). */
  #tail = new Uint8Array(64);
  #tailLength = 0;
  /** Bytes fed so far. */
  length = 0;

  /** Feed the next bytes of the message. */
  update(data: Uint8Array): this {
    this.length += data.length;
    let at = 0;
    if (this.#tailLength > 0) {
      at = Math.min(64 - this.#tailLength, data.length);
      this.#tail.set(data.subarray(0, at), this.#tailLength);
      this.#tailLength += at;
      if (this.#tailLength < 64) return this;
      this.#block(this.#tail, 0);
      this.#tailLength = 0;
    }
    for (; at + 64 <= data.length; at += 64) this.#block(data, at);
    this.#tail.set(data.subarray(at));
    this.#tailLength = data.length - at;
    return this;
  }

  /** The digest as 64 lowercase hex digits; the hasher is spent afterwards. */
  hex(): string {
    const bits = this.length * 8;
    const padded = new Uint8Array(this.#tailLength + 9 <= 64 ? 64 : 128);
    padded.set(this.#tail.subarray(0, this.#tailLength));
    padded[this.#tailLength] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bits / 2 ** 32));
    view.setUint32(padded.length - 4, bits >>> 0);
    for (let at = 0; at < padded.length; at += 64) this.#block(padded, at);
    return [...this.#state].map((x) => (x >>> 0).toString(16).padStart(8, "0")).join("");
  }

  /** Compress the 64-byte block at `data[at]` into the state. */
  #block(data: Uint8Array, at: number): void {
    const w = this.#w;
    for (let t = 0; t < 16; t++) {
      const i = at + 4 * t;
      w[t] = (data[i] << 24) | (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3];
    }
    for (let t = 16; t < 64; t++) {
      const x = w[t - 15], y = w[t - 2];
      const s0 = rotr(x, 7) ^ rotr(x, 18) ^ (x >>> 3);
      const s1 = rotr(y, 17) ^ rotr(y, 19) ^ (y >>> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    const s = this.#state;
    let a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    for (let t = 0; t < 64; t++) {
      const t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
      const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    s[0] += a;
    s[1] += b;
    s[2] += c;
    s[3] += d;
    s[4] += e;
    s[5] += f;
    s[6] += g;
    s[7] += h;
  }
}
