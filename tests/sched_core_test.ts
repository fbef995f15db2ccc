/** SchedCore: the state machine, validation, rate limiting, hot-swap, accounting. No I/O. */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { SchedulerPlugin, VcpuInfo } from "../mod.ts";
import rr from "../plugins/rr.ts";
import { type NewVcpu, type SchedAction, SchedCore, THROTTLE_GRACE_NS } from "../src/sched/core.ts";
import { LocalPolicy } from "../src/sched/policy_port.ts";
import type { EjectInfo } from "../src/sched/watchdog.ts";
import { Prng } from "../src/sim/prng.ts";

const MS = 1_000_000;

function vcpu(id: number, state: "runnable" | "halted" = "runnable", vm = "a"): NewVcpu {
  return { id, vm, index: id, vmVcpus: 8, params: {}, state };
}

function grants(actions: SchedAction[]): number[] {
  return actions.filter((a) => a.type === "grant").map((a) => a.vcpu);
}

/** A FIFO plugin whose onWake returns a fixed slot (or nothing). */
function wakePreempts(slot: number | null): SchedulerPlugin {
  let q: number[] = [];
  return {
    name: "wake-preempts",
    init() {
      q = [];
    },
    addVcpu(i: VcpuInfo) {
      if (i.state === "runnable") q.push(i.id);
    },
    pickNext() {
      const v = q.shift();
      return v === undefined ? null : { vcpu: v, sliceNs: 10 * MS };
    },
    onHalt(v) {
      q = q.filter((x) => x !== v);
    },
    onWake(v) {
      q.unshift(v);
      return slot ?? undefined;
    },
    onDeschedule(v) {
      q.push(v);
    },
  };
}

Deno.test("core grants only runnable vCPUs, one per slot", () => {
  const core = new SchedCore({ slots: 2, policy: new LocalPolicy(rr) });
  assertEquals(grants(core.addVcpu(vcpu(0, "halted"), 0)), []);
  assertEquals(grants(core.addVcpu(vcpu(1), 0)), [1]);
  assertEquals(grants(core.addVcpu(vcpu(2), 0)), [2]);
  assertEquals(grants(core.addVcpu(vcpu(3), 0)), []); // both slots busy
  assertEquals(core.vcpuState(0), { state: "halted", slot: -1 });
  assertEquals(core.runningCount(), 2);
  // vCPU 1 halts: its slot goes to 3 (FIFO), never to the halted 0.
  const a = core.halt(1, 5 * MS, 5 * MS);
  assertEquals(grants(a), [3]);
  assertEquals(core.vcpuState(1)?.state, "halted");
  // 0 wakes; no slot is free: it waits; when 2's slice ends, 0 gets the slot.
  assertEquals(grants(core.wake(0, 6 * MS)), []);
  assertEquals(grants(core.sliceEnd(2, 10 * MS, 10 * MS)), [0]);
  const s = core.stats(10 * MS).vcpus.find((v) => v.id === 0)!;
  assertEquals(s.wakeLatency.count, 1);
  assertEquals(s.wakeLatencyP50Ns, 4 * MS);
});

Deno.test("core: a wake that preempts nothing fills an idle slot", () => {
  const core = new SchedCore({ slots: 2, policy: new LocalPolicy(wakePreempts(null)) });
  core.addVcpu(vcpu(0), 0);
  core.addVcpu(vcpu(1, "halted"), 0);
  assertEquals(core.runningCount(), 1);
  const a = core.wake(1, MS);
  assertEquals(a.map((x) => x.type), ["grant"]);
  assertEquals(a[0].slot, 1);
});

