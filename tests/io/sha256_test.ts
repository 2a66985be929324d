import assert from "node:assert/strict";
import { Sha256 } from "../../src/io/sha256.ts";
import { rng } from "../util.ts";

async function webCryptoHex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("Sha256 fed in random chunks equals WebCrypto's digest", async () => {
  const r = rng(7);
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 70_000]) {
    const bytes = new Uint8Array(n).map(() => r() * 256);
    const sha = new Sha256();
    for (let at = 0; at < n;) {
      const step = Math.floor(r() * 150);
      sha.update(bytes.subarray(at, at + step));
      at += step;
    }
    assert.equal(sha.length, n);
    assert.equal(sha.hex(), await webCryptoHex(bytes), `${n} bytes`);
  }
});
