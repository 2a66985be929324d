/**
 * The one error type of webcap. `code` is stable and machine-readable; the message names the
 * file, tensor or option at fault and says what to do.
 * @module
 */

/**
 * Stable error codes. On the GPU itself: `GPU_ERROR`, WebGPU reported a validation or
 * out-of-memory error for a submission (every submission is checked; the message names the
 * kernel, and none of its results is returned); `GPU_LOST`, the device was lost (a driver reset,
 * `device.destroy()`): the call in flight rejects once, and `getGpu()` /
 * `Captioner.fromPretrained()` acquire a new device after it. In training: `NON_FINITE_LOSS`, a
 * step's loss or gradient norm became NaN or infinite (the message names the step; it was not
 * applied).
 */
export type WebcapErrorCode =
  | "NO_ADAPTER"
  | "NO_FEATURE"
  | "GPU_ERROR"
  | "GPU_LOST"
  | "BAD_SHAPE"
  | "BAD_DTYPE"
  | "BAD_SAFETENSORS"
  | "BAD_PICKLE"
  | "UNSAFE_PICKLE"
  | "BAD_CONFIG"
  | "UNSUPPORTED_ARCH"
  | "MISSING_FILE"
  | "BAD_WEIGHTS"
  | "BAD_IMAGE"
  | "IMAGE_TOO_LARGE"
  | "FILE_TOO_LARGE"
  | "BAD_TOKENIZER"
  | "BAD_OPTION"
  | "HUB_NOT_FOUND"
  | "HUB_OFFLINE"
  | "DOWNLOAD_FAILED"
  | "BAD_EVAL_INPUT"
  | "BAD_INPUT"
  | "NON_FINITE_LOSS"
  | "DISPOSED";

/** Error thrown by every webcap API on bad input or an unusable environment. */
export class WebcapError extends Error {
  /** Stable machine-readable code. */
  readonly code: WebcapErrorCode;
  /** Build an error with a stable `code` and a message that says what to do. */
  constructor(code: WebcapErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WebcapError";
    this.code = code;
  }
}
