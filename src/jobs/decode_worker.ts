/**
 * The worker thread of `DecodePool` (`decode_pool.ts`): decodes each request with the image layer's
 * `decodeImage` and posts the pixels back, their buffer transferred; a WebcapError goes back as
 * its code and message.
 * @module
 */
import { WebcapError } from "../errors.ts";
import { decodeImage } from "../image/decode.ts";
import type { DecodeReply, DecodeRequest } from "./decode_pool.ts";

/** `u8` detachable on its own: itself when it spans a plain buffer, else a copy. */
function ownBuffer(u8: Uint8Array): Uint8Array<ArrayBuffer> {
  const whole = u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength;
  return whole && u8.buffer instanceof ArrayBuffer ? u8 as Uint8Array<ArrayBuffer> : u8.slice();
}

async function reply({ id, bytes, source, maxPixels }: DecodeRequest): Promise<void> {
  try {
    const img = await decodeImage(bytes, source, { maxPixels });
    const data = ownBuffer(img.data); // [height, width, 3]
    const msg: DecodeReply = { id, image: { width: img.width, height: img.height, data } };
    self.postMessage(msg, { transfer: [data.buffer] });
  } catch (e) {
    const error = e instanceof WebcapError
      ? { code: e.code, message: e.message }
      : { message: e instanceof Error ? e.message : String(e) };
    self.postMessage({ id, error } satisfies DecodeReply);
  }
}

self.onmessage = (e: MessageEvent<DecodeRequest>) => reply(e.data);
