/**
 * Run by `exit_in_flight_test.ts` in a subprocess: encode a batch of images, `dispose()` and end
 * the script while the encoder still runs. Deno's WebGPU waits only a few seconds for submitted
 * work when the process exits, then panics; `dispose()` must hold the process until the queue
 * is done. Args: a model folder, the number of images (their encoder is one submission).
 */
import { Captioner } from "../../src/captioner/captioner.ts";

const [dir, images] = [Deno.args[0], Number(Deno.args[1])];
const cap = await Captioner.fromPretrained(dir);
const { height: H, width: W } = cap.preprocessor;
const image = { width: W, height: H, data: new Uint8Array(W * H * 3).fill(90) };
const t0 = performance.now();
const enc = await cap.encode(Array.from({ length: images }, () => image));
enc.dispose();
cap.dispose();
console.log(`disposed after ${(performance.now() - t0).toFixed(0)} ms`);
