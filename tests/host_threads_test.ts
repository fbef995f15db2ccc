/**
 * How the scheduler's threads and the EMTs run on the host: waiting EMTs, the core and its
 * plugin's sandbox are real-time (SCHED_FIFO, core above sandbox above waiting EMTs), the vCPU
 * that holds a slot is fair-class as it was started. These machines run the tests as root;
 * without CAP_SYS_NICE the fallbacks (short slice, nice -10) are taken instead.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KERNEL, requireKernel, sleep, until } from "./helpers/vmm.ts";
import { Vmm } from "../mod.ts";
import { REALTIME_PRIORITY } from "../src/sched/affinity.ts";
import {
  processCpus,
  processThreads,
  releaseThread,
  setThreadCpus,
  setThreadNice,
  setThreadRealtime,
  threadPolicy,
  WaitPolicy,
} from "../src/sched/host_threads.ts";
import { test } from "./helpers/deadline.ts";
import { childPids } from "./helpers/processes.ts";

test("WaitPolicy: real-time while waiting, back to the thread's own nice level and default slice while holding", () => {
  const started = threadPolicy(0)!;
  assert(setThreadNice(0, 3));
  try {
    const p = WaitPolicy.forCallingThread(REALTIME_PRIORITY.waitingEmt);
    assert(p !== null);
    assertEquals(p.kind, "realtime");
    const attr = () => threadPolicy(0)!;
    assertEquals(attr(), { policy: 1, nice: 0, priority: REALTIME_PRIORITY.waitingEmt });
    p.holding();
    assertEquals(attr(), { policy: 0, nice: 3, priority: 0 });
    p.holding(); // idempotent
    p.waiting();
    assertEquals(attr().policy, 1);
    p.holding();
    assertEquals(attr().policy, 0);
  } finally {
    setThreadNice(0, started.nice);
  }
});

/** The CPUs the calling thread may run on (`Cpus_allowed_list` in /proc/thread-self/status). */
function allowedCpus(): number[] {
  const status = Deno.readTextFileSync("/proc/thread-self/status");
  const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)![1];
  return list.split(",").flatMap((r) => {
    const [a, b] = r.split("-").map(Number);
    return Array.from({ length: (b ?? a) - a + 1 }, (_, i) => a + i);
  });
}

test("WaitPolicy.release: a pinned, real-time waiting EMT leaves as it was started, on every CPU", () => {
  const started = threadPolicy(0)!;
  assert(setThreadNice(0, 2));
  try {
    const p = WaitPolicy.forCallingThread(REALTIME_PRIORITY.waitingEmt)!;
    assert(setThreadCpus(0, [0]));
    assertEquals(threadPolicy(0)!.policy, 1);
    assertEquals(allowedCpus(), [0]);
    p.release();
    assertEquals(threadPolicy(0), { policy: 0, nice: 2, priority: 0 });
    assertEquals(allowedCpus(), processCpus());
  } finally {
    setThreadNice(0, started.nice);
    setThreadCpus(0, processCpus());
  }
});

test("releaseThread: a real-time thread pinned to one CPU goes back to the fair class on every CPU", () => {
  const started = threadPolicy(0)!;
  try {
    assert(setThreadRealtime(0, REALTIME_PRIORITY.core));
    assert(setThreadCpus(0, [processCpus().at(-1)!]));
    assertEquals(threadPolicy(0)!.policy, 1);
    assert(releaseThread(0));
    assertEquals(threadPolicy(0), { policy: 0, nice: 0, priority: 0 });
    assertEquals(allowedCpus(), processCpus());
  } finally {
    releaseThread(0);
    setThreadNice(0, started.nice);
  }
});

for (const sandbox of ["process", "worker"] as const) {
  test(`on KVM (${sandbox} sandbox): the core and the sandbox are SCHED_FIFO 3 and 2, a waiting EMT FIFO 1, the EMT holding the slot fair-class`, async () => {
    requireKernel();
    const before = new Set(processThreads().filter((t) => threadPolicy(t)?.policy === 1));
    const children = new Set(childPids());
    const vmm = await Vmm.create({ scheduler: { plugin: "plugins/rr.ts", slots: 1, sandbox } });
    try {
      const spin = await vmm.createVm({
        name: "spin",
        kernel: KERNEL,
        cmdline: "workload=spin seconds=0",
      });
      const sleeper = await vmm.createVm({
        name: "sleeper",
        kernel: KERNEL,
        cmdline: "workload=sleep count=1000 ms=200",
      });
      await spin.start();
      await sleeper.start();
      await sleep(500);
      const [spinTid] = spin.emtThreadIds();
      const [sleeperTid] = sleeper.emtThreadIds();
      // The spinner is alone on the slot (its slice is extended); the sleeper waits for its
      // timer. Each of the sleeper's wake-ups takes the slot for a moment (longer on a loaded
      // host, where the sleeper's fair-class run waits for the CPU), the spinner waiting
      // real-time meanwhile: look until both are seen so, which they are nearly all the time.
      await until("the spinner holding the slot fair-class, the sleeper waiting real-time", () => {
        const waiting = threadPolicy(sleeperTid);
        return threadPolicy(spinTid)?.policy === 0 && waiting?.policy === 1 &&
          waiting.priority === REALTIME_PRIORITY.waitingEmt;
      }, 5_000);
      const emts = new Set([spinTid, sleeperTid]);
      const raised = processThreads().filter((t) =>
        !before.has(t) && !emts.has(t) && threadPolicy(t)?.policy === 1
      );
      // The process sandbox's plugin thread is its child's main thread (tid = pid).
      const sandboxes = childPids().filter((p) => !children.has(p));
      assertEquals(sandboxes.length, sandbox === "process" ? 1 : 0, "sandbox processes");
      raised.push(...sandboxes);
      const others = raised.map((t) => threadPolicy(t)!.priority).sort();
      assertEquals(others, [REALTIME_PRIORITY.sandbox, REALTIME_PRIORITY.core]);
      await vmm.close();
      // Each thread left deno-vmm's code fair-class (releaseThread): one still ending its Worker
      // now does so unpinned and below no one.
      const lingering = [...emts, ...raised].filter((t) => threadPolicy(t)?.policy === 1);
      assertEquals(lingering, [], "threads still real-time after close");
      assertEquals(
        childPids().filter((p) => !children.has(p)),
        [],
        "sandbox processes after close",
      );
    } finally {
      await vmm.close();
    }
  });
}

test("without CAP_SYS_NICE: waiting EMTs take the short slice, nothing is real-time, the VMs run", async () => {
  requireKernel();
  const fixture = new URL("./fixtures/unprivileged_sched.ts", import.meta.url).pathname;
  const out = await new Deno.Command("setpriv", {
    args: [
      "--bounding-set=-sys_nice",
      "--inh-caps=-sys_nice",
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-worker-options",
      fixture,
    ],
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert(out.success, new TextDecoder().decode(out.stderr));
  const r = JSON.parse(text.trim().split("\n").at(-1)!);
  assertEquals(r.kind, "short-slice");
  assertEquals(r.fifoThreads, 0);
  assert(r.progress > 0, `both VMs made progress: ${text}`);
});
