/**
 * Parsing `--vm name=a,vcpus=2,cmdline=workload=hello` into a VM configuration.
 *
 * @module
 */
import type { VmConfig } from "../vm/config.ts";
import { UsageError } from "./usage.ts";

/** `--vm` keys and the VmConfig fields they set. */
const KEYS: Record<string, keyof VmConfig> = {
  name: "name",
  vcpus: "vcpus",
  memory: "memoryMiB",
  mem: "memoryMiB",
  kernel: "kernel",
  cmdline: "cmdline",
  unhandled: "unhandled",
  haltpoll: "haltPollUs",
};
const NUMERIC = new Set<keyof VmConfig>(["vcpus", "memoryMiB", "haltPollUs"]);
/** `--vm` keys that are scheduling parameters (VmConfig.sched). */
const SCHED_KEYS = new Set(["weight", "cap", "period_ms", "budget_ms", "extratime"]);

/**
 * Parses one `--vm` value. Values may contain `=` (`cmdline=workload=spin seconds=1`) and
 * commas, as long as a comma is not followed by `word=` (which starts the next pair).
 */
export function parseVmSpec(spec: string, index: number): VmConfig {
  const parts = spec.split(/,(?=[A-Za-z_]+=)/);
  const config: Record<string, unknown> = {};
  for (const part of parts) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new UsageError(`--vm '${spec}': '${part}' is not key=value`);
    const key = part.slice(0, eq);
    const value = part.slice(eq + 1);
    if (SCHED_KEYS.has(key)) {
      const sched = (config.sched ??= {}) as Record<string, number | string | boolean>;
      sched[key] = parseParamValue(value);
      continue;
    }
    const field = KEYS[key];
    if (!field) {
      throw new UsageError(
        `--vm '${spec}': unknown key '${key}' (known: ${
          [...Object.keys(KEYS), ...SCHED_KEYS].join(", ")
        })`,
      );
    }
    if (NUMERIC.has(field)) {
      const n = Number(value);
      if (value.trim() === "" || !Number.isFinite(n)) {
        throw new UsageError(`--vm '${spec}': ${key} must be a number, got '${value}'`);
      }
      config[field] = n;
    } else {
      config[field] = value;
    }
  }
  config.name ??= `vm${index}`;
  return config as unknown as VmConfig;
}

/** A parameter value from the command line: a number, `true`/`false`, or the string itself. */
export function parseParamValue(value: string): number | string | boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  const n = Number(value);
  return value.trim() !== "" && Number.isFinite(n) ? n : value;
}

/** Parses `--sched-param k=v` values into a parameter object. */
export function parseSchedParams(values: string[]): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const kv of values) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new UsageError(`--sched-param '${kv}' is not key=value`);
    out[kv.slice(0, eq)] = parseParamValue(kv.slice(eq + 1));
  }
  return out;
}
