/**
 * The synchronous interface the core uses to call a policy ({@linkcode PolicyPort}), and its
 * in-process implementation {@linkcode LocalPolicy} (the built-in fallback round-robin, and
 * plugins in the simulator when speed matters more than the sandbox). The sandboxed one is
 * `SandboxPolicy` in `sandbox.ts`.
 *
 * Every method may throw a {@linkcode PolicyFault}; the core turns it into an ejection. A port
 * checks types (a decision is `{ vcpu: integer, sliceNs: number }`); the core checks meaning.
 *
 * Void hooks (`addVcpu`, `removeVcpu`, `onHalt`, `onDeschedule`, `setParams`) may be queued by
 * a port and delivered with the next call that needs an answer (`init`, `pickNext`, `onWake`,
 * `onTick`, `extendSlice`, `queueNext`) or an explicit `flush`: the sandbox does, so that a slot change costs
 * one round trip.
 *
 * @module
 */
import type {
  DescheduleReason,
  PickDecision,
  PolicyEvent,
  SchedContext,
  SchedParams,
  SchedulerPlugin,
  SlotId,
  VcpuId,
  VcpuInfo,
} from "./contract.ts";
import {
  checkExtend,
  checkPick,
  checkRatelimit,
  checkTick,
  checkTickNs,
  checkVoid,
  checkWake,
  errorText,
  pluginDisplayName,
} from "./load.ts";
import { PolicyFault } from "./watchdog.ts";

/** What the core tells a port when it takes over (the plugin's params are the port's own). */
export interface PortInit {
  /** Slots the core hands out. */
  slots: number;
  /** Largest slice the core accepts. */
  maxSliceNs: number;
  /** The core's context-switch rate limit. */
  ratelimitNs: number;
}

/** A policy as the core sees it: synchronous calls, faults thrown as {@linkcode PolicyFault}. */
export interface PolicyPort {
  /** The plugin's name (for reports and traces). */
  readonly name: string;
  /** The tick period after `init` (ns); 0 when the plugin has no `onTick`. */
  readonly tickNs: number;
  /** Initialises the plugin (`init(ctx)`), then reads its `tickNs`. */
  init(ctx: PortInit): void;
  /** A vCPU joins (or is re-announced on a hot-swap). May be queued. */
  addVcpu(info: VcpuInfo): void;
  /** A vCPU leaves. May be queued. */
  removeVcpu(id: VcpuId): void;
  /** A vCPU halted. May be queued. */
  onHalt(vcpu: VcpuId, now: number, ranNs: number, stolenNs?: number): void;
  /** A still-runnable vCPU left a slot. May be queued. */
  onDeschedule(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    reason: DescheduleReason,
    now: number,
    stolenNs?: number,
  ): void;
  /** Runtime parameter change. May be queued. */
  setParams(target: string, params: SchedParams): void;
  /** Who runs on `slot` next: a type-checked decision or `null`. */
  pickNext(slot: SlotId, now: number): PickDecision | null;
  /** A halted vCPU woke: a slot to preempt, or `-1` for none (type-checked, not range-checked). */
  onWake(vcpu: VcpuId, now: number): SlotId;
  /** The periodic tick: slots to reschedule (type-checked, not range-checked). */
  onTick(now: number): SlotId[];
  /** Whether the plugin has `extendSlice` (known after `init`). */
  readonly canExtend: boolean;
  /** Whether the plugin has `queueNext`: it decides ahead (known after `init`). */
  readonly canQueue: boolean;
  /** Whether its preemptions wait for the rate limit (its `ratelimit`, known after `init`). */
  readonly ratelimit: boolean;
  /** Who runs on the busy `slot` when `running` leaves it: a type-checked decision or null. */
  queueNext(slot: SlotId, running: VcpuId, now: number): PickDecision | null;
  /** The running vCPU's slice is about to end with nobody waiting: a new slice, or null. */
  extendSlice(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    now: number,
    stolenNs?: number,
  ): number | null;
  /** Delivers queued void hooks now (a no-op for ports that do not queue). */
  flush(): void;
  /**
   * Policy events reported (`ctx.report`) since the last call; the core calls this after every
   * call that needed an answer. Returns the same empty array when there are none.
   */
  takeEvents(): PolicyEvent[];
  /** Releases the port (terminates a sandbox Worker). Idempotent; never throws. */
  close(): void;
}

