/** The guest's scheduling workloads, each on its own: what it reports and how it behaves. */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { bootToExit, KERNEL, requireKernel, sleep } from "./helpers/vmm.ts";
import { Vmm } from "../mod.ts";
import { test } from "./helpers/deadline.ts";

test("periodic: every job runs, misses and lateness are reported", async () => {
  const { exit, console, vm } = await bootToExit({
    name: "rt",
    vcpus: 2,
    cmdline: "workload=periodic period_ms=10 compute_us=1000 jobs=20",
  });
  assertEquals(exit, { kind: "exit", status: 0 }, console.join("\n"));
  const line = console.find((l) => l.startsWith("periodic: "));
  match(line ?? "", /^periodic: 40 jobs, \d+ misses, max lateness \d+ us$/);
  const c = vm.counters();
  // Between jobs each vCPU sleeps on its LAPIC timer: it halts about once per job.
  for (const v of c) assert(v.halts >= 15, `only ${v.halts} halts for 20 jobs`);
});

for (const lock of ["tas", "ticket"]) {
  test(`lock (${lock}): every vCPU takes the shared lock, one at a time`, async () => {
    const { exit, console, stats } = await bootToExit({
      name: "lock",
      vcpus: 2,
      cmdline: `workload=lock lock=${lock} seconds=1 cs_us=2 work_us=20`,
    });
    assertEquals(exit, { kind: "exit", status: 0 }, console.join("\n"));
    const m = console.find((l) => l.startsWith("lock: "))?.match(
      /^lock: (\d+) acquisitions in \d+ us, \d+\/s, (\d+) exclusion violations$/,
    );
    assert(m, console.join("\n"));
    assertEquals(m[2], "0", "two vCPUs were inside the critical section at once");
    const per = stats!.vcpus.map((v) => Number(v.iterations));
    assertEquals(per.reduce((s, x) => s + x, 0), Number(m[1]));
    for (const n of per) assert(n > 50, `a vCPU took the lock only ${n} times`);
  });
}

test("work_us of guest work takes at least that long (the calibration times the same loop)", async () => {
  // One vCPU, nothing inside the lock: each round is work(1000 us) plus a few instructions.
  // Losing the CPU only lowers the count; a calibration that ran a faster loop than work()
  // raised it (about 2000 rounds a second before the fix). The bound, 1500, sits between: this
  // host's speed is not the same in the calibration and in the second that follows (CPU time
  // shared with the machine's other tenants). With 55 us bursts and no warm-up the loop once ran
  // 53 % faster than calibrated (1532 rounds); calibrate_work() now warms up for about 1 ms and
  // times 0.3 ms bursts: 893-1118 rounds in six runs.
  const { exit, console } = await bootToExit({
    name: "work",
    cmdline: "workload=lock seconds=1 cs_us=0 work_us=1000",
  });
  assertEquals(exit, { kind: "exit", status: 0 }, console.join("\n"));
  const n = Number(console.find((l) => l.startsWith("lock: "))?.match(/^lock: (\d+) /)?.[1]);
  assert(n >= 300 && n <= 1500, `${n} rounds of 1000 us in 1 s`);
});

test("lock: an unknown lock is named, exit status 2", async () => {
  const { exit, console } = await bootToExit({
    name: "lock",
    vcpus: 2,
    cmdline: "workload=lock lock=mcs seconds=1",
  });
  assertEquals(exit, { kind: "exit", status: 2 });
  assert(console.includes("lock: unknown lock 'mcs' (tas or ticket)"), console.join("\n"));
});

test("attacker: runs just under 10 ms, then halts, over and over", async () => {
  const { exit, vm, stats } = await bootToExit({
    name: "attacker",
    cmdline: "workload=attacker seconds=1 run_us=9500 sleep_us=500",
  });
  assertEquals(exit, { kind: "exit", status: 0 });
  const rounds = Number(stats!.vcpus[0].rounds);
  assert(rounds >= 80 && rounds <= 105, `${rounds} run/sleep rounds in 1 s`);
  const c = vm.counters()[0];
  // A sleep whose timer fires before the kernel reaches HLT (its ring-0 path is emulated and
  // slow here) ends without a halt: nearly all of them halt.
  assert(c.halts >= rounds * 0.9, `${c.halts} halts for ${rounds} sleeps`);
});

test("echo: open and closed loop requests are all answered, latency measured", async () => {
  await requireKernel();
  const vmm = await Vmm.create();
  try {
    const vm = await vmm.createVm({
      name: "echo",
      kernel: KERNEL,
      cmdline: "workload=echo service_us=50",
    });
    await vm.start();
    for (let i = 0; i < 200 && !vm.consoleText().includes("echo: ready"); i++) await sleep(10);
    const open = await vm.echoLoad({ mode: "open", ratePerSec: 300, seconds: 0.5 });
    assert(open.sent >= 100 && open.sent <= 200, `open loop sent ${open.sent}`);
    assertEquals(open.completed, open.sent);
    assert(open.p50Ns >= 50_000, `p50 ${open.p50Ns} ns is below the 50 us service time`);
    assert(open.p99Ns >= open.p50Ns);
    const closed = await vm.echoLoad({ mode: "closed", clients: 2, seconds: 0.5 });
    assert(closed.completed > 100, `closed loop answered ${closed.completed}`);
    assert(closed.sent - closed.completed <= 2, "a closed-loop client has one request in flight");
    // The guest counts a request in its stats page just after ringing the doorbell that
    // answers it (guests/user/echo.c), so the count may trail the answers for a moment.
    const served = () => Number(vm.stats()!.vcpus[0].rounds);
    for (let i = 0; i < 100 && served() < open.sent + closed.completed; i++) await sleep(10);
    assert(served() >= open.sent + closed.completed && served() <= open.sent + closed.sent);
    await assertRejects(() => vm.echoLoad({ mode: "open", seconds: 0.1, ratePerSec: -1 }));
  } finally {
    await vmm.close();
  }
});

async function assertRejects(f: () => Promise<unknown>): Promise<void> {
  try {
    await f();
  } catch {
    return;
  }
  throw new Error("expected a rejection");
}
