/**
 * File-system questions asked by model loading and downloads (Deno only).
 * @module
 */

/** Whether `path` is an existing file (symlinks followed); errors other than absence propagate. */
export async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
