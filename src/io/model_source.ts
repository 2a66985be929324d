/**
 * Which files a model string names, in Deno and in browsers: an `http(s)://` base URL, a local
 * folder, or a hub id `org/name`.
 * @module
 */
import { hubResolveUrl, resolveModel, type ResolveModelOptions } from "./hub.ts";
import { localFiles, type ModelFiles, urlFiles } from "./model_files.ts";

/**
 * The files of the model `idOrDirOrUrl`:
 * - an `http(s)://` URL: the folder at that URL, fetched on demand (nothing is cached on disk);
 * - in Deno, a local folder, else a hub id, downloaded into the Hugging Face cache
 *   ({@link resolveModel}: offline mode, resumable downloads, `HF_*` variables);
 * - in a browser (no `Deno` global), a path starting with `/`, `./` or `../` is a URL relative to
 *   the page, and a hub id `org/name` is fetched from `{endpoint}/{id}/resolve/{revision}/`
 *   (default `https://huggingface.co` and `main`) with no disk cache: only the browser's HTTP
 *   cache applies, and `cacheDir`, `offline`, `files` and `onProgress` are not used.
 * @throws WebcapError as {@link resolveModel} (Deno) or BAD_OPTION for a string that is none of
 * these.
 */
export async function openModelFiles(
  idOrDirOrUrl: string,
  opts: ResolveModelOptions = {},
): Promise<ModelFiles> {
  if (/^https?:\/\//i.test(idOrDirOrUrl)) return urlFiles(idOrDirOrUrl, opts.fetch);
  if (typeof Deno !== "undefined") return localFiles(await resolveModel(idOrDirOrUrl, opts));
  const page = (globalThis as { location?: { href: string } }).location?.href;
  if (page && /^\.{0,2}\//.test(idOrDirOrUrl)) {
    return urlFiles(new URL(idOrDirOrUrl, page), opts.fetch);
  }
  const orElse = "an http(s) URL, a path starting with /, ./ or ../";
  return urlFiles(hubResolveUrl(idOrDirOrUrl, opts, orElse), opts.fetch);
}
