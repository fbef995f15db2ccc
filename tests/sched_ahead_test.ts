/**
 * Deciding ahead (`queueNext`) in the core, with no I/O: the hand-off by the leaving EMT and the
 * core's check after the fact, every cause of a revocation, a revocation that loses the race with
 * the hand-off, a plugin that lies, and random events with EMTs that hand over before they report.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { DescheduleReason, SchedulerPlugin, VcpuId, VcpuInfo } from "../mod.ts";
import {
  type AheadDispatch,
  type GrantAction,
  type NewVcpu,
  type QueuedChoice,
  type QueueOutcome,
  type SchedAction,
  SchedCore,
  type SchedCoreOptions,
} from "../src/sched/core.ts";
import { LocalPolicy } from "../src/sched/policy_port.ts";
import type { EjectInfo } from "../src/sched/watchdog.ts";
import { Prng } from "../src/sim/prng.ts";
import { RtdsScheduler } from "../plugins/rtds.ts";
import { GangScheduler } from "../plugins/gang.ts";
import { CreditScheduler } from "../plugins/credit.ts";

const MS = 1_000_000;
const US = 1_000;
const SLICE = 10 * MS;

function vcpu(id: number, state: "runnable" | "halted" = "runnable", vm = "a"): NewVcpu {
  return { id, vm, index: id, vmVcpus: 8, params: {}, state };
}

function grantsOf(actions: SchedAction[]): GrantAction[] {
  return actions.filter((a): a is GrantAction => a.type === "grant");
}

/** The runtime's side of the hand-off, as the KVM dispatch table settles it. */
class RaceDispatch implements AheadDispatch {
  readonly slots = new Map<number, { c: QueuedChoice; handed: boolean }>();
  readonly withdrawn = new Set<VcpuId>();
  queue(c: QueuedChoice): boolean {
    if (this.withdrawn.has(c.vcpu)) return false;
    this.slots.set(c.slot, { c, handed: false });
    return true;
  }
  revoke(c: QueuedChoice): QueueOutcome {
    const q = this.slots.get(c.slot);
    if (q?.c.generation !== c.generation) return "cancelled";
    if (q.handed) return "handed";
    this.slots.delete(c.slot);
    return "core";
  }
  claim(c: QueuedChoice): QueueOutcome {
    const q = this.slots.get(c.slot);
    if (q?.c.generation !== c.generation) return "cancelled";
    this.slots.delete(c.slot);
    return q.handed ? "handed" : "core";
  }
  /** The EMT leaving `slot` under `holderGen` takes the choice (before it reports). */
  handOff(slot: number, holderGen: number): QueuedChoice | null {
    const q = this.slots.get(slot);
    if (!q || q.handed || q.c.holderGeneration !== holderGen) return null;
    q.handed = true;
    return q.c;
  }
}

/** What a plugin was told, in order. */
type Call = [string, ...unknown[]];

/** A FIFO that decides ahead (the head), recording every call. */
function fifoAhead(calls: Call[] = [], over: Partial<SchedulerPlugin> = {}): SchedulerPlugin {
  let q: VcpuId[] = [];
  return {
    name: "fifo-ahead",
    init() {
      q = [];
    },
    addVcpu(i: VcpuInfo) {
      calls.push(["addVcpu", i.id, i.state, i.slot]);
      if (i.state === "runnable") q.push(i.id);
    },
    removeVcpu(id) {
      calls.push(["removeVcpu", id]);
      q = q.filter((x) => x !== id);
    },
    pickNext(slot) {
      const v = q.shift();
      calls.push(["pickNext", slot, v]);
      return v === undefined ? null : { vcpu: v, sliceNs: SLICE };
    },
    queueNext(slot, running) {
      const v = q.shift();
      calls.push(["queueNext", slot, running, v]);
      return v === undefined ? null : { vcpu: v, sliceNs: SLICE };
    },
    onHalt(v) {
      calls.push(["onHalt", v]);
      q = q.filter((x) => x !== v);
    },
    onWake(v) {
      calls.push(["onWake", v]);
      q.push(v);
    },
    onDeschedule(v, slot, ran, reason: DescheduleReason) {
      calls.push(["onDeschedule", v, slot, ran, reason]);
      if (reason === "revoked") q.unshift(v);
      else q.push(v);
    },
    ...over,
  };
}