/** Options of {@linkcode LocalPolicy}. */
export interface LocalPolicyOptions {
  /** Plugin parameters (`ctx.params`). */
  params?: SchedParams;
  /** Name to show when the plugin has none (default: `"local"`). */
  name?: string;
}

const NO_EVENTS: PolicyEvent[] = [];

/**
 * Calls a plugin object in this thread. Used for the built-in fallback (`plugins/rr.ts`), which
 * is trusted, and by the simulator with `sandbox: false`. There is no time budget: an endless
 * loop in a local plugin hangs its caller, which is why untrusted plugins run in the sandbox.
 */
export class LocalPolicy implements PolicyPort {
  /** The plugin's name. */
  readonly name: string;
  #plugin: SchedulerPlugin;
  #params: SchedParams;
  #tickNs = 0;
  #ratelimit = true;
  #events: PolicyEvent[] = NO_EVENTS;

  /**
   * Wraps a plugin object.
   *
   * @param plugin the plugin object (its hooks are called with the plugin as `this`)
   * @param options parameters and a fallback name
   */
  constructor(plugin: SchedulerPlugin, options: LocalPolicyOptions = {}) {
    this.#plugin = plugin;
    this.#params = { ...(options.params ?? {}) };
    this.name = pluginDisplayName(plugin, options.name ?? "local");
  }

  /** The tick period after `init` (ns). */
  get tickNs(): number {
    return this.#tickNs;
  }

