/**
 * Priority inversion in the shim's timer lock (DESIGN.md invariant 7), reproduced on purpose:
 * a fair-class thread holds arm_lock on one CPU while a SCHED_FIFO thread at the scheduler
 * core's priority, on the same CPU, calls shim_extend, which takes that lock.
 *
 * With a lock that spins or sched_yield()s, the real-time waiter keeps the holder off the CPU
 * (sched_yield never yields to a lower priority) and burns the CPU until RT throttling lets
 * the holder finish its section 5 % at a time. That was the livelock of the core in
 * shim_extend. With the priority-inheritance lock the waiter sleeps in the kernel and lends
 * the holder its priority: it uses almost no CPU, whatever the host's timing. That CPU time,
 * not a wall-clock time, is what the test asserts.
 */
import { ok as assert } from "node:assert/strict";
import { buildShim } from "../ffi/shim.ts";
import { EMT_BLOCK_SIZE } from "../src/emt/shim_layout.ts";
import { REALTIME_PRIORITY } from "../src/sched/affinity.ts";
import type { InversionCommand, InversionResult } from "./helpers/inversion_worker.ts";
import { test } from "./helpers/deadline.ts";

const shimPath = await buildShim();

/** Starts a helper thread for `cmd`; resolves with its "ready" and its result. */
function start(cmd: InversionCommand): { ready: Promise<void>; done: Promise<InversionResult> } {
  const w = new Worker(new URL("./helpers/inversion_worker.ts", import.meta.url), {
    type: "module",
  });
  let onReady = () => {};
  const ready = new Promise<void>((r) => onReady = r);
  const done = new Promise<InversionResult>((resolve, reject) => {
    w.onerror = (e) => {
      e.preventDefault();
      reject(new Error(`${cmd.role}: ${e.message}`));
    };
    w.onmessage = (m) => {
      if (m.data === "ready") return onReady();
      resolve(m.data as InversionResult);
    };
  }).finally(() => w.terminate());
  w.postMessage(cmd);
  return { ready, done };
}

test("arm_lock cannot invert: a real-time shim_extend waits asleep for a fair-class holder on its CPU", async () => {
  const block = new SharedArrayBuffer(EMT_BLOCK_SIZE);
  const sync = new SharedArrayBuffer(8);
  const cpu = navigator.hardwareConcurrency - 1;
  const holdNs = 20e6;
  const base = { shimPath, block, sync, cpu };
  const holder = start({ ...base, role: "holder", value: holdNs });
  await holder.ready;
  const waiter = start({ ...base, role: "waiter", value: REALTIME_PRIORITY.core });
  await waiter.ready;
  Atomics.store(new Int32Array(sync), 0, 1);
  Atomics.notify(new Int32Array(sync), 0);
  const [h, w] = await Promise.all([holder.done, waiter.done]);
  const ms = (ns: number) => `${(ns / 1e6).toFixed(1)} ms`;
  console.log(
    `holder: ${ms(h.cpuNs)} CPU in ${ms(h.wallNs)}; ` +
      `real-time waiter: ${ms(w.cpuNs)} CPU in ${ms(w.wallNs)} in shim_extend`,
  );
  assert(h.placed && w.placed, "pinning or SCHED_FIFO refused (the test needs CAP_SYS_NICE)");
  assert(h.cpuNs >= holdNs, `the holder held the lock for ${ms(h.cpuNs)} of CPU`);
  // The waiter found the lock held (it polls for that), so it waited for the holder's whole
  // remaining section. Asleep, that costs it microseconds of CPU; spinning, at least the rest of
  // the holder's section (the holder can only run while the waiter is throttled or yields).
  assert(
    w.cpuNs < holdNs / 4,
    `the real-time waiter used ${ms(w.cpuNs)} of CPU waiting for a ${ms(holdNs)} section ` +
      `held by a lower-priority thread on its CPU: it spun (priority inversion)`,
  );
});
