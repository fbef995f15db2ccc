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

  #call<T>(f: () => T): T {
    const pending = this.#faults.take();
    if (pending !== null) throw new PolicyFault("throw", "(async)", pending);
    const w = this.#watch;
    w[WATCH.calls] = (w[WATCH.calls] + 1) | 0;
    Atomics.store(w, WATCH.inCall, 1);
    try {
      return f();
    } finally {
      Atomics.store(w, WATCH.inCall, 0);
    }
  }

  /**
   * Initialises the plugin. Called when the plugin is loaded (so that a failing `init` is a load
   * error, as in the per-call sandbox); the core's own call with the same values is then a no-op.
   */
  init(ctx: PortInit): void {
    const key = `${ctx.slots}/${ctx.maxSliceNs}/${ctx.ratelimitNs}`;
    if (key === this.#initKey) return;
    this.#call(() => this.#port.init(ctx));
    this.#initKey = key;
  }

  /** @inheritdoc */
  addVcpu(info: VcpuInfo): void {
    this.#call(() => this.#port.addVcpu(info));
  }

  /** @inheritdoc */
  removeVcpu(id: VcpuId): void {
    this.#call(() => this.#port.removeVcpu(id));
  }

  /** @inheritdoc */
  onHalt(vcpu: VcpuId, now: number, ranNs: number, stolenNs?: number): void {
    this.#call(() => this.#port.onHalt(vcpu, now, ranNs, stolenNs));
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
    this.#call(() => this.#port.onDeschedule(vcpu, slot, ranNs, reason, now, stolenNs));
  }

  /** @inheritdoc */
  setParams(target: string, params: SchedParams): void {
    this.#call(() => this.#port.setParams(target, params));
  }

  /** @inheritdoc */
  pickNext(slot: SlotId, now: number): PickDecision | null {
    return this.#call(() => this.#port.pickNext(slot, now));
  }

  /** @inheritdoc */
  onWake(vcpu: VcpuId, now: number): SlotId {
    return this.#call(() => this.#port.onWake(vcpu, now));
  }

  /** @inheritdoc */
  onTick(now: number): SlotId[] {
    return this.#call(() => this.#port.onTick(now));
  }

  /** @inheritdoc */
  extendSlice(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    now: number,
    stolenNs?: number,
  ): number | null {
    return this.#call(() => this.#port.extendSlice(vcpu, slot, ranNs, now, stolenNs));
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
