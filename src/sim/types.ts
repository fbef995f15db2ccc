/**
 * Types of the simulator's public entry ({@linkcode simulate} in `src/sim/mod.ts`): what a
 * scenario is and what a run reports. All times are virtual nanoseconds unless a field name says
 * otherwise (`Ms`, `Us`).
 *
 * @module
 */
import type { SchedParams, SchedulerPlugin } from "../sched/contract.ts";
import type { EjectInfo } from "../sched/watchdog.ts";

/** A CPU hog: always runnable, never halts. */
export interface SpinWorkload {
  /** Kind tag. */
  kind: "spin";
}

/**
 * A periodic real-time task per vCPU: every `periodMs` a job of `computeMs` of guest time is
 * released; it must finish before the next release (implicit deadline). The vCPU halts when its
 * job is done. Records deadline misses and lateness (completion - deadline, for late jobs).
 */
export interface PeriodicWorkload {
  /** Kind tag. */
  kind: "periodic";
  /** Period (ms). */
  periodMs: number;
  /** Guest time needed per period (ms). */
  computeMs: number;
  /** Release offset of the first job (ms); default: vCPU index × 0 (all at 0). */
  offsetMs?: number;
}

/**
 * A request/response server ("ping under load"): each request wakes the vCPU and costs
 * `serviceUs` of guest time; latency is arrival → completion. The vCPU halts when it has no
 * request. Requests of one VM are spread round-robin over its vCPUs.
 */
export interface EchoWorkload {
  /** Kind tag. */
  kind: "echo";
  /**
   * `open`: Poisson arrivals at `ratePerSec` (per VM) regardless of completions.
   * `closed`: `clients` clients, each sends a request, waits for its response, thinks
   * `thinkUs`, sends the next.
   */
  mode: "open" | "closed";
  /** Open loop: mean arrival rate per second for the whole VM (default 1000). */
  ratePerSec?: number;
  /** Guest time per request (µs). */
  serviceUs: number;
  /** Closed loop: number of clients (default 1). */
  clients?: number;
  /** Closed loop: think time between a response and the next request (µs, default 0). */
  thinkUs?: number;
}

/**
 * Spinlock contention among the VM's vCPUs: each vCPU loops { non-critical work `workUs`;
 * acquire the VM's lock; critical section `csUs`; release }. A vCPU waiting for the lock burns
 * guest time spinning; if the holder is descheduled (lock-holder preemption) the waiter spins
 * until its own slice ends.
 */
export interface LockWorkload {
  /** Kind tag. */
  kind: "lock";
  /** Critical section (µs of guest time). */
  csUs: number;
  /** Work outside the lock (µs of guest time; each phase uniform in [0.5, 1.5) × this). */
  workUs: number;
  /**
   * The lock (guest workload `lock=`): `tas` (default), test-and-set: a running spinner takes
   * it when it is free; `ticket`: FIFO, the next ticket's owner must run for anyone to get it,
   * so a descheduled waiter stalls the lock too (lock-waiter preemption).
   */
  lock?: "tas" | "ticket";
}

/**
 * IPI ping-pong between pairs of vCPUs of a VM (vCPU 2k and 2k+1): the sender computes
 * `workUs`, sends an IPI to its peer and halts until the peer answers with an IPI. An odd last
 * vCPU spins.
 */
export interface IpiWorkload {
  /** Kind tag. */
  kind: "ipi";
  /** Guest time between receiving and sending (µs, default 5). */
  workUs?: number;
}

/**
 * The tick-dodging attacker (guests/user/attacker.c): spins `runUs` of wall time from when it
 * runs, then sleeps `sleepUs`, over and over.
 */
export interface AttackerWorkload {
  /** Kind tag. */
  kind: "attacker";
  /** Run this long (µs of wall time, default 9500). */
  runUs?: number;
  /** Then sleep this long (µs, default 500). */
  sleepUs?: number;
}

/**
 * What releases a replayed burst: the wake that began it in the recorded run
 * (`src/trace/demand.ts` reads them from a trace).
 */
export interface ReplayWake {
  /** What woke the vCPU in the recorded run. */
  source: "timer" | "ipi" | "device" | "start" | "unknown";
  /** When (ns from the recorded run's start): the release time of everything but an IPI. */
  atNs: number;
  /**
   * An IPI's sender: the vCPU (index in the same VM) that sent it and its guest time (ns, from
   * the start) when it did. The replay releases the burst when the sender has run that much.
   */
  sender?: { index: number; guestNs: number };
  /** A timer wake: how long the vCPU was halted before it in the recorded run (ns). */
  sleepNs?: number;
}

