/** Helpers of the CLI tests: run the caption CLI as a user does, and a folder of test images. */
import { encode as encodeJpeg } from "jpeg-js";
import { encodeRgbPng } from "../../src/image/png_writer.ts";
import { rng } from "../util.ts";

const script = new URL("../../examples/caption.ts", import.meta.url).pathname;

/** One JSON line of `--json` output. */
export interface Line {
  image: string;
  captions: { text: string; score: number; tokens: number[]; logprobs: number[] }[];
  error?: { code: string; message: string };
}

/**
 * Run `deno task caption` with `args` (and `env` added to the environment): exit code, JSON
 * lines, stdout and stderr.
 */
export async function caption(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; lines: Line[]; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const lines = stdout.split("\n").filter((l) => l.startsWith("{")).map((l) =>
    JSON.parse(l) as Line
  );
  return { code: out.code, lines, stdout, stderr: new TextDecoder().decode(out.stderr) };
}

function noise(w: number, h: number, seed: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: w * h * 3 }, () => Math.floor(r() * 256));
}

/** A temporary folder: a.png, b.jpg, c.png (tall) and d.jpg (not an image). */
export async function imageFolder(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webcap-cli-" });
  await Deno.writeFile(`${dir}/a.png`, encodeRgbPng(40, 30, noise(40, 30, 1)));
  const rgba = Uint8Array.from({ length: 50 * 20 * 4 }, (_, i) => (i * 37) % 256);
  await Deno.writeFile(`${dir}/b.jpg`, encodeJpeg({ data: rgba, width: 50, height: 20 }, 90).data);
  await Deno.writeFile(`${dir}/c.png`, encodeRgbPng(8, 64, noise(8, 64, 2)));
  await Deno.writeTextFile(`${dir}/d.jpg`, "not an image at all");
  return dir;
}
