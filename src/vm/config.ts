/**
 * VM configuration: the options a user gives, their defaults, and validation that names
 * the offending field before anything is created.
 *
 * @module
 */
import type { UnhandledAccessPolicy } from "../emt/protocol.ts";
import { CMDLINE_MAX, MIN_MEMORY } from "./pvh.ts";
import { guestKernel } from "./guest_kernel.ts";

/** Most vCPUs one VM may have (APIC ids must fit xAPIC physical mode, 0..254). */
export const MAX_VCPUS = 64;

/** What a user gives to create a VM. */
export interface VmConfig {
  /** Unique name; prefixes its console lines. Letters, digits, `-`, `_`, `.`. */
  name: string;
  /** vCPUs (default 1). */
  vcpus?: number;
  /** Guest RAM in MiB (default 64). */
  memoryMiB?: number;
  /**
   * Kernel image: a path, or a `file:`/`http(s):` URL (default: the built-in guest kernel,
   * built into the cache on first use; see `src/vm/guest_kernel.ts`).
   */
  kernel?: string | URL;
  /** Kernel command line (default `workload=hello`). `ncpus` and `tsc_khz` are appended. */
  cmdline?: string;
  /** Unhandled port / MMIO accesses: `"ignore"` (logged, default) or `"stop"` the VM. */
  unhandled?: UnhandledAccessPolicy;
  /** Halt polling in microseconds before an EMT sleeps (default 0). */
  haltPollUs?: number;
  /**
   * Without a scheduler: leave guest mode this often (µs, a run deadline), as a vCPU's slice end
   * does, and enter again at once (default 0: no such exits). A measurement aid: the exit and
   * re-entry of a lone EMT is the floor of any slot hand-off (`bench/sched.ts`). Ignored under a
   * scheduler.
   */
  runSliceUs?: number;
  /**
   * Scheduling parameters of this VM's vCPUs, for the policy plugin: `weight` (credit,
   * credit2; default 256), `cap` (% of one slot), `period_ms` / `budget_ms` / `extratime`
   * (rtds), or any key a user's plugin reads. Numbers, strings or booleans.
   */
  sched?: Record<string, number | string | boolean>;
}

/** A {@linkcode VmConfig} with every default applied. */
export interface ResolvedVmConfig {
  /** Name. */
  name: string;
  /** vCPUs. */
  vcpus: number;
  /** RAM in bytes. */
  memoryBytes: number;
  /** Kernel location (for the built-in kernel: its file in the cache). */
  kernel: URL;
  /** Command line as given. */
  cmdline: string;
  /** Unhandled-access policy. */
  unhandled: UnhandledAccessPolicy;
  /** Halt polling, ns. */
  haltPollNs: number;
  /** Run deadline every so many ns without a scheduler (0: none); see {@linkcode VmConfig.runSliceUs}. */
  runSliceNs: number;
  /** Scheduling parameters (see {@linkcode VmConfig.sched}). */
  sched: Record<string, number | string | boolean>;
}

/** A configuration error; `field` names what is wrong. */
export class ConfigError extends Error {
  /** The offending field, e.g. `vms[1].vcpus`. */
  readonly field: string;
  /**
   * Creates the error.
   * @param field the offending field
   * @param message what is wrong with it
   */
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "ConfigError";
    this.field = field;
  }
}

/**
 * Longest `cmdline`, bytes: the guest's command line page (CMDLINE_MAX, 4 KiB with its NUL) less
 * room for what the host appends (` ncpus=64 tsc_khz=4294967295`).
 */
export const MAX_CMDLINE_BYTES = CMDLINE_MAX - 1 - 32;

const KNOWN_KEYS = new Set([
  "name",
  "vcpus",
  "memoryMiB",
  "kernel",
  "cmdline",
  "unhandled",
  "haltPollUs",
  "runSliceUs",
  "sched",
]);

/** Checks a flat object of parameters (numbers, strings, booleans); `field` names it in errors. */
export function paramObject(
  field: string,
  value: unknown,
): Record<string, number | string | boolean> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(field, "must be an object of scheduling parameters");
  }
  const out: Record<string, number | string | boolean> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === "number" && !Number.isFinite(v)) {
      throw new ConfigError(`${field}.${k}`, `must be a finite number, got ${v}`);
    }
    if (typeof v !== "number" && typeof v !== "string" && typeof v !== "boolean") {
      throw new ConfigError(`${field}.${k}`, `must be a number, string or boolean`);
    }
    out[k] = v;
  }
  return out;
}

/**
 * Checks a VM's `sched` parameters (VmConfig.sched, a scenario VM's `sched`): a flat object,
 * with the built-in policies' keys in range: weight >= 1, cap >= 0, budget_ms <= period_ms.
 */
export function schedParams(
  field: string,
  value: unknown,
): Record<string, number | string | boolean> {
  const out = paramObject(field, value);
  if ("weight" in out && !(typeof out.weight === "number" && out.weight >= 1)) {
    throw new ConfigError(`${field}.weight`, `must be a number >= 1, got ${out.weight}`);
  }
  if ("cap" in out && !(typeof out.cap === "number" && out.cap >= 0)) {
    throw new ConfigError(`${field}.cap`, `must be a percentage >= 0, got ${out.cap}`);
  }
  const p = out.period_ms, b = out.budget_ms;
  if (typeof p === "number" && typeof b === "number" && b > p) {
    throw new ConfigError(`${field}.budget_ms`, `budget ${b} ms exceeds period ${p} ms`);
  }
  return out;
}

