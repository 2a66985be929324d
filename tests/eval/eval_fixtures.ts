/**
 * Loaders for the COCO caption-metric fixtures (`shared/fixtures/eval/`), read in place.
 * @module
 */

/** Folder of the eval fixtures. */
export const EVAL_FIXTURES = new URL("../../../shared/fixtures/eval/", import.meta.url);

/** Metrics compared against the fixtures by the scorer tests. */
export const SCORER_METRICS = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"];

/** One image (COCO file) or case (edge-case file) with raw and tokenized captions. */
export interface FixtureItem {
  id: number | string;
  refs: string[];
  candidate: string;
  refs_tok: string[];
  candidate_tok: string;
  expected_alone?: Record<string, number>;
  expected_in_set?: Record<string, number>;
}

/** `coco-public.json`: images, corpus `expected` and `per_image` by id. */
export interface CocoFixture {
  images: FixtureItem[];
  expected: Record<string, number>;
  per_image: Record<string, Record<string, number>>;
}

/** `edge-cases.json`: cases, joint-run `expected_set`. */
export interface EdgeFixture {
  cases: FixtureItem[];
  expected_set: Record<string, number>;
}

async function read<T>(name: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(new URL(name, EVAL_FIXTURES)));
}

/** The public COCO fixture. */
export const loadCoco = (): Promise<CocoFixture> => read("coco-public.json");
/** The edge-case fixture. */
export const loadEdge = (): Promise<EdgeFixture> => read("edge-cases.json");

/** Assert |actual − expected| ≤ tol, naming what is compared. */
export function assertClose(actual: number, expected: number, what: string, tol = 1e-9): void {
  if (!(Math.abs(actual - expected) <= tol)) {
    throw new Error(`${what}: got ${actual}, expected ${expected} (tolerance ${tol})`);
  }
}
