/**
 * Types of the Emscripten glue modules of `@jsquash/jpeg` and `@jsquash/webp`
 * (`codec/dec/*_dec.js`): the part of the Emscripten module options webcap passes, and the one
 * function each module exports.
 */

/** RGBA pixels as the decoders return them (an `ImageData` or its polyfill). */
export interface RgbaPixels {
  readonly width: number;
  readonly height: number;
  /** [height, width, 4]. */
  readonly data: Uint8ClampedArray;
}

/** An instantiated decoder module. */
export interface DecoderModule {
  /** Decode a whole file (the JPEG decoder takes `preserveOrientation` after it). */
  decode(data: Uint8Array, ...options: boolean[]): RgbaPixels | null;
}

/** The Emscripten module options used here. */
export interface DecoderModuleOptions {
  noInitialRun: boolean;
  print(line: string): void;
  printErr(line: string): void;
  instantiateWasm(
    imports: WebAssembly.Imports,
    done: (instance: WebAssembly.Instance) => void,
  ): WebAssembly.Exports | Record<string, never>;
}

/** The default export of a glue module. */
export type DecoderModuleFactory = (opts: DecoderModuleOptions) => Promise<DecoderModule>;

declare const factory: DecoderModuleFactory;
export default factory;
