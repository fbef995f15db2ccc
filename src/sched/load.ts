/**
 * Loading a plugin module and checking what its hooks return, shared by the in-process
 * {@linkcode LocalPolicy} and the sandbox Worker: the same checks, the same messages.
 *
 * The checks here are about shape and types only (is `pickNext` a function, is a decision an
 * object with numeric `vcpu` and `sliceNs`); whether a decision makes sense (the vCPU exists and
 * is runnable, the slice is within bounds) is the core's business.
 *
 * @module
 */
import type { PickDecision, SchedulerPlugin, SlotId } from "./contract.ts";

/** A plugin module could not be loaded or is not a plugin. */
export class PluginLoadError extends Error {
  /** The plugin's path or URL. */
  readonly plugin: string;
  /**
   * Creates the error; the message names the plugin.
   *
   * @param plugin the plugin's path or URL
   * @param message what is wrong
   */
  constructor(plugin: string, message: string) {
    super(`cannot load scheduler plugin ${plugin}: ${message}`);
    this.name = "PluginLoadError";
    this.plugin = plugin;
  }
}

/** Hooks every plugin must have. */
export const REQUIRED_HOOKS = ["pickNext", "onHalt", "onWake"] as const;
/** Hooks a plugin may have. */
export const OPTIONAL_HOOKS = [
  "init",
  "addVcpu",
  "removeVcpu",
  "onDeschedule",
  "onTick",
  "setParams",
] as const;

/**
 * Checks that a module namespace's default export is a plugin; returns it, or a message saying
 * what is missing.
 */
export function pluginFromModule(mod: unknown): SchedulerPlugin | string {
  const def = (mod as { default?: unknown } | null)?.default;
  if (def === undefined) return "the module has no default export";
  if (def === null || typeof def !== "object") {
    return `the default export is a ${def === null ? "null" : typeof def}, not a plugin object`;
  }
  const p = def as Record<string, unknown>;
  const missing = REQUIRED_HOOKS.filter((h) => typeof p[h] !== "function");
  if (missing.length > 0) {
    return `the default export has no ${missing.join(", ")} function${
      missing.length > 1 ? "s" : ""
    }`;
  }
  for (const h of OPTIONAL_HOOKS) {
    if (p[h] !== undefined && typeof p[h] !== "function") return `${h} is not a function`;
  }
  if (p.name !== undefined && typeof p.name !== "string") return "name is not a string";
  return def as SchedulerPlugin;
}

/** The plugin's display name: its `name`, else the file name of its path or URL. */
export function pluginDisplayName(plugin: SchedulerPlugin | null, spec: string): string {
  if (plugin?.name) return plugin.name;
  const base = spec.slice(spec.lastIndexOf("/") + 1);
  return base.replace(/\.[jt]sx?$/, "") || spec;
}

/** The shortest tick accepted (10 µs; Xen credit ticks every 10 ms, RTDS-like plugins faster). */
export const MIN_TICK_NS = 10_000;

/** Checks `tickNs` (read after `init`): 0 when absent; a message when invalid. */
export function checkTickNs(plugin: SchedulerPlugin): number | string {
  const t = plugin.tickNs;
  if (t === undefined || t === null) return 0;
  if (typeof t !== "number" || !Number.isFinite(t) || t < 0) {
    return `tickNs must be a finite number >= 0, got ${describe(t)}`;
  }
  if (t > 0 && typeof plugin.onTick !== "function") return "tickNs is set but onTick is missing";
  if (t > 0 && t < MIN_TICK_NS) return `tickNs must be 0 or >= ${MIN_TICK_NS} ns, got ${t}`;
  return t;
}

/** Checks `ratelimit` (read after `init`): true when absent; a message when not a boolean. */
export function checkRatelimit(plugin: SchedulerPlugin): boolean | string {
  const r = plugin.ratelimit;
  if (r === undefined) return true;
  if (typeof r !== "boolean") return `ratelimit must be a boolean, got ${describe(r)}`;
  return r;
}

/** A short description of a value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "undefined";
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (typeof v === "function") return "a function";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  try {
    const s = JSON.stringify(v);
    return s.length > 80 ? s.slice(0, 80) + "..." : s;
  } catch {
    return "an object";
  }
}

/**
 * Checks the type of what `pickNext` (or `hook`, e.g. `queueNext`) returned: `null` or
 * `{ vcpu: integer, sliceNs: number }`. Returns the decision, `null`, or a message.
 */
export function checkPick(r: unknown, hook = "pickNext"): PickDecision | null | string {
  if (r === null) return null;
  if (typeof (r as { then?: unknown })?.then === "function") {
    return `${hook} returned a promise; hooks must be synchronous`;
  }
  if (typeof r !== "object" || r === undefined) {
    return `${hook} returned ${describe(r)}; expected null or { vcpu, sliceNs }`;
  }
  const d = r as { vcpu?: unknown; sliceNs?: unknown; reserved?: unknown };
  if (typeof d.vcpu !== "number" || !Number.isInteger(d.vcpu)) {
    return `${hook} returned vcpu ${describe(d.vcpu)}; expected an integer vCPU id`;
  }
  if (typeof d.sliceNs !== "number" || Number.isNaN(d.sliceNs)) {
    return `${hook} returned sliceNs ${describe(d.sliceNs)}; expected a number of ns`;
  }
  if (d.reserved !== undefined && typeof d.reserved !== "boolean") {
    return `${hook} returned reserved ${describe(d.reserved)}; expected true, false or nothing`;
  }
  return d.reserved ? { vcpu: d.vcpu, sliceNs: d.sliceNs, reserved: true } : {
    vcpu: d.vcpu,
    sliceNs: d.sliceNs,
  };
}

/** Checks what `extendSlice` returned: a slice in ns, or null (nothing: let the slice end). */
export function checkExtend(r: unknown): number | null | string {
  if (r === undefined || r === null) return null;
  if (typeof (r as { then?: unknown })?.then === "function") {
    return "extendSlice returned a promise; hooks must be synchronous";
  }
  if (typeof r !== "number" || Number.isNaN(r)) {
    return `extendSlice returned ${describe(r)}; expected a slice in ns or null`;
  }
  return r;
}

/** Checks what `onWake` returned: nothing, or an integer slot. Returns `-1` for nothing. */
export function checkWake(r: unknown): SlotId | string {
  if (r === undefined || r === null) return -1;
  if (typeof (r as { then?: unknown })?.then === "function") {
    return "onWake returned a promise; hooks must be synchronous";
  }
  if (typeof r !== "number" || !Number.isInteger(r)) {
    return `onWake returned ${describe(r)}; expected a slot number or nothing`;
  }
  return r;
}

/** Checks what `onTick` returned: nothing, or an array of integer slots. */
export function checkTick(r: unknown): SlotId[] | string {
  if (r === undefined || r === null) return EMPTY_SLOTS;
  if (!Array.isArray(r)) return `onTick returned ${describe(r)}; expected an array of slots`;
  for (const s of r) {
    if (typeof s !== "number" || !Number.isInteger(s)) {
      return `onTick returned slot ${describe(s)}; expected integer slot numbers`;
    }
  }
  return r as SlotId[];
}

/** Checks that a void hook did not return a promise (an `async` hook is a contract error). */
export function checkVoid(hook: string, r: unknown): string | null {
  if (r !== undefined && r !== null && typeof (r as { then?: unknown }).then === "function") {
    return `${hook} returned a promise; hooks must be synchronous`;
  }
  return null;
}

const EMPTY_SLOTS: SlotId[] = [];

/** Describes a thrown value: `Name: message`. */
export function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return `threw ${describe(e)}`;
}
