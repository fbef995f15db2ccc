/**
 * The scheduler core: the trusted, synchronous, deterministic state machine between the EMTs
 * (or the simulator's model of them) and a policy plugin. It has no I/O and no timers: the
 * caller passes the time (`now`, ns) into every event method and carries out the actions each
 * one returns (`grant`: let an EMT enter guest mode on a slot until a deadline; `preempt`: poke
 * it out of guest mode), and calls {@linkcode SchedCore.advance} at
 * {@linkcode SchedCore.nextTimerAt}.
 *
 * What it guarantees, whatever the plugin does:
 *
 * - A slot holds at most one vCPU, from its grant until the EMT reports that it left guest mode
 *   (`halt`, `sliceEnd`, `preempted`, `yield`); a `preempt` does not free the slot, the EMT's
 *   acknowledgement does. So there are never more vCPUs in guest mode than slots.
 * - Only a runnable vCPU that is not running is granted, for `0 < slice <= maxSliceNs`, on a slot
 *   that exists and is free: every decision is validated, and a plugin that throws, answers with
 *   an invalid decision, times out (sandbox) or starves a runnable vCPU is ejected
 *   (sched_ext's watchdog, `kernel/sched/ext.c`; the starvation bound scales with the load
 *   between 1 s and 60 s unless fixed, see `watchdog.ts`); the built-in round-robin takes over,
 *   is told every vCPU and its state, and no vCPU is lost.
 * - Context switches are rate-limited as Xen's credit scheduler does (`csched_schedule` in
 *   `xen/common/sched/credit.c`, `sched_ratelimit_us`, default 1000 µs): a preemption asked for
 *   a vCPU that has run less than `ratelimitNs` since its grant is deferred until it has.
 *   Slice ends, halts and yields are never delayed.
 * - `pickNext` is asked for a free slot only while some vCPU is runnable and not running (else
 *   its only valid answer is `null`); every idle slot is offered once per event while vCPUs
 *   wait, so a slot a plugin left idle is retried on the next wake, tick or deschedule.
 * - Accounting adds up: a vCPU's run time is what its EMT reports, clamped to the time it held
 *   its slot, so the sum over vCPUs never exceeds `slots × elapsed`.
 * - Deciding ahead (the plugin's optional `queueNext`, sched_ext's local dispatch queue of depth
 *   1): while a slot's vCPU runs and others wait, the core asks who runs there next and
 *   publishes the answer through {@linkcode AheadDispatch}, so that the leaving EMT hands the
 *   slot over itself. The core checks after the fact: a queued vCPU is runnable and not running
 *   when queued, is granted only when the holder's leave is reported (one vCPU per slot), and
 *   its choice is revoked (the vCPU returned with `onDeschedule(..., "revoked")`) before any wake,
 *   tick, parameter change, preemption of the slot, hot-swap or ejection, and before an idle
 *   slot is offered. Whether the leaving EMT or the core made the hand-off is decided by one
 *   atomic word per slot; the core's state is the same either way.
 * - Reserved time (`PickDecision.reserved`, held real-time) is bounded: a slot that held it for
 *   {@linkcode RESERVED_MAX_NS} of the current second gets fair-class grants, and no extension
 *   of a reserved grant, until the next second; Linux's own bound (`sched_rt_runtime_us`, 950 ms
 *   a second) would otherwise be the only thing between a plugin and the host's fair threads.
 *
 * @module
 */
import rr from "../../plugins/rr.ts";
import type {
  DescheduleReason,
  PolicyEvent,
  SchedParams,
  SlotId,
  VcpuId,
  VcpuInfo,
} from "./contract.ts";
import { Histogram, type LatencySummary } from "./histogram.ts";
import { LocalPolicy, type PolicyPort } from "./policy_port.ts";
import {
  type EjectInfo,
  type EjectReason,
  PolicyFault,
  STARVATION_CAP_NS,
  type StarvationBound,
  Watchdog,
  type WatchdogOptions,
} from "./watchdog.ts";

/** Let the EMT of `vcpu` enter guest mode on `slot` until `deadline` (the slice end). */
export interface GrantAction {
  /** Kind tag. */
  type: "grant";
  /** The vCPU. */
  vcpu: VcpuId;
  /** The slot it now holds. */
  slot: SlotId;
  /** Grant generation: increases with every grant, core-wide. */
  generation: number;
  /** Slice length (ns). */
  sliceNs: number;
  /** `now + sliceNs`: when the EMT must leave guest mode and report `sliceEnd`. */
  deadline: number;
  /** Reserved time (`PickDecision.reserved`): the EMT holds its CPU at real-time priority. */
  reserved: boolean;
  /**
   * How the grant came about: `"pick"` (`pickNext`), `"ahead"` (a `queueNext` choice the core
   * grants itself) or `"handed"` (a `queueNext` choice the leaving EMT already handed the slot
   * to: the runtime must not publish or wake again; `deadline` is the hand-off's time plus the
   * slice, as the EMT computed it).
   */
  via: "pick" | "ahead" | "handed";
}

/**
 * Force the EMT of `vcpu` out of guest mode (poke it). It keeps its slot until it reports
 * `preempted` (or `halt`/`sliceEnd`, whichever happened first).
 */
export interface PreemptAction {
  /** Kind tag. */
  type: "preempt";
  /** The vCPU. */
  vcpu: VcpuId;
  /** The slot it holds. */
  slot: SlotId;
  /** The generation of the grant being revoked. */
  generation: number;
}

/**
 * Let the running `vcpu` keep its slot for a new slice (the plugin's `extendSlice`): move its
 * deadline to `deadline` without taking it out of guest mode. Its grant (generation) stays.
 */
export interface ExtendAction {
  /** Kind tag. */
  type: "extend";
  /** The vCPU. */
  vcpu: VcpuId;
  /** The slot it holds. */
  slot: SlotId;
  /** Its grant's generation (unchanged). */
  generation: number;
  /** Slot time charged for the part of the run that ended here (ns). */
  ranNs: number;
  /** Of `ranNs`, the time other host threads took from its EMT's CPU (ns; not charged). */
  stolenNs: number;
  /** New slice length (ns). */
  sliceNs: number;
  /** The deadline it replaces. */
  oldDeadline: number;
  /** `now + sliceNs`. */
  deadline: number;
  /** The grant's hold, which an extension keeps (`GrantAction.reserved`). */
  reserved: boolean;
}

/**
 * A choice `queueNext` made ahead for a busy slot, as the core publishes it
 * ({@linkcode AheadDispatch}).
 */
export interface QueuedChoice {
  /** The slot. */
  slot: SlotId;
  /** The vCPU holding it now, which hands it over when it leaves. */
  holder: VcpuId;
  /** The holder's grant generation: only the EMT holding that grant may hand the slot over. */
  holderGeneration: number;
  /** The chosen vCPU. */
  vcpu: VcpuId;
  /** The generation its grant will have (allocated when queued). */
  generation: number;
  /** Its slice (ns), counted from the hand-off. */
  sliceNs: number;
  /** Reserved time (`PickDecision.reserved`), as decided when queued. */
  reserved: boolean;
}

/**
 * Who carried out (or cancelled) a queued choice: `"core"` (the core took it: it revoked it, or
 * it grants the vCPU itself), `"handed"` (the leaving EMT already handed the slot over) or
 * `"cancelled"` (the chosen vCPU's EMT withdrew it: it halted or left while waiting).
 */
export type QueueOutcome = "core" | "handed" | "cancelled";

