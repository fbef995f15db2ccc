/**
 * Scheduling parameters set at run time: validation before they reach the plugin (a plugin
 * that throws on a bad value is ejected, and one that ignores it leaves the operator guessing),
 * and the record of what each VM's parameters are now.
 *
 * The built-in policies' parameters are checked by name and value, as `xl sched-credit` and
 * `xl sched-rtds` check theirs: `weight` an integer 1..65535, `cap` an integer 0..100 x slots,
 * `period_ms` / `budget_ms` (or `_us`) at least 10 µs with the budget within the period
 * (`rt_validate_params`), `extratime` a boolean. Any other key is refused while a built-in
 * policy is in charge (it would be ignored silently) and passed through to any other plugin,
 * which defines its own.
 *
 * @module
 */
import type { SchedParams } from "../sched/contract.ts";
import type { Vm } from "../vm/vm.ts";
import { ApiError } from "./http.ts";

/** Parameters a built-in policy reads: per VM, and policy-wide (`target` `"*"`). */
export interface PolicyKeys {
  /** Per-VM keys. */
  vm: readonly string[];
  /** Policy-wide keys. */
  policy: readonly string[];
}

/** The built-in policies (`plugins/*.ts`, and the fallback `rr`), by the name they report. */
export const BUILTIN_POLICY_KEYS: Readonly<Record<string, PolicyKeys>> = {
  credit: { vm: ["weight", "cap"], policy: ["tslice_ms", "ratelimit_us"] },
  credit2: { vm: ["weight", "cap"], policy: ["cap_period_ms"] },
  rtds: {
    vm: ["period_ms", "budget_ms", "period_us", "budget_us", "extratime"],
    policy: ["tick_us"],
  },
  gang: { vm: ["weight"], policy: ["slice_ms"] },
  rr: { vm: [], policy: ["slice_ms"] },
};

/** Every per-VM key a built-in policy knows (the core keeps them for the next policy). */
export const BUILTIN_VM_KEYS: readonly string[] = [
  ...new Set(Object.values(BUILTIN_POLICY_KEYS).flatMap((k) => k.vm)),
];

/** RTDS's defaults (rt.c `RTDS_DEFAULT_PERIOD` / `_BUDGET`), used to check a lone budget. */
const DEFAULT_PERIOD_NS = 10e6;
const DEFAULT_BUDGET_NS = 4e6;
/** rt.c `RTDS_MIN_PERIOD` / `RTDS_MIN_BUDGET`: 10 µs. */
const MIN_RT_NS = 10e3;
/** Xen's `CSCHED_MAX_WEIGHT`-ish bound: weights are 16-bit. */
const MAX_WEIGHT = 65535;

/** What {@linkcode validateSchedParams} needs to know about the scheduler. */
export interface ParamsContext {
  /** Name of the policy in charge (`Scheduler.policy`). */
  policy: string;
  /** Slots handed out. */
  slots: number;
  /** For a VM target: its parameters now (to check a budget against the period). */
  current?: SchedParams;
}

/** The result of a successful validation. */
export interface CheckedParams {
  /** The parameters to send, unchanged. */
  params: SchedParams;
  /** Keys the policy in charge does not read (kept by the core for a later policy). */
  unused: string[];
}

function isBuiltin(policy: string): boolean {
  return Object.hasOwn(BUILTIN_POLICY_KEYS, policy);
}

