/**
 * The scheduler simulator: a discrete-event model of EMTs and guest workloads with a virtual
 * clock, deterministic for a seed, that runs a plugin through the same `SchedCore` and (by
 * default) the same sandbox as the real VMM.
 *
 * ```ts
 * import { simulate } from "./src/sim/mod.ts";
 * const r = await simulate({
 *   plugin: "plugins/rr.ts",
 *   slots: 1,
 *   seconds: 2,
 *   vms: [
 *     { name: "a", vcpus: 1, workload: { kind: "spin" } },
 *     { name: "b", vcpus: 1, workload: { kind: "echo", mode: "open", ratePerSec: 500, serviceUs: 50 } },
 *   ],
 * });
 * console.log(r.vms.map((vm) => `${vm.name} ${(vm.share * 100).toFixed(1)} %`));
 * ```
 *
 * @module
 */
export type * from "./types.ts";
export type { EjectInfo, EjectReason } from "../sched/watchdog.ts";
import type { SchedParams, SchedulerPlugin } from "../sched/contract.ts";
import { pluginFromModule, PluginLoadError } from "../sched/load.ts";
import { LocalPolicy, type PolicyPort } from "../sched/policy_port.ts";
import { resolvePluginUrl, SandboxPolicy } from "../sched/sandbox.ts";
import { ProcessSandboxPolicy } from "../sched/sandbox_process.ts";
import { runSimulation } from "./run.ts";
import { simulateSandboxed } from "./sandboxed.ts";
import type { SimOptions, SimResult } from "./types.ts";

/** Sandbox spinning in the simulator: none (it only hurts on these machines, see sandbox.ts). */
const SIM_SPIN_NS = 0;

/**
 * The sandbox budget in the simulator unless given: 200 ms of wall time. The VMM's 20 ms protects
 * running guests; here a spurious timeout on a loaded machine would only make a run differ from
 * another with the same seed, so the simulator is more patient (an endless loop still ends).
 */
const SIM_BUDGET_NS = 200_000_000;

let instances = 0;

/** Options that shape how a plugin is loaded for a simulation. */
interface LoadContext {
  slots: number;
  maxSliceNs: number;
  ratelimitNs: number;
  budgetNs?: number;
  sandbox: "worker" | "process" | false;
  allowRead?: string[];
  allowImport?: string[];
}

/**
 * Loads a plugin for a simulation: an object runs in-process; a path or URL runs in the sandbox,
 * or in-process as a fresh module instance when `sandbox` is false.
 */
async function loadPort(
  plugin: string | URL | SchedulerPlugin,
  params: SchedParams,
  c: LoadContext,
): Promise<PolicyPort> {
  if (typeof plugin === "object" && !(plugin instanceof URL)) {
    return new LocalPolicy(plugin, { params, name: "plugin" });
  }
  if (c.sandbox) {
    const create = c.sandbox === "process" ? ProcessSandboxPolicy.create : SandboxPolicy.create;
    return await create({
      plugin,
      params,
      slots: c.slots,
      maxSliceNs: c.maxSliceNs,
      ratelimitNs: c.ratelimitNs,
      budgetNs: c.budgetNs,
      spinNs: SIM_SPIN_NS,
      allowRead: c.allowRead,
      allowImport: c.allowImport,
    });
  }
  const spec = String(plugin);
  const url = resolvePluginUrl(plugin);
  // A fresh module instance per simulation, so module-level state never leaks between runs.
  if (url.protocol === "file:") url.searchParams.set("sim-instance", String(++instances));
  let mod: unknown;
  try {
    mod = await import(url.href);
  } catch (e) {
    throw new PluginLoadError(spec, (e as Error).message);
  }
  const p = pluginFromModule(mod);
  if (typeof p === "string") throw new PluginLoadError(spec, p);
  return new LocalPolicy(p, { params, name: spec });
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new RangeError(`simulate: ${message}`);
}

