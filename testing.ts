/**
 * The plugin author's kit: run a scheduler plugin in the simulator, or a scenario file in the
 * simulator or on KVM, from a plugin's own tests, through the same core and sandbox as the VMM.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { simulate } from "./testing.ts";
 *
 * const r = await simulate({
 *   plugin: new URL("./plugins/rr.ts", import.meta.url).href,
 *   slots: 1,
 *   seconds: 2,
 *   vms: [
 *     { name: "a", vcpus: 1, workload: { kind: "spin" } },
 *     { name: "b", vcpus: 1, workload: { kind: "spin" } },
 *   ],
 * });
 * assert.deepEqual(r.ejections, []); // the watchdog never had to step in
 * assert.ok(Math.abs(r.vms[0].share - 0.5) < 0.02); // equal shares of the slot
 * ```
 *
 * A plugin runs sandboxed by default (a Worker with every permission denied), which needs
 * `--unstable-worker-options`: `deno test -A --unstable-worker-options my_plugin_test.ts`.
 *
 * @module
 */
export { simulate } from "./src/sim/mod.ts";
export {
  combinations,
  formatSweep,
  type Spread,
  spread,
  sweep,
  type SweepCell,
  type SweepOptions,
  type SweepResult,
} from "./src/sim/sweep.ts";
export type * from "./src/sim/types.ts";
export type { EjectInfo, EjectReason } from "./src/sched/watchdog.ts";
export {
  loadScenario,
  parseScenario,
  type Scenario,
  type ScenarioVm,
  type ScenarioWorkload,
} from "./src/scenario/scenario.ts";
export { runScenarioSim, SIM_HANDOFF_US, type SimRunOptions } from "./src/scenario/run_sim.ts";
export { type KvmRunOptions, runScenarioKvm } from "./src/scenario/run_kvm.ts";
export {
  formatResult,
  jainIndex,
  type ScenarioResult,
  type VmOutcome,
} from "./src/scenario/result.ts";
