/**
 * The scheduler on real KVM: slots are enforced (never more EMTs in guest mode than slots),
 * no wake-up is lost, accounting adds up, credit shares follow weights and caps hold, a policy
 * can be swapped at run time, and an ejected plugin leaves every VM running.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { iterations, KERNEL, sleep, until, untilAdvanced, withVmm } from "./helpers/vmm.ts";
import type { Vm, Vmm } from "../mod.ts";
import { threadPolicy, threadRunNs, threadWaitNs } from "../src/sched/host_threads.ts";
import { REALTIME_PRIORITY } from "../src/sched/affinity.ts";
import { test } from "./helpers/deadline.ts";
import { childPids, processExists } from "./helpers/processes.ts";

const PLUGINS = new URL("../plugins/", import.meta.url);
const plugin = (name: string) => new URL(name, PLUGINS).href;

/** Guest ns of each VM's vCPUs (the shim's clock) between two samples. */
function guestNs(vm: Vm): number {
  return vm.counters().reduce((s, c) => s + c.nsGuest, 0);
}

for (const slots of [1, 2]) {
  test(`3 VMs x 2 vCPUs on ${slots} slot(s): never more in guest mode than slots`, async () => {
    await withVmm({ plugin: plugin("rr.ts"), slots }, async (vmm) => {
      const vms = [];
      for (const name of ["a", "b", "c"]) {
        vms.push(
          await vmm.createVm({
            name,
            vcpus: 2,
            kernel: KERNEL,
            cmdline: "workload=spin seconds=0",
          }),
        );
      }
      const t0 = performance.now();
      for (const vm of vms) await vm.start();
      await sleep(600);
      for (const vm of vms) await untilAdvanced(vm); // every vCPU ran: the slots went round
      const wallNs = (performance.now() - t0) * 1e6;
      assert(
        vmm.guestModeHighWater <= slots,
        `high-water ${vmm.guestModeHighWater} EMTs in guest mode with ${slots} slot(s)`,
      );
      // Every vCPU made progress: the slots went round.
      for (const vm of vms) {
        for (const [i, v] of vm.stats()!.vcpus.entries()) {
          assert(v.iterations > 0n, `vm ${vm.name} vcpu ${i} never ran`);
        }
      }
      // Accounting adds up: guest time <= slots x wall time (invariant 4).
      const total = vms.reduce((s, vm) => s + guestNs(vm), 0);
      assert(
        total <= slots * wallNs * 1.02,
        `guest ${total / 1e6} ms > ${slots} x ${wallNs / 1e6}`,
      );
      const stats = await vmm.scheduler!.stats();
      assertEquals(stats.vcpus.length, 6);
      for (const v of stats.vcpus) assert(v.grants > 0, `${v.vm}/${v.index} never granted`);
    });
  });
}

