/**
 * Writes a ViT-GPT2 model folder of `nlpconnect/vit-gpt2-image-captioning`'s sizes (ViT-B/16 224
 * + GPT-2 small with cross-attention, 239M parameters, about 1 GB of f32) with seeded random
 * weights, so a real-size caption runs anywhere without a download, and any commit of the
 * project can load the same folder for a before/after comparison:
 *
 * ```sh
 * deno task make-random-model /tmp/vit-gpt2-random
 * deno task caption /tmp/vit-gpt2-random image.png --min-new-tokens 20 --max-new-tokens 20
 * ```
 *
 * The same arguments write the same bytes on every machine.
 * @module
 */
import { REAL, writeRandomModel } from "../bench/random_model.ts";

const USAGE = "usage: deno task make-random-model DIR   (writes ViT-GPT2 of real sizes into DIR)";

if (Deno.args.length !== 1 || Deno.args[0].startsWith("-")) {
  console.error(Deno.args[0] === "-h" || Deno.args[0] === "--help" ? USAGE : `error: ${USAGE}`);
  Deno.exit(Deno.args[0] === "-h" || Deno.args[0] === "--help" ? 0 : 2);
}
const dir = Deno.args[0];
const t0 = performance.now();
await writeRandomModel(dir, REAL);
console.log(`wrote ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
