import assert from "node:assert/strict";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { writeSafetensors } from "../../src/io/safetensors_write.ts";
import { fixture, randomF32 } from "../util.ts";
import { modelFolder } from "./model_folder.ts";

const POS = "encoder.embeddings.position_embeddings";

/** The vit-gpt2 fixture taking `size`² images: more patches, so a slower encoder. */
async function largeImageModel(size: number): Promise<string> {
  const store = await openSafetensors(fixture("hf/vit-gpt2/model.safetensors"));
  const hidden = store.info(POS).shape[2];
  const shape = [1, (size / 8) ** 2 + 1, hidden]; // patch 8
  const weights = await Deno.makeTempFile({ suffix: ".safetensors" });
  await writeSafetensors(
    weights,
    store.names().map((name) =>
      name === POS
        ? {
          name,
          dtype: "F32",
          shape,
          read: () => new Uint8Array(randomF32(shape[1] * hidden, 1).buffer),
        }
        : { ...store.info(name), name, read: () => store.read(name) }
    ),
  );
  store.close();
  const dir = await modelFolder("vit-gpt2", {
    "config.json": (c) => ({ ...c, encoder: { ...c.encoder as object, image_size: size } }),
    "preprocessor_config.json": (c) => ({ ...c, size: { height: size, width: size } }),
    "model.safetensors": { copy: weights },
  });
  await Deno.remove(weights);
  return dir;
}

Deno.test("captioner: a script that ends right after encode() and dispose() exits cleanly with the encoder in flight", async () => {
  const dir = await largeImageModel(256);
  const script = new URL("./exit_in_flight.ts", import.meta.url).pathname;
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, dir, "8"], // 8 images: over 5 s of encoder on llvmpipe
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  });
  const { code, stdout, stderr } = await cmd.output();
  const err = new TextDecoder().decode(stderr);
  assert.match(new TextDecoder().decode(stdout), /disposed/);
  assert.doesNotMatch(err, /panicked|timed out while waiting/, err);
  assert.equal(code, 0, err);
  await Deno.remove(dir, { recursive: true });
});