/** One busy stretch of a replayed vCPU: from a wake to its next halt. */
export interface ReplayBurst {
  /** What releases it; `null` for a vCPU that was already runnable when the trace began. */
  wake: ReplayWake | null;
  /** Guest time it needs (ns); `Infinity` when it was still runnable at the trace's end. */
  guestNs: number;
}

/**
 * A recorded run's demand, replayed (`src/sim/replay_behaviour.ts`): per vCPU, its bursts in
 * order. A burst is released by its wake; released bursts are worked off in the order they were
 * released, and the vCPU halts when none is left.
 */
export interface ReplayWorkload {
  /** Kind tag. */
  kind: "replay";
  /** Per vCPU (index in the VM), its bursts in the recorded order. */
  vcpus: ReplayBurst[][];
  /**
   * Timer wakes: `absolute` (default), at the time they were delivered in the recorded run (a
   * deadline the guest armed against its clock, as a periodic release is); `relative`, the
   * recorded sleep after the previous burst ends in the replay (a sleep for an interval).
   */
  timers?: "absolute" | "relative";
  /**
   * Device wakes: `gap` (default), at the recorded time or, when the replay ended the previous
   * burst earlier than the recording did, the recorded gap after that end; `absolute`, at the
   * recorded time; `relative`, always the recorded gap after the previous burst ends. See
   * `src/sim/replay_behaviour.ts`.
   */
  devices?: "gap" | "absolute" | "relative";
}

/** What the vCPUs of a VM do. */
export type Workload =
  | SpinWorkload
  | PeriodicWorkload
  | EchoWorkload
  | LockWorkload
  | IpiWorkload
  | AttackerWorkload
  | ReplayWorkload;

/** One simulated VM. */
export interface SimVmSpec {
  /** VM name (unique). */
  name: string;
  /** Number of vCPUs (>= 1). */
  vcpus: number;
  /**
   * Per-VM scheduling parameters handed to the plugin in `VcpuInfo.params` (e.g. `weight`,
   * `cap`, `period_ms`, `budget_ms`, `gang`).
   */
  params?: SchedParams;
  /** What its vCPUs do. */
  workload: Workload;
}

/** A scripted operator action at a virtual time. */
export type SimScriptStep =
  /** Eject the current plugin (manual ejection). */
  | { atMs: number; action: "eject"; detail?: string }
  /** Hot-swap to another plugin (path/URL or object), with parameters. */
  | { atMs: number; action: "swap"; plugin: string | SchedulerPlugin; params?: SchedParams }
  /** Change parameters at runtime (`target` = VM name or `"*"`). */
  | { atMs: number; action: "setParams"; target: string; params: SchedParams };

/**
 * Samples of a host cost (ns) with the virtual time each stands for (ns from the start, e.g. when
 * it was measured in a recorded run): a use at time t takes the first sample at or after t (of the
 * using vCPU's own, when `vcpu` names them).
 */
export interface CostSeries {
  /** Times, ns (any order; paired with `ns`). */
  atNs: readonly number[];
  /** The samples, ns. */
  ns: readonly number[];
  /**
   * The vCPU (simulator id: VMs in order, their vCPUs by index) each sample was measured on; a
   * vCPU with samples of its own takes only those.
   */
  vcpu?: readonly number[];
}