function integer(
  field: string,
  value: unknown,
  min: number,
  max: number,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new ConfigError(field, `must be an integer, got ${JSON.stringify(value)}`);
  }
  if (value < min || value > max) {
    throw new ConfigError(field, `must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}

/** Turns a path or URL string into a URL, relative paths against the working directory. */
export function toUrl(location: string | URL): URL {
  if (location instanceof URL) return location;
  if (/^(file|https?):\/\//.test(location)) return new URL(location);
  const abs = location.startsWith("/") ? location : `${Deno.cwd()}/${location}`;
  return new URL(`file://${abs.split("/").map(encodeURIComponent).join("/")}`);
}

/** Options of {@linkcode resolveVmConfig}. */
export interface ResolveVmOptions {
  /** Told when the built-in guest kernel is being built (its first use). */
  onBuild?: (message: string) => void;
}

/**
 * Validates `config` (as given by code or parsed from JSON) and applies the defaults; without
 * a `kernel`, finds the built-in guest kernel in the cache or builds it there (after the
 * checks: a bad field is reported before any build). `where` prefixes field names in errors
 * (e.g. `vms[2]`).
 */
export async function resolveVmConfig(
  config: unknown,
  where = "vm",
  options: ResolveVmOptions = {},
): Promise<ResolvedVmConfig> {
  const checked = checkVmConfig(config, where);
  const kernel = checked.kernel ?? toUrl(await guestKernel({ onBuild: options.onBuild }));
  return { ...checked, kernel };
}

function checkVmConfig(
  config: unknown,
  where: string,
): Omit<ResolvedVmConfig, "kernel"> & { kernel: URL | undefined } {
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new ConfigError(where, "must be an object");
  }
  const c = config as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (!KNOWN_KEYS.has(key)) {
      throw new ConfigError(
        `${where}.${key}`,
        `unknown option (known: ${[...KNOWN_KEYS].join(", ")})`,
      );
    }
  }
  if (typeof c.name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(c.name)) {
    throw new ConfigError(
      `${where}.name`,
      `must be 1-64 letters, digits, '-', '_' or '.', got ${JSON.stringify(c.name)}`,
    );
  }
  const vcpus = integer(`${where}.vcpus`, c.vcpus, 1, MAX_VCPUS, 1);
  const minMiB = MIN_MEMORY >> 20;
  const memoryMiB = integer(`${where}.memoryMiB`, c.memoryMiB, minMiB, 1 << 20, 64);
  let kernel: URL | undefined;
  if (c.kernel !== undefined) {
    if (typeof c.kernel !== "string" && !(c.kernel instanceof URL)) {
      throw new ConfigError(`${where}.kernel`, "must be a path or URL");
    }
    try {
      kernel = toUrl(c.kernel);
    } catch (e) {
      // A lone surrogate (encodeURIComponent) or a malformed URL (new URL).
      throw new ConfigError(`${where}.kernel`, `not a path or URL: ${(e as Error).message}`);
    }
  }
  if (c.cmdline !== undefined && typeof c.cmdline !== "string") {
    throw new ConfigError(`${where}.cmdline`, "must be a string");
  }
  if (typeof c.cmdline === "string") {
    const bytes = new TextEncoder().encode(c.cmdline).length;
    if (bytes > MAX_CMDLINE_BYTES) {
      throw new ConfigError(
        `${where}.cmdline`,
        `is ${bytes} bytes; at most ${MAX_CMDLINE_BYTES} (the guest's command line page, less ` +
          `what the host appends)`,
      );
    }
  }
  const unhandled = c.unhandled ?? "ignore";
  if (unhandled !== "ignore" && unhandled !== "stop") {
    throw new ConfigError(`${where}.unhandled`, `must be "ignore" or "stop"`);
  }
  const haltPollUs = integer(`${where}.haltPollUs`, c.haltPollUs, 0, 10_000, 0);
  const runSliceUs = integer(`${where}.runSliceUs`, c.runSliceUs, 0, 1_000_000, 0);
  return {
    name: c.name,
    vcpus,
    memoryBytes: memoryMiB * 1024 * 1024,
    kernel,
    cmdline: (c.cmdline as string | undefined) ?? "workload=hello",
    unhandled,
    haltPollNs: haltPollUs * 1000,
    runSliceNs: runSliceUs * 1000,
    sched: schedParams(`${where}.sched`, c.sched),
  };
}

/** Loads a kernel image from a file or http(s) URL; errors name the location. */
export async function readKernel(url: URL): Promise<Uint8Array> {
  if (url.protocol === "file:") {
    try {
      return await Deno.readFile(url);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new ConfigError("kernel", `${decodeURIComponent(url.pathname)} not found`);
      }
      throw new ConfigError("kernel", `cannot read ${url.pathname}: ${(e as Error).message}`);
    }
  }
  const res = await fetch(url);
  if (!res.ok) throw new ConfigError("kernel", `GET ${url.href}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}