/** A core on `slots` slots with `plugin`, vCPU 0 running on slot 0 and 1 queued behind it. */
function queuedCore(
  plugin: SchedulerPlugin,
  extra: Partial<SchedCoreOptions> = {},
  slots = 1,
): { core: SchedCore; dispatch: RaceDispatch; ejections: EjectInfo[] } {
  const dispatch = new RaceDispatch();
  const ejections: EjectInfo[] = [];
  const core = new SchedCore({
    slots,
    policy: new LocalPolicy(plugin),
    ratelimitNs: 0,
    aheadDelayNs: 50 * US,
    dispatch,
    onEject: (e) => ejections.push(e),
    ...extra,
  });
  for (let i = 0; i < slots; i++) core.addVcpu(vcpu(i), 0);
  core.addVcpu(vcpu(slots), 0);
  assertEquals(core.nextTimerAt(), 50 * US);
  assertEquals(core.advance(50 * US), []);
  assertEquals(dispatch.slots.get(0)?.c.vcpu, slots);
  return { core, dispatch, ejections };
}

Deno.test("ahead: the core asks while the slot is busy; the leaving EMT hands over", () => {
  const calls: Call[] = [];
  const { core, dispatch } = queuedCore(fifoAhead(calls));
  assert(calls.some((c) => c[0] === "queueNext" && c[1] === 0 && c[2] === 0 && c[3] === 1));
  const c = dispatch.slots.get(0)!.c;
  assertEquals([c.holder, c.holderGeneration, c.sliceNs], [0, 1, SLICE]);
  assertEquals(core.vcpuState(1), { state: "runnable", slot: -1 });
  // The EMT of vCPU 0 leaves at 8 ms and hands the slot to 1; the core hears of it 30 µs later.
  assert(dispatch.handOff(0, c.holderGeneration));
  calls.length = 0;
  const g = grantsOf(core.sliceEnd(0, 8 * MS + 30 * US, 8 * MS, 0, 8 * MS));
  assertEquals(g.length, 1);
  assertEquals([g[0].vcpu, g[0].slot, g[0].via], [1, 0, "handed"]);
  assertEquals(g[0].generation, c.generation);
  assertEquals(g[0].deadline, 8 * MS + SLICE); // from the hand-off, as the EMT computed it
  assertEquals(calls, [["onDeschedule", 0, 0, 8 * MS, "slice"]]); // no pickNext
  assertEquals(core.vcpuState(1), { state: "running", slot: 0 });
  // Its run counts from the hand-off: a report of 9.99 ms at 18 ms is accepted whole.
  assertEquals(core.heldNs(1, 18 * MS), SLICE);
  const s = core.stats(18 * MS);
  assertEquals([s.vcpus[1].grants, s.vcpus[1].aheadGrants, s.vcpus[1].handedGrants], [1, 1, 1]);
  assertEquals([s.queued, s.revoked], [1, 0]);
  // The next choice for the slot is asked after the delay: vCPU 0, now back in the queue.
  assertEquals(core.nextTimerAt(), 8 * MS + 30 * US + 50 * US);
  core.advance(8 * MS + 80 * US);
  assertEquals(dispatch.slots.get(0)?.c.vcpu, 0);
});

Deno.test("ahead: the core hands over itself when the EMT did not; a halt hands over too", () => {
  const { core, dispatch } = queuedCore(fifoAhead());
  const g = grantsOf(core.halt(0, 3 * MS, 3 * MS));
  assertEquals([g[0].vcpu, g[0].via, g[0].deadline], [1, "ahead", 3 * MS + SLICE]);
  assertEquals(dispatch.slots.size, 0);
  assertEquals(core.vcpuState(0)?.state, "halted");
});

Deno.test("ahead: a plugin without queueNext, or with decideAhead off, is never asked", () => {
  for (const plugin of [{ ...fifoAhead(), queueNext: undefined }, fifoAhead()]) {
    const dispatch = new RaceDispatch();
    const core = new SchedCore({
      slots: 1,
      policy: new LocalPolicy(plugin),
      dispatch,
      decideAhead: plugin.queueNext === undefined,
    });
    core.addVcpu(vcpu(0), 0);
    core.addVcpu(vcpu(1), 0);
    core.advance(MS);
    assertEquals(dispatch.slots.size, 0);
    assertEquals(grantsOf(core.sliceEnd(0, SLICE, SLICE)).map((a) => a.via), ["pick"]);
  }
});