Deno.test("core: preempt keeps the slot until the EMT acknowledges it", () => {
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy(wakePreempts(0)),
    ratelimitNs: 0,
  });
  core.addVcpu(vcpu(0), 0);
  core.addVcpu(vcpu(1, "halted"), 0);
  const a = core.wake(1, 2 * MS);
  assertEquals(a, [{ type: "preempt", vcpu: 0, slot: 0, generation: 1 }]);
  assertEquals(core.slotHolder(0), 0); // still in guest mode until the ack
  assertEquals(core.vcpuState(0)?.state, "running");
  const b = core.preempted(0, 2.02 * MS, 2.02 * MS);
  assertEquals(grants(b), [1]);
  assertEquals(core.stats().vcpus[0].preemptions, 1);
});

Deno.test("core: ratelimit defers a preemption until the vCPU ran ratelimitNs", () => {
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy(wakePreempts(0)),
    ratelimitNs: MS,
  });
  core.addVcpu(vcpu(0), 0);
  core.addVcpu(vcpu(1, "halted"), 0);
  assertEquals(core.wake(1, 0.3 * MS), []); // ran 0.3 ms < 1 ms: deferred
  assertEquals(core.nextTimerAt(), MS);
  assertEquals(core.advance(0.9 * MS), []);
  assertEquals(core.advance(MS), [{ type: "preempt", vcpu: 0, slot: 0, generation: 1 }]);
  assertEquals(core.stats().deferredPreemptions, 1);
  // A slice end before the deferred time cancels it.
  core.preempted(0, 1_010_000, 1_010_000); // 1 runs now (generation 2)
  core.halt(0, 1_010_000, 0);
  core.wake(0, 1_500_000); // would preempt 1, which ran only 0.49 ms: deferred to 2.01 ms
  assertEquals(core.nextTimerAt(), 2_010_000);
  assertEquals(grants(core.halt(1, 1_800_000, 790_000)), [0]);
  assertEquals(core.advance(2_010_000), []); // cancelled: the slot changed hands
});

Deno.test("core: a plugin with ratelimit false is preempted at once (as Xen's RTDS)", () => {
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy({ ...wakePreempts(0), ratelimit: false }),
    ratelimitNs: MS,
  });
  core.addVcpu(vcpu(0), 0);
  core.addVcpu(vcpu(1, "halted"), 0);
  // Ran 0.3 ms < the 1 ms rate limit, and still preempted now.
  assertEquals(core.wake(1, 0.3 * MS), [{ type: "preempt", vcpu: 0, slot: 0, generation: 1 }]);
  assertEquals(core.stats().deferredPreemptions, 0);
  // Anything but a boolean is refused at init.
  for (const bad of [0, "no", null]) {
    const p = new LocalPolicy({ ...wakePreempts(0), ratelimit: bad as unknown as boolean });
    let err: unknown = null;
    try {
      p.init({ slots: 1, maxSliceNs: 100 * MS, ratelimitNs: MS });
    } catch (e) {
      err = e;
    }
    assert(err instanceof Error && /ratelimit must be a boolean/.test(err.message), String(err));
  }
});

Deno.test("core: grant generations increase", () => {
  const core = new SchedCore({ slots: 2, policy: new LocalPolicy(rr) });
  const gens: number[] = [];
  const take = (a: SchedAction[]) => {
    for (const x of a) if (x.type === "grant") gens.push(x.generation);
  };
  for (let i = 0; i < 4; i++) take(core.addVcpu(vcpu(i), 0));
  for (let t = 1; t <= 50; t++) {
    const running = [0, 1, 2, 3].filter((i) => core.vcpuState(i)?.state === "running");
    take(core.sliceEnd(running[t % running.length], t * MS, MS));
  }
  assert(gens.length > 40);
  for (let i = 1; i < gens.length; i++) assert(gens[i] > gens[i - 1]);
  assertEquals(core.generation, gens.at(-1));
});

