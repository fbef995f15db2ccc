/** The simulator: determinism, fairness under rr, workloads that halt and wake, accounting. */
import {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual,
  ok as assert,
  rejects,
} from "node:assert/strict";
import type { SchedulerPlugin } from "../mod.ts";
import { type SimOptions, type SimResult, simulate } from "../src/sim/mod.ts";
import { Prng } from "../src/sim/prng.ts";
import { busyScenario } from "../bench/sim.ts";
import { test } from "./helpers/deadline.ts";

const RR = new URL("../plugins/rr.ts", import.meta.url).href;

/** The result without its wall-clock fields. */
/** A result without what differs between identical runs (wall time) or where they ran. */
function stable(r: SimResult): Omit<SimResult, "wallMs" | "eventsPerSec" | "sandbox"> {
  const { wallMs: _w, eventsPerSec: _e, sandbox: _s, ...rest } = r;
  return rest;
}

const MIXED: SimOptions = {
  plugin: RR,
  slots: 2,
  seconds: 2,
  seed: 42,
  windowNs: 250_000_000,
  vms: [
    { name: "spin", vcpus: 2, workload: { kind: "spin" } },
    {
      name: "web",
      vcpus: 2,
      workload: { kind: "echo", mode: "open", ratePerSec: 3000, serviceUs: 80 },
    },
    {
      name: "db",
      vcpus: 1,
      workload: { kind: "echo", mode: "closed", clients: 3, serviceUs: 200, thinkUs: 500 },
    },
    { name: "lock", vcpus: 3, workload: { kind: "lock", csUs: 30, workUs: 100 } },
    { name: "rt", vcpus: 1, workload: { kind: "periodic", periodMs: 20, computeMs: 3 } },
    { name: "ipi", vcpus: 2, workload: { kind: "ipi", workUs: 20 } },
  ],
};

test("sim: same seed, same result (in-process, whole in the sandbox, per call)", async () => {
  const a = await simulate({ ...MIXED, sandbox: false });
  const b = await simulate({ ...MIXED, sandbox: false });
  assertEquals(stable(a), stable(b));
  const c = await simulate({ ...MIXED, sandbox: true });
  assertEquals(c.ejections, []);
  assertEquals(stable(c), stable(a));
  const p = await simulate({ ...MIXED, sandbox: "per-call" });
  assertEquals(stable(p), stable(a));
  const d = await simulate({ ...MIXED, sandbox: false, seed: 43 });
  notDeepStrictEqual(stable(d).vms, stable(a).vms);
});

test("sim: rr gives 3 spinning VMs on 1 slot equal shares (within 1 pp)", async () => {
  const r = await simulate({
    plugin: RR,
    slots: 1,
    seconds: 10,
    vms: ["a", "b", "c"].map((name) => ({ name, vcpus: 1, workload: { kind: "spin" } })),
  });
  assertEquals(r.ejections, []);
  for (const vm of r.vms) assert(Math.abs(vm.share - 1 / 3) < 0.01, `${vm.name}: ${vm.share}`);
  const total = r.vms.reduce((a, v) => a + v.runNs, 0);
  assertEquals(total, r.elapsedNs); // the slot never idles
  assertEquals(r.maxRunning, 1);
});

test("sim: ipi and echo workloads halt and wake", async () => {
  const r = await simulate({ ...MIXED, sandbox: false });
  const vm = (n: string) => r.vms.find((v) => v.name === n)!;
  for (const name of ["web", "db", "ipi", "rt"]) {
    assert(vm(name).haltedNs > 0, `${name} halts`);
    assert(vm(name).wakeLatency.count > 0, `${name} is woken`);
  }
  const ipi = vm("ipi").ipi!;
  // Under rr a woken vCPU queues behind the spinners: each IPI waits for a slice.
  assert(ipi.ipis > 20, `ipis ${ipi.ipis}`);
  assert(ipi.latency.count > 0 && ipi.latency.p50 > 0);
  const web = vm("web").echo!;
  assert(web.requests > 5000 && web.completed >= web.requests * 0.98, JSON.stringify(web));
  assert(web.latency.p50 >= 80_000, "a request takes at least its service time");
  const db = vm("db").echo!;
  assert(db.completed > 100, JSON.stringify(db));
  assert(vm("lock").lock!.acquisitions > 1000);
  assert(vm("rt").periodic!.jobs >= 99);
  // Accounting adds up.
  const run = r.vms.reduce((a, v) => a + v.runNs, 0);
  assert(run <= r.slots * r.elapsedNs);
  assert(r.maxRunning <= r.slots);
  for (const v of r.vcpus) assert(v.runNs <= r.elapsedNs);
  // Windows cover the run and their shares are the run's.
  assertEquals(r.windows!.length, 8);
  for (const w of r.windows!) {
    const sum = Object.values(w.shares).reduce((a, b) => a + b, 0);
    assert(sum <= 1 + 1e-9, `window share ${sum}`);
  }
});

