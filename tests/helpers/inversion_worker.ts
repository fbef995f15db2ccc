/// <reference lib="deno.worker" />
/**
 * Test helper worker for tests/shim_inversion_test.ts: one thread of the priority-inversion
 * set-up. The holder, fair class, holds the shim's arm_lock for some CPU time; the waiter,
 * SCHED_FIFO at the scheduler core's priority on the same CPU, calls shim_extend on that
 * lock. Commands arrive as one message; the result goes back as one message.
 */
import { openShim } from "../../ffi/shim.ts";
import { setThreadCpus, setThreadRealtime } from "../../src/sched/host_threads.ts";

/** What the test asks of this thread. */
export type InversionCommand = {
  role: "holder" | "waiter";
  shimPath: string;
  block: SharedArrayBuffer;
  /** Word 0: the go signal for the holder. */
  sync: SharedArrayBuffer;
  cpu: number;
  /** The holder: thread CPU time to hold the lock, ns. The waiter: its SCHED_FIFO priority. */
  value: number;
};

/** What this thread reports. */
export type InversionResult = {
  role: "holder" | "waiter";
  /** Pinned, and (the waiter) made real-time. */
  placed: boolean;
  /** The holder: CPU time it held the lock. The waiter: CPU time it spent in shim_extend. */
  cpuNs: number;
  /** Wall time of the hold or of the shim_extend call, ns. */
  wallNs: number;
};

/** Byte offset of arm_lock in the shim's per-EMT block (ffi/shim.c, struct shim_emt). */
const ARM_LOCK_OFFSET = 56;

self.onmessage = (ev: MessageEvent<InversionCommand>) => {
  const cmd = ev.data;
  const shim = openShim(cmd.shimPath).symbols;
  const e = Deno.UnsafePointer.of(cmd.block);
  const sync = new Int32Array(cmd.sync);
  let placed = setThreadCpus(0, [cmd.cpu]);
  if (cmd.role === "holder") {
    self.postMessage("ready");
    while (Atomics.load(sync, 0) === 0) Atomics.wait(sync, 0, 0, 100);
    const t0 = shim.shim_now_f64();
    const cpuNs = shim.shim_hold_arm_lock(e, cmd.value);
    const result: InversionResult = {
      role: "holder",
      placed,
      cpuNs,
      wallNs: shim.shim_now_f64() - t0,
    };
    self.postMessage(result);
    return;
  }
  // The waiter becomes real-time only once the lock is held, and until then sleeps (a sleeping
  // poll): spinning here at real-time priority would itself keep the holder from the CPU.
  placed = setThreadRealtime(0, cmd.value) && placed;
  self.postMessage("ready");
  const lock = new Int32Array(cmd.block, ARM_LOCK_OFFSET, 1);
  while (Atomics.load(lock, 0) === 0) Atomics.wait(sync, 1, 0, 1);
  const cpu0 = shim.shim_thread_cpu_ns();
  const t0 = shim.shim_now_f64();
  shim.shim_extend(e, 1, 2); // armed for 0, not 1: takes the lock and moves nothing
  const result: InversionResult = {
    role: "waiter",
    placed,
    cpuNs: shim.shim_thread_cpu_ns() - cpu0,
    wallNs: shim.shim_now_f64() - t0,
  };
  self.postMessage(result);
};
