/**
 * The scheduler flags shared by the commands that run VMs (`run`, later `scenario`):
 * `--sched`, `--sched-param`, `--slots`, `--pin-slots`, `--ratelimit-us`, and the same
 * settings from a config file's `"scheduler"` object.
 *
 * @module
 */
import type { SchedulerOptions } from "../sched/scheduler.ts";
import { SANDBOX_KINDS, type SandboxKind } from "../sched/runtime_protocol.ts";
import { ConfigError } from "../vm/config.ts";
import { UsageError } from "./usage.ts";
import { parseSchedParams } from "./vm_spec.ts";

/** `parseArgs` options of the scheduler flags. */
export const SCHED_FLAGS = {
  sched: { type: "string" },
  "sched-param": { type: "string", multiple: true },
  slots: { type: "string" },
  "pin-slots": { type: "boolean" },
  "no-pin-slots": { type: "boolean" },
  "ratelimit-us": { type: "string" },
  "sched-allow-import": { type: "string", multiple: true },
  "sched-sandbox": { type: "string" },
} as const;

/** Help lines of the scheduler flags. */
export const SCHED_FLAGS_HELP =
  `  --sched PLUGIN      enforce slots with this policy (plugins/credit.ts, a path or URL);
                      without it every vCPU thread runs free under Linux's scheduler
  --sched-param K=V   a plugin parameter (repeatable), e.g. tslice_ms=30
  --slots N           slots (pCPUs) the scheduler hands out (default: available CPUs)
  --pin-slots         pin the EMT holding a slot to that slot's host CPU (the default when
                      there are no more slots than CPUs; slot 0 shares the scheduler's CPU)
  --no-pin-slots      leave the EMTs' placement to Linux
  --ratelimit-us US   context-switch rate limit (Xen's sched_ratelimit_us, default 1000)
  --sched-allow-import HOST
                      let a remote plugin (--sched https://HOST/...) be imported from HOST;
                      without it only local plugin files load (repeatable)
  --sched-sandbox process|worker
                      run the plugin in a child deno process (default), which SIGKILL
                      ends even in an endless loop, or in a Worker of this process (a few
                      microseconds faster a decision; a Worker that loops cannot be stopped)`;

/** The values `parseArgs` gives for {@linkcode SCHED_FLAGS}. */
export interface SchedFlagValues {
  /** `--sched`. */
  sched?: string;
  /** `--sched-param`. */
  "sched-param"?: string[];
  /** `--slots`. */
  slots?: string;
  /** `--pin-slots`. */
  "pin-slots"?: boolean;
  /** `--no-pin-slots`. */
  "no-pin-slots"?: boolean;
  /** `--ratelimit-us`. */
  "ratelimit-us"?: string;
  /** `--sched-allow-import`. */
  "sched-allow-import"?: string[];
  /** `--sched-sandbox`. */
  "sched-sandbox"?: string;
}

/** An integer flag value >= `min` (undefined when absent); a UsageError naming the flag else. */
export function count(flag: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`${flag} must be an integer >= ${min}, got '${v}'`);
  }
  return n;
}

/**
 * Scheduler options from the flags, over those of a config file (flags win). Undefined when
 * neither names a plugin; scheduler flags without a plugin are a usage error.
 */
export function schedulerFromFlags(
  v: SchedFlagValues,
  fromFile?: SchedulerOptions,
): SchedulerOptions | undefined {
  const plugin = v.sched ?? fromFile?.plugin;
  const extra = v["sched-param"]?.length || v.slots || v["pin-slots"] || v["no-pin-slots"] ||
    v["ratelimit-us"] || v["sched-sandbox"];
  if (!plugin) {
    if (extra) {
      throw new UsageError(
        "--sched-param, --slots, --pin-slots, --sched-sandbox need --sched PLUGIN",
      );
    }
    return undefined;
  }
  const sandbox = v["sched-sandbox"];
  if (sandbox !== undefined && !(SANDBOX_KINDS as readonly string[]).includes(sandbox)) {
    throw new UsageError(`--sched-sandbox must be worker or process, got '${sandbox}'`);
  }
  return {
    ...fromFile,
    plugin,
    params: { ...fromFile?.params, ...parseSchedParams(v["sched-param"] ?? []) },
    slots: count("--slots", v.slots, 1) ?? fromFile?.slots,
    pin: v["pin-slots"] ? true : v["no-pin-slots"] ? false : fromFile?.pin,
    ratelimitUs: count("--ratelimit-us", v["ratelimit-us"], 0) ?? fromFile?.ratelimitUs,
    allowImport: v["sched-allow-import"] ?? fromFile?.allowImport,
    sandbox: (sandbox as SandboxKind | undefined) ?? fromFile?.sandbox,
  };
}

/** Checks a config file's `"scheduler"` object. */
export function schedulerFromConfig(value: unknown, where: string): SchedulerOptions | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(where, `must be an object like {"plugin": "plugins/credit.ts"}`);
  }
  const o = value as Record<string, unknown>;
  const known = [
    "plugin",
    "params",
    "slots",
    "pin",
    "ratelimitUs",
    "budgetMs",
    "starvationMs",
    "allowImport",
    "sandbox",
  ];
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) {
      throw new ConfigError(`${where}.${k}`, `unknown option (known: ${known.join(", ")})`);
    }
  }
  if (typeof o.plugin !== "string") throw new ConfigError(`${where}.plugin`, "must be a string");
  if (o.sandbox !== undefined && !(SANDBOX_KINDS as readonly unknown[]).includes(o.sandbox)) {
    throw new ConfigError(`${where}.sandbox`, `must be "worker" or "process"`);
  }
  if (o.params !== undefined && (typeof o.params !== "object" || o.params === null)) {
    throw new ConfigError(`${where}.params`, "must be an object");
  }
  return o as unknown as SchedulerOptions;
}
