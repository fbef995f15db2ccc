/**
 * How the scheduler's threads and the EMTs run on the host: waiting EMTs, the core and its
 * plugin's sandbox are real-time (SCHED_FIFO, core above sandbox above waiting EMTs), the vCPU
 * that holds a slot is fair-class as it was started. These machines run the tests as root;
 * without CAP_SYS_NICE the fallbacks (short slice, nice -10) are taken instead.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KERNEL, requireKernel, sleep } from "./helpers/vmm.ts";
import { Vmm } from "../mod.ts";
import { REALTIME_PRIORITY } from "../src/sched/affinity.ts";
import { setThreadNice, threadAttr, WaitPolicy } from "../src/sched/host_threads.ts";

/** [policy, rt priority, nice] of thread `tid` of this process, from /proc (proc(5)). */
function policyOf(tid: number): [number, number, number] {
  const stat = Deno.readTextFileSync(`/proc/self/task/${tid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // f[0] is field 3, state
  return [Number(f[41 - 3]), Number(f[40 - 3]), Number(f[19 - 3])];
}

/** Every thread of this process. */
function threads(): number[] {
  return [...Deno.readDirSync("/proc/self/task")].map((e) => Number(e.name));
}

Deno.test("WaitPolicy: real-time while waiting, back to the thread's own nice level and default slice while holding", () => {
  const started = threadAttr(0)!;
  assert(setThreadNice(0, 3));
  try {
    const p = WaitPolicy.forCallingThread(REALTIME_PRIORITY.waitingEmt);
    assert(p !== null);
    assertEquals(p.kind, "realtime");
    const attr = () => {
      const dv = new DataView(threadAttr(0)!.buffer);
      return {
        policy: dv.getUint32(4, true),
        nice: dv.getInt32(16, true),
        prio: dv.getUint32(20, true),
      };
    };
    assertEquals(attr(), { policy: 1, nice: 0, prio: REALTIME_PRIORITY.waitingEmt });
    p.holding();
    assertEquals(attr(), { policy: 0, nice: 3, prio: 0 });
    p.holding(); // idempotent
    p.waiting();
    assertEquals(attr().policy, 1);
    p.holding();
    assertEquals(attr().policy, 0);
  } finally {
    setThreadNice(0, new DataView(started.buffer).getInt32(16, true));
  }
});

Deno.test("on KVM: the core and the sandbox are SCHED_FIFO 3 and 2, a waiting EMT FIFO 1, the EMT holding the slot fair-class", async () => {
  requireKernel();
  const before = new Set(threads().filter((t) => policyOf(t)[0] === 1));
  const vmm = await Vmm.create({ scheduler: { plugin: "plugins/rr.ts", slots: 1 } });
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
    // The spinner is alone on the slot (its slice is extended); the sleeper waits for its timer.
    assertEquals(policyOf(spinTid)[0], 0);
    assertEquals(policyOf(sleeperTid).slice(0, 2), [1, REALTIME_PRIORITY.waitingEmt]);
    const emts = new Set([spinTid, sleeperTid]);
    const others = threads()
      .filter((t) => !before.has(t) && !emts.has(t))
      .map(policyOf)
      .filter(([policy]) => policy === 1)
      .map(([, prio]) => prio)
      .sort();
    assertEquals(others, [REALTIME_PRIORITY.sandbox, REALTIME_PRIORITY.core]);
  } finally {
    await vmm.close();
  }
});

Deno.test("without CAP_SYS_NICE: waiting EMTs take the short slice, nothing is real-time, the VMs run", async () => {
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
