/**
 * Where the scheduler's own threads run. The core thread and its plugin's sandbox Worker talk
 * in strict turns (a batch of calls, then its answer), so they share one host CPU: a futex
 * hand-off to a thread on the same CPU costs about 3 µs here, across CPUs about 20-60 µs
 * (DESIGN.md, "Deno facts"; measured by `bench/sched.ts`).
 *
 * @module
 */
import { setThreadCpus } from "../scenario/host_threads.ts";

/** The host CPU the scheduler's threads share: the last one the process may use. */
export function schedulerCpu(): number {
  return Math.max(0, (navigator.hardwareConcurrency || 1) - 1);
}

/**
 * Pins the calling thread and, when known (`tid > 0`), the plugin's Worker thread to `cpu`.
 * Returns whether both were pinned; failing is harmless (only slower).
 */
export function colocate(tid: number, cpu = schedulerCpu()): boolean {
  const self = setThreadCpus(0, [cpu]); // tid 0: the calling thread (sched_setaffinity(2))
  return self && tid > 0 && setThreadCpus(tid, [cpu]);
}