  #fault(hook: string, e: unknown): PolicyFault {
    if (e instanceof PolicyFault) return e;
    return new PolicyFault("throw", hook, `${hook} threw ${errorText(e)}`);
  }

  #void(hook: string, r: unknown): void {
    const bad = checkVoid(hook, r);
    if (bad !== null) throw new PolicyFault("invalid", hook, bad);
  }

  /** Calls `init` with a context whose `report` collects events. */
  init(ctx: PortInit): void {
    const p = this.#plugin;
    const context: SchedContext = {
      slots: ctx.slots,
      params: { ...this.#params },
      maxSliceNs: ctx.maxSliceNs,
      ratelimitNs: ctx.ratelimitNs,
      report: (event: PolicyEvent) => {
        if (this.#events === NO_EVENTS) this.#events = [];
        this.#events.push(copyEvent(event));
      },
    };
    try {
      if (p.init) this.#void("init", p.init(context));
    } catch (e) {
      throw this.#fault("init", e);
    }
    const t = checkTickNs(p);
    if (typeof t === "string") throw new PolicyFault("invalid", "tickNs", t);
    const r = checkRatelimit(p);
    if (typeof r === "string") throw new PolicyFault("invalid", "ratelimit", r);
    this.#tickNs = t;
    this.#ratelimit = r;
  }

  /** Calls `addVcpu` with a copy of `info`. */
  addVcpu(info: VcpuInfo): void {
    if (!this.#plugin.addVcpu) return;
    try {
      this.#void("addVcpu", this.#plugin.addVcpu({ ...info, params: { ...info.params } }));
    } catch (e) {
      throw this.#fault("addVcpu", e);
    }
  }

  /** Calls `removeVcpu`. */
  removeVcpu(id: VcpuId): void {
    if (!this.#plugin.removeVcpu) return;
    try {
      this.#void("removeVcpu", this.#plugin.removeVcpu(id));
    } catch (e) {
      throw this.#fault("removeVcpu", e);
    }
  }

  /** Calls `onHalt`. */
  onHalt(vcpu: VcpuId, now: number, ranNs: number, stolenNs = 0): void {
    try {
      this.#void("onHalt", this.#plugin.onHalt(vcpu, now, ranNs, stolenNs));
    } catch (e) {
      throw this.#fault("onHalt", e);
    }
  }

  /** Calls `onDeschedule`. */
  onDeschedule(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    reason: DescheduleReason,
    now: number,
    stolenNs = 0,
  ): void {
    if (!this.#plugin.onDeschedule) return;
    try {
      this.#void(
        "onDeschedule",
        this.#plugin.onDeschedule(vcpu, slot, ranNs, reason, now, stolenNs),
      );
    } catch (e) {
      throw this.#fault("onDeschedule", e);
    }
  }

  /** Calls `setParams` with a copy of `params`. */
  setParams(target: string, params: SchedParams): void {
    if (target === "*") Object.assign(this.#params, params);
    if (!this.#plugin.setParams) return;
    try {
      this.#void("setParams", this.#plugin.setParams(target, { ...params }));
    } catch (e) {
      throw this.#fault("setParams", e);
    }
  }

  /** Calls `pickNext` and checks the type of its answer. */
  pickNext(slot: SlotId, now: number): PickDecision | null {
    let r: unknown;
    try {
      r = this.#plugin.pickNext(slot, now);
    } catch (e) {
      throw this.#fault("pickNext", e);
    }
    const d = checkPick(r);
    if (typeof d === "string") throw new PolicyFault("invalid", "pickNext", d);
    return d;
  }

  /** Calls `onWake` and checks the type of its answer. */
  onWake(vcpu: VcpuId, now: number): SlotId {
    let r: unknown;
    try {
      r = this.#plugin.onWake(vcpu, now);
    } catch (e) {
      throw this.#fault("onWake", e);
    }
    const s = checkWake(r);
    if (typeof s === "string") throw new PolicyFault("invalid", "onWake", s);
    return s;
  }

  /** Whether the plugin has `extendSlice`. */
  get canExtend(): boolean {
    return typeof this.#plugin.extendSlice === "function";
  }

  /** Whether the plugin has `queueNext`. */
  get canQueue(): boolean {
    return typeof this.#plugin.queueNext === "function";
  }

  /** Whether the plugin's preemptions wait for the rate limit (its `ratelimit`, read at `init`). */
  get ratelimit(): boolean {
    return this.#ratelimit;
  }

  /** Calls `queueNext` and checks the type of its answer (null when the hook is absent). */
  queueNext(slot: SlotId, running: VcpuId, now: number): PickDecision | null {
    if (!this.#plugin.queueNext) return null;
    let r: unknown;
    try {
      r = this.#plugin.queueNext(slot, running, now);
    } catch (e) {
      throw this.#fault("queueNext", e);
    }
    const d = checkPick(r, "queueNext");
    if (typeof d === "string") throw new PolicyFault("invalid", "queueNext", d);
    return d;
  }

  /** Calls `extendSlice` and checks the type of its answer (null when the hook is absent). */
  extendSlice(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    now: number,
    stolenNs = 0,
  ): number | null {
    if (!this.#plugin.extendSlice) return null;
    let r: unknown;
    try {
      r = this.#plugin.extendSlice(vcpu, slot, ranNs, now, stolenNs);
    } catch (e) {
      throw this.#fault("extendSlice", e);
    }
    const n = checkExtend(r);
    if (typeof n === "string") throw new PolicyFault("invalid", "extendSlice", n);
    return n;
  }

  /** Calls `onTick` and checks the type of its answer. */
  onTick(now: number): SlotId[] {
    if (!this.#plugin.onTick) return [];
    let r: unknown;
    try {
      r = this.#plugin.onTick(now);
    } catch (e) {
      throw this.#fault("onTick", e);
    }
    const s = checkTick(r);
    if (typeof s === "string") throw new PolicyFault("invalid", "onTick", s);
    return s;
  }

  /** Nothing is queued in-process. */
  flush(): void {}

  /** Events reported since the last call. */
  takeEvents(): PolicyEvent[] {
    const e = this.#events;
    this.#events = NO_EVENTS;
    return e;
  }

  /** Nothing to release. */
  close(): void {}
}

/** Copies a reported event, keeping only the contract's fields with the right types. */
export function copyEvent(e: PolicyEvent): PolicyEvent {
  const out: PolicyEvent = { kind: String(e?.kind ?? "") };
  if (typeof e?.vcpu === "number") out.vcpu = e.vcpu;
  if (typeof e?.value === "number") out.value = e.value;
  if (typeof e?.detail === "string") out.detail = e.detail;
  return out;
}