/** The calls after `from` that concern vCPU 1 coming back. */
const revokedCalls = (calls: Call[]) =>
  calls.filter((c) => c[0] === "onDeschedule" && c[4] === "revoked");

Deno.test("ahead: every cause revokes a queued choice, which comes back as 'revoked'", async (t) => {
  const causes: [string, (core: SchedCore) => SchedAction[], Partial<SchedulerPlugin>?][] = [
    ["a wake", (core) => core.wake(2, MS)],
    ["a tick", (core) => core.advance(10 * MS), { tickNs: 10 * MS, onTick: () => [] }],
    ["a parameter change", (core) => core.setParams("a", { weight: 512 }, MS)],
    ["a preemption asked by a wake", (core) => core.wake(2, MS), { onWake: () => 0 }],
  ];
  for (const [name, act, over] of causes) {
    await t.step(name, () => {
      const calls: Call[] = [];
      const base = fifoAhead(calls);
      const plugin: SchedulerPlugin = { ...base, ...over };
      if (over?.onWake) {
        plugin.onWake = (v, now) => {
          base.onWake(v, now);
          return over.onWake!(v, now);
        };
      }
      const { core, dispatch } = queuedCore(plugin);
      core.addVcpu(vcpu(2, "halted"), 0);
      calls.length = 0;
      act(core);
      assertEquals(revokedCalls(calls), [["onDeschedule", 1, 0, 0, "revoked"]]);
      // Revoked before the plugin's own hook, and not handed over any more.
      assertEquals(calls[0], ["onDeschedule", 1, 0, 0, "revoked"]);
      assert(!dispatch.slots.has(0) || dispatch.slots.get(0)!.c.generation > 2);
      assertEquals(core.stats().revoked, 1);
    });
  }
  await t.step("an idle slot offered", () => {
    const calls: Call[] = [];
    const { core, dispatch } = queuedCore(fifoAhead(calls), {}, 2);
    assertEquals(dispatch.slots.get(0)?.c.vcpu, 2);
    calls.length = 0;
    // Slot 1's vCPU halts with nothing queued there: vCPU 2 must not wait for slot 0.
    const g = grantsOf(core.halt(1, MS, MS));
    assertEquals(revokedCalls(calls), [["onDeschedule", 2, 0, 0, "revoked"]]);
    assertEquals([g[0].vcpu, g[0].slot, g[0].via], [2, 1, "pick"]);
    assertEquals(dispatch.slots.size, 0);
  });
  await t.step("a hot-swap (the new plugin is told it runnable, the old one nothing)", () => {
    const calls: Call[] = [];
    const { core, dispatch } = queuedCore(fifoAhead(calls));
    const told: Call[] = [];
    calls.length = 0;
    core.swapPolicy(new LocalPolicy(fifoAhead(told)), MS);
    assertEquals(calls, []);
    assertEquals(told.filter((c) => c[0] === "addVcpu"), [
      ["addVcpu", 0, "running", 0],
      ["addVcpu", 1, "runnable", undefined],
    ]);
    assertEquals(dispatch.slots.size, 0);
    assertEquals(grantsOf(core.sliceEnd(0, 2 * MS, MS)).map((a) => [a.vcpu, a.via]), [
      [1, "pick"],
    ]);
  });
  await t.step("an ejection", () => {
    const calls: Call[] = [];
    const { core, dispatch, ejections } = queuedCore(fifoAhead(calls));
    core.eject("test", MS);
    assertEquals(ejections.length, 1);
    assertEquals(dispatch.slots.size, 0);
    assertEquals(revokedCalls(calls), []);
    // The fallback (rr) schedules vCPU 1 next.
    const g = grantsOf(core.sliceEnd(0, 2 * MS, MS));
    assertEquals(g.map((a) => a.vcpu), [1]);
  });
  await t.step("the queued vCPU halts, or its VM stops: dropped, told only that", () => {
    for (const how of ["halt", "remove"] as const) {
      const calls: Call[] = [];
      const { core, dispatch } = queuedCore(fifoAhead(calls));
      calls.length = 0;
      if (how === "halt") core.halt(1, MS, 0);
      else core.removeVcpu(1, MS);
      assertEquals(calls, [how === "halt" ? ["onHalt", 1] : ["removeVcpu", 1]]);
      assertEquals(dispatch.slots.size, 0);
      // The slot's leave then asks pickNext as usual (nothing waits: it idles).
      assertEquals(grantsOf(core.sliceEnd(0, 2 * MS, MS)).map((a) => a.vcpu), [0]);
    }
  });
});

