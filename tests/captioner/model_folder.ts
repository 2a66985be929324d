/** Test model folders: a fixture's files copied into a temporary folder, with JSON edits. */
import { fixture } from "../util.ts";

const FILES = [
  "config.json",
  "generation_config.json",
  "model.safetensors",
  "preprocessor_config.json",
  "tokenizer.json",
];

/**
 * A copy of fixture model `name` (hf/<name>) in a new temporary folder; `edits` maps a file name
 * to a function of its parsed JSON (returning undefined deletes the file), or to a file to copy.
 */
export async function modelFolder(
  name: string,
  edits: Record<string, ((json: Record<string, unknown>) => unknown) | { copy: string }> = {},
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: `webcap-${name}-` });
  for (const file of FILES) {
    const edit = edits[file];
    const from = edit && "copy" in edit ? edit.copy : fixture(`hf/${name}/${file}`);
    const bytes = await Deno.readFile(from).catch(() => undefined);
    if (!bytes) continue;
    if (typeof edit !== "function") {
      await Deno.writeFile(`${dir}/${file}`, bytes);
      continue;
    }
    const json = edit(JSON.parse(new TextDecoder().decode(bytes)));
    if (json !== undefined) await Deno.writeTextFile(`${dir}/${file}`, JSON.stringify(json));
  }
  return dir;
}
