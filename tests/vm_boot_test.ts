/** Booting our guest kernel on real KVM: SMP bring-up, IPIs, timer sleeps. */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { bootToExit, KERNEL, requireKernel, sleep, threadCpuNs } from "./helpers/vmm.ts";
import { Vmm } from "../mod.ts";
import { test } from "./helpers/deadline.ts";

for (const vcpus of [1, 2, 4]) {
  test(`hello on ${vcpus} vCPU(s): every vCPU's line, status 0`, async () => {
    const { exit, console } = await bootToExit({
      name: `hello${vcpus}`,
      vcpus,
      cmdline: "workload=hello",
    });
    assertEquals(exit, { kind: "exit", status: 0 });
    for (let i = 0; i < vcpus; i++) {
      assert(
        console.includes(`hello from vcpu ${i} of ${vcpus}`),
        `missing vCPU ${i}'s line in:\n${console.join("\n")}`,
      );
    }
    assert(console.includes(`hello: all ${vcpus} vcpus up`), console.join("\n"));
  });
}

test("ipi: two vCPUs ping-pong IPIs and report round trips", async () => {
  const { exit, console, vm } = await bootToExit({
    name: "ipi",
    vcpus: 2,
    cmdline: "workload=ipi rounds=200",
  });
  assertEquals(exit, { kind: "exit", status: 0 }, console.join("\n"));
  const line = console.find((l) => l.startsWith("ipi: "));
  assert(line, console.join("\n"));
  const m = line.match(/^ipi: (\d+) round trips/);
  assertEquals(Number(m?.[1]), 200);
  // Each round trip is one IPI each way: both EMTs halted and were woken for them.
  const c = vm.counters();
  assert(c[0].wakes >= 200 && c[1].wakes >= 200, JSON.stringify(c.map((x) => x.wakes)));
});

test("sleep 10 x 10 ms on the LAPIC timer really halts and wakes on time", async () => {
  await requireKernel();
  const vmm = await Vmm.create();
  try {
    const vm = await vmm.createVm({
      name: "sleeper",
      kernel: KERNEL,
      cmdline: "workload=sleep count=10 ms=10",
    });
    const t0 = performance.now();
    await vm.start();
    let cpu = NaN;
    const tid = vm.emtThreadIds()[0];
    let done = false;
    const exitP = vm.wait().then((e) => (done = true, e));
    while (!done) {
      const c = threadCpuNs(tid);
      if (!Number.isNaN(c)) cpu = c;
      await sleep(5);
    }
    const exit = await exitP;
    const wall = (performance.now() - t0) * 1e6;
    assertEquals(exit, { kind: "exit", status: 0 }, vm.consoleText());
    const counters = vm.counters()[0];
    assert(wall >= 100e6, `the 10 sleeps took ${wall / 1e6} ms`);
    assert(counters.halts >= 10, `only ${counters.halts} halts`);
    assert(counters.nsHalted >= 90e6, `halted only ${counters.nsHalted / 1e6} ms`);
    assert(counters.nsGuest < 40e6, `in guest mode ${counters.nsGuest / 1e6} ms: not halting`);
    assert(cpu <= 50e6, `the EMT used ${cpu / 1e6} ms of CPU in ${wall / 1e6} ms`);
    const done10 = vm.console.find((l) => l.line.startsWith("sleep: done 10 x 10 ms"));
    assert(done10, vm.consoleText());
    // Wakes on time: the guest measures each sleep's lateness on its TSC.
    const total = Number(done10.line.match(/total (\d+) us/)?.[1]);
    assert(total >= 100_000 && total < 150_000, `total ${total} us for 10 x 10 ms`);
  } finally {
    await vmm.close();
  }
});
