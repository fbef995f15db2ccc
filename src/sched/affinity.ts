/**
 * Where the scheduler's own threads run. The core thread and its plugin's sandbox Worker talk
 * in strict turns (a batch of calls, then its answer), so they share one host CPU: a futex
 * hand-off to a thread on the same CPU costs about 3 µs here, across CPUs about 20-60 µs
 * (DESIGN.md, "Deno facts"; measured by `bench/sched.ts`).
 *
 * @module
 */
import { setThreadCpus, setThreadNice, setThreadRealtime } from "./host_threads.ts";

/**
 * SCHED_FIFO priorities of the scheduler's threads and of EMTs waiting for a slot. They share
 * a CPU with a vCPU in guest mode (slot 0 is pinned there), which never gives it up by itself:
 * as fair-class threads, even at nice -10, a decision waited up to a scheduler tick for it
 * (ftrace on io-vs-hog: the core, runnable with its plugin's answer, passed over for 1.3 ms).
 * Real-time, they run the moment they have work, as Xen's scheduler runs before any guest.
 * The core is above its plugin's sandbox, so a runaway plugin cannot lock the core (and its
 * watchdog) out; waiting EMTs are below both. An EMT holding a reserved slice
 * (`PickDecision.reserved`) is below them all: the scheduler and the wake-ups of other vCPUs
 * still come first, but the host's fair-class threads (V8's helpers) no longer take its CPU
 * (ftrace on rt: a helper held a just-granted rt vCPU's CPU for 2.6 ms).
 */
export const REALTIME_PRIORITY = { core: 4, sandbox: 3, waitingEmt: 2, reservedEmt: 1 } as const;

/**
 * Nice level of the scheduler's threads where real-time is not permitted (no CAP_SYS_NICE):
 * at nice 0 a woken plugin Worker waited up to a CFS slice (measured: 4.7 ms) for the guest's
 * EMT to be preempted; at -10 it mostly does not.
 */
export const SCHEDULER_NICE = -10;

/** The host CPU the scheduler's threads share: the last one the process may use. */
export function schedulerCpu(): number {
  return Math.max(0, (navigator.hardwareConcurrency || 1) - 1);
}

/** Raises thread `tid` to real-time `priority`, else to {@linkcode SCHEDULER_NICE}. */
function raise(tid: number, priority: number): boolean {
  return setThreadRealtime(tid, priority) || setThreadNice(tid, SCHEDULER_NICE);
}

/**
 * Pins the calling thread (the core) and, when known (`tid > 0`), the plugin's Worker thread
 * to `cpu`, and raises both ({@linkcode REALTIME_PRIORITY}, else {@linkcode SCHEDULER_NICE}).
 * Returns whether all of it took; failing is harmless (only slower; raising priority needs
 * CAP_SYS_NICE).
 */
export function colocate(tid: number, cpu = schedulerCpu()): boolean {
  // tid 0: the calling thread (sched_setaffinity(2) and sched_setattr(2) are per thread)
  let ok = setThreadCpus(0, [cpu]) && raise(0, REALTIME_PRIORITY.core);
  if (tid > 0) ok = setThreadCpus(tid, [cpu]) && raise(tid, REALTIME_PRIORITY.sandbox) && ok;
  return ok && tid > 0;
}
