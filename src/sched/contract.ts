/**
 * The scheduler plugin contract: what a policy module implements and what the trusted core
 * tells it. A plugin's default export is a {@linkcode SchedulerPlugin}; it runs in a sandbox (a
 * child `deno` process by default, or a Worker) with every Deno permission denied, so it may only
 * compute. The core calls it from one thread, in order, and validates every decision it returns.
 * In the process sandbox npm packages cannot be imported either (`--no-npm`), and `console.log`
 * prints to stderr (its stdout carries the channel to the core).
 *
 * The plugin's realm is frozen before its module is imported (Hardened JavaScript: SES's
 * `lockdown()`), so a plugin can no longer:
 *
 * - assign, define (`Object.defineProperty`, `Reflect.set`, `Reflect.defineProperty`) or
 *   delete properties of the built-ins: the prototypes (`Object.prototype`, `Array.prototype`,
 *   `Function.prototype`, `%TypedArray%.prototype` and each typed array's, `Promise.prototype`,
 *   the errors', ...), the constructors (`Uint8Array[Symbol.species]`, ...) and `Atomics`,
 *   `JSON`, `Math`, `Reflect`, `SharedArrayBuffer`. In a module such a write throws a
 *   `TypeError`: at its top level, the plugin fails to load;
 * - change a built-in's prototype (`Object.setPrototypeOf`; Deno's `__proto__` setter only
 *   ever adds an own property);
 * - assign a property that a frozen prototype also has, on an object that inherits it (the
 *   "override mistake": `o.constructor = x` throws), except for the names commonly assigned
 *   (`toString`, `message`, `name`, ... on their usual prototypes). Define the property instead
 *   (`Object.defineProperty`, a class field, an object literal);
 * - read an error's `stack`: it is empty (`name` and `message` are kept).
 *
 * Globals themselves stay assignable (`globalThis.x = ...`), and `Date.now`, `Math.random`,
 * `performance.now` and timers work as usual. Replacing a global the sandbox uses does not
 * reach the sandbox: its own code took its references before the plugin was loaded.
 *
 * Times are nanoseconds on one monotonic clock (`now`), the same clock the shim's counters use;
 * in the simulator it is the virtual clock.
 *
 * @module
 */

/** A vCPU's identity in the scheduler: unique across all VMs of one VMM for its lifetime. */
export type VcpuId = number;

/** A slot (a pCPU the core hands out): `0 .. slots - 1`. */
export type SlotId = number;

/** Plugin parameters: from `--sched-param k=v` or the config file, and from `setParams`. */
export type SchedParams = Record<string, number | string | boolean>;

/** What the core tells a plugin about a vCPU when it joins (and again on a hot-swap). */
export interface VcpuInfo {
  /** The vCPU's scheduler id. */
  id: VcpuId;
  /** Name of its VM. */
  vm: string;
  /** Index of the vCPU inside its VM (its APIC id). */
  index: number;
  /** vCPUs in its VM. */
  vmVcpus: number;
  /** Per-VM scheduling parameters from the config (weight, cap, period, budget, ...). */
  params: SchedParams;
  /**
   * Its state when the plugin is told about it: `runnable` (wants a slot), `running` (holds
   * `slot`; only on a hot-swap) or `halted`.
   */
  state: "runnable" | "running" | "halted";
  /** The slot it holds when `state` is `running`. */
  slot?: SlotId;
  /**
   * The time the plugin is told (the core's clock, as every hook's `now`): when the vCPU joins,
   * or when a hot-swapped plugin takes over. A plugin that dates a vCPU (credit's grant time,
   * rtds's period start) starts from it. Absent only in code written before it existed.
   */
  now?: number;
}

/**
 * Why a still-runnable vCPU left its slot ({@linkcode SchedulerPlugin.onDeschedule}), or, for
 * `"revoked"`, why a vCPU chosen ahead by {@linkcode SchedulerPlugin.queueNext} comes back
 * without having run (only plugins that implement `queueNext` ever see it).
 */
export type DescheduleReason = "slice" | "preempt" | "yield" | "revoked";