/** Options of {@linkcode simulate}. */
export interface SimOptions {
  /** The policy: a path or URL of a plugin module, or a plugin object (always run locally). */
  plugin: string | URL | SchedulerPlugin;
  /** Plugin parameters (`init`'s `ctx.params`). */
  params?: SchedParams;
  /** Number of slots (pCPUs). */
  slots: number;
  /** Virtual seconds to simulate. */
  seconds: number;
  /** PRNG seed (default 1). Same seed, same options → identical result. */
  seed?: number;
  /**
   * Where a plugin given by path or URL runs:
   * - `true` (default): the whole simulation runs in one sandbox Worker with the plugin (the
   *   plugin sandbox's permissions: it can read only itself), and only the result crosses back;
   *   plugin calls cost what they cost in-process. The budget is watched from outside; a call
   *   that overruns it re-runs the simulation as `"per-call"`, whose ejection is then exact.
   * - `"per-call"`: the engine runs in this thread and every batch of plugin calls crosses to
   *   the sandbox Worker, as in the VMM (about 70× slower; each batch is timed).
   * - `"process"`: as `"per-call"`, with the plugin in a child `deno` process instead of a
   *   Worker (`src/sched/sandbox_process.ts`; needs the `run` and `ffi` permissions).
   * - `false`: the plugin is imported in this thread (no permission sandbox, no budget).
   *
   * A plugin object always runs in this thread, and so does a script that swaps to one.
   */
  sandbox?: boolean | "per-call" | "process";
  /** Context-switch rate limit (ns); default 1 ms (Xen's sched_ratelimit_us); 0 disables. */
  ratelimitNs?: number;
  /** Largest slice accepted (ns); default 100 ms. */
  maxSliceNs?: number;
  /**
   * A fixed watchdog starvation bound (ns), exactly as given; 0 disables. Default: the bound
   * scales with the load, from 1 s to 60 s (`src/sched/watchdog.ts`).
   */
  starvationNs?: number;
  /** Sandbox budget per batch of calls (wall-clock ns); default 200 ms in the simulator. */
  budgetNs?: number;
  /**
   * Grant → guest mode latency (EMT wake-up), ns; default 0 (20_000 is realistic here). Also
   * samples of a measured distribution: each grant draws one (seeded, deterministic); or a
   * {@linkcode CostSeries}: each grant takes the sample for its time.
   */
  handoffNs?: number | readonly number[] | CostSeries;
  /**
   * Leave → guest mode latency of a hand-off the leaving EMT makes itself, to a vCPU the plugin
   * chose ahead (`queueNext`), ns; default `handoffNs`. Or samples, as `handoffNs`.
   */
  aheadHandoffNs?: number | readonly number[] | CostSeries;
  /** Let a plugin with `queueNext` decide ahead (default true), as the KVM runtime does. */
  decideAhead?: boolean;
  /** Preempt → EMT out of guest mode latency (poke), ns; default 0. Or samples, as `handoffNs`. */
  pokeNs?: number | readonly number[] | CostSeries;
  /** The VMs. */
  vms: SimVmSpec[];
  /** If set, also report each VM's share per window of this length (ns). */
  windowNs?: number;
  /** Operator actions at virtual times (manual eject, hot-swap, setParams). */
  script?: SimScriptStep[];
  /** Sandbox: extra read permission (paths), only if the plugin needs it. */
  allowRead?: string[];
  /** Sandbox: hosts a remote plugin may be imported from, e.g. `["127.0.0.1:8000"]`. */
  allowImport?: string[];
  /** Called for every policy event a plugin reports (`ctx.report`), with its virtual time. */
  onPolicyEvent?: (event: import("../sched/contract.ts").PolicyEvent, at: number) => void;
  /**
   * An EMT's report (wake, halt, slice end, preempted) reaches the core this long after it
   * happens (ns); default 0. On KVM each crosses from the EMT's thread to the core's. Or samples,
   * as `handoffNs`; one EMT's reports stay in order.
   */
  reportDelayNs?: number | readonly number[] | CostSeries;
  /** An EMT's wake reaches the core this long after it happens (ns); default `reportDelayNs`. */
  wakeDelayNs?: number | readonly number[] | CostSeries;
  /**
   * The share (0..0.95) of a grant's guest-mode time other host threads take from its EMT's CPU
   * (steal): the guest makes no progress then, and the core is told (`stolenNs`, which policies
   * do not charge). A constant, samples, or a {@linkcode CostSeries} of shares; default 0.
   */
  stealShare?: number | readonly number[] | CostSeries;
  /**
   * Record the run's trace (as the VMM's core writes it) into a ring of this many records and
   * return it in `SimResult.trace`; 0 or absent: no trace.
   */
  traceRecords?: number;
}

/** Percentiles of a latency distribution (ns). `NaN` when there were no samples. */
export interface LatencyStats {
  /** Number of samples. */
  count: number;
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** Largest sample. */
  max: number;
  /** Mean. */
  mean: number;
  /**
   * The whole distribution, where the simulator keeps it (a VM's `wakeLatency`): points
   * `[ns, fraction of samples <= ns]` in increasing order, about 1.6 % apart in value
   * (`Histogram.cdf` in `src/sched/histogram.ts`).
   */
  cdf?: [number, number][];
}

