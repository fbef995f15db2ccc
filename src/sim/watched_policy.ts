/**
 * {@linkcode WatchedPolicy}: a plugin called in its own thread by a simulation that runs
 * inside the sandbox Worker (`sim_worker.ts`), watched from outside. Each call marks a shared
 * word on entry and clears it on return, so the parent (`sandboxed.ts`) sees a call that takes
 * longer than the budget, an endless loop included, without a round trip per call. A promise
 * the plugin started and that was rejected (a denied `fetch`, say) is a fault at its next call,
 * as in the per-call sandbox.
 *
 * @module
 */
import type {
  DescheduleReason,
  PickDecision,
  PolicyEvent,
  SchedParams,
  SlotId,
  VcpuId,
  VcpuInfo,
} from "../sched/contract.ts";
import type { PolicyPort, PortInit } from "../sched/policy_port.ts";
import { PolicyFault } from "../sched/watchdog.ts";

/** Words of the watch buffer (`Int32Array`). */
export const WATCH = {
  /** Calls entered so far (wraps). */
  calls: 0,
  /** 1 while a call is in the plugin. */
  inCall: 1,
  /** Words in the buffer. */
  length: 2,
} as const;

/** Where a sandbox's asynchronous faults are kept until the plugin's next call. */
export interface AsyncFaults {
  /** Whether a fault is waiting (cheap to read at every call). */
  readonly pending: boolean;
  /** Takes the pending fault's text, if any. */
  take(): string | null;
}

/** A {@linkcode PolicyPort} that marks every call in `watch` and raises pending async faults. */
export class WatchedPolicy implements PolicyPort {
  readonly #port: PolicyPort;
  readonly #watch: Int32Array;
  readonly #faults: AsyncFaults;
  #initKey = "";

  /**
   * Wraps `port` (a local plugin).
   *
   * @param port the plugin, called in this thread
   * @param watch the shared watch words ({@linkcode WATCH})
   * @param faults the Worker's pending asynchronous faults
   */
  constructor(port: PolicyPort, watch: Int32Array, faults: AsyncFaults) {
    this.#port = port;
    this.#watch = watch;
    this.#faults = faults;
  }

  /** The plugin's name. */
  get name(): string {
    return this.#port.name;
  }

  /** The tick period after `init` (ns). */
  get tickNs(): number {
    return this.#port.tickNs;
  }

  /** Whether the plugin has `extendSlice`. */
  get canExtend(): boolean {
    return this.#port.canExtend;
  }

  /** Whether the plugin has `queueNext`. */
  get canQueue(): boolean {
    return this.#port.canQueue;
  }

  /** Whether the plugin's preemptions wait for the rate limit. */
  get ratelimit(): boolean {
    return this.#port.ratelimit;
  }

  /** Marks a call as started; raises a pending asynchronous fault instead. */
  #enter(): void {
    if (this.#faults.pending) {
      const fault = this.#faults.take();
      if (fault !== null) throw new PolicyFault("throw", "(async)", fault);
    }
    // Plain stores: the watcher only needs to see them within a few milliseconds, and a
    // sequentially consistent store (a fence on x86) per call cost a tenth of the run's speed.
    const w = this.#watch;
    w[WATCH.calls] = (w[WATCH.calls] + 1) | 0;
    w[WATCH.inCall] = 1;
  }

  /** Marks the call as returned. */
  #leave(): void {
    this.#watch[WATCH.inCall] = 0;
  }

  /**
   * Initialises the plugin. Called when the plugin is loaded (so that a failing `init` is a load
   * error, as in the per-call sandbox); the core's own call with the same values is then a no-op.
   */
  init(ctx: PortInit): void {
    const key = `${ctx.slots}/${ctx.maxSliceNs}/${ctx.ratelimitNs}`;
    if (key === this.#initKey) return;
    this.#enter();
    try {
      this.#port.init(ctx);
    } finally {
      this.#leave();
    }
    this.#initKey = key;
  }

  /** @inheritdoc */
  addVcpu(info: VcpuInfo): void {
    this.#enter();
    try {
      this.#port.addVcpu(info);
    } finally {
      this.#leave();
    }
  }

  /** @inheritdoc */
  removeVcpu(id: VcpuId): void {
    this.#enter();
    try {
      this.#port.removeVcpu(id);
    } finally {
      this.#leave();
    }
  }

  /** @inheritdoc */
  onHalt(vcpu: VcpuId, now: number, ranNs: number, stolenNs?: number): void {
    this.#enter();
    try {
      this.#port.onHalt(vcpu, now, ranNs, stolenNs);
    } finally {
      this.#leave();
    }
  }

  /** @inheritdoc */
  onDeschedule(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    reason: DescheduleReason,
    now: number,
    stolenNs?: number,
  ): void {
    this.#enter();
    try {
      this.#port.onDeschedule(vcpu, slot, ranNs, reason, now, stolenNs);
    } finally {
      this.#leave();
    }
  }

  /** @inheritdoc */
  setParams(target: string, params: SchedParams): void {
    this.#enter();
    try {
      this.#port.setParams(target, params);
    } finally {
      this.#leave();
    }
  }

  /** @inheritdoc */
  pickNext(slot: SlotId, now: number): PickDecision | null {
    this.#enter();
    try {
      return this.#port.pickNext(slot, now);
    } finally {
      this.#leave();
    }
  }

  /** @inheritdoc */
  onWake(vcpu: VcpuId, now: number): SlotId {
    this.#enter();
    try {
      return this.#port.onWake(vcpu, now);
    } finally {
      this.#leave();
    }
  }

  /** @inheritdoc */
  queueNext(slot: SlotId, running: VcpuId, now: number): PickDecision | null {
    this.#enter();
    try {
      return this.#port.queueNext(slot, running, now);
    } finally {
      this.#leave();
    }
  }

  /** @inheritdoc */
  onTick(now: number): SlotId[] {
    this.#enter();
    try {
      return this.#port.onTick(now);
    } finally {
      this.#leave();
    }
  }

  /** @inheritdoc */
  extendSlice(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    now: number,
    stolenNs?: number,
  ): number | null {
    this.#enter();
    try {
      return this.#port.extendSlice(vcpu, slot, ranNs, now, stolenNs);
    } finally {
      this.#leave();
    }
  }

  /** @inheritdoc */
  flush(): void {
    this.#port.flush();
  }

  /** @inheritdoc */
  takeEvents(): PolicyEvent[] {
    return this.#port.takeEvents();
  }

  /** @inheritdoc */
  close(): void {
    this.#port.close();
  }
}