/**
 * How the runtime publishes choices made ahead and settles the race between the core and the
 * leaving EMT (the KVM runtime: one atomic word per slot, `dispatch_table.ts`; the simulator: its
 * model of the EMTs). Without one, the core hands over itself when the holder's leave is
 * reported (every outcome is `"core"`).
 */
export interface AheadDispatch {
  /**
   * Publishes `choice`; returns false when the chosen vCPU's EMT has withdrawn meanwhile (it
   * halted or left: its report is on the way), in which case nothing is published.
   */
  queue(choice: QueuedChoice): boolean;
  /** Takes `choice` back: `"core"` if it did, else who was first. */
  revoke(choice: QueuedChoice): QueueOutcome;
  /**
   * The holder's leave was reported (or it was removed): `"core"` if the core takes the choice
   * (it then grants the vCPU itself), else who was first.
   */
  claim(choice: QueuedChoice): QueueOutcome;
}

/** What an event method asks the runtime to do, in order. */
export type SchedAction = GrantAction | PreemptAction | ExtendAction;

/** A vCPU joining ({@linkcode SchedCore.addVcpu}): its identity and initial state. */
export interface NewVcpu {
  /** Scheduler id, unique for the core's lifetime. */
  id: VcpuId;
  /** Its VM's name. */
  vm: string;
  /** Index in its VM. */
  index: number;
  /** vCPUs in its VM. */
  vmVcpus: number;
  /** Per-VM scheduling parameters. */
  params: SchedParams;
  /** `runnable` (default: wants a slot now) or `halted` (waits for a wake). */
  state?: "runnable" | "halted";
}

/** Options of {@linkcode SchedCore}. */
export interface SchedCoreOptions {
  /** Number of slots (pCPUs) handed out. */
  slots: number;
  /** The policy in charge at start (its `init` is called by the constructor). */
  policy: PolicyPort;
  /** Context-switch rate limit (ns); default 1 ms (Xen's `sched_ratelimit_us` 1000); 0: off. */
  ratelimitNs?: number;
  /** Largest slice accepted (ns); default 100 ms. */
  maxSliceNs?: number;
  /** Starvation bound and the sandbox budget. */
  watchdog?: WatchdogOptions;
  /**
   * Creates the policy that takes over after an ejection; default: the built-in round-robin
   * (`plugins/rr.ts`) in-process. It must not fail.
   */
  fallback?: () => PolicyPort;
  /** Called after an ejection, once the fallback is in charge. */
  onEject?: (info: EjectInfo) => void;
  /** Called for every policy event a plugin reports, with the time of the call. */
  onPolicyEvent?: (event: PolicyEvent, at: number) => void;
  /** The time the core starts at (ns); default 0. */
  now?: number;
  /**
   * Ask the plugin's `extendSlice` this long before a running vCPU's slice ends, when no vCPU
   * waits for a slot (ns); default 0: never (every slice ends with an exit). The KVM runtime
   * uses `EXTEND_LEAD_NS` (`runtime_protocol.ts`).
   */
  extendLeadNs?: number;
  /**
   * At an extension: the steal of the running `vcpu` since its grant or last extension (ns),
   * its count restarted from `now`. Default: none (the simulator has no steal).
   */
  stealAtExtend?: (vcpu: VcpuId, now: number) => number;
  /**
   * Ask a plugin's `queueNext` this long after a slot's grant or after its choice was revoked
   * (ns); default 0. The KVM runtime uses `AHEAD_DELAY_NS` (`runtime_protocol.ts`), so that the
   * new vCPU enters guest mode before the core and the sandbox take the CPU to decide.
   */
  aheadDelayNs?: number;
  /** Publishes choices made ahead; default: the core hands over itself at the leave. */
  dispatch?: AheadDispatch;
  /** Ask a plugin's `queueNext` at all (default true; false: as if it had none). */
  decideAhead?: boolean;
}

/** A vCPU's scheduling state as the core sees it. */
export type VcpuState = "halted" | "runnable" | "running";

/** One vCPU's statistics ({@linkcode SchedCore.stats}). */
export interface VcpuStats {
  /** Scheduler id. */
  id: VcpuId;
  /** VM name. */
  vm: string;
  /** Index in its VM. */
  index: number;
  /** Current state. */
  state: VcpuState;
  /** Slot held when running. */
  slot?: SlotId;
  /** Guest time reported by its EMT (ns), clamped to the time it held a slot. */
  runNs: number;
  /** Time it held a slot (grant → release), ns; includes hand-off and preempt latency. */
  slotNs: number;
  /** Of `slotNs`, the time other host threads held its EMT's CPU (steal, reported by the EMT). */
  stolenNs: number;
  /** Time runnable without a slot (ns). */
  waitNs: number;
  /** The longest single wait for a slot, the current one included (ns). */
  maxWaitNs: number;
  /** Time halted (ns). */
  haltedNs: number;
  /** Grants received. */
  grants: number;
  /** Slices extended without leaving guest mode (`extendSlice`). */
  extensions: number;
  /** Of `grants`, the ones decided ahead (`queueNext`). */
  aheadGrants: number;
  /** Of `aheadGrants`, the ones the leaving EMT handed over itself. */
  handedGrants: number;
  /** Times it was preempted (a `preempt` it acknowledged). */
  preemptions: number;
  /** Wakes (halted → runnable). */
  wakes: number;
  /** Wake → grant latency. */
  wakeLatency: LatencySummary;
  /** Wake → grant latency, median (ns). */
  wakeLatencyP50Ns: number;
  /** Wake → grant latency, 99th percentile (ns). */
  wakeLatencyP99Ns: number;
}

/** One slot's statistics. */
export interface SlotStats {
  /** Slot id. */
  slot: SlotId;
  /** The vCPU holding it, or -1. */
  vcpu: VcpuId;
  /** Time held by some vCPU (ns). */
  busyNs: number;
  /** Time free (ns). */
  idleNs: number;
  /** Grants on this slot. */
  grants: number;
}

/** A snapshot of the core's accounting ({@linkcode SchedCore.stats}). */
export interface CoreStats {
  /** When it was taken (ns). */
  at: number;
  /** The policy in charge. */
  policy: string;
  /** Grants made (accepted `pickNext` decisions). */
  decisions: number;
  /** Preemptions asked for (by `onWake`/`onTick`, after rate limiting). */
  preemptRequests: number;
  /** Preemptions the rate limit deferred. */
  deferredPreemptions: number;
  /** Choices `queueNext` made. */
  queued: number;
  /** Of `queued`, the ones revoked before their hand-off (or cancelled by a withdrawing EMT). */
  revoked: number;
  /** Ejections so far. */
  ejections: EjectInfo[];
  /** The watchdog's starvation bound in force (ns; `Infinity` when off). */
  starvationBoundNs: number;
  /** Per vCPU, in order of `addVcpu`. */
  vcpus: VcpuStats[];
  /** Per slot. */
  slots: SlotStats[];
}

/**
 * Reserved time a slot may hold in each second of the clock (ns): 90 %, leaving 100 ms for the
 * host's fair-class threads on its CPU before Linux's real-time throttling (50 ms) would.
 */
export const RESERVED_MAX_NS = 900_000_000;
const RESERVED_WINDOW_NS = 1_000_000_000;

/**
 * How much longer the watchdog lets a throttled vCPU wait (a `"throttle"` or `"park"` policy
 * event with value 1): the scaled bound's cap, so that a plugin cannot hide a forgotten vCPU for
 * ever by calling it throttled.
 */
export const THROTTLE_GRACE_NS: number = STARVATION_CAP_NS;