/** What `pickNext` (and `queueNext`) returns: run `vcpu` on the slot for at most `sliceNs`. */
export interface PickDecision {
  /** A runnable vCPU that is not running anywhere. */
  vcpu: VcpuId;
  /** The slice; `0 < sliceNs <= ctx.maxSliceNs`. The core enforces it with the run deadline. */
  sliceNs: number;
  /**
   * The slice is reserved time, a budget the policy guarantees (rtds's budget, not its
   * extratime): while it runs, the vCPU's EMT holds its CPU at real-time priority (below the
   * scheduler's threads and the waiting EMTs), so the host's fair-class threads, V8's helpers
   * among them, wait or run on another CPU instead of taking the CPU from the guest. Without it
   * (the default), the holding EMT is a fair-class thread like them. An extension keeps the
   * grant's hold. The core bounds it: a slot that held reserved time for 900 ms of the current
   * second gets fair-class grants until the next, so the host's fair-class threads keep a tenth
   * of its CPU. Needs CAP_SYS_NICE; without it the field changes nothing.
   */
  reserved?: boolean;
}

/**
 * A policy event a plugin reports for the trace (boost start/end, priority, credit...). One kind
 * also tells the core something: `{ kind: "throttle", vcpu, value: 1 }` (or `"park"`, Xen's word)
 * says the plugin holds a runnable vCPU back on purpose (a capped vCPU out of budget), and
 * `value: 0` that it no longer does. The watchdog then does not take its wait for starvation,
 * for up to the starvation bound's cap (60 s) more; its wait counts again from the moment the
 * throttle is lifted.
 */
export interface PolicyEvent {
  /** Short event name, e.g. `"boost"`, `"credit"`, `"prio"`. */
  kind: string;
  /** The vCPU it concerns, if any. */
  vcpu?: VcpuId;
  /** A number that goes with it (credit left, new priority...). */
  value?: number;
  /** Free text. */
  detail?: string;
}

/** What `init` receives. */
export interface SchedContext {
  /** How many slots the core hands out. */
  slots: number;
  /** Plugin parameters (`--sched-param`, config file). */
  params: SchedParams;
  /** Largest slice the core accepts from `pickNext`. */
  maxSliceNs: number;
  /** The core's context-switch rate limit (Xen's ratelimit); informative. */
  ratelimitNs: number;
  /** Reports a policy event into the trace; cheap, batched with the reply. */
  report(event: PolicyEvent): void;
}

/**
 * A scheduling policy. Every hook runs in the sandbox and must return within the
 * core's budget (default 20 ms per batch of calls, the watchdog's limit); throwing, answering
 * late or returning an invalid decision ejects the plugin and the built-in round-robin takes
 * over.
 *
 * Three hooks are required: {@linkcode SchedulerPlugin.pickNext} (a slot is free),
 * {@linkcode SchedulerPlugin.onHalt} (a vCPU stopped being runnable) and
 * {@linkcode SchedulerPlugin.onWake} (it is runnable again). The others are optional.
 *
 * @example A complete policy: one FIFO queue, 10 ms slices
 * ```ts
 * import type { SchedulerPlugin, VcpuId } from "@deno-vmm/deno-vmm/plugin";
 *
 * const queue: VcpuId[] = [];
 * export default {
 *   name: "fifo",
 *   pickNext: () => queue.length ? { vcpu: queue.shift()!, sliceNs: 10e6 } : null,
 *   onHalt: (id) => void queue.splice(queue.indexOf(id) >>> 0, 1),
 *   onWake: (id) => void queue.push(id),
 *   addVcpu: (info) => void (info.state === "runnable" && queue.push(info.id)),
 *   onDeschedule: (id) => void queue.push(id),
 * } satisfies SchedulerPlugin;
 * ```
 */
