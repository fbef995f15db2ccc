/**
 * A scenario's goal: what a policy must achieve on it to pass, as `compare` judges it. Every
 * field is optional; what a scenario asks for follows from its VMs (weights among its CPU-bound
 * VMs, caps, periodic deadlines, echo latency and throughput, lock throughput), and the `goal`
 * object of a scenario file only tightens or loosens the limits:
 *
 * ```json
 * "goal": { "sharePp": 2, "missRatio": 0.001, "p99Ms": 2, "throughputOfBest": 0.9 }
 * ```
 *
 * @module
 */
import { ConfigError } from "../vm/config.ts";

/** The limits of a scenario's goal; see {@linkcode resolveGoal} for the defaults. */
export interface ScenarioGoal {
  /**
   * How far (percentage points) each uncapped CPU-bound VM's share of what those VMs got may be
   * from its weight's share, and how far a capped VM may go over its cap (% of a slot).
   */
  sharePp?: number;
  /** Largest fraction of its jobs a periodic VM may miss (0..1). */
  missRatio?: number;
  /** Largest p99 request latency of an echo VM (ms); no bound when not set. */
  p99Ms?: number;
  /** Smallest fraction of the offered request rate an open-loop echo VM must answer (0..1). */
  echoRate?: number;
  /** Smallest fraction of the best compared policy's lock throughput a lock VM must reach. */
  throughputOfBest?: number;
}

/** The goal with every default filled in (`p99Ms` stays unset when not given). */
export type ResolvedGoal = Required<Omit<ScenarioGoal, "p99Ms">> & { p99Ms?: number };

/** The defaults of {@linkcode ScenarioGoal}. */
export const GOAL_DEFAULTS: ResolvedGoal = {
  sharePp: 2,
  missRatio: 0.001,
  echoRate: 0.95,
  throughputOfBest: 0.9,
};

/** A goal with its defaults. */
export function resolveGoal(goal: ScenarioGoal | undefined): ResolvedGoal {
  return { ...GOAL_DEFAULTS, ...goal };
}

const RANGES: Record<keyof ScenarioGoal, [number, number]> = {
  sharePp: [0, 100],
  missRatio: [0, 1],
  p99Ms: [0, Infinity],
  echoRate: [0, 1],
  throughputOfBest: [0, 1],
};

/** Validates a scenario file's `goal` object; `field` names it in errors. */
export function parseGoal(field: string, value: unknown): ScenarioGoal | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(field, "must be an object");
  }
  const out: ScenarioGoal = {};
  for (const [k, v] of Object.entries(value)) {
    // Own keys only: "constructor" or "toString" must not find Object.prototype's.
    const range = Object.hasOwn(RANGES, k) ? RANGES[k as keyof ScenarioGoal] : undefined;
    if (!range) {
      throw new ConfigError(
        `${field}.${k}`,
        `unknown key (known: ${Object.keys(RANGES).join(", ")})`,
      );
    }
    if (typeof v !== "number" || !(v >= range[0] && v <= range[1])) {
      throw new ConfigError(
        `${field}.${k}`,
        `must be a number from ${range[0]} to ${range[1]}, got ${JSON.stringify(v)}`,
      );
    }
    out[k as keyof ScenarioGoal] = v;
  }
  return out;
}