Deno.test("core: random EMT events keep every invariant (rr)", () => {
  const rng = new Prng(7);
  const slots = 3;
  const core = new SchedCore({ slots, policy: new LocalPolicy(rr), ratelimitNs: 0.5 * MS });
  const n = 10;
  const deadline = new Map<number, number>();
  const grantAt = new Map<number, number>();
  let now = 0;
  const apply = (a: SchedAction[]) => {
    for (const x of a) {
      if (x.type === "grant") {
        assertEquals(core.vcpuState(x.vcpu)?.slot, x.slot);
        deadline.set(x.vcpu, x.deadline);
        grantAt.set(x.vcpu, now);
      }
      assert(core.runningCount() <= slots);
    }
  };
  for (let i = 0; i < n; i++) apply(core.addVcpu(vcpu(i, i % 3 ? "runnable" : "halted"), 0));
  for (let step = 0; step < 20_000; step++) {
    now += Math.floor(rng.next() * 2 * MS);
    apply(core.advance(now));
    assert(core.nextTimerAt() > now, "advance leaves no timer due");
    const id = Math.floor(rng.next() * n);
    const st = core.vcpuState(id)!;
    const ran = st.state === "running" ? now - grantAt.get(id)! : 0;
    const r = rng.next();
    if (st.state === "halted") apply(core.wake(id, now));
    else if (st.state === "running") {
      if (now >= deadline.get(id)!) apply(core.sliceEnd(id, now, ran));
      else if (r < 0.3) apply(core.halt(id, now, ran));
      else if (r < 0.4) apply(core.yield(id, now, ran));
      else if (r < 0.5) apply(core.preempted(id, now, ran));
    } else if (r < 0.1) apply(core.halt(id, now, 0));
    assert(core.runningCount() <= slots);
    // No slot idles while a vCPU waits (rr never declines).
    const s = core.stats(now);
    const waiting = s.vcpus.filter((v) => v.state === "runnable").length;
    if (waiting > 0) assertEquals(core.runningCount(), slots);
  }
  // Accounting adds up.
  const s = core.stats(now);
  const run = s.vcpus.reduce((a, v) => a + v.runNs, 0);
  assert(run <= slots * now, `${run} > ${slots} × ${now}`);
  for (const v of s.vcpus) assertEquals(v.slotNs + v.waitNs + v.haltedNs, now);
  const busy = s.slots.reduce((a, x) => a + x.busyNs, 0);
  assertEquals(busy, s.vcpus.reduce((a, v) => a + v.slotNs, 0));
  for (const x of s.slots) assertEquals(x.busyNs + x.idleNs, now);
  assertEquals(core.ejections.length, 0);
});

Deno.test("core: hot-swap tells the new plugin every vCPU and keeps running ones running", () => {
  const core = new SchedCore({ slots: 2, policy: new LocalPolicy(rr) });
  core.addVcpu(vcpu(0), 0);
  core.addVcpu(vcpu(1), 0);
  core.addVcpu(vcpu(2), 0);
  core.addVcpu(vcpu(3, "halted"), 0);
  const told: VcpuInfo[] = [];
  let inits = 0;
  const plugin = { ...wakePreempts(null), name: "next" };
  const recording: SchedulerPlugin = {
    ...plugin,
    init(ctx) {
      inits++;
      plugin.init!(ctx);
    },
    addVcpu(i) {
      told.push(i);
      plugin.addVcpu!(i);
    },
  };
  const a = core.swapPolicy(new LocalPolicy(recording), 3 * MS);
  assertEquals(a, []); // nobody is preempted
  assertEquals(inits, 1);
  assertEquals(core.policyName, "next");
  assertEquals(
    told.map((i) => [i.id, i.state, i.slot]),
    [[0, "running", 0], [1, "running", 1], [2, "runnable", undefined], [3, "halted", undefined]],
  );
  // The new plugin schedules from now on: 0's slice ends, 2 (its queue head) runs.
  assertEquals(grants(core.sliceEnd(0, 10 * MS, 10 * MS)), [2]);
  assertEquals(grants(core.wake(3, 11 * MS)), []);
  assertEquals(grants(core.sliceEnd(1, 12 * MS, 12 * MS)), [3]);
});

