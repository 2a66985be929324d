/**
 * Reading a model folder's JSON files (`config.json`, `generation_config.json`, …) with errors
 * that name the file.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { fileLocation, localFiles, type ModelFiles } from "../io/model_files.ts";

type Json = Record<string, unknown>;

/** Parse `text` as a JSON object; BAD_CONFIG naming `where` when it is not one. */
function parseJsonObject(text: string, where: string): Json {
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new Error("not a JSON object");
    }
    return v as Json;
  } catch (e) {
    throw new WebcapError(
      "BAD_CONFIG",
      `${where} is not a valid JSON object: ${(e as Error).message}`,
    );
  }
}

/** Read JSON file `name` of a model's files; MISSING_FILE or BAD_CONFIG naming it. */
export async function readModelJson(
  files: ModelFiles,
  name: string,
  optional: true,
): Promise<Json | undefined>;
export async function readModelJson(
  files: ModelFiles,
  name: string,
  optional?: false,
): Promise<Json>;
export async function readModelJson(
  files: ModelFiles,
  name: string,
  optional = false,
): Promise<Json | undefined> {
  const where = fileLocation(files, name);
  const text = await files.text(name);
  if (text !== undefined) return parseJsonObject(text, where);
  if (optional) return undefined;
  throw new WebcapError("MISSING_FILE", `${where} does not exist`);
}

/** Read a local JSON file (Deno); MISSING_FILE or BAD_CONFIG naming it when absent or malformed. */
export function readJson(path: string, optional: true): Promise<Json | undefined>;
export function readJson(path: string, optional?: false): Promise<Json>;
export function readJson(path: string, optional = false): Promise<Json | undefined> {
  return readModelJson(localFiles(""), path, optional as false);
}
