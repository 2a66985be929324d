/**
 * Reading metric resource files (Meteor's word lists, WordNet extracts, paraphrase tables) from a
 * local path, a `file:` URL or an `http(s):` URL, with transparent gzip support. Works in Deno and
 * in browsers (browsers need URLs; plain paths need Deno).
 * @module
 */

import { WebcapError } from "../errors.ts";

/** A directory of resource files: a local path (Deno only) or a URL ending in `/` or not. */
export type ResourceLocation = string | URL;

/** Join a directory and a file name into a path or URL. */
export function resourcePath(dir: ResourceLocation, name: string): string | URL {
  if (dir instanceof URL) return new URL(name, dir.href.endsWith("/") ? dir : dir.href + "/");
  if (/^(file|https?):/i.test(dir)) return resourcePath(new URL(dir), name);
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** Read the bytes of a path or URL. Throws `MISSING_FILE` naming the file when it cannot be read. */
export async function readResourceBytes(where: string | URL): Promise<Uint8Array> {
  try {
    const url = where instanceof URL ? where : null;
    if (url && url.protocol !== "file:") {
      const res = await fetch(url);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return new Uint8Array(await res.arrayBuffer());
    }
    return await Deno.readFile(url ?? where);
  } catch (err) {
    throw new WebcapError(
      "MISSING_FILE",
      `cannot read resource file ${String(where)} (${(err as Error).message}); ` +
        "pass an existing resource directory or the resource text itself",
      { cause: err },
    );
  }
}

/** True when `bytes` start with the gzip magic number. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Gunzip `bytes` with the platform's DecompressionStream. */
export async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(
    new DecompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Decode bytes as UTF-8 text, gunzipping first when they are gzip data. */
export async function bytesToText(bytes: Uint8Array): Promise<string> {
  const plain = isGzip(bytes) ? await gunzip(bytes) : bytes;
  return new TextDecoder("utf-8").decode(plain);
}

/** Read a (possibly gzipped) UTF-8 text resource. */
export async function readResourceText(where: string | URL): Promise<string> {
  return bytesToText(await readResourceBytes(where));
}

/** Read a text resource, or return `undefined` when the file does not exist. */
export async function readOptionalResourceText(where: string | URL): Promise<string | undefined> {
  try {
    return await readResourceText(where);
  } catch (err) {
    if (err instanceof WebcapError && err.code === "MISSING_FILE") return undefined;
    throw err;
  }
}
