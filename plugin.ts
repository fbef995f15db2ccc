/**
 * The scheduler plugin contract: everything a policy module needs, and nothing of the VMM.
 *
 * A plugin is a module whose default export implements {@linkcode SchedulerPlugin}. It runs in
 * a Worker with every Deno permission denied, so it can compute and nothing else, and it can
 * import nothing at run time: import these names with `import type` (types are erased), and
 * write the plugin as one self-contained file. Its realm is frozen before it is loaded: it
 * cannot change the built-ins (assigning to `Array.prototype.push`, `Object.defineProperty` on
 * a built-in prototype and the like throw a `TypeError`); the contract's module documentation
 * lists what that rules out. {@linkcode defineScheduler} is a typing aid for
 * code that is not loaded as a plugin (tests, in-process policies).
 *
 * The same names are exported by the package's main module; this entry point lets a plugin's
 * documentation and type checking pull in the contract alone.
 *
 * A first-in first-out policy, complete:
 *
 * ```ts
 * import type { SchedulerPlugin, VcpuId } from "@deno-vmm/deno-vmm/plugin";
 *
 * const queue: VcpuId[] = [];
 * export default {
 *   name: "fifo",
 *   // Required: who runs on a free slot, and for how long (ns); null leaves it idle.
 *   pickNext: () => queue.length ? { vcpu: queue.shift()!, sliceNs: 10e6 } : null,
 *   // Required: the vCPU halted (guest HLT), it is not runnable.
 *   onHalt: (id) => void queue.splice(queue.indexOf(id) >>> 0, 1),
 *   // Required: a halted vCPU got an interrupt, it is runnable again.
 *   onWake: (id) => void queue.push(id),
 *   // Optional: a vCPU joins, or leaves its slot while still runnable.
 *   addVcpu: (info) => void (info.state === "runnable" && queue.push(info.id)),
 *   onDeschedule: (id) => void queue.push(id),
 * } satisfies SchedulerPlugin;
 * ```
 *
 * Load it with `deno-vmm run --sched fifo.ts ...`, or
 * `Vmm.create({ scheduler: { plugin: "fifo.ts" } })`; try it without KVM in the simulator with
 * `deno-vmm sim --sched fifo.ts --scenario FILE.json`. The built-in policies
 * (`plugins/rr.ts`, `credit.ts`, `credit2.ts`, `rtds.ts`, `gang.ts`) are complete examples.
 *
 * @module
 */
export {
  defineScheduler,
  type DescheduleReason,
  type PickDecision,
  type PolicyEvent,
  type SchedContext,
  type SchedParams,
  type SchedulerPlugin,
  type SlotId,
  type VcpuId,
  type VcpuInfo,
} from "./src/sched/contract.ts";