test("sim: a periodic VM alone meets its deadlines; overloaded it misses them", async () => {
  const rt = {
    name: "rt",
    vcpus: 1,
    workload: { kind: "periodic", periodMs: 10, computeMs: 2 },
  } as const;
  const alone = await simulate({ plugin: RR, slots: 1, seconds: 1, sandbox: false, vms: [rt] });
  assertEquals(alone.vms[0].periodic!.misses, 0);
  assertEquals(alone.vms[0].periodic!.jobs, 100);
  const loaded = await simulate({
    plugin: RR,
    slots: 1,
    seconds: 1,
    sandbox: false,
    vms: [rt, { name: "hog", vcpus: 3, workload: { kind: "spin" } }],
  });
  const p = loaded.vms[0].periodic!;
  assert(p.misses > 10, JSON.stringify(p));
  assert(p.lateness.count > 0);
});

test("sim: lock-holder preemption burns spin time", async () => {
  const r = await simulate({
    plugin: RR,
    slots: 2,
    seconds: 1,
    sandbox: false,
    vms: [{ name: "lock", vcpus: 4, workload: { kind: "lock", csUs: 50, workUs: 50 } }],
  });
  const l = r.vms[0].lock!;
  assert(l.acquisitions > 0 && l.spinNs > 0, JSON.stringify(l));
  // 4 vCPUs on 2 slots: holders get descheduled inside the critical section, waiters spin.
  assert(l.spinNs > 0.2 * r.vms[0].runNs, JSON.stringify(l));
});

test("sim: a ticket lock also stalls behind descheduled waiters, test-and-set does not", async () => {
  const run = (lock: "tas" | "ticket") =>
    simulate({
      plugin: RR,
      slots: 2,
      seconds: 1,
      sandbox: false,
      vms: [
        { name: "lock", vcpus: 4, workload: { kind: "lock", csUs: 2, workUs: 20, lock } },
        { name: "hog", vcpus: 2, workload: { kind: "spin" } },
      ],
    }).then((r) => r.vms[0].lock!);
  const tas = await run("tas"), ticket = await run("ticket");
  // With 4 of 6 vCPUs descheduled at any time, the next ticket is nearly always a waiter
  // that is not running: the ticket lock moves about once per slice switch.
  assert(
    ticket.acquisitions * 10 < tas.acquisitions,
    `${ticket.acquisitions} vs ${tas.acquisitions}`,
  );
  const bad = {
    kind: "lock",
    csUs: 2,
    workUs: 20,
    lock: "mcs",
  } as unknown as SimOptions["vms"][0]["workload"];
  await rejects(
    simulate({
      plugin: RR,
      slots: 1,
      seconds: 0.1,
      sandbox: false,
      vms: [{ name: "l", vcpus: 2, workload: bad }],
    }),
    /lock must be "tas" or "ticket", got "mcs"/,
  );
});

test("sim: hand-off and poke latencies cost guest time", async () => {
  const base: SimOptions = {
    plugin: RR,
    slots: 1,
    seconds: 1,
    sandbox: false,
    vms: [{ name: "a", vcpus: 2, workload: { kind: "spin" } }],
  };
  const ideal = await simulate(base);
  const real = await simulate({ ...base, handoffNs: 20_000, pokeNs: 5_000 });
  assertEquals(ideal.vms[0].runNs, ideal.elapsedNs);
  // 100 grants per second, 20 µs each.
  const lost = ideal.vms[0].runNs - real.vms[0].runNs;
  assert(lost >= 1.9e6 && lost <= 2.1e6, `lost ${lost} ns`);
});

