/**
 * Always-on counters of the work a device was given: submits, host waits, dispatches, bytes
 * read back, buffers created. Cheap increments; `deno task bench --caption` reports their
 * difference over one caption call.
 * @module
 */

/** Running totals since the device was acquired. */
export class GpuCounters {
  /** `queue.submit` calls. */
  submits = 0;
  /** Submissions the host waited on for readbacks (one `mapAsync` round trip each). */
  hostWaits = 0;
  /** Compute dispatches recorded. */
  dispatches = 0;
  /** Bytes copied back to the host. */
  bytesRead = 0;
  /** Staging buffers created for readbacks. */
  stagingCreated = 0;
  /**
   * When set (and the device has `timestamp-query`), every `Recorder` times its passes and adds
   * their GPU time to {@link gpuMs}. Off by default: the queries cost a readback per submit.
   */
  timeSubmits = false;
  /** GPU milliseconds of the passes timed while {@link timeSubmits} was set. */
  gpuMs = 0;
}