function num(key: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new ApiError(400, `${key} must be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function int(key: string, v: unknown, min: number, max: number): number {
  const n = num(key, v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ApiError(400, `${key} must be an integer from ${min} to ${max}, got ${n}`);
  }
  return n;
}

function positive(key: string, v: unknown): number {
  const n = num(key, v);
  if (!(n > 0)) throw new ApiError(400, `${key} must be > 0, got ${n}`);
  return n;
}

/** ns of a period or budget given in `_ms` or `_us` (the `_ms` key wins, as in rtds.ts). */
function timeNs(p: SchedParams, base: "period" | "budget"): number | undefined {
  const ms = p[`${base}_ms`], us = p[`${base}_us`];
  if (typeof ms === "number") return ms * 1e6;
  if (typeof us === "number") return us * 1e3;
  return undefined;
}

/**
 * Checks `params` for `target` (a VM name or `"*"`); throws an {@linkcode ApiError} 400 naming
 * the bad key and value. Nothing is changed here.
 */
export function validateSchedParams(
  target: string,
  params: unknown,
  ctx: ParamsContext,
): CheckedParams {
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    throw new ApiError(400, "params must be a JSON object of parameters");
  }
  const p = params as Record<string, unknown>;
  const keys = Object.keys(p);
  if (keys.length === 0) throw new ApiError(400, "params is empty: nothing to change");
  for (const k of keys) {
    const v = p[k];
    if (typeof v !== "number" && typeof v !== "string" && typeof v !== "boolean") {
      throw new ApiError(400, `${k} must be a number, string or boolean, got ${JSON.stringify(v)}`);
    }
  }
  const builtin = isBuiltin(ctx.policy);
  const own = builtin ? BUILTIN_POLICY_KEYS[ctx.policy] : undefined;
  if (target === "*") {
    for (const k of keys) {
      if (builtin && BUILTIN_VM_KEYS.includes(k)) {
        throw new ApiError(
          400,
          `${k} is a per-VM parameter: give a VM name as target, not "*"`,
        );
      }
      if (own && !own.policy.includes(k)) {
        throw new ApiError(
          400,
          `unknown parameter '${k}' for policy ${ctx.policy} ` +
            `(policy-wide: ${own.policy.join(", ") || "none"})`,
        );
      }
      if (own) positive(k, p[k]);
    }
    return { params: p as SchedParams, unused: [] };
  }
  if (builtin) {
    for (const k of keys) {
      if (!BUILTIN_VM_KEYS.includes(k)) {
        const hint = own!.policy.includes(k) ? ` (${k} is policy-wide: use target "*")` : "";
        throw new ApiError(
          400,
          `unknown parameter '${k}' for policy ${ctx.policy}${hint} ` +
            `(per VM: ${BUILTIN_VM_KEYS.join(", ")})`,
        );
      }
    }
  }
  if ("weight" in p) int("weight", p.weight, 1, MAX_WEIGHT);
  if ("cap" in p) int("cap", p.cap, 0, 100 * ctx.slots);
  for (const k of ["period_ms", "budget_ms", "period_us", "budget_us"]) {
    if (k in p) positive(k, p[k]);
  }
  if ("extratime" in p && typeof p.extratime !== "boolean") {
    throw new ApiError(400, `extratime must be true or false, got ${JSON.stringify(p.extratime)}`);
  }
  const touchesRt = ["period_ms", "budget_ms", "period_us", "budget_us"].some((k) => k in p);
  if (touchesRt) {
    const cur = ctx.current ?? {};
    const next = p as SchedParams;
    const period = timeNs(next, "period") ?? timeNs(cur, "period") ?? DEFAULT_PERIOD_NS;
    const budget = timeNs(next, "budget") ?? timeNs(cur, "budget") ?? DEFAULT_BUDGET_NS;
    if (period < MIN_RT_NS || budget < MIN_RT_NS) {
      throw new ApiError(400, `period and budget must be at least 10 µs`);
    }
    if (budget > period) {
      throw new ApiError(
        400,
        `budget (${budget / 1e6} ms) must not exceed the period (${period / 1e6} ms)`,
      );
    }
  }
  const unused = own ? keys.filter((k) => !own.vm.includes(k)) : [];
  return { params: p as SchedParams, unused };
}

/** Parameters set at run time, per VM, over those of its config. */
const changed = new WeakMap<Vm, SchedParams>();

/** A VM's scheduling parameters now: its config's, with every change made through the API. */
export function currentSchedParams(vm: Vm): SchedParams {
  const over = changed.get(vm) ?? {};
  const out: SchedParams = { ...vm.config.sched };
  for (const base of ["period", "budget"]) {
    if (`${base}_ms` in over || `${base}_us` in over) {
      delete out[`${base}_ms`];
      delete out[`${base}_us`];
    }
  }
  return { ...out, ...over };
}

/** Records parameters the scheduler accepted for `vm`. */
export function recordSchedParams(vm: Vm, params: SchedParams): void {
  const cur = changed.get(vm) ?? {};
  // A period or budget in one unit replaces the same one in the other (rtds.ts reads _ms first).
  for (const base of ["period", "budget"]) {
    if (`${base}_ms` in params || `${base}_us` in params) {
      delete cur[`${base}_ms`];
      delete cur[`${base}_us`];
    }
  }
  changed.set(vm, { ...cur, ...params });
}