Deno.test("core: an invalid decision ejects to rr and no vCPU is lost", () => {
  const ejections: EjectInfo[] = [];
  let calls = 0;
  const bad: SchedulerPlugin = {
    name: "bad",
    pickNext: () => (++calls > 2 ? { vcpu: 99, sliceNs: MS } : { vcpu: calls - 1, sliceNs: MS }),
    onHalt() {},
    onWake() {},
  };
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy(bad),
    onEject: (e) => ejections.push(e),
  });
  core.addVcpu(vcpu(0), 0);
  core.addVcpu(vcpu(1), 0);
  core.addVcpu(vcpu(2, "halted"), 0);
  assertEquals(core.vcpuState(0)?.state, "running");
  const a = core.sliceEnd(0, MS, MS); // pickNext → vCPU 1, fine
  assertEquals(grants(a), [1]);
  const b = core.sliceEnd(1, 2 * MS, MS); // pickNext → 99: ejected; rr grants 0 (FIFO)
  assertEquals(ejections.length, 1);
  assertEquals(ejections[0].reason, "invalid");
  assertEquals(ejections[0].plugin, "bad");
  assert(ejections[0].detail.includes("vCPU 99, which does not exist"), ejections[0].detail);
  assertEquals(core.policyName, "rr");
  assertEquals(core.onFallback, true);
  assertEquals(grants(b).length, 1);
  // Every runnable vCPU keeps getting the slot; the halted one stays halted until woken.
  const seen = new Set<number>();
  for (let t = 3; t < 20; t++) {
    const running = [0, 1].find((i) => core.vcpuState(i)?.state === "running")!;
    seen.add(running);
    core.sliceEnd(running, t * MS, MS);
  }
  assertEquals([...seen].sort(), [0, 1]);
  assertEquals(core.vcpuState(2)?.state, "halted");
  core.wake(2, 30 * MS);
  const running = [0, 1].find((i) => core.vcpuState(i)?.state === "running")!;
  core.sliceEnd(running, 31 * MS, MS);
  core.sliceEnd([0, 1, 2].find((i) => core.vcpuState(i)?.state === "running")!, 32 * MS, MS);
  assert(core.stats().vcpus[2].grants >= 1);
});

Deno.test("core: each kind of invalid decision is named", () => {
  const cases: [string, SchedulerPlugin["pickNext"], RegExp][] = [
    ["unknown", () => ({ vcpu: 42, sliceNs: MS }), /does not exist/],
    ["halted", () => ({ vcpu: 1, sliceNs: MS }), /which is halted/],
    ["zero slice", () => ({ vcpu: 0, sliceNs: 0 }), /must be > 0/],
    ["huge slice", () => ({ vcpu: 0, sliceNs: 1e12 }), /max 100000000/],
    ["type", () => ({ vcpu: "0", sliceNs: MS }) as never, /expected an integer vCPU id/],
    ["undefined", () => undefined as never, /expected null or/],
  ];
  for (const [name, pickNext, re] of cases) {
    const ejections: EjectInfo[] = [];
    const core = new SchedCore({
      slots: 1,
      policy: new LocalPolicy({ name, pickNext, onHalt() {}, onWake() {} }),
      onEject: (e) => ejections.push(e),
    });
    core.addVcpu(vcpu(1, "halted"), 0);
    const a = core.addVcpu(vcpu(0), 0);
    assertEquals(ejections.length, 1, name);
    assertEquals(ejections[0].reason, "invalid", name);
    assert(re.test(ejections[0].detail), `${name}: ${ejections[0].detail}`);
    assertEquals(grants(a), [0], name); // the fallback granted it
  }
  // Running elsewhere: a plugin that always names vCPU 0.
  const ejections: EjectInfo[] = [];
  const core = new SchedCore({
    slots: 2,
    policy: new LocalPolicy({
      pickNext: () => ({ vcpu: 0, sliceNs: MS }),
      onHalt() {},
      onWake() {},
    }),
    onEject: (e) => ejections.push(e),
  });
  core.addVcpu(vcpu(0), 0);
  core.addVcpu(vcpu(1), 0);
  assert(/already running on slot 0/.test(ejections[0]?.detail ?? ""), ejections[0]?.detail);
  // onWake naming a slot that does not exist.
  const e2: EjectInfo[] = [];
  const c2 = new SchedCore({
    slots: 2,
    policy: new LocalPolicy({ ...wakePreempts(7), name: "w" }),
    onEject: (e) => e2.push(e),
  });
  c2.addVcpu(vcpu(0, "halted"), 0);
  c2.wake(0, MS);
  assert(/returned slot 7/.test(e2[0]?.detail ?? ""));
  assertEquals(c2.vcpuState(0)?.state, "running");
});

