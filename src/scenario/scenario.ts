/**
 * Scenario files (`bench/scenarios/*.json`): VMs, their workloads and scheduling parameters,
 * slots, policy and duration; validated completely before anything starts. The workload
 * shapes are the simulator's (`src/sim/types.ts`), so one file runs on KVM and in the
 * simulator.
 *
 * ```json
 * { "name": "io-vs-hog", "slots": 1, "seconds": 10, "policy": "plugins/credit.ts",
 *   "vms": [
 *     { "name": "echo", "workload": { "kind": "echo", "mode": "closed", "serviceUs": 50 } },
 *     { "name": "hog", "workload": { "kind": "spin" }, "sched": { "weight": 256 } } ] }
 * ```
 *
 * @module
 */
import type { Workload } from "../sim/types.ts";
import { ConfigError, MAX_VCPUS, paramObject, schedParams } from "../vm/config.ts";
import { DEFAULT_RATELIMIT_US } from "../sched/scheduler.ts";
import { parseGoal, type ScenarioGoal } from "./goal.ts";

/**
 * What a scenario VM runs: a simulator workload, which the guest runs under the same name (every
 * kind but `replay`, which only a recorded trace gives: `trace replay`).
 */
export type ScenarioWorkload = Exclude<Workload, { kind: "replay" }>;

/** One VM of a scenario. */
export interface ScenarioVm {
  /** Name (unique in the scenario). */
  name: string;
  /** vCPUs (default 1; `ipi` needs 2). */
  vcpus: number;
  /** The workload. */
  workload: ScenarioWorkload;
  /** Scheduling parameters (weight, cap, period_ms, budget_ms, extratime). */
  sched: Record<string, number | string | boolean>;
}

/** A validated scenario. */
export interface Scenario {
  /** Name (default: the file's). */
  name: string;
  /** What it shows. */
  description: string;
  /** Slots (pCPUs). */
  slots: number;
  /** Measured seconds. */
  seconds: number;
  /** Default policy: a plugin path or `host`. */
  policy: string;
  /** Policy parameters. */
  params: Record<string, number | string | boolean>;
  /** The core's context-switch rate limit in µs (Xen's `sched_ratelimit_us`; default 1000). */
  ratelimitUs: number;
  /** The VMs. */
  vms: ScenarioVm[];
  /** What a policy must achieve on it (`compare`'s verdict); limits default when absent. */
  goal?: ScenarioGoal;
}

const KINDS = ["spin", "periodic", "echo", "lock", "ipi", "attacker"];

/** Most slots a scenario may ask for. */
export const MAX_SCENARIO_SLOTS = 1024;
/** Most VMs in a scenario. */
export const MAX_SCENARIO_VMS = 4096;
/** Longest scenario, s (a day). */
export const MAX_SCENARIO_SECONDS = 86_400;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function num(
  where: string,
  v: unknown,
  opts: { min?: number; max?: number; int?: boolean; def?: number },
) {
  if (v === undefined && opts.def !== undefined) return opts.def;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new ConfigError(where, `must be a number, got ${JSON.stringify(v)}`);
  }
  if (opts.int && !Number.isInteger(v)) throw new ConfigError(where, `must be an integer`);
  if (opts.min !== undefined && v < opts.min) {
    throw new ConfigError(where, `must be >= ${opts.min}, got ${v}`);
  }
  if (opts.max !== undefined && v > opts.max) {
    throw new ConfigError(where, `must be <= ${opts.max}, got ${v}`);
  }
  return v;
}

