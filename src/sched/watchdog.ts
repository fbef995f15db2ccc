/**
 * The scheduler watchdog: what ejects a plugin, and the starvation check.
 *
 * Modelled on sched_ext's watchdog (Linux `kernel/sched/ext.c`): a BPF scheduler that errors
 * out (`scx_error`), returns an invalid decision (e.g. an invalid CPU from `ops.select_cpu`) or
 * leaves a runnable task unscheduled for longer than `scx_watchdog_timeout` is ejected and the
 * kernel falls back to the fair class. `scx_watchdog_workfn` checks every runnable task's
 * `runnable_at` once every `scx_watchdog_timeout / 2`; we do the same with virtual or monotonic
 * time passed in by the caller (this module has no timers of its own).
 *
 * The bound. sched_ext's `scx_watchdog_timeout` is the BPF scheduler's `ops.timeout_ms`, by
 * default and at most `SCX_WATCHDOG_MAX_TIMEOUT` (`30 * HZ`): one number for every load, chosen
 * so large that no busy machine reaches it. A fixed bound cannot tell a forgotten vCPU from a busy machine: at 1 s
 * (this module's bound before) 64 VMs x 4 spinning vCPUs on 2 slots got a correct credit
 * ejected, since each of the 128 runnable vCPUs per slot waits for the others' 30 ms slices,
 * about 3.8 s a round; at 30 s a plugin that forgets one of 3 vCPUs would go unnoticed for
 * half a minute, which guests do not survive (RCU stalls, soft lockups) and tests cannot wait
 * for. So, unless the user fixes it (`starvationNs`), the bound follows the load:
 *
 *     bound = clamp(floor, cap, ROUNDS_PER_SQRT_SLOT x sqrt(slots) x round)
 *     round = ceil(runnable vCPUs / slots) x the longest slice held recently
 *
 * - A round is the time for every runnable vCPU to get one slice when the slots share them
 *   evenly. A correct policy need not be that fair: credit1's per-slot queues are balanced
 *   loosely and its UNDER/OVER priorities let a vCPU sit out more than one round. Measured in
 *   the simulator (equal weights, spinning 1-vCPU VMs, 60-120 s), credit's longest wait was
 *   1.6 rounds on 1 slot, 2.2 on 2, 2.9 on 4, 4.6 on 8, 7.8 on 16, 10.5 on 32 and 14.6 on 64
 *   slots: under 2 sqrt(slots). The bound is twice that, 4 sqrt(slots) rounds; rr, credit2 and
 *   rtds wait at most about one round.
 * - The load is the peak over the last one or two bound-lengths (two buckets): a vCPU that
 *   waited through a burst of load is judged against the bound of that burst, not of the
 *   quieter moment of the check. The slice is the longest granted, extended, or held (grant to
 *   release: an EMT late to leave guest mode delays the round as much as a long slice does).
 * - The floor (1 s, the old fixed bound) keeps a lightly loaded machine catching a forgotten
 *   vCPU within 1 to 1.5 s (on 2 slots, up to 5 spinning vCPUs per slot at 30 ms slices).
 * - The cap (60 s) is where no load justifies the wait any longer: beyond it a policy is
 *   ejected whatever the load, and the fallback round-robin serves everyone once a round.
 *   It is twice sched_ext's 30 s because credit at 512 runnable 1-vCPU VMs per slot (2 slots)
 *   was measured to keep a vCPU waiting 33 s, and "hundreds of runnable vCPUs per slot" is
 *   what this bound must hold for (DESIGN.md, invariant 9). It does not hold for every load:
 *   credit kept a vCPU of 4,096 1-vCPU VMs on 16 slots (256 per slot) waiting 60 s.
 * - The check runs every half floor (500 ms), so a vCPU is ejected between one bound and one
 *   bound plus 500 ms after its wait began; a fixed bound is checked every half bound.
 *
 * @module
 */

/** Why a plugin was ejected. */
export type EjectReason =
  /** A hook threw (including a denied operation: `NotCapable`, `TypeError`). */
  | "throw"
  /** A hook returned an invalid decision (unknown/halted/running vCPU, bad slice or slot, type). */
  | "invalid"
  /** A batch of calls did not answer within the budget (endless loop): its Worker is terminated. */
  | "timeout"
  /** A runnable vCPU waited longer than the starvation bound. */
  | "starvation"
  /** The sandbox Worker died (uncaught error outside a hook, out of memory). */
  | "crash"
  /**
   * The sandbox's channel held a reply its own code could not have written, or the core's words
   * in it changed: something in the sandbox wrote into the channel (`reply_reader.ts`).
   */
  | "corrupted channel"
  /** An operator asked for it (`SchedCore.eject`). */
  | "manual";