test("sim: a plugin object runs in-process; policy events are counted", async () => {
  let q: number[] = [];
  let report: ((e: { kind: string }) => void) | undefined;
  const fifo: SchedulerPlugin = {
    name: "inline",
    init(ctx) {
      q = [];
      report = ctx.report;
    },
    addVcpu: (i) => void (i.state === "runnable" && q.push(i.id)),
    pickNext() {
      report!({ kind: "pick" });
      const v = q.shift();
      return v === undefined ? null : { vcpu: v, sliceNs: 5_000_000 };
    },
    onHalt: (v) => void (q = q.filter((x) => x !== v)),
    onWake: (v) => void q.push(v),
    onDeschedule: (v) => void q.push(v),
  };
  const r = await simulate({
    plugin: fifo,
    slots: 1,
    seconds: 1,
    vms: [{ name: "a", vcpus: 2, workload: { kind: "spin" } }],
  });
  assertEquals(r.plugin, "inline");
  assertEquals(r.policyEvents.pick, 200);
  assertEquals(r.vms[0].grants, 200);
});

test("sim: bad options are named", async () => {
  const vms = [{ name: "a", vcpus: 1, workload: { kind: "spin" as const } }];
  await rejects(simulate({ plugin: RR, slots: 0, seconds: 1, vms }), /slots must be/);
  await rejects(simulate({ plugin: RR, slots: 1, seconds: 0, vms }), /seconds must be > 0/);
  await rejects(simulate({ plugin: RR, slots: 1, seconds: 1, vms: [] }), /at least one VM/);
  await rejects(
    simulate({ plugin: RR, slots: 1, seconds: 1, vms: [...vms, ...vms], sandbox: false }),
    /used twice/,
  );
  await rejects(
    simulate({
      plugin: RR,
      slots: 1,
      seconds: 1,
      sandbox: false,
      vms: [{ name: "a", vcpus: 1, workload: { kind: "nope" } as never }],
    }),
    /unknown workload kind "nope"/,
  );
  await rejects(
    simulate({ plugin: "/nonexistent/plugin.ts", slots: 1, seconds: 1, vms }),
    /cannot load scheduler plugin \/nonexistent\/plugin\.ts/,
  );
});

test("sim: the PRNG is deterministic and roughly uniform", () => {
  const a = new Prng(5), b = new Prng(5);
  const xs = Array.from({ length: 10_000 }, () => a.next());
  assertEquals(xs, Array.from({ length: 10_000 }, () => b.next()));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert(Math.abs(mean - 0.5) < 0.02);
  assert(xs.every((x) => x >= 0 && x < 1));
});

test("sim: rr from its file runs alike in-process, whole in the sandbox and per call (events/s printed)", async () => {
  const local = await simulate(busyScenario(0.5, false));
  const whole = await simulate(busyScenario(0.5, true));
  const perCall = await simulate(busyScenario(0.5, "per-call"));
  console.log(
    `rr in-process: ${
      (local.eventsPerSec / 1e6).toFixed(2)
    } M events/s (${local.events} events); ` +
      `whole simulation sandboxed: ${(whole.eventsPerSec / 1e6).toFixed(2)} M events/s; ` +
      `per-call sandbox: ${(perCall.eventsPerSec / 1e6).toFixed(3)} M events/s`,
  );
  assertEquals([local.sandbox, whole.sandbox, perCall.sandbox], ["none", "whole", "per-call"]);
  // The same seed, the same run: the plugin's place changes nothing but the speed.
  const same = (r: SimResult) => ({ events: r.events, vms: r.vms, ejections: r.ejections });
  assertEquals(same(whole), same(local));
  assertEquals(same(perCall), same(local));
});

test("sim: a job that finishes exactly at the end of the run is not a miss", async () => {
  // compute = period - hand-off: each job ends exactly at its deadline, the last at the end.
  const r = await simulate({
    plugin: RR,
    slots: 1,
    seconds: 1,
    sandbox: false,
    handoffNs: 36_000,
    vms: [{ name: "rt", vcpus: 1, workload: { kind: "periodic", periodMs: 10, computeMs: 9.964 } }],
  });
  const p = r.vms[0].periodic!;
  assertEquals([p.jobs, p.completed, p.misses], [100, 100, 0]);
});

test("sim: a vCPU nobody waits behind runs on without new grants (slice extension)", async () => {
  // As on KVM, the core asks the plugin to extend a slice shortly before its deadline when no
  // other vCPU waits: a lone hog pays no hand-off per slice.
  const credit2 = new URL("../plugins/credit2.ts", import.meta.url).href;
  const r = await simulate({
    plugin: credit2,
    slots: 1,
    seconds: 2,
    handoffNs: 36_000,
    vms: [{ name: "hog", vcpus: 1, workload: { kind: "spin" } }],
  });
  assert(r.vcpus[0].grants <= 2, `${r.vcpus[0].grants} grants in 2 s`);
  assert(r.vcpus[0].share > 0.999, `share ${r.vcpus[0].share}`);
});