Deno.test("ahead: nothing is decided ahead while a slot is being preempted for a waker", () => {
  // Two slots busy (vCPUs 0 and 1); vCPU 2 wakes and the plugin preempts slot 1 for it. The
  // core must not ask slot 0's next meanwhile: the plugin would name vCPU 2 there, and slot 1
  // would go to someone else when it frees.
  const calls: Call[] = [];
  const plugin = fifoAhead(calls, {});
  const onWake = plugin.onWake.bind(plugin);
  plugin.onWake = (v, now) => (onWake(v, now), 1);
  const dispatch = new RaceDispatch();
  const core = new SchedCore({
    slots: 2,
    policy: new LocalPolicy(plugin),
    ratelimitNs: 0,
    aheadDelayNs: 50 * US,
    dispatch,
  });
  core.addVcpu(vcpu(0), 0);
  core.addVcpu(vcpu(1), 0);
  core.addVcpu(vcpu(2, "halted"), 0);
  const a = core.wake(2, MS);
  assertEquals(a.filter((x) => x.type === "preempt").map((x) => x.slot), [1]);
  assertEquals(core.advance(MS + 100 * US), []);
  assert(!calls.some((c) => c[0] === "queueNext"), JSON.stringify(calls));
  assertEquals(dispatch.slots.size, 0);
  // Slot 1 frees: the waker gets it; then choices are made ahead again.
  assertEquals(grantsOf(core.preempted(1, MS + 200 * US, MS)).map((g) => g.vcpu), [2]);
  core.advance(MS + 300 * US);
  assert(calls.some((c) => c[0] === "queueNext"), "asked again after the preemption");
});

Deno.test("ahead: a revocation that loses the race to the hand-off leaves it standing", () => {
  const calls: Call[] = [];
  const base = fifoAhead(calls);
  const { core, dispatch } = queuedCore({
    ...base,
    onWake(v, now) {
      base.onWake(v, now);
      return 0; // the waker wants slot 0
    },
  });
  core.addVcpu(vcpu(2, "halted"), 0);
  const c = dispatch.slots.get(0)!.c;
  // vCPU 0's EMT leaves and hands over; before its report, vCPU 2 wakes and asks for slot 0.
  assert(dispatch.handOff(0, c.holderGeneration));
  calls.length = 0;
  const w = core.wake(2, 5 * MS);
  assertEquals(revokedCalls(calls), []); // it stands: vCPU 1 is not given back
  assertEquals(w.filter((a) => a.type === "preempt"), []); // 0 already left
  // A hot-swap now tells the new plugin both on slot 0, the arriving vCPU after the holder.
  const told: Call[] = [];
  core.swapPolicy(new LocalPolicy(fifoAhead(told)), 5 * MS);
  assertEquals(told.filter((x) => x[0] === "addVcpu"), [
    ["addVcpu", 0, "running", 0],
    ["addVcpu", 2, "runnable", undefined],
    ["addVcpu", 1, "running", 0],
  ]);
  // The leave arrives: vCPU 1 holds the slot; the wake's preemption applies to it now.
  const a = core.sliceEnd(0, 5 * MS + 40 * US, 5 * MS, 0, 5 * MS - 10 * US);
  const g = grantsOf(a);
  assertEquals([g[0].vcpu, g[0].via], [1, "handed"]);
  assertEquals(a.filter((x) => x.type === "preempt").map((x) => x.vcpu), [1]);
  assertEquals(core.runningCount(), 1);
});

