/**
 * Learning-rate schedules as transformers' `get_*_schedule_with_warmup`: a factor of the base
 * learning rate as a function of the optimizer steps already taken (`LambdaLR`: the first step
 * uses `factor(0)`).
 * @module
 */
import { WebcapError } from "../errors.ts";

/** A schedule: what it is (saved with a checkpoint) and its factor after `step` steps. */
export interface Schedule {
  /** `constant`, `linear` or `cosine`, with its settings. */
  readonly config: ScheduleConfig;
  /** Factor of the base learning rate for the step after `step` steps (≥ 0). */
  factor(step: number): number;
}

/** A schedule's settings. */
export type ScheduleConfig =
  | { kind: "constant" }
  | { kind: "linear"; warmupSteps: number; totalSteps: number }
  | { kind: "cosine"; warmupSteps: number; totalSteps: number; cycles: number };

function checkSteps(warmupSteps: number, totalSteps: number): void {
  const ok = (n: number) => Number.isInteger(n) && n >= 0;
  if (!ok(warmupSteps) || !ok(totalSteps) || totalSteps === 0) {
    throw new WebcapError(
      "BAD_OPTION",
      `schedule: warmupSteps (${warmupSteps}) must be an integer ≥ 0 and totalSteps (${totalSteps}) ` +
        "an integer > 0",
    );
  }
}

/** Warm-up factor `step / max(1, warmup)`, or undefined past the warm-up. */
function warmup(step: number, warmupSteps: number): number | undefined {
  return step < warmupSteps ? step / Math.max(1, warmupSteps) : undefined;
}

/** The base learning rate throughout (`get_constant_schedule`). */
export function constantSchedule(): Schedule {
  return { config: { kind: "constant" }, factor: () => 1 };
}

/** Linear warm-up from 0, then linear decay to 0 at `totalSteps` (`get_linear_schedule_with_warmup`). */
export function linearSchedule(warmupSteps: number, totalSteps: number): Schedule {
  checkSteps(warmupSteps, totalSteps);
  return {
    config: { kind: "linear", warmupSteps, totalSteps },
    factor: (step) =>
      warmup(step, warmupSteps) ??
        Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps)),
  };
}

/**
 * Linear warm-up, then a cosine from 1 down over `cycles` periods (0.5: to 0 at `totalSteps`)
 * (`get_cosine_schedule_with_warmup`).
 */
export function cosineSchedule(warmupSteps: number, totalSteps: number, cycles = 0.5): Schedule {
  checkSteps(warmupSteps, totalSteps);
  if (!(Number.isFinite(cycles) && cycles > 0)) {
    throw new WebcapError("BAD_OPTION", `schedule: cycles must be a number > 0, got ${cycles}`);
  }
  return {
    config: { kind: "cosine", warmupSteps, totalSteps, cycles },
    factor: (step) => {
      const w = warmup(step, warmupSteps);
      if (w !== undefined) return w;
      const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
    },
  };
}

/** The schedule of `config` (e.g. the one a checkpoint's `trainer_state.json` saved). */
export function scheduleOf(config: ScheduleConfig): Schedule {
  switch (config.kind) {
    case "constant":
      return constantSchedule();
    case "linear":
      return linearSchedule(config.warmupSteps, config.totalSteps);
    case "cosine":
      return cosineSchedule(config.warmupSteps, config.totalSteps, config.cycles);
  }
  throw new WebcapError(
    "BAD_OPTION",
    `schedule: kind must be constant, linear or cosine, got ${
      JSON.stringify((config as { kind: unknown }).kind)
    }`,
  );
}
