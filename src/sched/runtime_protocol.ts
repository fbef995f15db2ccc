/**
 * Messages between the main thread's {@linkcode Scheduler} handle and the scheduler core's
 * Worker (`core_worker.ts`). These are control messages (VMs coming and going, eject, swap,
 * statistics); the hot path (events and grants) goes through the grant tables.
 *
 * @module
 */
import type { SchedParams } from "./contract.ts";
import type { EjectInfo } from "./watchdog.ts";
import type { TraceData } from "../trace/events.ts";

/** How the core loads its policy. */

/**
 * How long before a slice's deadline the KVM runtime asks `extendSlice`: enough for the core's
 * timer to fire (timer slack 50 µs), a sandbox round trip and re-arming the EMT's timer, so
 * that the answer lands before the deadline exit it saves.
 */
export const EXTEND_LEAD_NS = 500_000;

/**
 * The same lead with the process sandbox. A call that comes after the sandbox slept (as an
 * extension does, about every 100 ms) wakes another process, whose first round trip is slower
 * than the Worker's on these hosts: `pickNext` to rr every 100 ms took p50 250 µs and up to
 * 0.8 ms, against 145 µs and 0.76 ms for the Worker (and a bare pipe echo to `cat`, 76 µs against
 * 7.7 µs back to back). With the Worker's lead a lone spinning vCPU took 4-10 deadline exits a
 * second instead of none.
 */
export const PROCESS_EXTEND_LEAD_NS = 1_500_000;

/**
 * How long after a slot's grant (or a revocation) the KVM runtime asks `queueNext`: long enough
 * for the vCPU just handed the slot to enter guest mode first (the core and the sandbox share
 * slot 0's CPU and run above it), short beside any slice.
 */
export const AHEAD_DELAY_NS = 50_000;

export interface PolicySpec {
  /** Path or URL of the plugin module, or `"builtin:rr"` for the in-process fallback. */
  plugin: string;
  /** Plugin parameters. */
  params: SchedParams;
  /** Hosts a remote plugin may import from (`--allow-plugin-import`); default none. */
  allowImport?: string[];
  /** Where the plugin runs: a child process (default, `sandbox_process.ts`) or a Worker. */
  sandbox?: SandboxKind;
}

/** The kinds of sandbox a plugin runs in (`SchedulerOptions.sandbox`). */
export type SandboxKind = "worker" | "process";

/** Every {@linkcode SandboxKind}, for checking input. */
export const SANDBOX_KINDS: readonly SandboxKind[] = ["worker", "process"];

/** The core's start message. */
export interface CoreInit {
  /** Discriminator. */
  type: "init";
  /** The built shim (the core wakes and pokes EMTs through it). */
  shimPath: string;
  /** The VMM's doorbell. */
  doorbell: SharedArrayBuffer;
  /** The hand-off table (`dispatch_table.ts`). */
  dispatch: SharedArrayBuffer;
  /** Ask `queueNext` of a plugin that has it. */
  decideAhead: boolean;
  /** Slots handed out. */
  slots: number;
  /** Host CPU of each slot, or empty when slots are not pinned. */
  pinCpus: number[];
  /** Context-switch rate limit, ns. */
  ratelimitNs: number;
  /** Lead of `extendSlice` before a deadline, ns (0: slices are never extended). */
  extendLeadNs: number;
  /** Largest slice accepted, ns. */
  maxSliceNs: number;
  /** Budget for one batch of plugin calls, ns. */
  budgetNs: number;
  /** A fixed starvation bound, ns; absent: the bound scales with the load (`watchdog.ts`). */
  starvationNs?: number;
  /** The policy. */
  policy: PolicySpec;
  /** Trace ring: records kept (0: tracing off). */
  traceCapacity: number;
}

/** Control requests to the core. */
export type CoreRequest =
  | CoreInit
  | {
    type: "add-vm";
    id: number;
    vm: string;
    vcpus: number;
    params: SchedParams;
    table: SharedArrayBuffer;
    emtBlocks: SharedArrayBuffer;
  }
  | { type: "remove-vm"; id: number; vm: string }
  | { type: "eject"; id: number; reason: string }
  | { type: "swap"; id: number; policy: PolicySpec }
  | { type: "set-params"; id: number; target: string; params: SchedParams }
  | { type: "stats"; id: number }
  | { type: "trace"; id: number; clear: boolean }
  | { type: "close"; id: number };

/** Per-vCPU statistics, as the core keeps them. */
export interface VcpuSchedStats {
  /** VM name. */
  vm: string;
  /** vCPU index in the VM. */
  index: number;
  /** Current state. */
  state: "halted" | "runnable" | "running";
  /** Slot it runs on, or -1. */
  slot: number;
  /** Guest ns run under grants. */
  runNs: number;
  /** ns other host threads took from its EMT's CPU while it held a slot (not charged). */
  stolenNs: number;
  /** ns runnable but waiting for a slot. */
  waitNs: number;
  /** Grants received. */
  grants: number;
  /** Of `grants`, the ones decided ahead (`queueNext`). */
  aheadGrants: number;
  /** Of `aheadGrants`, the ones the leaving EMT handed over itself. */
  handedGrants: number;
  /** Slices extended without leaving guest mode. */
  extensions: number;
  /** Times it was preempted. */
  preemptions: number;
  /** Wake-ups: times it went from halted to runnable. */
  wakes: number;
  /** Wake-to-grant latency, p50 and p99 (ns), over the last wakes. */
  wakeLatencyP50Ns: number;
  /** See `wakeLatencyP50Ns`. */
  wakeLatencyP99Ns: number;
}

/** Scheduler statistics. */
export interface SchedStats {
  /** Name of the policy in charge. */
  policy: string;
  /** Slots. */
  slots: number;
  /** Per slot: ns a vCPU held it. */
  slotBusyNs: number[];
  /** Plugin decisions made. */
  decisions: number;
  /** Choices made ahead (`queueNext`). */
  queued: number;
  /** Of `queued`, the ones taken back before their hand-off. */
  revoked: number;
  /** Plugin ejections so far. */
  ejections: EjectInfo[];
  /** Per vCPU. */
  vcpus: VcpuSchedStats[];
  /** When (CLOCK_MONOTONIC ns). */
  at: number;
}

/** Replies and notifications from the core. */
export type CoreReply =
  | { type: "ready"; policy: string }
  | { type: "init-failed"; message: string }
  | {
    type: "done";
    id: number;
    error?: string;
    stats?: SchedStats;
    policy?: string;
    trace?: TraceData;
  }
  | { type: "ejected"; info: EjectInfo; fallback: string };