/** The longest gap between two looks for a hand-off whose holder is late leaving (ns). */
const POLL_MAX_NS = 1_000_000;
/** The first look for a hand-off comes this many `aheadDelayNs` after the holder's deadline. */
const POLL_AFTER = 4;

const HALTED = 0;
const RUNNABLE = 1;
const RUNNING = 2;
const STATE_NAMES: VcpuState[] = ["halted", "runnable", "running"];

class VcpuRec {
  state = HALTED;
  slot = -1;
  since: number;
  grantAt = 0;
  /** When its current run began: its grant (extensions do not move it; the ratelimit counts from it). */
  runningSince = 0;
  /** The current grant's slice deadline (when running). */
  deadline = Infinity;
  extensions = 0;
  generation = 0;
  /** The slot it is queued on (`queueNext`), or -1. */
  queuedOn = -1;
  /** The plugin reported it throttled (`"throttle"` / `"park"` event, value not 0). */
  throttled = false;
  /** When it was last throttled or its throttle lifted (-Infinity: never). */
  throttleMark = -Infinity;
  aheadGrants = 0;
  handedGrants = 0;
  wokenAt = -1;
  runNs = 0;
  slotNs = 0;
  stolenNs = 0;
  waitNs = 0;
  /** The longest single wait for a slot (ns), and the current one's length so far. */
  maxWaitNs = 0;
  waitRun = 0;
  haltedNs = 0;
  grants = 0;
  preemptions = 0;
  wakes = 0;
  readonly wakeLatency = new Histogram();
  constructor(readonly info: NewVcpu, now: number) {
    this.since = now;
  }
  /** Adds the time since the last transition to the current state's bucket. */
  account(now: number): void {
    const d = now - this.since;
    if (this.state === RUNNABLE) {
      this.waitNs += d;
      this.waitRun += d;
      if (this.waitRun > this.maxWaitNs) this.maxWaitNs = this.waitRun;
    } else {
      this.waitRun = 0;
      if (this.state === HALTED) this.haltedNs += d;
      else this.slotNs += d;
    }
    this.since = now;
  }
}

class SlotRec {
  vcpu = -1;
  generation = 0;
  preempting = false;
  deferredAt = Infinity;
  deferredGen = 0;
  since: number;
  busyNs = 0;
  idleNs = 0;
  grants = 0;
  /** The choice queued ahead for it, or null. */
  queued: QueuedChoice | null = null;
  /** A revocation found it handed over already: it stands (cannot be revoked again). */
  committed = false;
  /** A preemption of the slot lost the race with its hand-off: preempt the new holder. */
  preemptAfterHandoff = false;
  /** The queued vCPU halted or left after it was handed the slot: nobody takes the slot. */
  voided = false;
  /** When the core may ask `queueNext` for it (Infinity: not until something changes). */
  aheadAt = Infinity;
  /**
   * When to look at the rings for its hand-off (just after the holder's deadline, while a choice
   * is queued): a leaving EMT that handed the slot over does not wake the core.
   */
  pollAt = Infinity;
  /** The current gap between polls (doubles while the hand-off is not seen). */
  pollStep = 0;
  /** Its grant is reserved time; since when it is counted; the second (window) and its sum. */
  reserved = false;
  reservedAt = 0;
  reservedWindow = -1;
  reservedNs = 0;
  constructor(readonly id: number, now: number) {
    this.since = now;
  }
  account(now: number): void {
    const d = now - this.since;
    if (this.vcpu === -1) this.idleNs += d;
    else this.busyNs += d;
    this.since = now;
  }
  /** Reserved time held in the current second, counted up to `now`. */
  reservedUsed(now: number): number {
    const w = Math.floor(now / RESERVED_WINDOW_NS);
    if (w !== this.reservedWindow) {
      this.reservedWindow = w;
      this.reservedNs = 0;
      if (this.reserved) this.reservedAt = Math.max(this.reservedAt, w * RESERVED_WINDOW_NS);
    }
    if (this.reserved) {
      this.reservedNs += now - this.reservedAt;
      this.reservedAt = now;
    }
    return this.reservedNs;
  }
  /** The slot's grant starts (`reserved`: real-time hold) or ends (false) at `now`. */
  holdReserved(now: number, reserved: boolean): void {
    this.reservedUsed(now);
    this.reserved = reserved;
    this.reservedAt = now;
  }
}

const NO_ACTIONS: SchedAction[] = [];
Object.freeze(NO_ACTIONS);

/** Without a runtime that hands over: the core grants every queued choice itself. */
const CORE_DISPATCH: AheadDispatch = {
  queue: () => true,
  revoke: () => "core",
  claim: () => "core",
};

/**
 * The scheduler core. Every event method takes the current time and returns the actions to carry
 * out, in order (the same frozen empty array when there are none). Time must not go backwards;
 * an earlier `now` is treated as the latest one seen.
 */
export class SchedCore {
  readonly #ratelimitNs: number;
  readonly #maxSliceNs: number;
  readonly #extendLeadNs: number;
  readonly #slots: SlotRec[];
  readonly #vcpus = new Map<VcpuId, VcpuRec>();
  readonly #watchdog: Watchdog;
  readonly #fallback: () => PolicyPort;
  readonly #onEject?: (info: EjectInfo) => void;
  readonly #onPolicyEvent?: (event: PolicyEvent, at: number) => void;
  readonly #stealAtExtend?: (vcpu: VcpuId, now: number) => number;
  readonly #aheadDelayNs: number;
  readonly #decideAhead: boolean;
  readonly #dispatch: AheadDispatch;
  readonly #ejections: EjectInfo[] = [];
  /** vCPUs queued ahead on a slot (they are runnable and counted in `#waiting`). */
  #queuedCount = 0;
  #queuedTotal = 0;
  #revokedTotal = 0;
  /** Something the plugin's choices depend on changed: slots without a choice may ask again. */
  #changed = false;
  #port: PolicyPort;
  #isFallback = false;
  #portEpoch = 0;
  #adoptedAt: number;
  #tickNs = 0;
  #tickAt = Infinity;
  #now: number;
  #out: SchedAction[] | null = null;
  #waiting = 0;
  #idle: number;
  #deferred = 0;
  #generation = 0;
  #decisions = 0;
  #preemptRequests = 0;
  #deferredPreemptions = 0;
  #closed = false;