function workload(where: string, v: unknown, vcpus: number): ScenarioWorkload {
  if (!isObj(v)) throw new ConfigError(where, `must be an object with a "kind"`);
  if (!KINDS.includes(v.kind as string)) {
    throw new ConfigError(
      `${where}.kind`,
      `unknown workload ${JSON.stringify(v.kind)} (known: ${KINDS.join(", ")})`,
    );
  }
  switch (v.kind) {
    case "spin":
      return { kind: "spin" };
    case "periodic": {
      const periodMs = num(`${where}.periodMs`, v.periodMs, { min: 1 });
      const computeMs = num(`${where}.computeMs`, v.computeMs, { min: 0.001 });
      if (computeMs > periodMs) {
        throw new ConfigError(
          `${where}.computeMs`,
          `${computeMs} ms of work cannot fit a ${periodMs} ms period`,
        );
      }
      return { kind: "periodic", periodMs, computeMs };
    }
    case "echo": {
      if (v.mode !== "open" && v.mode !== "closed") {
        throw new ConfigError(`${where}.mode`, `must be "open" or "closed"`);
      }
      return {
        kind: "echo",
        mode: v.mode,
        serviceUs: num(`${where}.serviceUs`, v.serviceUs, { min: 1, def: 50 }),
        ratePerSec: num(`${where}.ratePerSec`, v.ratePerSec, { min: 1, def: 1000 }),
        clients: num(`${where}.clients`, v.clients, { min: 1, int: true, def: 1 }),
        thinkUs: num(`${where}.thinkUs`, v.thinkUs, { min: 0, def: 0 }),
      };
    }
    case "lock": {
      if (vcpus < 2) throw new ConfigError(`${where}`, "lock needs a VM with 2 or more vCPUs");
      const lock = v.lock ?? "tas";
      if (lock !== "tas" && lock !== "ticket") {
        throw new ConfigError(`${where}.lock`, `must be "tas" or "ticket"`);
      }
      return {
        kind: "lock",
        csUs: num(`${where}.csUs`, v.csUs, { min: 0.1, def: 2 }),
        workUs: num(`${where}.workUs`, v.workUs, { min: 0, def: 20 }),
        lock,
      };
    }
    case "ipi":
      if (vcpus !== 2) throw new ConfigError(`${where}`, "ipi needs a VM with exactly 2 vCPUs");
      return { kind: "ipi" };
    default:
      return {
        kind: "attacker",
        runUs: num(`${where}.runUs`, v.runUs, { min: 1, def: 9500 }),
        sleepUs: num(`${where}.sleepUs`, v.sleepUs, { min: 1, def: 500 }),
      };
  }
}

/** Validates a parsed scenario; `source` names it in errors. */
export function parseScenario(data: unknown, source: string): Scenario {
  if (!isObj(data)) throw new ConfigError(source, "a scenario must be a JSON object");
  const known = [
    "name",
    "description",
    "slots",
    "seconds",
    "policy",
    "params",
    "ratelimitUs",
    "vms",
    "goal",
  ];
  for (const k of Object.keys(data)) {
    if (!known.includes(k)) {
      throw new ConfigError(`${source}: ${k}`, `unknown key (known: ${known.join(", ")})`);
    }
  }
  const slots = num(`${source}: slots`, data.slots, {
    min: 1,
    max: MAX_SCENARIO_SLOTS,
    int: true,
    def: 1,
  });
  const seconds = num(`${source}: seconds`, data.seconds, {
    min: 0.1,
    max: MAX_SCENARIO_SECONDS,
    def: 10,
  });
  const ratelimitUs = num(`${source}: ratelimitUs`, data.ratelimitUs, {
    min: 0,
    def: DEFAULT_RATELIMIT_US,
  });
  if (!Array.isArray(data.vms) || data.vms.length === 0) {
    throw new ConfigError(`${source}: vms`, "must be a non-empty array");
  }
  if (data.vms.length > MAX_SCENARIO_VMS) {
    throw new ConfigError(
      `${source}: vms`,
      `at most ${MAX_SCENARIO_VMS} VMs, got ${data.vms.length}`,
    );
  }
  const names = new Set<string>();
  const vms = data.vms.map((v: unknown, i: number): ScenarioVm => {
    const where = `${source}: vms[${i}]`;
    if (!isObj(v)) throw new ConfigError(where, "must be an object");
    if (typeof v.name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(v.name)) {
      throw new ConfigError(`${where}.name`, "must be 1-64 letters, digits, '-', '_' or '.'");
    }
    if (names.has(v.name)) throw new ConfigError(`${where}.name`, `duplicate VM '${v.name}'`);
    names.add(v.name);
    const vcpus = num(`${where}.vcpus`, v.vcpus, { min: 1, max: MAX_VCPUS, int: true, def: 1 });
    const sched = schedParams(`${where}.sched`, v.sched);
    return {
      name: v.name,
      vcpus,
      workload: workload(`${where}.workload`, v.workload, vcpus),
      sched,
    };
  });
  const goal = parseGoal(`${source}: goal`, data.goal);
  return {
    name: typeof data.name === "string"
      ? data.name
      : source.replace(/^.*\//, "").replace(/\.json$/, ""),
    description: typeof data.description === "string" ? data.description : "",
    slots,
    seconds,
    policy: typeof data.policy === "string" ? data.policy : "plugins/credit.ts",
    params: paramObject(`${source}: params`, data.params),
    ratelimitUs,
    vms,
    ...(goal ? { goal } : {}),
  };
}

/** Reads and validates a scenario file; every problem is a ConfigError naming file and field. */
export async function loadScenario(path: string): Promise<Scenario> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(path, `cannot read: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(path, `not valid JSON: ${(e as Error).message}`);
  }
  return parseScenario(data, path);
}