Deno.test("core: a starved vCPU ejects the plugin after the bound", () => {
  const ejections: EjectInfo[] = [];
  // Only ever runs vCPU 0; vCPU 1 starves.
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy({
      name: "unfair",
      pickNext: () => ({ vcpu: 0, sliceNs: 10 * MS }),
      onHalt() {},
      onWake() {},
    }),
    watchdog: { starvationNs: 100 * MS },
    onEject: (e) => ejections.push(e),
  });
  core.addVcpu(vcpu(0), 0);
  core.addVcpu(vcpu(1), 0);
  let t = 0;
  while (ejections.length === 0 && t < 1000 * MS) {
    t += 10 * MS;
    if (core.nextTimerAt() <= t) core.advance(t);
    if (core.vcpuState(0)?.state === "running") core.sliceEnd(0, t, 10 * MS);
  }
  assertEquals(ejections[0].reason, "starvation");
  assert(t >= 100 * MS && t <= 160 * MS, `ejected at ${t / MS} ms`);
  assert(/vCPU 1 \(a#1\) was runnable/.test(ejections[0].detail), ejections[0].detail);
  if (core.vcpuState(0)?.state === "running") core.sliceEnd(0, t + MS, MS);
  assertEquals(core.vcpuState(1)?.state, "running");
  // The fallback is never judged, but its watchdog timer is re-armed (no busy loop).
  const next = core.nextTimerAt();
  core.advance(next);
  assert(core.nextTimerAt() > next);
  assertEquals(core.ejections.length, 1);
});

Deno.test("core: manual eject and a throwing hook are reported, fallback takes over", () => {
  const ejections: EjectInfo[] = [];
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy(wakePreempts(null)),
    onEject: (e) => ejections.push(e),
  });
  core.addVcpu(vcpu(0), 0);
  core.eject("operator said so", MS);
  assertEquals(ejections[0].reason, "manual");
  assertEquals(ejections[0].detail, "operator said so");
  assertEquals(core.policyName, "rr");
  assertEquals(core.vcpuState(0)?.state, "running");
  // Swap in a plugin that throws in onHalt.
  core.swapPolicy(
    new LocalPolicy({
      name: "thrower",
      pickNext: () => null,
      onHalt() {
        throw new Error("boom");
      },
      onWake() {},
    }),
    2 * MS,
  );
  core.addVcpu(vcpu(1), 2 * MS);
  const a = core.halt(0, 3 * MS, MS);
  assertEquals(ejections[1].reason, "throw");
  assert(/onHalt threw Error: boom/.test(ejections[1].detail), ejections[1].detail);
  assertEquals(grants(a), [1]);
});

Deno.test("core: policy events are forwarded with the time of the call", () => {
  const seen: [string, number][] = [];
  let report: ((e: { kind: string; value?: number }) => void) | undefined;
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy({
      init(ctx) {
        report = ctx.report;
      },
      pickNext() {
        report!({ kind: "pick", value: 1 });
        return null;
      },
      onHalt() {},
      onWake() {},
    }),
    onPolicyEvent: (e, at) => seen.push([e.kind, at]),
  });
  core.addVcpu(vcpu(0), 5);
  assertEquals(seen, [["pick", 5]]);
});

