/**
 * Shape checks shared by the caption scorers (the asserts of pycocoevalcap's scorers: at
 * least one reference per image, exactly one candidate per image).
 * @module
 */

import { WebcapError } from "../errors.ts";

/** Check tokenized references: a non-empty list of strings for every image. */
export function checkReferences(scorer: string, refs: readonly (readonly string[])[]): void {
  refs.forEach((r, i) => {
    if (!Array.isArray(r) || r.length === 0) {
      throw new WebcapError(
        "BAD_EVAL_INPUT",
        `${scorer}: image index ${i} has no reference captions; give at least one per image`,
      );
    }
    r.forEach((s, j) => {
      if (typeof s !== "string") {
        throw new WebcapError(
          "BAD_EVAL_INPUT",
          `${scorer}: reference ${j} of image index ${i} is ${typeof s}, not a string`,
        );
      }
    });
  });
}

/** Check one candidate string per image. */
export function checkCandidates(
  scorer: string,
  numImages: number,
  candidates: readonly string[],
): void {
  if (candidates.length !== numImages) {
    throw new WebcapError(
      "BAD_EVAL_INPUT",
      `${scorer}: got ${candidates.length} candidates for ${numImages} images; ` +
        "pass exactly one candidate per image, in the order of the references",
    );
  }
  candidates.forEach((c, i) => checkCandidate(scorer, numImages, i, c));
}

/** Check an image index and its candidate string. */
export function checkCandidate(
  scorer: string,
  numImages: number,
  index: number,
  candidate: unknown,
): void {
  if (!Number.isInteger(index) || index < 0 || index >= numImages) {
    throw new WebcapError(
      "BAD_EVAL_INPUT",
      `${scorer}: image index ${index} is out of range 0..${numImages - 1}`,
    );
  }
  if (typeof candidate !== "string") {
    throw new WebcapError(
      "BAD_EVAL_INPUT",
      `${scorer}: candidate for image index ${index} is ${typeof candidate}, not a string`,
    );
  }
}
