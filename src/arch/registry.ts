/**
 * Every architecture webcap runs, by name: its loader, parity procedure, attention-map support
 * and defaults for folders that lack an image processor or a tokenizer. Adding an architecture
 * is one entry here.
 * @module
 */
import type { Architecture } from "./architecture.ts";
import { BLIP } from "./blip.ts";
import { CLIPCAP } from "./clipcap.ts";
import { SHOW_ATTEND_TELL } from "./show_attend_tell.ts";
import { VISION_ENCODER_DECODER } from "./vision_encoder_decoder.ts";

/** The registry, in the order error messages list it. */
export const ARCHITECTURES: readonly Architecture[] = [
  VISION_ENCODER_DECODER,
  BLIP,
  SHOW_ATTEND_TELL,
  CLIPCAP,
];

/** The architecture named `name` (a config's or a model's `architecture`), if registered. */
export function findArchitecture(name: string): Architecture | undefined {
  return ARCHITECTURES.find((a) => a.name === name);
}