Deno.test("core: extendSlice renews a slice with nobody waiting, and only then", () => {
  const lead = 0.5 * MS;
  // rr extends by the longest slice the core allows: 10 ms here.
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy(rr),
    extendLeadNs: lead,
    maxSliceNs: 10 * MS,
    decideAhead: false, // here the second vCPU waits for the slice's end, asked by pickNext
  });
  assertEquals(grants(core.addVcpu(vcpu(1), 0)), [1]);
  // Alone on the slot: asked `lead` before its 10 ms deadline, it goes on for another slice.
  assertEquals(core.nextTimerAt(), 10 * MS - lead);
  const a = core.advance(10 * MS - lead);
  assertEquals(a.length, 1);
  const e = a[0];
  assert(e.type === "extend");
  assertEquals([e.vcpu, e.slot, e.ranNs, e.oldDeadline, e.deadline], [
    1,
    0,
    10 * MS - lead,
    10 * MS,
    20 * MS - lead,
  ]);
  assertEquals(core.vcpuState(1), { state: "running", slot: 0 });
  // The EMT's later report is clamped to the part after the extension.
  assertEquals(core.heldNs(1, 12 * MS), 2.5 * MS);
  // A second vCPU waits: no extension; the slice ends with an exit and the slot changes hands.
  core.addVcpu(vcpu(2), 12 * MS);
  assertEquals(core.nextTimerAt() > 20 * MS - lead, true);
  assertEquals(core.advance(20 * MS - lead), []);
  assertEquals(grants(core.sliceEnd(1, 20 * MS - lead, 30 * MS)), [2]);
  const s = core.stats(20 * MS);
  const v1 = s.vcpus.find((v) => v.id === 1)!;
  assertEquals([v1.grants, v1.extensions, v1.runNs], [1, 1, 20 * MS - lead]);
});

Deno.test("core: extendSlice answering null lets the slice end; a bad slice ejects", () => {
  let answer: unknown = null;
  let charged = 0;
  const plugin: SchedulerPlugin = {
    ...rr,
    name: "extender",
    extendSlice(_v, _s, ranNs) {
      charged += ranNs;
      return answer as number | null;
    },
  };
  const ejections: EjectInfo[] = [];
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy(plugin),
    extendLeadNs: 0.5 * MS,
    onEject: (i) => ejections.push(i),
  });
  core.addVcpu(vcpu(1), 0);
  assertEquals(core.advance(9.5 * MS), []); // null: no action, asked once per grant
  assertEquals(charged, 9.5 * MS);
  assertEquals(core.nextTimerAt() >= 10 * MS, true);
  // At the deadline the EMT reports; the plugin hears only the 0.5 ms after the question.
  assertEquals(core.heldNs(1, 10 * MS), 0.5 * MS);
  assertEquals(grants(core.sliceEnd(1, 10 * MS, 10 * MS)), [1]);
  answer = -5;
  core.advance(19.5 * MS);
  assertEquals(ejections.length, 1);
  assert(ejections[0].detail.includes("extendSlice"), ejections[0].detail);
  assertEquals(core.policyName, "rr");
});

Deno.test("rr: a wake-up preempts a vCPU running past its slice at once, never one within it", () => {
  const preempts = (a: SchedAction[]) => a.filter((x) => x.type === "preempt").map((x) => x.slot);
  const make = () => {
    const core = new SchedCore({ slots: 1, policy: new LocalPolicy(rr), extendLeadNs: 0.5 * MS });
    assertEquals(grants(core.addVcpu(vcpu(1), 0)), [1]);
    core.addVcpu(vcpu(2, "halted"), 0);
    return core;
  };
  // Within its 10 ms slice: the waker queues.
  const within = make();
  assertEquals(preempts(within.wake(2, 5 * MS)), []);
  // Past it (extended by the longest slice, 100 ms, since nobody waited): the waker takes the
  // slot now, not when the extension ends.
  const past = make();
  const [e] = past.advance(9.5 * MS);
  assert(e.type === "extend");
  assertEquals(e.deadline, 109.5 * MS);
  assertEquals(preempts(past.wake(2, 20 * MS)), [0]);
  assertEquals(grants(past.preempted(1, 20.1 * MS, 10.6 * MS)), [2]);
});