/** What the core reports when it ejects a plugin. */
export interface EjectInfo {
  /** Name of the ejected plugin. */
  plugin: string;
  /** Why. */
  reason: EjectReason;
  /** Human-readable details: the hook, the error or the offending decision. */
  detail: string;
  /** When (the core's clock, ns). */
  at: number;
}

/** Watchdog options (all times in ns). */
export interface WatchdogOptions {
  /**
   * A fixed starvation bound: the longest a runnable vCPU may wait for a slot before the plugin
   * is ejected, exactly as given whatever the load; `0` or `Infinity` disables the check.
   * Default: none, the bound scales with the load (see the module documentation).
   */
  starvationNs?: number;
  /** The scaled bound's floor; default {@linkcode DEFAULT_STARVATION_NS} (1 s). */
  starvationFloorNs?: number;
  /** The scaled bound's cap; default {@linkcode STARVATION_CAP_NS} (60 s). */
  starvationCapNs?: number;
  /**
   * How often the starvation check runs; default half the fixed bound, or half the floor when
   * the bound scales (sched_ext checks every `scx_watchdog_timeout / 2`), so an ejection
   * happens between 1 bound and 1 bound plus an interval after the wait began.
   */
  checkIntervalNs?: number;
  /**
   * Wall-clock budget for one batch of plugin calls (sandboxed plugins only). Default 20 ms.
   * The core does not measure it itself: the policy port does and throws a timeout fault.
   */
  budgetNs?: number;
}

/** The starvation bound on a lightly loaded machine (the scaled bound's floor): 1 s. */
export const DEFAULT_STARVATION_NS = 1_000_000_000;
/** The scaled starvation bound's cap: 60 s (twice sched_ext's `SCX_WATCHDOG_MAX_TIMEOUT`). */
export const STARVATION_CAP_NS = 60_000_000_000;
/** The scaled bound is this many rounds times the square root of the slot count. */
export const ROUNDS_PER_SQRT_SLOT = 4;
/** Default budget per batch of plugin calls: 20 ms. */
export const DEFAULT_BUDGET_NS = 20_000_000;

/** A fault raised by a policy port: the core turns it into an ejection. */
export class PolicyFault extends Error {
  /** The ejection reason this fault leads to. */
  readonly reason: EjectReason;
  /** The hook involved, if known. */
  readonly hook: string;
  /**
   * Creates a fault.
   *
   * @param reason why the plugin must be ejected
   * @param hook the hook that failed (`"pickNext"`, ...), or `""`
   * @param message details
   */
  constructor(reason: EjectReason, hook: string, message: string) {
    super(message);
    this.name = "PolicyFault";
    this.reason = reason;
    this.hook = hook;
  }
}

/** Something the watchdog can look at: a runnable vCPU's id and since when it waits. */
export interface WaitingVcpu {
  /** vCPU id. */
  id: number;
  /** When it became runnable and not running (ns). */
  waitingSince: number;
}

/** The starvation bound in force and what it was computed from ({@linkcode Watchdog.bound}). */
export interface StarvationBound {
  /** The bound (ns; `Infinity` when the check is off). */
  ns: number;
  /** How it was set: fixed by the user, or scaled and then the floor, the load, or the cap. */
  kind: "fixed" | "floor" | "scaled" | "cap";
  /** Peak runnable vCPUs per slot (rounded up) the scaled bound used; 0 when fixed. */
  runnablePerSlot: number;
  /** Longest slice (ns) the scaled bound used; 0 when fixed. */
  sliceNs: number;
  /** `ROUNDS_PER_SQRT_SLOT x sqrt(slots)`: rounds the scaled bound allows; 0 when fixed. */
  rounds: number;
}

/**
 * The starvation check. The core calls {@linkcode Watchdog.due} from its `advance` and
 * {@linkcode Watchdog.check} when it is due; {@linkcode Watchdog.nextCheckAt} feeds its
 * `nextTimerAt`. It tells the watchdog the load as it goes: {@linkcode Watchdog.noteLoad}
 * (runnable vCPUs) and {@linkcode Watchdog.noteSlice} (slices granted and held).
 */
export class Watchdog {
  /** Interval between checks in ns (`Infinity` when disabled). */
  readonly checkIntervalNs: number;
  /** Whether the bound scales with the load (no fixed `starvationNs` was given). */
  readonly scaled: boolean;
  readonly #fixedNs: number;
  readonly #floorNs: number;
  readonly #capNs: number;
  readonly #slots: number;
  readonly #rounds: number;
  #next: number;
  // Load peaks: the current bucket and the one before; a bucket lasts one bound.
  #runnable = 0;
  #slice = 0;
  #prevRunnable = 0;
  #prevSlice = 0;
  #bucketEnd: number;
  #now: number;

