/**
 * The scheduler simulator: a discrete-event model of EMTs and guest workloads with a virtual
 * clock, deterministic for a seed, that runs a plugin through the same {@linkcode SchedCore} and
 * (by default) the same sandbox as the real VMM.
 *
 * ```ts
 * import { simulate } from "./src/sim/mod.ts";
 * const r = await simulate({
 *   plugin: "plugins/rr.ts",
 *   slots: 1,
 *   seconds: 2,
 *   vms: [{ name: "a", vcpus: 1, workload: { kind: "spin" } }],
 * });
 * console.log(r.vms[0].share);
 * ```
 *
 * @module
 */
export type * from "./types.ts";
export type { EjectInfo, EjectReason } from "../sched/watchdog.ts";
import type { SimOptions, SimResult } from "./types.ts";

/** Runs a simulation. */
export function simulate(_options: SimOptions): Promise<SimResult> {
  return Promise.reject(new Error("simulate: not implemented yet"));
}