export interface SchedulerPlugin {
  /**
   * `slot` is free: who runs there next. Return a runnable vCPU that is not running and its
   * slice, or `null` to leave the slot idle until the next event.
   *
   * @example The vCPU that has run least, for 5 ms
   * ```ts
   * import type { SchedulerPlugin, VcpuId } from "@deno-vmm/deno-vmm/plugin";
   *
   * const runnable = new Set<VcpuId>();
   * const ranNs = new Map<VcpuId, number>();
   * const hooks: Pick<SchedulerPlugin, "pickNext"> = {
   *   pickNext(_slot, _now) {
   *     let best: VcpuId | undefined;
   *     for (const v of runnable) {
   *       if (best === undefined || (ranNs.get(v) ?? 0) < (ranNs.get(best) ?? 0)) best = v;
   *     }
   *     if (best === undefined) return null; // nothing to run: the slot stays idle
   *     runnable.delete(best); // running now; onDeschedule or onHalt says when it stops
   *     return { vcpu: best, sliceNs: 5_000_000 };
   *   },
   * };
   * ```
   */
  pickNext(slot: SlotId, now: number): PickDecision | null;
  /**
   * The running or runnable vCPU halted (guest HLT with nothing pending): `ranNs` of guest time
   * since its grant (its guest-mode time; the core clamps it to the time it held the slot). `stolenNs` (0 when it was not running, and in the simulator) is the part
   * of the time since its grant during which other host threads held its EMT's CPU: the
   * vCPU's thread was runnable and not running (steal, in virtualisation terms). Xen charges a
   * vCPU for the time it held its pCPU (`now` minus the grant); on a host, subtract the steal:
   * that is what the built-in policies charge (Xen's meaning: time held, less steal), while
   * `ranNs` says how much of it the guest itself ran (the rest is exits and hand-offs).
   *
   * @example Charge the time it ran, and forget it until it wakes
   * ```ts
   * import type { SchedulerPlugin, VcpuId } from "@deno-vmm/deno-vmm/plugin";
   *
   * const runnable = new Set<VcpuId>();
   * const ranNs = new Map<VcpuId, number>();
   * const hooks: Pick<SchedulerPlugin, "onHalt"> = {
   *   onHalt(vcpu, _now, ran, stolen = 0) {
   *     runnable.delete(vcpu);
   *     ranNs.set(vcpu, (ranNs.get(vcpu) ?? 0) + ran - stolen);
   *   },
   * };
   * ```
   */
  onHalt(vcpu: VcpuId, now: number, ranNs: number, stolenNs?: number): void;
  /**
   * A halted vCPU has an interrupt and is runnable again. Return a slot to preempt (its
   * vCPU is descheduled with reason `"preempt"` and `pickNext` is called for it), or nothing.
   *
   * @example Runnable again; preempt slot 0 if its vCPU has run more than the waker
   * ```ts
   * import type { SchedulerPlugin, SlotId, VcpuId } from "@deno-vmm/deno-vmm/plugin";
   *
   * const runnable = new Set<VcpuId>();
   * const ranNs = new Map<VcpuId, number>();
   * const onSlot: (VcpuId | undefined)[] = [];
   * const hooks: Pick<SchedulerPlugin, "onWake"> = {
   *   onWake(vcpu, _now): SlotId | null {
   *     runnable.add(vcpu);
   *     const there = onSlot[0];
   *     if (there === undefined) return null; // slot 0 is idle: pickNext will be asked anyway
   *     return (ranNs.get(there) ?? 0) > (ranNs.get(vcpu) ?? 0) ? 0 : null;
   *   },
   * };
   * ```
   */
  onWake(vcpu: VcpuId, now: number): SlotId | void | null;
  /**
   * Deciding ahead, as sched_ext's per-CPU local dispatch queues (`scx_bpf_dispatch` to
   * `SCX_DSQ_LOCAL`): who runs on `slot` when `running`, the vCPU holding it now, leaves it.
   * Optional; a plugin without it is asked `pickNext` once a slot is free, as always.
   *
   * With it, the slot's next vCPU is known before the slot frees, so the EMT leaving guest mode
   * hands the slot straight to the chosen vCPU's EMT on the same host CPU (a grant record, then
   * a wake), and the core reads of it afterwards: the core's and the sandbox's wake-ups and
   * the decision leave the hand-off's critical path. The core checks the hand-off after the fact.
   *
   * **When the core asks.** For a slot whose vCPU runs (not being preempted) and has nothing
   * queued, while some runnable vCPU waits that is not queued anywhere, no slot is idle and no
   * slot is being preempted (its waker would otherwise be named for another slot);
   * a short while after the slot's grant (the KVM runtime waits about 50 µs, so the new vCPU
   * enters guest mode first), and again after a revocation. At most one choice per slot (a
   * local queue of depth 1).
   *
   * **What to return.** What `pickNext(slot)` would answer at the moment `running` leaves,
   * given what you know now, or `null` to decide then (the slot is then offered to `pickNext`
   * as usual). Return `null` when the answer could still change without one of the revoking
   * events below: e.g. when `running` itself would be the better choice once it is back in
   * the queue (credit: a head of lower priority than the running vCPU). The choice must be a
   * runnable vCPU that is neither running nor queued on another slot, with a valid slice, as
   * for `pickNext`; anything else ejects the plugin (nothing is lost: the fallback is told
   * every vCPU and its state).
   *
   * **What you may assume.** The chosen vCPU is dispatched as if `pickNext` had returned it:
   * take it off your queues. It takes the slot when `running` leaves it, whatever the reason
   * (slice end, preemption, yield, halt, its VM stopping), without a `pickNext` call: the
   * hooks that report the leave (`onDeschedule` or `onHalt` of `running`, or `removeVcpu`) are
   * your sign that it holds the slot from then on, unless it came back first (`"revoked"`).
   * Its later `onDeschedule`/`onHalt` report the guest time it ran from the hand-off.
   *
   * **Revocation.** The core takes a queued choice back before: any wake (before `onWake`),
   * `onTick`, `setParams`, a preemption of the slot (from `onWake`, `onTick` or a deferred
   * one), and before offering an idle slot to `pickNext` (so no slot idles while a vCPU waits
   * in a queue). The vCPU comes back through `onDeschedule(vcpu, slot, 0, "revoked", now)`:
   * put it back where it was (it never ran). A queued vCPU that halts or leaves (its VM
   * stopped) is dropped from the queue and reported by `onHalt` or `removeVcpu` alone. On a
   * hot-swap or an ejection the old plugin is not told; the new one is told the vCPU as
   * `runnable`. A revocation can lose the race with the hand-off (the leaving EMT took the
   * choice a moment before): then there is no `"revoked"`, the hand-off stands, and a new
   * plugin told of the vCPU at that moment sees it `running` on the slot, told after the
   * vCPU still holding the slot, whose leave follows.
   *
   * **Accounting stays exact.** Run time is what the EMTs report: the leaving vCPU's ends when
   * it left guest mode and the new one's starts when it enters, so `ranNs` and `stolenNs` mean
   * what they always do, and a revoked choice is charged nothing (`ranNs` 0).
   *
   * @example The head of a FIFO queue, decided while the slot is busy
   * ```ts
   * import type { SchedulerPlugin, VcpuId } from "@deno-vmm/deno-vmm/plugin";
   *
   * const queue: VcpuId[] = [];
   * const hooks: Pick<SchedulerPlugin, "queueNext" | "onDeschedule"> = {
   *   queueNext: () => queue.length ? { vcpu: queue.shift()!, sliceNs: 10e6 } : null,
   *   onDeschedule(id, _slot, _ran, reason) {
   *     if (reason === "revoked") queue.unshift(id); // it was the head: back in front
   *     else queue.push(id);
   *   },
   * };
   * ```
   */
  queueNext?(slot: SlotId, running: VcpuId, now: number): PickDecision | null;
  /** Name shown in traces and reports. */
  name?: string;
  /** Called once before anything else. */
  init?(ctx: SchedContext): void;
  /** A vCPU joins (VM created, or the plugin hot-swapped in: then every vCPU is told). */
  addVcpu?(info: VcpuInfo): void;
  /** A vCPU leaves (its VM stopped); it is neither running nor runnable any more. */
  removeVcpu?(id: VcpuId): void;
  /**
   * A still-runnable vCPU left `slot` after running `ranNs` of guest time, `stolenNs` of its
   * time since the grant lost to other host threads (see `onHalt`).
   */
  onDeschedule?(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    reason: DescheduleReason,
    now: number,
    stolenNs?: number,
  ): void;
  /**
   * The slice of the vCPU running on `slot` is about to end (the core asks about half a
   * millisecond before its deadline) and no other vCPU is waiting for a slot, so `pickNext`
   * could only choose it again or leave the slot idle. Return a new slice (ns, from `now`) to
   * let it go on running without leaving guest mode: no exit and no hand-off, as Xen's
   * schedulers simply continue the current vCPU when it is still the best choice. Return
   * `null` (or leave the hook out) to let the slice end as usual: `onDeschedule`, then
   * `pickNext`. `ranNs` is the slot time since its grant or its last extension; account it
   * here as `onDeschedule` would (the next `onDeschedule` or `onHalt` reports only the time
   * after it). `stolenNs`: of that time, what other host threads took from its EMT's CPU (see
   * `onHalt`). Validated like `pickNext`'s slice.
   */
  extendSlice?(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    now: number,
    stolenNs?: number,
  ): number | null | void;
  /** Period of `onTick` in ns (Xen credit: 10 ms); read once after `init`. */
  tickNs?: number;
  /**
   * Whether the core holds the preemptions this plugin asks for (the slot `onWake` or `onTick`
   * returns) to the context-switch rate limit (`SchedContext.ratelimitNs`, Xen's
   * `sched_ratelimit_us`): a vCPU granted less than that ago runs until it has held its slot
   * that long. `true` when absent, as Xen's credit and credit2 do; `false` preempts at once, as
   * Xen's RTDS (`rt.c` has no rate limit: a deadline cannot wait for one). Read once after
   * `init`; anything but a boolean or absent is invalid.
   */
  ratelimit?: boolean;
  /**
   * Periodic accounting; return slots to reschedule (their vCPUs are preempted).
   *
   * @example Every 10 ms, preempt the slots whose vCPU is over its share
   * ```ts
   * import type { SchedulerPlugin, SlotId } from "@deno-vmm/deno-vmm/plugin";
   *
   * const overShare = new Set<SlotId>(); // kept up to date by the other hooks
   * const hooks: Pick<SchedulerPlugin, "tickNs" | "onTick"> = {
   *   tickNs: 10_000_000,
   *   onTick: (_now) => [...overShare],
   * };
   * ```
   */
  onTick?(now: number): SlotId[] | void | null;
  /**
   * Runtime parameter change for a VM (`target` = VM name) or the policy (`target` = `"*"`).
   *
   * @example Per-VM weights, and a policy-wide slice
   * ```ts
   * import type { SchedulerPlugin } from "@deno-vmm/deno-vmm/plugin";
   *
   * const weight = new Map<string, number>();
   * let sliceNs = 10_000_000;
   * const hooks: Pick<SchedulerPlugin, "setParams"> = {
   *   setParams(target, params) {
   *     if (target === "*") sliceNs = Number(params.slice_ms ?? 10) * 1e6;
   *     else if (params.weight !== undefined) weight.set(target, Number(params.weight));
   *   },
   * };
   * ```
   */
  setParams?(target: string, params: SchedParams): void;
}

/**
 * Types a plugin object; returns it unchanged. For code that runs the plugin in-process (tests,
 * the simulator with `sandbox: false`); a plugin loaded into the sandbox can import nothing at
 * run time, so it uses `import type` and annotates its default export instead.
 *
 * @example
 * ```ts
 * import { defineScheduler } from "@deno-vmm/deno-vmm/plugin";
 *
 * const idle = defineScheduler({
 *   name: "idle",
 *   pickNext: () => null,
 *   onHalt() {},
 *   onWake() {},
 * });
 * ```
 */
export function defineScheduler<T extends SchedulerPlugin>(plugin: T): T {
  return plugin;
}