  /**
   * Creates the check; the first is due one interval after `now`.
   *
   * @param options bounds
   * @param now the current time (ns): the first check is one interval later
   * @param slots the number of slots (the scaled bound divides the runnable vCPUs among them)
   */
  constructor(options: WatchdogOptions = {}, now = 0, slots = 1) {
    this.scaled = options.starvationNs === undefined;
    const fixed = options.starvationNs ?? 0;
    this.#fixedNs = fixed > 0 ? fixed : Infinity;
    this.#floorNs = positiveOr(options.starvationFloorNs, DEFAULT_STARVATION_NS);
    this.#capNs = Math.max(this.#floorNs, positiveOr(options.starvationCapNs, STARVATION_CAP_NS));
    this.#slots = Math.max(1, Math.floor(slots));
    this.#rounds = ROUNDS_PER_SQRT_SLOT * Math.sqrt(this.#slots);
    const base = this.scaled ? this.#floorNs : this.#fixedNs;
    this.checkIntervalNs = Number.isFinite(base)
      ? Math.max(1, options.checkIntervalNs ?? Math.floor(base / 2))
      : Infinity;
    this.#next = now + this.checkIntervalNs;
    this.#now = now;
    this.#bucketEnd = now + this.#floorNs;
  }

  /** The starvation bound in force now (ns; `Infinity` when disabled). */
  get starvationNs(): number {
    return this.bound().ns;
  }

  /** The starvation bound in force at the last time the watchdog was told, and its inputs. */
  bound(): StarvationBound {
    if (!this.scaled) {
      return { ns: this.#fixedNs, kind: "fixed", runnablePerSlot: 0, sliceNs: 0, rounds: 0 };
    }
    const perSlot = Math.max(this.#runnable, this.#prevRunnable);
    const slice = Math.max(this.#slice, this.#prevSlice);
    const load = this.#rounds * perSlot * slice;
    const ns = Math.round(Math.min(this.#capNs, Math.max(this.#floorNs, load)));
    const kind = load <= this.#floorNs ? "floor" : load >= this.#capNs ? "cap" : "scaled";
    return { ns, kind, runnablePerSlot: perSlot, sliceNs: slice, rounds: this.#rounds };
  }

  /**
   * The bound for an ejection message: `bound 1000 ms` when fixed or at the floor, else with
   * how it was scaled.
   */
  describe(): string {
    const b = this.bound();
    const ms = (ns: number) => `${+(ns / 1e6).toFixed(1)} ms`;
    if (b.kind === "fixed" || b.kind === "floor") return `bound ${ms(b.ns)}`;
    return `bound ${ms(b.ns)}${b.kind === "cap" ? ", the cap" : ""}: ${+b.rounds.toFixed(
      2,
    )} rounds of ${b.runnablePerSlot} runnable vCPUs per slot x ${ms(b.sliceNs)} slices`;
  }

  /** Records the runnable vCPUs (running or waiting) at `now`. */
  noteLoad(now: number, runnable: number): void {
    this.#roll(now);
    const perSlot = Math.ceil(runnable / this.#slots);
    if (perSlot > this.#runnable) this.#runnable = perSlot;
  }

  /** Records a slice granted, extended, or held (grant or extension to release) at `now`. */
  noteSlice(now: number, sliceNs: number): void {
    this.#roll(now);
    if (sliceNs > this.#slice) this.#slice = sliceNs;
  }

  /** When the next check is due (ns; `Infinity` if disabled). */
  nextCheckAt(): number {
    return this.#next;
  }

  /** Whether a check is due at `now`. */
  due(now: number): boolean {
    return now >= this.#next;
  }

  /**
   * Runs the check: returns the longest-waiting vCPU whose wait exceeds the bound in force, or
   * `null`. Schedules the next check.
   */
  check(now: number, waiting: Iterable<WaitingVcpu>): WaitingVcpu | null {
    this.#roll(now);
    this.#next = now + this.checkIntervalNs;
    const bound = this.bound().ns;
    let worst: WaitingVcpu | null = null;
    for (const w of waiting) {
      if (now - w.waitingSince > bound) {
        if (worst === null || w.waitingSince < worst.waitingSince) worst = w;
      }
    }
    return worst;
  }

  /** Restarts the interval (after an ejection: give the fallback a full interval). */
  reset(now: number): void {
    this.#next = now + this.checkIntervalNs;
  }

  /**
   * Starts a new bucket once the current one is a bound old: the peaks of the last one or two
   * bounds stay in force, so a load that ends is remembered for at least one bound after it.
   */
  #roll(now: number): void {
    if (now > this.#now) this.#now = now;
    if (!this.scaled || this.#now < this.#bucketEnd) return;
    const len = this.bound().ns;
    this.#prevRunnable = this.#runnable;
    this.#prevSlice = this.#slice;
    this.#runnable = 0;
    this.#slice = 0;
    this.#bucketEnd = this.#now + len;
  }
}

function positiveOr(v: number | undefined, dflt: number): number {
  return v !== undefined && v > 0 && Number.isFinite(v) ? v : dflt;
}
