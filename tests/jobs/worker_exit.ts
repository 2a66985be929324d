/**
 * Run by `workers_test.ts` as its own process: a job over the folder `Deno.args[0]` on 2 decode
 * workers, then a job whose sink fails at the first batch; prints the first job's summary and
 * the second's error as JSON, then returns without `Deno.exit` — so the process ends only if
 * the job ended its workers both times.
 */
import { Captioner } from "../../src/captioner/captioner.ts";
import { DEFAULT_FETCH } from "../../src/jobs/fetch.ts";
import { type JobSettings, runJob } from "../../src/jobs/run.ts";
import { WHOLE } from "../../src/jobs/shard.ts";
import { model } from "./data.ts";

const captioner = await Captioner.fromPretrained(model);
try {
  const settings: JobSettings = {
    inputs: [Deno.args[0]],
    input: { shard: WHOLE, shardByTar: false, fetch: DEFAULT_FETCH },
    options: { maxNewTokens: 2 },
    batchSize: 2,
    prefetch: 4,
    decodeWorkers: 2,
  };
  const log = () => {};
  const summary = await runJob(captioner, settings, new Set(), () => Promise.resolve(), log);
  const failing = () => Promise.reject(new Error("the sink is full"));
  const error = await runJob(captioner, settings, new Set(), failing, log).then(
    () => "no error",
    (e) => (e as Error).message,
  );
  console.log(JSON.stringify({ done: summary.done, failed: summary.failed, error }));
} finally {
  captioner.dispose();
}