  /**
   * Creates the core and initialises `options.policy` (`init`). If that fails, the fallback
   * takes over at once and the ejection is reported.
   */
  constructor(options: SchedCoreOptions) {
    const slots = options.slots;
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`slots must be >= 1: ${slots}`);
    const now = options.now ?? 0;
    this.#now = now;
    this.#adoptedAt = now;
    this.#ratelimitNs = Math.max(0, options.ratelimitNs ?? 1_000_000);
    this.#maxSliceNs = options.maxSliceNs ?? 100_000_000;
    this.#extendLeadNs = Math.max(0, options.extendLeadNs ?? 0);
    if (!(this.#maxSliceNs > 0)) throw new RangeError(`maxSliceNs must be > 0`);
    this.#slots = Array.from({ length: slots }, (_, i) => new SlotRec(i, now));
    this.#idle = slots;
    this.#watchdog = new Watchdog(options.watchdog, now, slots);
    this.#fallback = options.fallback ?? (() => new LocalPolicy(rr, { name: "rr" }));
    this.#onEject = options.onEject;
    this.#onPolicyEvent = options.onPolicyEvent;
    this.#stealAtExtend = options.stealAtExtend;
    this.#aheadDelayNs = Math.max(0, options.aheadDelayNs ?? 0);
    this.#decideAhead = options.decideAhead !== false;
    this.#dispatch = options.dispatch ?? CORE_DISPATCH;
    this.#port = options.policy;
    this.#adopt(options.policy, now, false);
    this.#events();
  }

  // ---------------------------------------------------------------- queries

  /** The name of the policy in charge. */
  get policyName(): string {
    return this.#port.name;
  }

  /** Whether the built-in fallback is in charge (after an ejection). */
  get onFallback(): boolean {
    return this.#isFallback;
  }

  /** Number of slots. */
  get slots(): number {
    return this.#slots.length;
  }

  /** The last grant generation handed out. */
  get generation(): number {
    return this.#generation;
  }

  /** Ejections so far. */
  get ejections(): readonly EjectInfo[] {
    return this.#ejections;
  }

  /** The context-switch rate limit (ns). */
  get ratelimitNs(): number {
    return this.#ratelimitNs;
  }

  /** The largest slice accepted (ns). */
  get maxSliceNs(): number {
    return this.#maxSliceNs;
  }

  /**
   * The watchdog's starvation bound in force and what it was computed from: the fixed
   * `watchdog.starvationNs`, or the bound scaled with the load (`watchdog.ts`).
   */
  get starvationBound(): StarvationBound {
    return this.#watchdog.bound();
  }

  /** Whether `id` is a known vCPU. */
  hasVcpu(id: VcpuId): boolean {
    return this.#vcpus.has(id);
  }

  /** A vCPU's state and the slot it holds (-1 when not running); `null` if unknown. */
  vcpuState(id: VcpuId): { state: VcpuState; slot: SlotId } | null {
    const v = this.#vcpus.get(id);
    return v ? { state: STATE_NAMES[v.state], slot: v.slot } : null;
  }

  /** A copy of a vCPU's wake → grant latency histogram (to merge per VM); `null` if unknown. */
  wakeHistogram(id: VcpuId): Histogram | null {
    const v = this.#vcpus.get(id);
    if (!v) return null;
    const h = new Histogram();
    h.merge(v.wakeLatency);
    return h;
  }

  /** The vCPU holding `slot`, or -1. */
  slotHolder(slot: SlotId): VcpuId {
    return this.#slots[slot]?.vcpu ?? -1;
  }

  /** Number of vCPUs holding a slot (never more than `slots`). */
  runningCount(): number {
    return this.#slots.length - this.#idle;
  }

  /**
   * The earliest time `advance` has work (tick, deferred preemption, a slice to extend,
   * watchdog); or Infinity.
   */
  nextTimerAt(): number {
    let t = this.#tickAt;
    if (this.#deferred > 0) {
      for (const s of this.#slots) if (s.deferredAt < t) t = s.deferredAt;
    }
    if (this.#extending()) {
      for (const s of this.#slots) {
        const at = this.#extendAt(s);
        if (at < t) t = at;
      }
    }
    if (this.#aheadOpen()) {
      for (const s of this.#slots) {
        if (s.aheadAt < t && this.#aheadSlot(s)) t = s.aheadAt;
      }
    }
    if (this.#queuedCount > 0) { for (const s of this.#slots) if (s.pollAt < t) t = s.pollAt; }
    const w = this.#watchdog.nextCheckAt();
    return w < t ? w : t;
  }

  /**
   * The time a running vCPU's EMT report is clamped to: since its grant or its last slice
   * extension (ns); 0 when it is not running.
   */
  heldNs(id: VcpuId, now: number): number {
    const v = this.#vcpus.get(id);
    return v && v.state === RUNNING ? Math.max(0, Math.max(now, this.#now) - v.grantAt) : 0;
  }

  /** A snapshot of the accounting up to `now` (does not change state). */
  stats(now: number = this.#now): CoreStats {
    const at = Math.max(now, this.#now);
    const vcpus: VcpuStats[] = [];
    for (const v of this.#vcpus.values()) {
      const d = at - v.since;
      const wl = v.wakeLatency.summary();
      vcpus.push({
        id: v.info.id,
        vm: v.info.vm,
        index: v.info.index,
        state: STATE_NAMES[v.state],
        ...(v.state === RUNNING ? { slot: v.slot } : {}),
        runNs: v.runNs,
        slotNs: v.slotNs + (v.state === RUNNING ? d : 0),
        stolenNs: v.stolenNs,
        waitNs: v.waitNs + (v.state === RUNNABLE ? d : 0),
        maxWaitNs: v.state === RUNNABLE ? Math.max(v.maxWaitNs, v.waitRun + d) : v.maxWaitNs,
        haltedNs: v.haltedNs + (v.state === HALTED ? d : 0),
        grants: v.grants,
        extensions: v.extensions,
        aheadGrants: v.aheadGrants,
        handedGrants: v.handedGrants,
        preemptions: v.preemptions,
        wakes: v.wakes,
        wakeLatency: wl,
        wakeLatencyP50Ns: wl.p50,
        wakeLatencyP99Ns: wl.p99,
      });
    }
    const slots = this.#slots.map((s) => {
      const d = at - s.since;
      return {
        slot: s.id,
        vcpu: s.vcpu,
        busyNs: s.busyNs + (s.vcpu !== -1 ? d : 0),
        idleNs: s.idleNs + (s.vcpu === -1 ? d : 0),
        grants: s.grants,
      };
    });
    return {
      at,
      policy: this.#port.name,
      decisions: this.#decisions,
      preemptRequests: this.#preemptRequests,
      deferredPreemptions: this.#deferredPreemptions,
      queued: this.#queuedTotal,
      revoked: this.#revokedTotal,
      ejections: [...this.#ejections],
      starvationBoundNs: this.#watchdog.starvationNs,
      vcpus,
      slots,
    };
  }

  // ---------------------------------------------------------------- events

  /** A vCPU joins (VM start). Throws if the id is taken. */
  addVcpu(info: NewVcpu, now: number): SchedAction[] {
    if (this.#vcpus.has(info.id)) throw new Error(`vCPU ${info.id} is already known`);
    this.#begin(now);
    const v = new VcpuRec({ ...info, params: { ...info.params } }, this.#now);
    if (info.state !== "halted") {
      v.state = RUNNABLE;
      this.#waiting++;
    }
    this.#vcpus.set(info.id, v);
    this.#changed = true;
    try {
      this.#port.addVcpu(this.#infoOf(v));
    } catch (e) {
      this.#fault(e);
    }
    this.#fill();
    return this.#end();
  }

  /**
   * A vCPU leaves (its VM stopped; its EMT is gone). Its slot, if any, is freed without
   * `onDeschedule`; the plugin gets `removeVcpu`.
   */
  removeVcpu(id: VcpuId, now: number): SchedAction[] {
    const v = this.#vcpus.get(id);
    if (!v) return NO_ACTIONS;
    this.#begin(now);
    this.#changed = true;
    const slot = v.slot;
    if (v.state === RUNNING) this.#release(v, 0);
    else if (v.state === RUNNABLE) {
      if (v.queuedOn >= 0) this.#dropQueued(v);
      this.#waiting--;
    }
    v.account(this.#now);
    this.#vcpus.delete(id);
    try {
      this.#port.removeVcpu(id);
    } catch (e) {
      this.#fault(e);
    }
    if (slot >= 0) this.#takeQueued(this.#slots[slot], this.#now);
    this.#fill();
    return this.#end();
  }

  /**
   * A halted vCPU has an interrupt: it is runnable again. The plugin's `onWake` may name a slot
   * to preempt (rate-limited); idle slots are then offered. A wake for a vCPU that is not halted
   * is ignored (the interrupt will be seen when it runs).
   */
  wake(id: VcpuId, now: number): SchedAction[] {
    const v = this.#vcpus.get(id);
    if (!v || v.state !== HALTED) return NO_ACTIONS;
    this.#begin(now);
    v.account(this.#now);
    v.state = RUNNABLE;
    v.wokenAt = this.#now;
    v.wakes++;
    this.#waiting++;
    this.#changed = true;
    let slot = -1;
    const epoch = this.#portEpoch;
    // The waker may be a better next choice than any queued one: they come back first.
    this.#revokeAll(true);
    if (epoch === this.#portEpoch) {
      try {
        slot = this.#port.onWake(id, this.#now);
      } catch (e) {
        this.#fault(e);
      }
    }
    if (epoch === this.#portEpoch) {
      if (slot >= this.#slots.length || slot < -1) {
        this.#eject(
          "invalid",
          `onWake(vCPU ${id}) returned slot ${slot}, but slots are 0..${this.#slots.length - 1}`,
        );
      } else if (slot >= 0) {
        this.#requestPreempt(slot);
      }
    }
    this.#fill();
    return this.#end();
  }

  /**
   * The running (or runnable) vCPU halted after running `ranNs` since its grant, of which other
   * host threads held its EMT's CPU for `stolenNs`.
   */
  halt(id: VcpuId, now: number, ranNs: number, stolenNs = 0, leftAt = now): SchedAction[] {
    const v = this.#vcpus.get(id);
    if (!v || v.state === HALTED) return NO_ACTIONS;
    this.#begin(now);
    this.#changed = true;
    let ran = 0, stolen = 0;
    const slot = v.slot;
    if (v.state === RUNNING) {
      stolen = this.#stolen(v, stolenNs);
      ran = this.#release(v, ranNs);
    } else {
      if (v.queuedOn >= 0) this.#dropQueued(v);
      this.#waiting--;
    }
    v.account(this.#now);
    v.state = HALTED;
    v.wokenAt = -1;
    try {
      this.#port.onHalt(id, this.#now, ran, stolen);
    } catch (e) {
      this.#fault(e);
    }
    if (slot >= 0) this.#takeQueued(this.#slots[slot], leftAt);
    this.#fill();
    return this.#end();
  }

  /**
   * The running vCPU's slice ended (its EMT left guest mode at the deadline). `leftAt`: when
   * the EMT left (its report's time, default `now`): a vCPU queued ahead for the slot was handed
   * it then.
   */
  sliceEnd(id: VcpuId, now: number, ranNs: number, stolenNs = 0, leftAt = now): SchedAction[] {
    return this.#deschedule(id, now, ranNs, stolenNs, "slice", leftAt);
  }

  /** The EMT acknowledged a `preempt`: it left guest mode after `ranNs` (`leftAt`: see `sliceEnd`). */
  preempted(id: VcpuId, now: number, ranNs: number, stolenNs = 0, leftAt = now): SchedAction[] {
    return this.#deschedule(id, now, ranNs, stolenNs, "preempt", leftAt);
  }

  /** The running vCPU gave up its slot voluntarily, e.g. a pause-loop exit (`leftAt`: see `sliceEnd`). */
  yield(id: VcpuId, now: number, ranNs: number, stolenNs = 0, leftAt = now): SchedAction[] {
    return this.#deschedule(id, now, ranNs, stolenNs, "yield", leftAt);
  }

  /** Timers: the plugin's tick, deferred preemptions, the watchdog's starvation check. */
  advance(now: number): SchedAction[] {
    this.#begin(now);
    const t = this.#now;
    // The runtime read the rings before calling. A choice still queued past its poll: the holder
    // is late leaving (or its EMT late reporting); look again, backing off to POLL_MAX_NS.
    for (const s of this.#slots) {
      if (s.pollAt > t) continue;
      s.pollStep = Math.min(2 * s.pollStep, POLL_MAX_NS);
      s.pollAt = s.queued ? t + s.pollStep : Infinity;
    }
    if (t >= this.#tickAt) {
      this.#tickAt += this.#tickNs;
      if (this.#tickAt <= t) this.#tickAt = t + this.#tickNs;
      let slots: SlotId[] = [];
      const epoch = this.#portEpoch;
      this.#changed = true;
      // Accounting may reorder the plugin's queues: choices made ahead come back first.
      this.#revokeAll(true);
      try {
        if (epoch === this.#portEpoch) slots = this.#port.onTick(t);
      } catch (e) {
        this.#fault(e);
      }
      if (epoch === this.#portEpoch) {
        for (const s of slots) {
          if (s < 0 || s >= this.#slots.length) {
            this.#eject(
              "invalid",
              `onTick returned slot ${s}, but slots are 0..${this.#slots.length - 1}`,
            );
            break;
          }
          this.#requestPreempt(s);
          if (epoch !== this.#portEpoch) break;
        }
      }
    }
    if (this.#deferred > 0) {
      for (const s of this.#slots) {
        if (s.deferredAt <= t) {
          s.deferredAt = Infinity;
          this.#deferred--;
          if (s.vcpu !== -1 && s.deferredGen === s.generation && !s.preempting) {
            this.#revokeChoice(s, true);
            this.#issuePreempt(s);
          }
        }
      }
    }
    if (this.#extending()) {
      for (const s of this.#slots) {
        if (this.#extendAt(s) <= t) this.#extend(s);
        if (!this.#extending()) break;
      }
    }
    if (this.#watchdog.due(t)) {
      this.#watchdog.noteLoad(t, this.#runnable());
      // The fallback is not judged (there is nothing to fall back to), but the check is re-armed.
      const starving = this.#watchdog.check(t, this.#isFallback ? [] : this.#waitingVcpus());
      if (starving) {
        const v = this.#vcpus.get(starving.id)!;
        const waited = (t - starving.waitingSince) / 1e6;
        this.#eject(
          "starvation",
          `vCPU ${v.info.id} (${v.info.vm}#${v.info.index}) was runnable for ${
            waited.toFixed(1)
          } ms without a slot (${this.#watchdog.describe()})`,
        );
      }
    }
    this.#fill();
    this.#askAhead(t);
    return this.#end();
  }

  /** Ejects the current plugin by hand; the fallback takes over (`reason` is the detail). */
  eject(reason: string, now: number): SchedAction[] {
    this.#begin(now);
    this.#eject("manual", reason || "manual ejection");
    this.#fill();
    return this.#end();
  }

  /**
   * Hot-swaps the policy: the old port is closed, the new one is initialised and told every
   * vCPU with its current state (running ones keep their slot until their slice ends). If the
   * new plugin fails while being told, it is ejected and the fallback takes over.
   */
  swapPolicy(port: PolicyPort, now: number): SchedAction[] {
    this.#begin(now);
    this.#port.close();
    this.#adopt(port, this.#now, false);
    this.#fill();
    return this.#end();
  }

  /** Runtime parameter change (`target`: a VM name or `"*"`). Idle slots are offered after. */
  setParams(target: string, params: SchedParams, now: number): SchedAction[] {
    this.#begin(now);
    if (target !== "*") {
      for (const v of this.#vcpus.values()) {
        if (v.info.vm === target) Object.assign(v.info.params, params);
      }
    }
    this.#changed = true;
    const epoch = this.#portEpoch;
    // New weights or caps may change what runs next: choices made ahead come back first.
    this.#revokeAll(true);
    try {
      if (epoch === this.#portEpoch) this.#port.setParams(target, params);
    } catch (e) {
      this.#fault(e);
    }
    this.#fill();
    return this.#end();
  }

  /** Closes the policy port (terminates a sandbox Worker). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#port.close();
  }

  // ---------------------------------------------------------------- internals

  #begin(now: number): void {
    if (now > this.#now) this.#now = now;
    this.#out = null;
  }

  #end(): SchedAction[] {
    if (this.#changed) {
      this.#changed = false;
      const at = this.#now + this.#aheadDelayNs;
      for (const s of this.#slots) if (s.queued === null && s.aheadAt === Infinity) s.aheadAt = at;
    }
    this.#events();
    const out = this.#out;
    this.#out = null;
    return out ?? NO_ACTIONS;
  }

  #push(a: SchedAction): void {
    (this.#out ??= []).push(a);
  }

  #infoOf(v: VcpuRec): VcpuInfo {
    const i = v.info;
    const info: VcpuInfo = {
      id: i.id,
      vm: i.vm,
      index: i.index,
      vmVcpus: i.vmVcpus,
      params: { ...i.params },
      state: STATE_NAMES[v.state] as VcpuInfo["state"],
      now: this.#now,
    };
    if (v.state === RUNNING) info.slot = v.slot;
    else if (v.queuedOn >= 0 && this.#slots[v.queuedOn].committed) {
      // Its hand-off already happened (a revocation lost the race): it holds the slot.
      info.state = "running";
      info.slot = v.queuedOn;
    }
    return info;
  }

  #events(): void {
    const evs = this.#port.takeEvents();
    if (evs.length === 0) return;
    for (const e of evs) {
      if ((e.kind === "throttle" || e.kind === "park") && e.vcpu !== undefined) {
        // Parked by policy (a cap): the watchdog gives its wait THROTTLE_GRACE_NS more.
        const v = this.#vcpus.get(e.vcpu);
        if (v && v.throttled !== (e.value !== 0)) {
          v.throttled = e.value !== 0;
          v.throttleMark = this.#now; // a repeat does not move it
        }
      }
      this.#onPolicyEvent?.(e, this.#now);
    }
  }

  /** Runnable vCPUs: the ones waiting for a slot and the ones holding one. */
  #runnable(): number {
    return this.#waiting + this.#slots.length - this.#idle;
  }

  *#waitingVcpus(): Iterable<{ id: number; waitingSince: number }> {
    for (const v of this.#vcpus.values()) {
      if (v.state === RUNNABLE) {
        // A vCPU the plugin throttles (parks by policy) is not starving: its wait counts from
        // THROTTLE_GRACE_NS after the throttle, or from when it was lifted.
        const mark = v.throttled ? v.throttleMark + THROTTLE_GRACE_NS : v.throttleMark;
        yield { id: v.info.id, waitingSince: Math.max(v.since, this.#adoptedAt, mark) };
      }
    }
  }

  /**
   * The steal the EMT reported, bounded by the time since the grant or last extension (an
   * extension charged what came before it).
   */
  #stolen(v: VcpuRec, stolenNs: number): number {
    const held = this.#now - v.grantAt;
    const stolen = stolenNs > 0 ? (stolenNs < held ? stolenNs : Math.max(0, held)) : 0;
    v.stolenNs += stolen;
    return stolen;
  }

  /** Frees `v`'s slot; returns the accepted run time. */
  #release(v: VcpuRec, ranNs: number): number {
    const s = this.#slots[v.slot];
    const held = this.#now - v.grantAt;
    // What the slot was held for counts toward the watchdog's round, overrun included.
    this.#watchdog.noteSlice(this.#now, held);
    const ran = ranNs > 0 ? (ranNs < held ? ranNs : held) : 0;
    v.runNs += ran;
    s.account(this.#now);
    s.holdReserved(this.#now, false);
    s.vcpu = -1;
    s.preempting = false;
    if (s.deferredAt !== Infinity) {
      s.deferredAt = Infinity;
      this.#deferred--;
    }
    this.#idle++;
    v.slot = -1;
    return ran;
  }

  #deschedule(
    id: VcpuId,
    now: number,
    ranNs: number,
    stolenNs: number,
    reason: DescheduleReason,
    leftAt: number,
  ): SchedAction[] {
    const v = this.#vcpus.get(id);
    if (!v || v.state !== RUNNING) return NO_ACTIONS;
    this.#begin(now);
    this.#changed = true;
    const slot = v.slot;
    const stolen = this.#stolen(v, stolenNs);
    const ran = this.#release(v, ranNs);
    v.account(this.#now);
    v.state = RUNNABLE;
    this.#waiting++;
    if (reason === "preempt") v.preemptions++;
    const epoch = this.#portEpoch;
    try {
      this.#port.onDeschedule(id, slot, ran, reason, this.#now, stolen);
    } catch (e) {
      this.#fault(e);
    }
    // A choice made ahead takes the slot (an ejection above does not undo a hand-off made).
    this.#takeQueued(this.#slots[slot], leftAt);
    if (epoch === this.#portEpoch && this.#slots[slot].vcpu === -1) this.#offer(slot);
    this.#fill();
    return this.#end();
  }

  /** Asks the plugin who runs on the free `slot`; validates and grants. */
  #offer(slot: number): void {
    if (this.#waiting - this.#queuedCount <= 0) return;
    const epoch = this.#portEpoch;
    let d: { vcpu: number; sliceNs: number; reserved?: boolean } | null = null;
    try {
      d = this.#port.pickNext(slot, this.#now);
    } catch (e) {
      this.#fault(e);
      return;
    }
    if (epoch !== this.#portEpoch) return;
    if (d === null) return;
    const v = this.#vcpus.get(d.vcpu);
    const bad = this.#invalid(v, d);
    if (bad !== null) {
      this.#eject("invalid", `pickNext(slot ${slot}) ${bad}`);
      return;
    }
    this.#grant(v!, slot, d.sliceNs, d.reserved === true);
  }

  /** What is wrong with choosing `v` (the vCPU `d.vcpu`) for `d.sliceNs`, or null. */
  #invalid(v: VcpuRec | undefined, d: { vcpu: number; sliceNs: number }): string | null {
    if (!v) return `chose vCPU ${d.vcpu}, which does not exist`;
    if (v.state === HALTED) return `chose vCPU ${d.vcpu}, which is halted`;
    if (v.state === RUNNING) {
      return `chose vCPU ${d.vcpu}, which is already running on slot ${v.slot}`;
    }
    if (v.queuedOn >= 0) {
      return `chose vCPU ${d.vcpu}, which is already queued on slot ${v.queuedOn}`;
    }
    if (!(d.sliceNs > 0)) return `gave vCPU ${d.vcpu} a slice of ${d.sliceNs} ns (must be > 0)`;
    if (d.sliceNs > this.#maxSliceNs) {
      return `gave vCPU ${d.vcpu} a slice of ${d.sliceNs} ns (max ${this.#maxSliceNs})`;
    }
    return null;
  }

  /**
   * Grants `slot` to `v`. `ahead`: a choice made ahead, with the generation allocated when it
   * was queued; handed over by the leaving EMT at `at` (its run starts then, its deadline is
   * `at + sliceNs`, its hold as queued) or by the core now.
   */
  #grant(
    v: VcpuRec,
    slot: number,
    sliceNs: number,
    reserved = false,
    ahead?: { generation: number; handed: boolean; at: number },
  ): void {
    const s = this.#slots[slot];
    const now = this.#now;
    const handed = ahead?.handed === true;
    // Over the slot's reserved time for this second: a fair-class grant (see RESERVED_MAX_NS).
    // A hand-off already made keeps the hold it was queued with.
    if (!handed && reserved && s.reservedUsed(now) >= RESERVED_MAX_NS) reserved = false;
    s.holdReserved(now, reserved);
    // Its run began at the hand-off (never before the core's last event for it).
    const at = handed ? Math.min(now, Math.max(ahead!.at, v.since)) : now;
    v.account(now);
    this.#waiting--;
    v.state = RUNNING;
    v.slot = slot;
    v.grantAt = at;
    v.runningSince = at;
    v.deadline = at + sliceNs;
    v.grants++;
    if (ahead) {
      v.aheadGrants++;
      if (handed) v.handedGrants++;
    }
    if (v.wokenAt >= 0) {
      v.wakeLatency.record(Math.max(0, at - v.wokenAt));
      v.wokenAt = -1;
    }
    s.account(now);
    s.vcpu = v.info.id;
    s.grants++;
    s.preempting = false;
    s.aheadAt = now + this.#aheadDelayNs;
    const generation = ahead ? ahead.generation : ++this.#generation;
    s.generation = generation;
    v.generation = generation;
    this.#idle--;
    this.#decisions++;
    this.#watchdog.noteSlice(now, sliceNs);
    this.#watchdog.noteLoad(now, this.#runnable());
    this.#push({
      type: "grant",
      vcpu: v.info.id,
      slot,
      generation,
      sliceNs,
      // A hand-off's deadline is exactly the EMT's (`at + sliceNs`, the same double).
      deadline: handed ? ahead!.at + sliceNs : now + sliceNs,
      reserved,
      via: !ahead ? "pick" : handed ? "handed" : "ahead",
    });
  }

  // ------------------------------------------------------------ deciding ahead

  /** Whether a slot may be asked `queueNext` at all now (the plugin has it; vCPUs wait; no slot idles). */
  #aheadOpen(): boolean {
    return this.#decideAhead && this.#port.canQueue && this.#idle === 0 &&
      this.#waiting - this.#queuedCount > 0;
  }

  /** Whether `s` may be asked (busy, not being preempted, nothing queued). */
  #aheadSlot(s: SlotRec): boolean {
    return s.vcpu !== -1 && s.queued === null && !s.preempting && s.deferredAt === Infinity;
  }

  /**
   * Asks `queueNext` for every slot that is due; validates and publishes the answers. Not while
   * a slot is being preempted (or will be, rate-limited): the plugin asked for that slot for a
   * waiting vCPU, and a choice made for another slot now could take that very vCPU, leaving the
   * preempted slot to someone else. Asked again once the preempted vCPU has left.
   */
  #askAhead(now: number): void {
    if (this.#slots.some((s) => s.preempting || s.deferredAt !== Infinity)) {
      for (const s of this.#slots) if (s.aheadAt <= now) s.aheadAt = Infinity;
      return;
    }
    for (const s of this.#slots) {
      if (!this.#aheadOpen()) return;
      if (s.aheadAt > now || !this.#aheadSlot(s)) continue;
      s.aheadAt = Infinity; // until something changes, or its choice is taken or revoked
      const epoch = this.#portEpoch;
      let d: { vcpu: number; sliceNs: number; reserved?: boolean } | null = null;
      try {
        d = this.#port.queueNext(s.id, s.vcpu, now);
      } catch (e) {
        this.#fault(e);
        return;
      }
      if (epoch !== this.#portEpoch) return;
      if (d === null) continue;
      const v = this.#vcpus.get(d.vcpu);
      let bad = this.#invalid(v, d);
      if (bad === null && !this.#aheadSlot(s)) bad = `answered for a slot that changed meanwhile`;
      if (bad !== null) {
        this.#eject("invalid", `queueNext(slot ${s.id}) ${bad}`);
        return;
      }
      let reserved = d.reserved === true;
      if (reserved && s.reservedUsed(now) >= RESERVED_MAX_NS) reserved = false;
      const choice: QueuedChoice = {
        slot: s.id,
        holder: s.vcpu,
        holderGeneration: s.generation,
        vcpu: d.vcpu,
        generation: ++this.#generation,
        sliceNs: d.sliceNs,
        reserved,
      };
      this.#queuedTotal++;
      if (!this.#dispatch.queue(choice)) {
        // Its EMT withdrew meanwhile (its halt is on the way): the plugin gets it back.
        this.#revokedTotal++;
        this.#tellRevoked(choice);
        if (epoch !== this.#portEpoch) return;
        continue;
      }
      s.queued = choice;
      s.committed = false;
      s.voided = false;
      const deadline = this.#vcpus.get(s.vcpu)!.deadline;
      // The first look comes once the hand-off at the deadline is over (the next vCPU in guest
      // mode), so that the core, above it on slot 0's CPU, does not land in the middle of it.
      s.pollStep = Math.max(POLL_AFTER * this.#aheadDelayNs, 1);
      s.pollAt = Math.max(deadline, now) + s.pollStep;
      v!.queuedOn = s.id;
      this.#queuedCount++;
    }
  }

  /** Forgets `s`'s choice (its vCPU is no longer queued). */
  #unqueue(s: SlotRec): void {
    const c = s.queued;
    if (!c) return;
    const v = this.#vcpus.get(c.vcpu);
    if (v && v.queuedOn === s.id) {
      v.queuedOn = -1;
      this.#queuedCount--;
    }
    s.queued = null;
    s.committed = false;
    s.voided = false;
    s.preemptAfterHandoff = false;
    s.pollAt = Infinity;
  }

  #tellRevoked(c: QueuedChoice): void {
    try {
      this.#port.onDeschedule(c.vcpu, c.slot, 0, "revoked", this.#now, 0);
    } catch (e) {
      this.#fault(e);
    }
  }

  /**
   * Takes `s`'s choice back (`tell`: the plugin gets it through `onDeschedule(..., "revoked")`).
   * Returns false when the hand-off already happened (the choice stands).
   */
  #revokeChoice(s: SlotRec, tell: boolean): boolean {
    const c = s.queued;
    if (!c) return true;
    if (s.committed) return false;
    if (this.#dispatch.revoke(c) === "handed") {
      s.committed = true;
      return false;
    }
    this.#unqueue(s);
    this.#revokedTotal++;
    s.aheadAt = this.#now + this.#aheadDelayNs;
    if (tell) this.#tellRevoked(c);
    return true;
  }

  /** Takes every choice back (those whose hand-off happened stand). */
  #revokeAll(tell: boolean): void {
    if (this.#queuedCount === 0) return;
    const epoch = this.#portEpoch;
    for (const s of this.#slots) {
      if (s.queued !== null) this.#revokeChoice(s, tell && epoch === this.#portEpoch);
    }
  }

  /** The queued `v` halts or leaves: its choice is dropped (the plugin hears `onHalt`/`removeVcpu`). */
  #dropQueued(v: VcpuRec): void {
    const s = this.#slots[v.queuedOn];
    v.queuedOn = -1;
    this.#queuedCount--;
    if (!s.committed && this.#dispatch.revoke(s.queued!) !== "handed") {
      s.queued = null;
      s.pollAt = Infinity;
      s.aheadAt = this.#now + this.#aheadDelayNs;
      this.#revokedTotal++;
      return;
    }
    // Handed over already: its EMT gives the slot back with this report (or is gone); the
    // holder's leave settles the slot, which nobody takes then.
    s.committed = true;
    s.voided = true;
  }

  /**
   * The holder of `s` left it (reported at `leftAt`, or removed): its choice, if any, takes the
   * slot, granted by the core or already handed over by the leaving EMT.
   */
  #takeQueued(s: SlotRec, leftAt: number): void {
    const c = s.queued;
    if (!c || s.vcpu !== -1) return;
    const outcome = this.#dispatch.claim(c);
    const voided = s.voided;
    const repreempt = s.preemptAfterHandoff;
    this.#unqueue(s);
    const v = this.#vcpus.get(c.vcpu);
    if (voided || !v || v.state !== RUNNABLE) return; // nobody takes it: the slot is free
    if (outcome === "cancelled") {
      // Its EMT withdrew it (its halt is on the way): back to the plugin, the slot is offered.
      this.#revokedTotal++;
      this.#tellRevoked(c);
      return;
    }
    this.#grant(v, s.id, c.sliceNs, c.reserved, {
      generation: c.generation,
      handed: outcome === "handed",
      at: leftAt,
    });
    if (repreempt) this.#requestPreempt(s.id);
  }

  /** Whether slice extension applies now: on, the plugin has the hook, nobody waits. */
  #extending(): boolean {
    return this.#extendLeadNs > 0 && this.#waiting === 0 && this.#port.canExtend;
  }

  /** When `s`'s vCPU is due for `extendSlice` (Infinity: not running, leaving, or too short). */
  #extendAt(s: SlotRec): number {
    if (s.vcpu === -1 || s.preempting) return Infinity;
    const v = this.#vcpus.get(s.vcpu)!;
    const lead = this.#extendLeadNs;
    // A reserved grant over the slot's bound ends; its next grant is fair-class.
    if (s.reserved && s.reservedUsed(this.#now) >= RESERVED_MAX_NS) return Infinity;
    // A slice shorter than two leads is not worth it: let it end.
    return v.deadline - v.grantAt > 2 * lead ? v.deadline - lead : Infinity;
  }

  /** Asks the plugin whether `s`'s vCPU goes on running; extends its slice if so. */
  #extend(s: SlotRec): void {
    const v = this.#vcpus.get(s.vcpu)!;
    const now = this.#now;
    const ran = now - v.grantAt;
    const stolen = this.#stealAtExtend ? this.#stolen(v, this.#stealAtExtend(v.info.id, now)) : 0;
    const epoch = this.#portEpoch;
    let slice: number | null = null;
    try {
      slice = this.#port.extendSlice(v.info.id, s.id, ran, now, stolen);
    } catch (e) {
      this.#fault(e);
      return;
    }
    if (epoch !== this.#portEpoch) return;
    if (slice !== null && (!(slice > 0) || slice > this.#maxSliceNs)) {
      this.#eject(
        "invalid",
        `extendSlice(vCPU ${v.info.id}) gave a slice of ${slice} ns (must be > 0 and <= ${this.#maxSliceNs})`,
      );
      return;
    }
    // The plugin has accounted `ran`: the EMT's next report is clamped to what follows.
    v.runNs += ran;
    v.grantAt = now;
    if (slice === null) {
      v.deadline = Infinity; // it ends at its deadline as usual; asked once per grant
      return;
    }
    const oldDeadline = v.deadline;
    v.deadline = now + slice;
    v.extensions++;
    this.#watchdog.noteSlice(now, slice);
    this.#push({
      type: "extend",
      vcpu: v.info.id,
      slot: s.id,
      generation: s.generation,
      ranNs: ran,
      stolenNs: stolen,
      sliceNs: slice,
      oldDeadline,
      deadline: v.deadline,
      reserved: s.reserved,
    });
  }

  /** The plugin wants `slot` rescheduled: preempt its vCPU (rate-limited) or fill it. */
  #requestPreempt(slot: number): void {
    const s = this.#slots[slot];
    if (s.vcpu === -1) {
      this.#offer(slot);
      return;
    }
    if (s.preempting) return;
    // The slot goes to whoever the plugin wants it for: its choice made ahead comes back. If
    // the hand-off won the race, the vCPU it brings is preempted in turn once it holds the slot.
    if (!this.#revokeChoice(s, true)) {
      s.preemptAfterHandoff = true;
      return;
    }
    if (s.vcpu === -1) return; // an ejection while telling the plugin: the slot was refilled
    const v = this.#vcpus.get(s.vcpu)!;
    const ranFor = this.#now - v.runningSince;
    if (ranFor < this.#ratelimitNs && this.#port.ratelimit) {
      // Xen credit's ratelimit: let it run ratelimitNs since its grant, then preempt.
      const at = v.runningSince + this.#ratelimitNs;
      if (s.deferredAt === Infinity) {
        this.#deferred++;
        this.#deferredPreemptions++;
      }
      s.deferredAt = at;
      s.deferredGen = s.generation;
      return;
    }
    this.#issuePreempt(s);
  }

  #issuePreempt(s: SlotRec): void {
    s.preempting = true;
    if (s.deferredAt !== Infinity) {
      s.deferredAt = Infinity;
      this.#deferred--;
    }
    this.#preemptRequests++;
    this.#push({ type: "preempt", vcpu: s.vcpu, slot: s.id, generation: s.generation });
  }

  /** Offers every idle slot once while some vCPU waits; restarts after an ejection. */
  #fill(): void {
    // No slot idles while a vCPU waits in another slot's queue: choices come back first.
    if (this.#idle > 0 && this.#queuedCount > 0) this.#revokeAll(true);
    let restarts = 0;
    for (let i = 0; i < this.#slots.length; i++) {
      if (this.#waiting === 0 || this.#idle === 0) return;
      if (this.#slots[i].vcpu !== -1) continue;
      const epoch = this.#portEpoch;
      this.#offer(i);
      if (epoch !== this.#portEpoch && restarts++ < 3) i = -1;
    }
  }

  /** A port call failed: eject with its reason (non-faults are bugs and propagate). */
  #fault(e: unknown): void {
    if (!(e instanceof PolicyFault)) throw e;
    this.#eject(e.reason, e.message);
  }

  #eject(reason: EjectReason, detail: string): void {
    const old = this.#port;
    if (this.#isFallback && reason !== "manual") {
      throw new Error(`the fallback policy ${old.name} failed (${reason}): ${detail}`);
    }
    const info: EjectInfo = { plugin: old.name, reason, detail, at: this.#now };
    this.#ejections.push(info);
    this.#events();
    old.close();
    this.#adopt(this.#fallback(), this.#now, true);
    this.#onEject?.(info);
  }

  /** Puts `port` in charge: init, then every vCPU with its state. */
  #adopt(port: PolicyPort, now: number, isFallback: boolean): void {
    // Choices the old plugin made ahead are void (it is not told); hand-offs made stand.
    this.#revokeAll(false);
    this.#port = port;
    this.#isFallback = isFallback;
    this.#portEpoch++;
    this.#adoptedAt = now;
    this.#changed = true;
    for (const s of this.#slots) {
      if (s.deferredAt !== Infinity) {
        s.deferredAt = Infinity;
        this.#deferred--;
      }
    }
    this.#tickNs = 0;
    this.#tickAt = Infinity;
    const epoch = this.#portEpoch;
    try {
      port.init({
        slots: this.#slots.length,
        maxSliceNs: this.#maxSliceNs,
        ratelimitNs: this.#ratelimitNs,
      });
      // A vCPU whose hand-off is under way comes after the slot's holder (both `running`).
      const handedLater: VcpuRec[] = [];
      for (const v of this.#vcpus.values()) {
        if (v.queuedOn >= 0) handedLater.push(v);
        else port.addVcpu(this.#infoOf(v));
      }
      for (const v of handedLater) port.addVcpu(this.#infoOf(v));
    } catch (e) {
      if (isFallback) throw e;
      this.#fault(e);
      return;
    }
    if (epoch !== this.#portEpoch) return;
    const tick = port.tickNs;
    if (tick > 0) {
      this.#tickNs = tick;
      this.#tickAt = now + tick;
    }
    this.#watchdog.reset(now);
  }
}