Deno.test("ahead: a vCPU handed a slot that halts before the hand-off is confirmed frees it", () => {
  const calls: Call[] = [];
  const { core, dispatch } = queuedCore(fifoAhead(calls));
  core.addVcpu(vcpu(2), 0);
  const c = dispatch.slots.get(0)!.c;
  assert(dispatch.handOff(0, c.holderGeneration));
  // vCPU 1's EMT, handed the slot while withdrawing (paused), gives it straight back.
  calls.length = 0;
  core.halt(1, MS, 0);
  assertEquals(calls, [["onHalt", 1]]);
  assertEquals(core.vcpuState(1)?.state, "halted");
  // The holder's leave arrives: nobody takes the slot by hand-off; pickNext fills it.
  const g = grantsOf(core.sliceEnd(0, MS + 10 * US, MS, 0, MS - 20 * US));
  assertEquals(g.map((x) => [x.vcpu, x.via]), [[2, "pick"]]);
  assertEquals(core.runningCount(), 1);
  assertEquals(dispatch.slots.size, 0);
});

Deno.test("ahead: a choice its EMT withdrew comes back to the plugin; nothing is lost", () => {
  const calls: Call[] = [];
  const plugin = fifoAhead(calls);
  const dispatch = new RaceDispatch();
  const core = new SchedCore({ slots: 1, policy: new LocalPolicy(plugin), dispatch });
  core.addVcpu(vcpu(0), 0);
  core.addVcpu(vcpu(1), 0);
  dispatch.withdrawn.add(1); // its halt is on its way
  core.advance(0);
  assertEquals(dispatch.slots.size, 0);
  assertEquals(revokedCalls(calls), [["onDeschedule", 1, 0, 0, "revoked"]]);
  core.halt(1, MS, 0);
  assertEquals(core.vcpuState(1)?.state, "halted");
  assertEquals(core.stats().revoked, 1);
});

Deno.test("ahead: a plugin that queues a halted, removed, running or queued vCPU, or a bad slice, is ejected and nothing is lost", async (t) => {
  const lies: [string, (running: VcpuId) => { vcpu: number; sliceNs: number }, RegExp][] = [
    ["a halted vCPU", () => ({ vcpu: 3, sliceNs: SLICE }), /vCPU 3, which is halted/],
    ["a removed vCPU", () => ({ vcpu: 99, sliceNs: SLICE }), /vCPU 99, which does not exist/],
    ["the running vCPU", (r) => ({ vcpu: r, sliceNs: SLICE }), /already running on slot/],
    ["a vCPU queued elsewhere", () => ({ vcpu: 2, sliceNs: SLICE }), /already queued on slot 0/],
    ["a slice of 0", () => ({ vcpu: 4, sliceNs: 0 }), /slice of 0 ns \(must be > 0\)/],
    ["a slice over the maximum", () => ({ vcpu: 4, sliceNs: 1e12 }), /\(max 100000000\)/],
  ];
  for (const [name, lie, re] of lies) {
    await t.step(name, () => {
      const base = fifoAhead();
      let asked = 0;
      const plugin: SchedulerPlugin = {
        ...base,
        // Honest on slot 0; lies on slot 1.
        queueNext: (slot, running, now) =>
          slot === 0 ? base.queueNext!(slot, running, now) : (asked++, lie(running)),
      };
      const dispatch = new RaceDispatch();
      const ejections: EjectInfo[] = [];
      const core = new SchedCore({
        slots: 2,
        policy: new LocalPolicy(plugin),
        dispatch,
        onEject: (e) => ejections.push(e),
      });
      for (const v of [0, 1, 2]) core.addVcpu(vcpu(v), 0);
      core.addVcpu(vcpu(3, "halted"), 0);
      core.addVcpu(vcpu(4), 0);
      core.advance(0);
      assertEquals(asked, 1);
      assertEquals(ejections.length, 1, name);
      assert(re.test(ejections[0].detail), ejections[0].detail);
      assert(/^queueNext\(slot 1\)/.test(ejections[0].detail), ejections[0].detail);
      // The honest choice stands or was revoked; either way every runnable vCPU runs.
      const seen = new Set<number>();
      let now = MS;
      for (let step = 0; step < 12; step++) {
        for (let s = 0; s < 2; s++) {
          const v = core.slotHolder(s);
          if (v < 0) continue;
          seen.add(v);
          const h = dispatch.handOff(s, core.stats().vcpus.find((x) => x.id === v) ? 0 : 0);
          assertEquals(h, null);
          core.sliceEnd(v, now, MS);
          core.advance(now);
        }
        now += MS;
      }
      assertEquals([...seen].sort(), [0, 1, 2, 4]);
      assertEquals(core.vcpuState(3)?.state, "halted");
    });
  }
});