test("no lost wake-up: ipi and timer sleeps complete under a 1-slot scheduler", async () => {
  await withVmm({ plugin: plugin("rr.ts"), slots: 1 }, async (vmm) => {
    const ipi = await vmm.createVm({
      name: "ipi",
      vcpus: 2,
      kernel: KERNEL,
      cmdline: "workload=ipi rounds=100",
    });
    const sleeper = await vmm.createVm({
      name: "sleeper",
      kernel: KERNEL,
      cmdline: "workload=sleep count=10 ms=5",
    });
    const hog = await vmm.createVm({
      name: "hog",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    for (const vm of [ipi, sleeper, hog]) await vm.start();
    const timer = setTimeout(() => [ipi, sleeper].forEach((vm) => vm.stop()), 20_000);
    const [e1, e2] = await Promise.all([ipi.wait(), sleeper.wait()]);
    clearTimeout(timer);
    assertEquals(e1, { kind: "exit", status: 0 }, ipi.consoleText());
    assertEquals(e2, { kind: "exit", status: 0 }, sleeper.consoleText());
    assert(ipi.consoleText().includes("ipi: 100 round trips"));
    assert(vmm.guestModeHighWater <= 1, `high-water ${vmm.guestModeHighWater}`);
  });
});

test("credit: shares follow weights 1:2:4 on one slot (within 3 pp)", async () => {
  await withVmm({ plugin: plugin("credit.ts"), slots: 1 }, async (vmm) => {
    const weights = { w1: 256, w2: 512, w4: 1024 };
    const vms = [];
    for (const [name, weight] of Object.entries(weights)) {
      vms.push(
        await vmm.createVm({
          name,
          kernel: KERNEL,
          cmdline: "workload=spin seconds=0",
          sched: { weight },
        }),
      );
    }
    for (const vm of vms) await vm.start();
    await sleep(500); // let credit settle
    // Weights divide the CPU the slot delivered: each VM's EMT CPU time. Wall time in guest
    // mode also counts steal (other host threads on the slot's CPU), which credit does not
    // charge: beside a CPU hog it read 15.7 / 30.6 / 53.7 % while the CPU split by weight.
    const cpu = (vm: Vm) => threadRunNs(vm.emtThreadIds()[0]);
    const a = vms.map(cpu);
    // Credit's 30 ms slices make a short window's shares wander: 2.5 s windows beside a CPU hog
    // (stress-ng --cpu 1) read up to 3.8 pp off, 5 s windows at most 0.8 pp over 6 runs.
    await sleep(5000);
    const d = vms.map((vm, i) => cpu(vm) - a[i]);
    const sum = d.reduce((s, x) => s + x, 0);
    const shares = d.map((x) => x / sum);
    console.log(`  shares ${shares.map((x) => (x * 100).toFixed(1)).join(" / ")} %`);
    const want = [1 / 7, 2 / 7, 4 / 7];
    shares.forEach((s, i) =>
      assert(
        Math.abs(s - want[i]) <= 0.03,
        `shares ${shares.map((x) => (x * 100).toFixed(1))} %, want 14.3 / 28.6 / 57.1`,
      )
    );
  });
});

test("credit: a 25 % cap holds beside an uncapped spinner", async () => {
  await withVmm({ plugin: plugin("credit.ts"), slots: 1 }, async (vmm) => {
    const capped = await vmm.createVm({
      name: "capped",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
      sched: { cap: 25 },
    });
    const free = await vmm.createVm({
      name: "free",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    await capped.start();
    await free.start();
    await sleep(400);
    // A cap bounds the CPU a VM consumes: its EMT's CPU time, not its wall time in guest mode,
    // which also counts the steal (other host threads on its CPU) that credit does not charge.
    const emt = capped.emtThreadIds()[0];
    const c0 = threadRunNs(emt), g0 = guestNs(capped), t0 = performance.now();
    await sleep(3000);
    const wallNs = (performance.now() - t0) * 1e6;
    const share = (threadRunNs(emt) - c0) / wallNs;
    const guest = (guestNs(capped) - g0) / wallNs;
    const got = `${(share * 100).toFixed(1)} % of a CPU (${
      (guest * 100).toFixed(1)
    } % in guest mode)`;
    console.log(`  capped VM: ${got}`);
    // Credit enforces a cap per 30 ms accounting period from 10 ms ticks, so a window's share
    // wanders around it: 1 s windows of the caps scenario read 23.3-26.9 %, a 2 s one once 26.1.
    assert(share <= 0.27, `capped VM got ${got}`);
    assert(share >= 0.15, `capped VM got only ${got}`);
  });
});

/** Every kind of sandbox the scheduler runs a plugin in. */
const SANDBOXES = ["worker", "process"] as const;

/** This process's children whose command line names `what` (a sandbox's plugin file). */
function sandboxPids(what: string): number[] {
  return childPids().filter((p) => {
    try {
      return Deno.readTextFileSync(`/proc/${p}/cmdline`).includes(what);
    } catch {
      return false;
    }
  });
}

for (const sandbox of SANDBOXES) {
  test(`hot-swap rr to credit mid-run (${sandbox} sandbox): no VM stops, every vCPU keeps running`, async () => {
    await withVmm({ plugin: plugin("rr.ts"), slots: 1, sandbox }, async (vmm) => {
      const vms = [];
      for (const name of ["p", "q"]) {
        vms.push(
          await vmm.createVm({
            name,
            vcpus: 2,
            kernel: KERNEL,
            cmdline: "workload=spin seconds=0",
          }),
        );
      }
      for (const vm of vms) await vm.start();
      for (const vm of vms) await untilAdvanced(vm);
      const rrPids = sandboxPids("/plugins/rr.ts");
      assertEquals(rrPids.length, sandbox === "process" ? 1 : 0, "rr's sandbox processes");
      await vmm.scheduler!.swap(plugin("credit.ts"));
      assert(vmm.scheduler!.policy.includes("credit"), vmm.scheduler!.policy);
      // The plugin swapped away is gone, process and all; its successor has its own.
      for (const pid of rrPids) assert(!processExists(pid), `rr's sandbox ${pid} still exists`);
      assertEquals(sandboxPids("/plugins/credit.ts").length, sandbox === "process" ? 1 : 0);
      // Every vCPU of every VM moves on after the swap (a stall fails the wait, naming the VM).
      for (const vm of vms) {
        await untilAdvanced(vm, iterations(vm));
        assertEquals(vm.state, "running");
      }
      assertEquals(vmm.scheduler!.ejections, []);
    });
    // Closing the scheduler ends the last sandbox too.
    assertEquals(sandboxPids("/plugins/credit.ts"), []);
  });

  test(`a plugin that throws is ejected (${sandbox} sandbox); rr takes over and the VMs keep running`, async () => {
    const ejected: string[] = [];
    await withVmm({
      plugin: new URL("./fixtures/kvm_plugins/throws_on_tick.ts", import.meta.url).href,
      slots: 1,
      sandbox,
      onEject: (info) => ejected.push(`${info.reason}: ${info.detail}`),
    }, async (vmm) => {
      const vms = [];
      for (const name of ["x", "y"]) {
        vms.push(
          await vmm.createVm({ name, kernel: KERNEL, cmdline: "workload=spin seconds=0" }),
        );
      }
      for (const vm of vms) await vm.start();
      for (const vm of vms) await untilAdvanced(vm);
      await until("the throwing plugin ejected", () => ejected.length > 0);
      assertEquals(ejected.length, 1, `ejections: ${ejected}`);
      assert(/throw/.test(ejected[0]) && /onTick/.test(ejected[0]), ejected[0]);
      // Every VM moves on under the fallback (a stall fails the wait, naming the VM).
      for (const vm of vms) {
        await untilAdvanced(vm, iterations(vm));
        assertEquals(vm.state, "running");
      }
      // The ejected plugin's process is gone.
      assertEquals(sandboxPids("throws_on_tick"), []);
    });
  });
}

test("pause gives the slot away and stops guest time; resume takes it back", async () => {
  await withVmm({ plugin: plugin("rr.ts"), slots: 1 }, async (vmm) => {
    const a = await vmm.createVm({ name: "a", kernel: KERNEL, cmdline: "workload=spin seconds=0" });
    const b = await vmm.createVm({ name: "b", kernel: KERNEL, cmdline: "workload=spin seconds=0" });
    await a.start();
    await b.start();
    await sleep(200);
    a.pause();
    assertEquals(a.state, "paused");
    await sleep(50);
    const a0 = guestNs(a), b0 = guestNs(b), t0 = performance.now();
    await sleep(300);
    const wall = (performance.now() - t0) * 1e6;
    assertEquals(guestNs(a), a0, "a paused VM ran guest code");
    assert(guestNs(b) - b0 > 0.8 * wall, `b got ${(guestNs(b) - b0) / 1e6} ms of ${wall / 1e6}`);
    a.resume();
    await sleep(300);
    assert(guestNs(a) > a0 + 50e6, "a did not run again after resume");
    assert(vmm.guestModeHighWater <= 1);
  });
});

for (const policy of ["credit.ts", "credit2.ts"]) {
  test(`${policy}: an echo VM beside a hog on one slot is answered, nobody starves`, async () => {
    const ejected: string[] = [];
    await withVmm({
      plugin: plugin(policy),
      slots: 1,
      onEject: (e) => ejected.push(`${e.reason}: ${e.detail}`),
    }, async (vmm) => {
      const echo = await vmm.createVm({
        name: "echo",
        kernel: KERNEL,
        cmdline: "workload=echo service_us=50",
      });
      const hog = await vmm.createVm({
        name: "hog",
        kernel: KERNEL,
        cmdline: "workload=spin seconds=0",
      });
      await echo.start();
      await hog.start();
      for (let i = 0; i < 300 && !echo.consoleText().includes("echo: ready"); i++) await sleep(10);
      // Requests preempt the hog over and over: a grant revoked before its EMT woke must still
      // come back to the core (this once deadlocked the slot).
      const r = await echo.echoLoad({ mode: "open", ratePerSec: 1000, seconds: 1 });
      assertEquals(r.completed, r.sent);
      assertEquals(ejected, []);
      assert(vmm.guestModeHighWater <= 1);
    });
  });
}

test("pinned slots: the EMT holding slot 0 runs on host CPU 0; manual eject", async () => {
  const ejected: string[] = [];
  await withVmm({
    plugin: plugin("credit.ts"),
    slots: 1,
    pin: [0],
    onEject: (e) => ejected.push(e.reason),
  }, async (vmm) => {
    const vm = await vmm.createVm({
      name: "p",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    await vm.start();
    await untilAdvanced(vm);
    const tid = vm.emtThreadIds()[0];
    const status = Deno.readTextFileSync(`/proc/self/task/${tid}/status`);
    assertEquals(status.match(/^Cpus_allowed_list:\s*(\S+)/m)?.[1], "0");
    await vmm.scheduler!.eject("operator says so");
    assertEquals(ejected, ["manual"]);
    assert(/rr/.test(vmm.scheduler!.policy), vmm.scheduler!.policy);
    await untilAdvanced(vm, iterations(vm)); // the VM moves on after the eject
  });
});

test("the trace says what woke each vCPU: its timer, an IPI, a device", async () => {
  const { decodeTrace, TRACE, WAKE_SOURCE_NAME } = await import("../src/trace/events.ts");
  await withVmm({ plugin: plugin("credit.ts"), slots: 1 }, async (vmm) => {
    const sleeper = await vmm.createVm({
      name: "sleeper",
      kernel: KERNEL,
      cmdline: "workload=sleep count=20 ms=2",
    });
    const ipi = await vmm.createVm({
      name: "ipi",
      vcpus: 2,
      kernel: KERNEL,
      cmdline: "workload=ipi rounds=50",
    });
    const echo = await vmm.createVm({
      name: "echo",
      kernel: KERNEL,
      cmdline: "workload=echo service_us=20",
    });
    for (const vm of [sleeper, ipi, echo]) await vm.start();
    for (let i = 0; i < 300 && !echo.consoleText().includes("echo: ready"); i++) await sleep(10);
    await echo.echoLoad({ mode: "open", ratePerSec: 200, seconds: 0.3 });
    await Promise.all([sleeper.wait(), ipi.wait()]);
    const t = await vmm.scheduler!.trace();
    const vmOf = new Map(t.vcpus.map((v) => [v.id, v.vm]));
    const sources = new Map<string, Set<string>>();
    for (const r of decodeTrace(t)) {
      if (r.type !== TRACE.wake) continue;
      const vm = vmOf.get(r.vcpu)!;
      if (!sources.has(vm)) sources.set(vm, new Set());
      sources.get(vm)!.add(WAKE_SOURCE_NAME[r.reason]);
    }
    assert(sources.get("sleeper")?.has("timer"), `sleeper: ${[...sources.get("sleeper") ?? []]}`);
    assert(sources.get("ipi")?.has("ipi"), `ipi: ${[...sources.get("ipi") ?? []]}`);
    assert(sources.get("echo")?.has("device"), `echo: ${[...sources.get("echo") ?? []]}`);
  });
});

test("a vCPU alone on its slot keeps running: slices are extended without exits", async () => {
  const { decodeTrace, TRACE, RUN_END_REASON } = await import("../src/trace/events.ts");
  await withVmm({ plugin: plugin("rr.ts"), params: { slice_ms: 10 }, slots: 1 }, async (vmm) => {
    const vm = await vmm.createVm({
      name: "alone",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    await vm.start();
    await untilAdvanced(vm);
    await sleep(200);
    const c0 = vm.counters()[0], it0 = vm.stats()!.vcpus[0].iterations;
    const s0 = (await vmm.scheduler!.stats()).vcpus[0];
    await sleep(1000);
    const c1 = vm.counters()[0], it1 = vm.stats()!.vcpus[0].iterations;
    const s1 = (await vmm.scheduler!.stats()).vcpus[0];
    // Past its first 10 ms slice rr extends it by the core's longest slice (100 ms) at a time,
    // so almost no deadline exit and no new grant (a late core lets the odd one end and
    // re-grants it: allow a few), and the scheduler is asked about 12 times in 1.2 s, not 120.
    const deadlines = c1.deadlines - c0.deadlines, grants = s1.grants - s0.grants;
    console.log(`alone for 1 s: ${deadlines} deadline exits, ${grants} grants`);
    assert(deadlines <= 5, `deadline exits in 1 s: ${deadlines}`);
    assert(grants <= 5, `grants in 1 s: ${grants}`);
    assert(it1 > it0, "the guest made progress");
    const ends = decodeTrace(await vmm.scheduler!.trace()).filter((r) => r.type === TRACE.runEnd);
    const extended = ends.filter((r) => RUN_END_REASON[r.reason] === "extend").length;
    assert(extended >= 8 && extended <= 20, `extensions in the trace: ${extended}`);

    // A vCPU that wakes takes the slot from the one running past its slice at once, not at
    // the end of its 100 ms extension; from then on nothing is extended: the slot alternates.
    const other = await vmm.createVm({
      name: "other",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    await other.start();
    await sleep(300);
    const data = await vmm.scheduler!.trace();
    const otherId = data.vcpus.find((v) => v.vm === "other")!.id;
    const recs = decodeTrace(data);
    const woke = recs.find((r) => r.type === TRACE.wake && r.vcpu === otherId)!;
    const granted = recs.find((r) => r.type === TRACE.grant && r.vcpu === otherId)!;
    assert(granted.t - woke.t < 20e6, `first grant ${(granted.t - woke.t) / 1e6} ms after wake`);
    const e0 = (await vmm.scheduler!.stats()).vcpus.reduce((s, v) => s + v.extensions, 0);
    const g0 = (await vmm.scheduler!.stats()).vcpus.reduce((s, v) => s + v.grants, 0);
    await sleep(500);
    const st = await vmm.scheduler!.stats();
    const e1 = st.vcpus.reduce((s, v) => s + v.extensions, 0);
    const g1 = st.vcpus.reduce((s, v) => s + v.grants, 0);
    assertEquals(e1 - e0, 0);
    assert(g1 - g0 >= 30, `grants in 0.5 s with two vCPUs: ${g1 - g0}`);
  });
});

/** Steal and slot time of the runs that ended in the last `ms`, and the EMT's CPU time. */
async function stealWindows(
  vmm: Vmm,
  emt: number,
): Promise<(ms: number) => Promise<StealWindow>> {
  const { decodeTrace, TRACE, RUN_END_REASON } = await import("../src/trace/events.ts");
  const lastT = async () =>
    decodeTrace(await vmm.scheduler!.trace()).reduce((t, r) => Math.max(t, r.t), 0);
  const stolenTotal = async () => (await vmm.scheduler!.stats()).vcpus[0].stolenNs;
  const extend = RUN_END_REASON.indexOf("extend");
  return async (ms: number) => {
    const since = await lastT(), r0 = threadRunNs(emt), s0 = await stolenTotal();
    const w0 = threadWaitNs(emt);
    await sleep(ms);
    const cpuNs = threadRunNs(emt) - r0;
    const waitNs = threadWaitNs(emt) - w0;
    const statsNs = await stolenTotal() - s0;
    const ends = decodeTrace(await vmm.scheduler!.trace()).filter((r) =>
      r.type === TRACE.runEnd && r.t > since
    );
    return {
      stolenNs: ends.reduce((s, r) => s + r.aux * 1e3, 0),
      atExtensionNs: ends.reduce((s, r) => s + (r.reason === extend ? r.aux * 1e3 : 0), 0),
      statsNs,
      cpuNs,
      waitNs,
      runs: ends.length,
    };
  };
}

/** What {@linkcode stealWindows} measures over one window. */
interface StealWindow {
  stolenNs: number;
  atExtensionNs: number;
  statsNs: number;
  cpuNs: number;
  /** ns the EMT's thread waited on a runqueue (the kernel's schedstat), held or not. */
  waitNs: number;
  runs: number;
}

/** Runs `body` while a host thread spins on `emt`'s CPU (the slot's: the core pinned it). */
async function besideSpinner<T>(emt: number, body: () => Promise<T>): Promise<T> {
  const status = Deno.readTextFileSync(`/proc/self/task/${emt}/status`);
  const cpu = Number(/Cpus_allowed_list:\s*(\d+)$/m.exec(status)![1]);
  const spinner = new Worker(new URL("./fixtures/spin_on_cpu.ts", import.meta.url), {
    type: "module",
  });
  const stop = new SharedArrayBuffer(4);
  await new Promise((r) => {
    spinner.onmessage = r;
    spinner.postMessage({ cpu, stop });
  });
  try {
    return await body();
  } finally {
    Atomics.store(new Int32Array(stop), 0, 1);
    await new Promise((r) => spinner.onmessage = r); // it left its loop
    spinner.terminate();
  }
}

test("the EMT reports the CPU time other host threads took from it (steal)", async () => {
  await withVmm({ plugin: plugin("credit.ts"), slots: 1 }, async (vmm) => {
    const vm = await vmm.createVm({
      name: "spin",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
      sched: { cap: 20 },
    });
    await vm.start();
    const emt = vm.emtThreadIds()[0];
    const window = await stealWindows(vmm, emt);
    await sleep(500);
    // Without a spinner, whatever else the host runs: the steal reported is time the EMT's
    // thread really waited for its CPU, as the kernel counts it (schedstat's run delay, which
    // also counts waits while not holding a grant), give or take a grant at the window's edges
    // (a 30 ms slice). On a quiet host both are near 0; beside stress-ng --cpu 1 they are
    // hundreds of ms.
    const alone = await window(1000);
    assert(alone.runs >= 10, `runs alone: ${alone.runs}`);
    assert(
      alone.stolenNs <= 1.1 * alone.waitNs + 30e6,
      `steal reported ${alone.stolenNs / 1e6} ms, but the EMT waited for its CPU only ` +
        `${alone.waitNs / 1e6} ms`,
    );

    // A host thread spinning on the slot's CPU takes part of it while the vCPU holds the slot
    // (credit's grants are not reserved time: the EMT is a fair-class thread like the spinner):
    // reported, and then not charged (plugins_test checks that).
    const beside = await besideSpinner(emt, () => window(1000));
    assert(
      beside.stolenNs > 0.5 * beside.cpuNs && beside.stolenNs > 50e6,
      `steal beside a spinner ${beside.stolenNs / 1e6} ms, EMT CPU ${beside.cpuNs / 1e6} ms`,
    );
    // Some of it came at slice extensions (read by the core from the EMT's CPU clock).
    assert(beside.atExtensionNs > 5e6, `steal at extensions ${beside.atExtensionNs / 1e6} ms`);
    // The scheduler's stats count it too (the same grants, give or take one at the edges).
    assert(
      Math.abs(beside.statsNs - beside.stolenNs) < 0.2 * beside.stolenNs,
      `stats ${beside.statsNs / 1e6} ms, trace ${beside.stolenNs / 1e6} ms`,
    );
  });
});

test("reserved time (rtds's budget) is held real-time: a spinner beside takes none of it", async () => {
  await withVmm({ plugin: plugin("rtds.ts"), slots: 1 }, async (vmm) => {
    const vm = await vmm.createVm({
      name: "rt",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
      sched: { period_ms: 10, budget_ms: 2, extratime: false },
    });
    await vm.start();
    const emt = vm.emtThreadIds()[0];
    const window = await stealWindows(vmm, emt);
    await sleep(300);
    const { beside, holding } = await besideSpinner(emt, async () => {
      // While it holds its budget the EMT is SCHED_FIFO at the reserved priority; waiting, at
      // the waiting EMTs' (sampled: it holds 2 ms in 10).
      // Sampled in bursts of 12 ms, a whole period, for up to 5 s: single samples between
      // sleeps missed the 2 ms beside a CPU hog, which makes this thread's wake-ups wait.
      const seen = new Set<string>();
      for (const t0 = performance.now(); seen.size < 2 && performance.now() - t0 < 5000;) {
        for (const b = performance.now(); performance.now() - b < 12;) {
          const p = threadPolicy(emt);
          if (p) seen.add(`${p.policy}/${p.priority}`);
        }
        await sleep(3);
      }
      return { beside: await window(1000), holding: seen };
    });
    assert(holding.has(`1/${REALTIME_PRIORITY.reservedEmt}`), `policies seen: ${[...holding]}`);
    // The trace marks its grants reserved (aux 1), extensions too, every one of them: it has no
    // extratime.
    const { decodeTrace, TRACE } = await import("../src/trace/events.ts");
    const grants = decodeTrace(await vmm.scheduler!.trace()).filter((r) => r.type === TRACE.grant);
    assert(
      grants.length >= 50 && grants.every((r) => r.aux === 1),
      `${grants.length} grants, reserved or not: ${
        grants.map((r) => r.aux).join("").slice(0, 200)
      }`,
    );
    assert(holding.has(`1/${REALTIME_PRIORITY.waitingEmt}`), `policies seen: ${[...holding]}`);
    assert(beside.runs >= 50, `runs beside the spinner: ${beside.runs}`);
    // Its 2 ms in 10 are its own: the spinner gets the rest of the CPU, not a share of these
    // (a fair-class holder loses over half to it, as the test above shows). What steal is left
    // is the scheduler's own threads, real-time above it on this CPU, and the host.
    assert(beside.cpuNs > 150e6, `EMT CPU ${beside.cpuNs / 1e6} ms in 1 s`);
    assert(
      beside.stolenNs < 0.25 * beside.cpuNs,
      `steal of reserved time ${beside.stolenNs / 1e6} ms, EMT CPU ${beside.cpuNs / 1e6} ms`,
    );
  });
});