/** Scheduler accounting of one vCPU or (summed) one VM. */
export interface SimSchedStats {
  /** Guest time (ns). */
  runNs: number;
  /** `runNs` / (slots × simulated time): the share of the machine. */
  share: number;
  /** Time runnable but not running (ns). */
  waitNs: number;
  /** The longest single wait for a slot (ns; for a VM, its vCPUs' longest). */
  maxWaitNs: number;
  /** Time halted (ns). */
  haltedNs: number;
  /** Grants received. */
  grants: number;
  /** Times it was preempted (by `onWake`/`onTick`). */
  preemptions: number;
  /** Wake → grant latency. */
  wakeLatency: LatencyStats;
}

/** Workload results of a `periodic` VM/vCPU. */
export interface PeriodicStats {
  /** Jobs whose deadline has passed (finished or not). */
  jobs: number;
  /** Jobs finished. */
  completed: number;
  /** Jobs that finished after their deadline or not at all by the next release. */
  misses: number;
  /** `misses / jobs`. */
  missRatio: number;
  /** Lateness of the late jobs (completion - deadline), ns. */
  lateness: LatencyStats;
}

/** Workload results of an `echo` VM. */
export interface EchoStats {
  /** Requests that arrived. */
  requests: number;
  /** Requests completed. */
  completed: number;
  /** Completed per virtual second. */
  throughputPerSec: number;
  /** Arrival → completion. */
  latency: LatencyStats;
}

/** Workload results of a `lock` VM. */
export interface LockStats {
  /** Critical sections completed. */
  acquisitions: number;
  /** Per virtual second. */
  acquisitionsPerSec: number;
  /** Guest time spent spinning on the lock (ns). */
  spinNs: number;
}

/** Workload results of an `ipi` VM. */
export interface IpiStats {
  /** IPIs delivered. */
  ipis: number;
  /** Per virtual second. */
  ipisPerSec: number;
  /** IPI sent → peer running again. */
  latency: LatencyStats;
}

/** One vCPU's results. */
export interface SimVcpuResult extends SimSchedStats {
  /** Scheduler id. */
  id: number;
  /** Its VM. */
  vm: string;
  /** Index in the VM. */
  index: number;
}

/** One VM's results (sums over its vCPUs; latencies over all its samples). */
export interface SimVmResult extends SimSchedStats {
  /** VM name. */
  name: string;
  /** Number of vCPUs. */
  vcpus: number;
  /** `periodic` workload results. */
  periodic?: PeriodicStats;
  /** `echo` workload results. */
  echo?: EchoStats;
  /** `lock` workload results. */
  lock?: LockStats;
  /** `ipi` workload results. */
  ipi?: IpiStats;
}

/** Shares per window (when `windowNs` is set). */
export interface SimWindow {
  /** Window start (ns). */
  startNs: number;
  /** Window end (ns). */
  endNs: number;
  /** VM name → its share of the machine in this window. */
  shares: Record<string, number>;
}

/** What {@linkcode simulate} returns. */
export interface SimResult {
  /** Name of the plugin the run started with. */
  plugin: string;
  /** Name of the plugin in charge at the end (the fallback after an ejection). */
  finalPlugin: string;
  /** Slots. */
  slots: number;
  /** Seed used. */
  seed: number;
  /** Simulated time (ns). */
  elapsedNs: number;
  /** Discrete events processed. */
  events: number;
  /** Wall-clock time of the run (ms); not deterministic. */
  wallMs: number;
  /** Events per wall-clock second; not deterministic. */
  eventsPerSec: number;
  /**
   * Where the plugin ran: `"whole"` (the simulation inside its sandbox Worker), `"per-call"`
   * (each batch of calls crossing to it; also after a call overran its budget in `"whole"`),
   * `"process"` (each batch crossing to a child process), or `"none"` (in this thread).
   */
  sandbox: "whole" | "per-call" | "process" | "none";
  /** Plugin ejections, in order. */
  ejections: EjectInfo[];
  /** Policy events reported by plugins, counted by kind. */
  policyEvents: Record<string, number>;
  /** Per VM. */
  vms: SimVmResult[];
  /** Per vCPU. */
  vcpus: SimVcpuResult[];
  /** Per window (when `windowNs` was set). */
  windows?: SimWindow[];
  /** Highest number of vCPUs in guest mode at once (must be <= slots). */
  maxRunning: number;
  /** The watchdog's starvation bound in force at the end (ns; `Infinity` when off). */
  starvationBoundNs: number;
  /** The run's trace, when `traceRecords` was set (times are virtual ns from 0). */
  trace?: import("../trace/events.ts").TraceData;
}