Deno.test("ahead: random events with racing hand-offs keep every invariant", async (t) => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    await t.step(`seed ${seed}`, () => randomRun(seed));
  }
});

Deno.test("ahead: the built-ins under random events with racing hand-offs keep every invariant", async (t) => {
  // rtds decides ahead; gang does not, and is told of vCPUs handed a slot under the plugin
  // before it (a swap or an ejection that lost the race to a hand-off).
  const builtins: [string, () => SchedulerPlugin][] = [
    ["rtds", () => new RtdsScheduler()],
    ["gang", () => new GangScheduler()],
    ["credit", () => new CreditScheduler()],
  ];
  for (const [name, make] of builtins) {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      // Periods of 2 ms and budgets of 1.5 ms (rtds): deadlines come often, so replenishments
      // meet choices made ahead; extratime keeps every vCPU runnable.
      await t.step(
        `${name}, seed ${seed}`,
        () => randomRun(seed, make, { period_ms: 2, budget_ms: 1.5 }),
      );
    }
  }
});

/**
 * EMTs that hand over before they report, reports that reach the core late (with other events
 * in between), wakes, halts of waiting vCPUs, ticks, parameter changes, swaps and ejections.
 */
function randomRun(
  seed: number,
  plugin: (name: string) => SchedulerPlugin = (name) =>
    fifoAhead([], { name, tickNs: 7 * MS, onTick: () => [] }),
  params: Record<string, number> = {},
): void {
  const rng = new Prng(seed);
  const slots = 1 + (seed % 3);
  const n = 3 + slots * 2;
  const dispatch = new RaceDispatch();
  const ejections: EjectInfo[] = [];
  const core = new SchedCore({
    slots,
    policy: new LocalPolicy(plugin("first")),
    ratelimitNs: 0.5 * MS,
    aheadDelayNs: 20 * US,
    dispatch,
    onEject: (e) => ejections.push(e),
  });
  /** The truth, as the EMTs see it: who holds each slot, under which generation. */
  const holder: { vcpu: number; gen: number; deadline: number; since: number }[] = [];
  /** Leaves reported but not yet seen by the core, in order. */
  const pending: { id: number; kind: "slice" | "halt" | "yield"; at: number; ran: number }[] = [];
  /** vCPUs in guest mode (the model), for invariant 1. */
  const inGuest = new Set<number>();
  /** Grants the EMTs handed over: generation → vCPU. */
  const handedGens = new Map<number, number>();
  let now = 0;
  const apply = (actions: SchedAction[]) => {
    for (const a of actions) {
      if (a.type === "grant") {
        if (a.via !== "handed") {
          assert(holder[a.slot] === undefined, `slot ${a.slot} granted while held`);
          holder[a.slot] = { vcpu: a.vcpu, gen: a.generation, deadline: a.deadline, since: now };
          inGuest.add(a.vcpu);
        } else {
          assertEquals(handedGens.get(a.generation), a.vcpu); // the EMT did it already
          handedGens.delete(a.generation);
        }
      }
      assert(inGuest.size <= slots, `${inGuest.size} vCPUs in guest mode on ${slots} slots`);
    }
  };
  const deliver = () => {
    while (pending.length) {
      const p = pending.shift()!;
      const ran = p.ran;
      if (p.kind === "halt") apply(core.halt(p.id, now, ran, 0, p.at));
      else if (p.kind === "yield") apply(core.yield(p.id, now, ran, 0, p.at));
      else apply(core.sliceEnd(p.id, now, ran, 0, p.at));
    }
  };
  for (let i = 0; i < n; i++) {
    apply(core.addVcpu({ ...vcpu(i, i % 3 ? "runnable" : "halted"), params: { ...params } }, 0));
  }
  for (let step = 0; step < 20_000; step++) {
    now += Math.floor(rng.next() * 0.4 * MS);
    apply(core.advance(now));
    const r = rng.next();
    // An EMT on a slot leaves guest mode (deadline, halt or yield) and hands over if it can.
    const s = Math.floor(rng.next() * slots);
    const h = holder[s];
    if (h && (now >= h.deadline || r < 0.3)) {
      const kind = now >= h.deadline ? "slice" : r < 0.2 ? "halt" : "yield";
      inGuest.delete(h.vcpu);
      holder[s] = undefined!;
      pending.push({ id: h.vcpu, kind, at: now, ran: now - h.since });
      const c = dispatch.handOff(s, h.gen);
      if (c) {
        handedGens.set(c.generation, c.vcpu);
        holder[s] = { vcpu: c.vcpu, gen: c.generation, deadline: now + c.sliceNs, since: now };
        inGuest.add(c.vcpu);
      }
      assert(inGuest.size <= slots);
      if (rng.next() < 0.5) deliver(); // else the report is late: other events come first
    } else if (r < 0.45) {
      // A halted vCPU wakes (its report is never ahead of an earlier leave of its own).
      const id = Math.floor(rng.next() * n);
      if (pending.some((p) => p.id === id)) deliver();
      if (core.vcpuState(id)?.state === "halted") apply(core.wake(id, now));
    } else if (r < 0.5) {
      // A waiting vCPU halts (pause, INIT): unless its slot was handed to it already.
      const id = Math.floor(rng.next() * n);
      const st = core.vcpuState(id);
      const handed = holder.some((x) => x?.vcpu === id);
      if (st?.state === "runnable" && !handed && !pending.some((p) => p.id === id)) {
        apply(core.halt(id, now, 0));
      }
    } else if (r < 0.51) {
      apply(core.setParams("a", { weight: 1 + step, ...params }, now));
    } else if (r < 0.512) {
      apply(core.swapPolicy(new LocalPolicy(plugin(`swap${step}`)), now));
    } else if (r < 0.513) {
      apply(core.eject("random", now));
    }
    // The core's holders are the truth's, once every report is in.
    if (pending.length === 0) {
      for (let k = 0; k < slots; k++) assertEquals(core.slotHolder(k), holder[k]?.vcpu ?? -1);
    }
    assert(core.runningCount() <= slots);
  }
  deliver();
  assertEquals(handedGens.size, 0); // every hand-off was confirmed
  // No slot idles while a vCPU waits (the plugin never declines), and nothing was ejected
  // but by hand.
  const s = core.stats(now);
  if (s.vcpus.some((v) => v.state === "runnable")) assertEquals(core.runningCount(), slots);
  assert(ejections.every((e) => e.reason === "manual"), JSON.stringify(ejections));
  assert(s.vcpus.some((v) => v.handedGrants > 0), "some hand-offs happened");
  assert(s.revoked > 0, "some choices were revoked");
  for (const v of s.vcpus) assertEquals(v.slotNs + v.waitNs + v.haltedNs, now);
  const busy = s.slots.reduce((a, x) => a + x.busyNs, 0);
  assertEquals(busy, s.vcpus.reduce((a, v) => a + v.slotNs, 0));
}

Deno.test("ahead: rtds names the head only for the slot whose slice ends first", () => {
  const p = new RtdsScheduler();
  p.init({ slots: 2, params: {}, maxSliceNs: 100 * MS, ratelimitNs: 0, report: () => {} });
  const info = (id: number, budget: number): VcpuInfo => ({
    id,
    vm: `v${id}`,
    index: 0,
    vmVcpus: 1,
    params: { period_ms: 50, budget_ms: budget },
    state: "runnable",
  });
  // vCPU 0 gets a 7 ms slice on slot 0, vCPU 1 a 1 ms slice on slot 1; vCPU 2 waits.
  p.addVcpu(info(0, 7));
  p.addVcpu(info(1, 1));
  p.addVcpu(info(2, 3));
  assertEquals(p.pickNext(0, 0)?.vcpu, 0);
  assertEquals(p.pickNext(1, 0)?.vcpu, 1);
  // Bound to slot 0, vCPU 2 would wait 7 ms while slot 1 frees after 1 ms.
  assertEquals(p.queueNext(0, 0, 100 * US), null);
  assertEquals(p.queueNext(1, 1, 100 * US)?.vcpu, 2);
});