/**
 * Runs a simulation. Rejects with a `PluginLoadError` when a plugin cannot be loaded and with a
 * `RangeError` naming the bad option otherwise. A plugin that misbehaves during the run is
 * ejected (see `SimResult.ejections`) and the run goes on under the fallback round-robin.
 */
export async function simulate(options: SimOptions): Promise<SimResult> {
  const o = options;
  check(Number.isInteger(o.slots) && o.slots >= 1, `slots must be an integer >= 1, got ${o.slots}`);
  check(typeof o.seconds === "number" && o.seconds > 0, `seconds must be > 0, got ${o.seconds}`);
  check(Array.isArray(o.vms) && o.vms.length > 0, "vms must list at least one VM");
  const names = new Set<string>();
  for (const vm of o.vms) {
    check(typeof vm.name === "string" && vm.name !== "", "every VM needs a name");
    check(!names.has(vm.name), `VM name ${vm.name} is used twice`);
    names.add(vm.name);
    check(
      Number.isInteger(vm.vcpus) && vm.vcpus >= 1,
      `VM ${vm.name}: vcpus must be an integer >= 1, got ${vm.vcpus}`,
    );
  }
  const seed = o.seed ?? 1;
  const maxSliceNs = o.maxSliceNs ?? 100_000_000;
  const ratelimitNs = o.ratelimitNs ?? 1_000_000;
  const ctx: LoadContext = {
    slots: o.slots,
    maxSliceNs,
    ratelimitNs,
    budgetNs: o.budgetNs ?? SIM_BUDGET_NS,
    sandbox: o.sandbox === false ? false : o.sandbox === "process" ? "process" : "worker",
    allowRead: o.allowRead,
    allowImport: o.allowImport,
  };
  check(
    o.traceRecords === undefined || (Number.isInteger(o.traceRecords) && o.traceRecords >= 0),
    `traceRecords must be an integer >= 0, got ${o.traceRecords}`,
  );
  for (
    const k of [
      "handoffNs",
      "aheadHandoffNs",
      "pokeNs",
      "reportDelayNs",
      "wakeDelayNs",
      "stealShare",
    ] as const
  ) {
    const c = o[k];
    const all = (xs: unknown) => Array.isArray(xs) && xs.every((x) => typeof x === "number");
    const series = c as { atNs?: unknown; ns?: unknown } | undefined;
    const ok = c === undefined ||
      (typeof c === "number"
        ? c >= 0
        : Array.isArray(c)
        ? all(c)
        : typeof c === "object" && c !== null && all(series?.atNs) && all(series?.ns) &&
          (series!.atNs as number[]).length === (series!.ns as number[]).length);
    check(ok, `${k} must be a number >= 0, an array of them, or {atNs, ns} of equal length`);
  }
  const load = (plugin: string | URL | SchedulerPlugin, params: SchedParams) =>
    loadPort(plugin, params, ctx);
  const resolved = { ...o, seed, maxSliceNs, ratelimitNs };
  if (wholeInSandbox(o)) {
    return await simulateSandboxed(resolved, {
      budgetNs: ctx.budgetNs!,
      perCall: () => simulate({ ...o, sandbox: "per-call" }),
    });
  }
  const r = await runSimulation(resolved, { load });
  const local = o.sandbox === false || (typeof o.plugin === "object" && !(o.plugin instanceof URL));
  return { ...r, sandbox: local ? "none" : o.sandbox === "process" ? "process" : "per-call" };
}

/**
 * Whether `o` runs as one simulation inside the sandbox Worker: the default for a plugin
 * given by path or URL, unless `sandbox` says otherwise or a plugin object (which cannot cross
 * to a Worker) is part of the script.
 */
function wholeInSandbox(o: SimOptions): boolean {
  if (o.sandbox === false || o.sandbox === "per-call" || o.sandbox === "process") return false;
  if (typeof o.plugin === "object" && !(o.plugin instanceof URL)) return false;
  return (o.script ?? []).every((s) =>
    s.action !== "swap" || typeof s.plugin === "string" || s.plugin instanceof URL
  );
}
