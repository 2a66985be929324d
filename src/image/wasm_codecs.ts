/**
 * The WebAssembly image decoders: libjpeg-turbo (as built by `@jsquash/jpeg`, MozJPEG's decoder,
 * which is libjpeg-turbo's) and libwebp (`@jsquash/webp`), the libraries Pillow links. Each
 * package's Emscripten glue is used as published; its `.wasm` is the package's file, embedded in
 * `wasm/` (see `tests/image/embedded_wasm.ts`), so the same code runs in Deno and in the browser
 * bundle. Each decoder is compiled and instantiated once, on first use, and reused; an instance
 * that failed mid-decode (libjpeg's error exit ends its Emscripten runtime) is replaced by a fresh
 * one on the next call, so a corrupt file never affects the next.
 * @module
 */

// @ts-types="./wasm_glue.d.ts"
import mozjpegFactory from "npm:@jsquash/jpeg@1.6.0/codec/dec/mozjpeg_dec.js";
// @ts-types="./wasm_glue.d.ts"
import webpFactory from "npm:@jsquash/webp@1.5.0/codec/dec/webp_dec.js";
import type { DecoderModule, DecoderModuleFactory, RgbaPixels } from "./wasm_glue.d.ts";
import { MOZJPEG_DEC_WASM } from "./wasm/mozjpeg_dec.ts";
import { WEBP_DEC_WASM } from "./wasm/webp_dec.ts";

export type { RgbaPixels };

function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** One Emscripten decoder: compiled once, instantiated on demand, renewed after a failure. */
class WasmDecoder {
  #compiled?: Promise<WebAssembly.Module>;
  #instance?: Promise<DecoderModule>;
  /** What the library printed during the current call (libjpeg's error and warning texts). */
  #printed: string[] = [];

  /**
   * @param factory the package's Emscripten glue.
   * @param wasmBase64 its `.wasm`, embedded.
   * @param options what `decode` takes after the bytes (the JPEG decoder: no EXIF rotation).
   */
  constructor(
    readonly factory: DecoderModuleFactory,
    readonly wasmBase64: string,
    readonly options: boolean[],
  ) {}

  #instantiate(): Promise<DecoderModule> {
    this.#compiled ??= WebAssembly.compile(fromBase64(this.wasmBase64) as BufferSource);
    const compiled = this.#compiled;
    const print = (line: string) => this.#printed.push(line);
    return new Promise((resolve, reject) => {
      this.factory({
        noInitialRun: true,
        print,
        printErr: print,
        instantiateWasm(imports, done) {
          compiled.then((m) => WebAssembly.instantiate(m, imports)).then(done, reject);
          return {};
        },
      }).then(resolve, reject);
    });
  }

  /**
   * Decode `bytes` to RGBA, or the library's message (a string) when it refuses the data.
   * @throws Error only when the WebAssembly cannot be compiled or instantiated here.
   */
  async decode(bytes: Uint8Array): Promise<RgbaPixels | string> {
    this.#instance ??= this.#instantiate();
    let module: DecoderModule;
    try {
      module = await this.#instance;
    } catch (e) {
      this.#instance = undefined; // try again next time
      throw e;
    }
    this.#printed = [];
    try {
      return module.decode(bytes, ...this.options) ?? (this.#printed.join("; ") || "not decodable");
    } catch (e) {
      this.#instance = undefined;
      return this.#printed.join("; ") || String((e as Error)?.message ?? e);
    }
  }
}

/** libjpeg-turbo: JPEG (baseline, progressive, any subsampling, gray, YCbCr, RGB) → RGBA. */
export const jpegDecoder: WasmDecoder = new WasmDecoder(mozjpegFactory, MOZJPEG_DEC_WASM, [false]);

/** libwebp: WebP (lossy VP8, lossless VP8L, with or without alpha) → RGBA. */
export const webpDecoder: WasmDecoder = new WasmDecoder(webpFactory, WEBP_DEC_WASM, []);
