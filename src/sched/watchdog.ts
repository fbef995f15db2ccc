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
 * sched_ext's default timeout is 30 s (`SCX_WATCHDOG_MAX_TIMEOUT`); a VMM's vCPUs stall a guest
 * much sooner than that (RCU stalls, soft lockups), so the default bound here is 1 s.
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
   * Longest a runnable vCPU may wait for a slot before the plugin is ejected; `0` or `Infinity`
   * disables the check. Default 1 s.
   */
  starvationNs?: number;
  /**
   * How often the starvation check runs; default `starvationNs / 2` (sched_ext checks every
   * `scx_watchdog_timeout / 2`), so an ejection happens between 1 and 1.5 bounds after the wait
   * began.
   */
  checkIntervalNs?: number;
  /**
   * Wall-clock budget for one batch of plugin calls (sandboxed plugins only). Default 20 ms.
   * The core does not measure it itself: the policy port does and throws a timeout fault.
   */
  budgetNs?: number;
}

/** Default starvation bound: 1 s. */
export const DEFAULT_STARVATION_NS = 1_000_000_000;
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

/**
 * The starvation check. The core calls {@linkcode Watchdog.due} from its `advance` and
 * {@linkcode Watchdog.check} when it is due; {@linkcode Watchdog.nextCheckAt} feeds its
 * `nextTimerAt`.
 */
export class Watchdog {
  /** The starvation bound in ns (`Infinity` when disabled). */
  readonly starvationNs: number;
  /** Interval between checks in ns (`Infinity` when disabled). */
  readonly checkIntervalNs: number;
  #next: number;

  /**
   * Creates the check; the first is due one interval after `now`.
   *
   * @param options bounds
   * @param now the current time (ns): the first check is one interval later
   */
  constructor(options: WatchdogOptions = {}, now = 0) {
    const bound = options.starvationNs ?? DEFAULT_STARVATION_NS;
    this.starvationNs = bound > 0 ? bound : Infinity;
    this.checkIntervalNs = Number.isFinite(this.starvationNs)
      ? Math.max(1, options.checkIntervalNs ?? Math.floor(this.starvationNs / 2))
      : Infinity;
    this.#next = now + this.checkIntervalNs;
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
   * Runs the check: returns the longest-waiting vCPU whose wait exceeds the bound, or `null`.
   * Schedules the next check.
   */
  check(now: number, waiting: Iterable<WaitingVcpu>): WaitingVcpu | null {
    this.#next = now + this.checkIntervalNs;
    let worst: WaitingVcpu | null = null;
    for (const w of waiting) {
      if (now - w.waitingSince > this.starvationNs) {
        if (worst === null || w.waitingSince < worst.waitingSince) worst = w;
      }
    }
    return worst;
  }

  /** Restarts the interval (after an ejection: give the fallback a full interval). */
  reset(now: number): void {
    this.#next = now + this.checkIntervalNs;
  }
}