Deno.test("core: reserved time is bounded per slot and second (RESERVED_MAX_NS)", async () => {
  const { RESERVED_MAX_NS } = await import("../src/sched/core.ts");
  // Two vCPUs take turns on one slot, every slice reserved time, 100 ms each.
  let q: number[] = [];
  const greedy: SchedulerPlugin = {
    name: "greedy-reserved",
    init() {
      q = [];
    },
    addVcpu(i: VcpuInfo) {
      q.push(i.id);
    },
    pickNext() {
      const v = q.shift();
      return v === undefined ? null : { vcpu: v, sliceNs: 100 * MS, reserved: true };
    },
    onHalt() {},
    onWake() {},
    onDeschedule(v) {
      q.push(v);
    },
  };
  const core = new SchedCore({ slots: 1, policy: new LocalPolicy(greedy) });
  const kinds: boolean[] = [];
  const take = (a: SchedAction[]) => {
    for (const x of a) if (x.type === "grant") kinds.push(x.reserved);
  };
  take(core.addVcpu(vcpu(0), 0));
  take(core.addVcpu(vcpu(1), 0));
  let running = 0;
  for (let t = 100 * MS; t <= 2000 * MS; t += 100 * MS) {
    take(core.sliceEnd(running, t, 100 * MS));
    running = core.slotHolder(0);
  }
  // Second 0: nine reserved slices (900 ms), then fair-class; second 1 starts reserved again.
  assertEquals(RESERVED_MAX_NS, 900 * MS);
  assertEquals(kinds.slice(0, 10), [...Array(9).fill(true), false]);
  assertEquals(kinds.slice(10, 20), [...Array(9).fill(true), false]);
});

Deno.test("core: a throttled vCPU is not taken for starving, for up to the grace; addVcpu says when", () => {
  const told: VcpuInfo[] = [];
  let ctx: { report(e: { kind: string; vcpu?: number; value?: number }): void } | null = null;
  // Runs vCPU 0 only; vCPU 1 is held back and reported throttled, then released.
  const holdsBack: SchedulerPlugin = {
    name: "holds-back",
    init(c) {
      ctx = c;
    },
    addVcpu(i) {
      told.push(i);
    },
    pickNext: () => ({ vcpu: 0, sliceNs: 10 * MS }),
    onHalt() {},
    onWake() {},
    onTick() {
      ctx!.report({ kind: "throttle", vcpu: 1, value: 1 });
    },
    tickNs: 5 * MS,
  };
  const ejections: EjectInfo[] = [];
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy(holdsBack),
    watchdog: { starvationNs: 100 * MS },
    onEject: (e) => ejections.push(e),
    now: 0,
  });
  core.addVcpu(vcpu(0), 1 * MS);
  core.addVcpu(vcpu(1), 2 * MS);
  assertEquals(told.map((i) => i.now), [1 * MS, 2 * MS]);
  // Throttled at the first tick: no ejection long past the 100 ms bound.
  let now = 2 * MS;
  for (; now < 2_000 * MS; now += 10 * MS) core.sliceEnd(0, now, 10 * MS), core.advance(now);
  assert(ejections.length === 0, JSON.stringify(ejections));
  // A plugin that never lifts it is ejected after the grace and the bound.
  for (; now < THROTTLE_GRACE_NS + 500 * MS && ejections.length === 0; now += 50 * MS) {
    core.advance(now);
  }
  assertEquals(ejections.length, 1);
  assert(/vCPU 1 \(a#1\) was runnable/.test(ejections[0].detail), ejections[0].detail);
  assert(now > THROTTLE_GRACE_NS + 100 * MS, `ejected at ${now / MS} ms`);
});
