/**
 * Where the scheduler's own threads run. The core thread and its plugin's sandbox Worker talk
 * in strict turns (a batch of calls, then its answer), so they share one host CPU: a futex
 * hand-off to a thread on the same CPU costs about 3 µs here, across CPUs about 20-60 µs
 * (DESIGN.md, "Deno facts"; measured by `bench/sched.ts`).
 *
 * @module
 */
import { setThreadCpus, setThreadNice } from "./host_threads.ts";

/**
 * Nice level of the scheduler's threads. They share a CPU with a vCPU (slot 0 is pinned there):
 * at nice 0 a woken plugin Worker waited up to a CFS slice (measured: 4.7 ms) for the guest's
 * EMT to be preempted. At -10 CFS runs them at once on wake-up, and a runaway plugin still
 * cannot lock the core out (a real-time policy could).
 */
export const SCHEDULER_NICE = -10;

/** The host CPU the scheduler's threads share: the last one the process may use. */
export function schedulerCpu(): number {
  return Math.max(0, (navigator.hardwareConcurrency || 1) - 1);
}

/**
 * Pins the calling thread and, when known (`tid > 0`), the plugin's Worker thread to `cpu`,
 * and raises both to {@linkcode SCHEDULER_NICE}. Returns whether all of it took; failing is
 * harmless (only slower; raising priority needs CAP_SYS_NICE).
 */
export function colocate(tid: number, cpu = schedulerCpu()): boolean {
  // tid 0: the calling thread (sched_setaffinity(2); setpriority(2) is per thread on Linux)
  let ok = setThreadCpus(0, [cpu]) && setThreadNice(0, SCHEDULER_NICE);
  if (tid > 0) ok = setThreadCpus(tid, [cpu]) && setThreadNice(tid, SCHEDULER_NICE) && ok;
  return ok && tid > 0;
}
