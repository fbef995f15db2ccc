/**
 * Tests of the built-in scheduling policies (plugins/credit.ts, credit2.ts, rtds.ts, gang.ts).
 *
 * - Bookkeeping: every plugin, driven through random but contract-valid hook sequences
 *   (tests/plugins/driver.ts `fuzz`), never hands out a running, halted or unknown vCPU, never
 *   gives a bad slice and never names a bad slot.
 * - Policy details, with the small deterministic driver (`drive`): BOOST, parking, load
 *   balancing, EDF order, depletion, co-scheduling.
 * - Behaviour in the simulator (`simulate`, the real core): shares by weight, caps, BOOST
 *   latency, deadlines, lock acquisitions. Ignored while `simulate` is not implemented.
 *
 * @module
 */
import assert from "node:assert/strict";
import { drive, type DriverVm, fuzz } from "./plugins/driver.ts";
import type { PolicyEvent, SchedParams, SchedulerPlugin } from "../mod.ts";
import { CreditScheduler } from "../plugins/credit.ts";
import { Credit2Scheduler } from "../plugins/credit2.ts";
import { RtdsScheduler } from "../plugins/rtds.ts";
import { GangScheduler } from "../plugins/gang.ts";
import { type SimOptions, type SimResult, simulate } from "../src/sim/mod.ts";
import { type SchedAction, SchedCore } from "../src/sched/core.ts";
import { LocalPolicy } from "../src/sched/policy_port.ts";
import { test } from "./helpers/deadline.ts";

const PLUGINS: [string, () => SchedulerPlugin][] = [
  ["credit", () => new CreditScheduler()],
  ["credit2", () => new Credit2Scheduler()],
  ["rtds", () => new RtdsScheduler()],
  ["gang", () => new GangScheduler()],
];

const MS = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Bookkeeping: never an invalid decision
// ---------------------------------------------------------------------------------------------

for (const [name, make] of PLUGINS) {
  test(`${name}: random hook sequences never get an invalid decision`, () => {
    let decisions = 0;
    for (const slots of [1, 2, 3, 4]) {
      for (let seed = 1; seed <= 6; seed++) {
        decisions += fuzz({
          plugin: make(),
          slots,
          seed: seed * 97 + slots,
          steps: 3000,
          vms: [
            { name: "a", vcpus: 2, params: { weight: 128, cap: 50 } },
            { name: "b", vcpus: 3, params: { weight: 512, period_ms: 5, budget_ms: 1 } },
            { name: "c", vcpus: 1, params: { cap: 10, extratime: false } },
            { name: "d", vcpus: 4 },
          ],
          setParams: [
            { target: "a", params: { weight: 1024 } },
            { target: "a", params: { cap: 0 } },
            { target: "b", params: { cap: 30, period_ms: 20, budget_ms: 15, extratime: false } },
            { target: "c", params: { extratime: true, weight: 64 } },
            { target: "*", params: { tslice_ms: 5, slice_ms: 7 } },
          ],
        });
      }
    }
    assert.ok(decisions > 10_000, `only ${decisions} decisions`);
  });

  test(`${name}: the driver's mixed workload runs without an invalid decision`, () => {
    const vms: DriverVm[] = [
      { name: "spin", vcpus: 3, workload: { kind: "spin" } },
      { name: "rt", vcpus: 2, workload: { kind: "periodic", periodMs: 10, computeMs: 2 } },
      { name: "echo", vcpus: 2, workload: { kind: "echo", serviceUs: 80, thinkUs: 700 } },
    ];
    const r = drive({ plugin: make(), slots: 3, ms: 3000, vms });
    assert.ok(r.decisions > 100);
    const total = r.vms.reduce((s, v) => s + v.share, 0);
    assert.ok(total > 0.99 && total <= 1 + 1e-9, `machine share ${total}`);
    // Work conserving: nobody runnable waits while a slot idles (beyond one tick).
    assert.ok(r.maxIdleWhileWaitingNs <= 10 * MS, `idle while waiting ${r.maxIdleWhileWaitingNs}`);
  });
}

// ---------------------------------------------------------------------------------------------
// credit
// ---------------------------------------------------------------------------------------------

function events(list: PolicyEvent[], kind: string, vcpu?: number): PolicyEvent[] {
  return list.filter((e) => e.kind === kind && (vcpu === undefined || e.vcpu === vcpu));
}

test("credit: BOOST is given on wake only from UNDER and ends at the next tick", () => {
  const reports: PolicyEvent[] = [];
  const p = new CreditScheduler();
  p.init({
    slots: 1,
    params: {},
    maxSliceNs: 100 * MS,
    ratelimitNs: MS,
    report: (e) => reports.push(e),
  });
  p.addVcpu({ id: 0, vm: "a", index: 0, vmVcpus: 1, params: {}, state: "halted" });
  p.addVcpu({ id: 1, vm: "b", index: 0, vmVcpus: 1, params: {}, state: "runnable" });
  assert.equal(p.pickNext(0, 0)?.vcpu, 1);
  // vCPU 0 wakes UNDER: boosted, preempts the UNDER hog on slot 0.
  assert.equal(p.onWake(0, 5 * MS), 0);
  assert.deepEqual(events(reports, "boost", 0).map((e) => e.value), [1]);
  p.onDeschedule(1, 0, 5 * MS, "preempt", 5 * MS);
  assert.equal(p.pickNext(0, 5 * MS)?.vcpu, 0);
  // The tick finds it running: boost over.
  p.onTick(10 * MS);
  assert.deepEqual(events(reports, "boost", 0).map((e) => e.value), [1, 0]);
  // It keeps running and becomes OVER at accounting; it halts and wakes: no boost.
  p.onTick(20 * MS);
  p.onTick(30 * MS);
  p.onHalt(0, 31 * MS, 26 * MS);
  assert.equal(p.pickNext(0, 31 * MS)?.vcpu, 1);
  const prio = events(reports, "prio", 0).at(-1)?.value;
  assert.equal(prio, -2, "OVER after running 25 ms of a 30 ms period shared by two");
  assert.equal(p.onWake(0, 32 * MS), undefined, "an OVER vCPU does not preempt");
  assert.deepEqual(events(reports, "boost", 0).map((e) => e.value), [1, 0]);
});

test("credit: an idle slot steals work queued on another slot", () => {
  const p = new CreditScheduler();
  p.init({ slots: 2, params: {}, maxSliceNs: 100 * MS, ratelimitNs: MS, report: () => {} });
  for (let i = 0; i < 3; i++) {
    p.addVcpu({ id: i, vm: `v${i}`, index: 0, vmVcpus: 1, params: {}, state: "runnable" });
  }
  const a = p.pickNext(0, 0)!.vcpu;
  const b = p.pickNext(1, 0)!.vcpu;
  assert.notEqual(a, b);
  // Slot 1's vCPU halts; slot 1 takes the third vCPU, wherever it was queued.
  p.onHalt(b, 1 * MS, 1 * MS);
  const c = p.pickNext(1, 1 * MS)!.vcpu;
  assert.ok(![a, b].includes(c));
});

test("credit: the tick-sampling attacker gets no more than its fair share", () => {
  // Runs until 0.2 ms before every 10 ms tick and halts across it (the attack of Xen changeset
  // 78c9b2a64b38, "Accurate accounting for credit scheduler"). Without accounting it on halt
  // (plugins/credit.ts, DEVIATION 1) it gets about 90 % of the slot.
  const r = drive({
    plugin: new CreditScheduler(),
    slots: 1,
    ms: 20_000,
    vms: [
      {
        name: "attacker",
        vcpus: 1,
        workload: { kind: "attacker", periodMs: 10, runMs: 9.8, wakeUs: 100 },
      },
      { name: "hog", vcpus: 1, workload: { kind: "spin" } },
    ],
  });
  assert.ok(r.vms[0].share <= 0.51, `attacker ${r.vms[0].share}`);
  assert.ok(r.vms[0].share >= 0.45, `attacker ${r.vms[0].share}`);
});

// ---------------------------------------------------------------------------------------------
// credit2
// ---------------------------------------------------------------------------------------------

test("credit2: slices stay within [rate limit, 10 ms] and the queue follows credit", () => {
  const p = new Credit2Scheduler();
  p.init({ slots: 1, params: {}, maxSliceNs: 100 * MS, ratelimitNs: MS, report: () => {} });
  p.addVcpu({ id: 0, vm: "a", index: 0, vmVcpus: 1, params: {}, state: "runnable" });
  p.addVcpu({ id: 1, vm: "b", index: 0, vmVcpus: 1, params: {}, state: "runnable" });
  let now = 0;
  let d = p.pickNext(0, now)!;
  assert.equal(d.vcpu, 0);
  assert.equal(d.sliceNs, MS, "equal credit: run the minimum (the rate limit)");
  now += d.sliceNs;
  p.onDeschedule(0, 0, d.sliceNs, "slice", now);
  d = p.pickNext(0, now)!;
  assert.equal(d.vcpu, 1, "vCPU 1 has more credit now");
  for (let i = 0; i < 50; i++) {
    assert.ok(d.sliceNs >= MS && d.sliceNs <= 10 * MS, `slice ${d.sliceNs}`);
    now += d.sliceNs;
    p.onDeschedule(d.vcpu, 0, d.sliceNs, "slice", now);
    d = p.pickNext(0, now)!;
  }
});

// ---------------------------------------------------------------------------------------------
// RTDS
// ---------------------------------------------------------------------------------------------

test("credit2: a cap set before the first event replenishes at once at a real clock", () => {
  const p = new Credit2Scheduler();
  p.init({ slots: 1, params: {}, maxSliceNs: 100 * MS, ratelimitNs: MS, report: () => {} });
  p.addVcpu({ id: 0, vm: "a", index: 0, vmVcpus: 1, params: { cap: 25 }, state: "runnable" });
  // The plugin's replenishment clock starts at 0; the core's clock is CLOCK_MONOTONIC, here 30
  // years of uptime: 10^11 periods of 10 ms. Replenishing one period at a time never returns
  // (the test's deadline ends it); counted at once, the first tick is one step.
  const now = 1e18;
  p.onTick(now);
  const d = p.pickNext(0, now);
  assert.equal(d?.vcpu, 0, "the capped vCPU has budget after the replenishment");
  assert.ok(d!.sliceNs <= 2.5 * MS, `slice ${d!.sliceNs} within 25 % of a 10 ms period`);
});

test("rtds: EDF order, and a waking earlier deadline preempts the latest one", () => {
  const p = new RtdsScheduler();
  p.init({ slots: 2, params: {}, maxSliceNs: 100 * MS, ratelimitNs: MS, report: () => {} });
  p.addVcpu({
    id: 0,
    vm: "long",
    index: 0,
    vmVcpus: 1,
    params: { period_ms: 40, budget_ms: 20 },
    state: "runnable",
  });
  p.addVcpu({
    id: 1,
    vm: "mid",
    index: 0,
    vmVcpus: 1,
    params: { period_ms: 20, budget_ms: 5 },
    state: "runnable",
  });
  p.addVcpu({
    id: 2,
    vm: "short",
    index: 0,
    vmVcpus: 1,
    params: { period_ms: 5, budget_ms: 1 },
    state: "halted",
  });
  // Deadlines: mid 20 ms, long 40 ms.
  const d0 = p.pickNext(0, 0)!;
  assert.equal(d0.vcpu, 1);
  assert.equal(d0.sliceNs, 5 * MS, "slice = remaining budget");
  assert.equal(p.pickNext(1, 0)!.vcpu, 0);
  // "short" wakes at 1 ms, deadline 5 ms: preempts the slot running the latest deadline.
  assert.equal(p.onWake(2, MS), 1);
  p.onDeschedule(0, 1, MS, "preempt", MS);
  const d1 = p.pickNext(1, MS)!;
  assert.equal(d1.vcpu, 2);
  assert.equal(d1.sliceNs, MS);
});

/** rtds on one slot with one runnable vCPU (id 0) of `vcpu` params; `policy`: its own params. */
function oneRtdsVcpu(vcpu: SchedParams, policy: SchedParams = {}): RtdsScheduler {
  const p = new RtdsScheduler();
  p.init({ slots: 1, params: policy, maxSliceNs: 100 * MS, ratelimitNs: MS, report: () => {} });
  p.addVcpu({ id: 0, vm: "rt", index: 0, vmVcpus: 1, params: vcpu, state: "runnable" });
  return p;
}

test("rtds: steal is not charged: the budget pays only for the time the vCPU had", () => {
  /** One vCPU with 4 ms of budget every 10 ms, granted its first slice at 0. */
  const granted = () => {
    const p = oneRtdsVcpu({ period_ms: 10, budget_ms: 4, extratime: false });
    assert.equal(p.pickNext(0, 0)!.sliceNs, 4 * MS);
    return p;
  };
  const after = (stolenNs: number) => {
    const p = granted();
    // Its slice ended after 4 ms, of which other host threads held its CPU for `stolenNs`.
    p.onDeschedule(0, 0, 4 * MS - stolenNs, "slice", 4 * MS, stolenNs);
    return p.pickNext(0, 4 * MS);
  };
  assert.equal(after(0), null, "4 ms held, no steal: the budget is used up");
  assert.deepEqual(
    after(3 * MS),
    { vcpu: 0, sliceNs: 3 * MS, reserved: true },
    "3 ms stolen: 3 ms left, still reserved time",
  );
  // The same at an extension: 3.5 ms held, 2 of them stolen, leaves 2.5 ms of budget.
  assert.equal(granted().extendSlice(0, 0, 3.5 * MS, 3.5 * MS, 2 * MS), 2.5 * MS);
});

test("rtds: budget time is reserved, extratime is not; reserve=false marks none", () => {
  const grants = (params: SchedParams) => {
    const p = oneRtdsVcpu({ period_ms: 10, budget_ms: 4 }, params);
    const first = p.pickNext(0, 0)!;
    // Its budget used up: on in extratime, one priority level down, through a new grant.
    p.onDeschedule(0, 0, 4 * MS, "slice", 4 * MS, 0);
    const second = p.pickNext(0, 4 * MS)!;
    return [first.reserved === true, second.reserved === true];
  };
  assert.deepEqual(grants({}), [true, false]);
  assert.deepEqual(grants({ reserve: false }), [false, false]);
});

test("credit: steal is not charged: a halt after 30 ms, 20 of them stolen, costs 10 ms", () => {
  /**
   * Both vCPUs hold the slot 30 ms and halt, the first losing `stolenNs` of it to other host
   * threads; returns how many more credits it has than the second at the next accounting.
   */
  const advantage = (stolenNs: number) => {
    const evs: PolicyEvent[] = [];
    const p = new CreditScheduler();
    const report = (e: PolicyEvent) => evs.push(e);
    p.init({ slots: 1, params: {}, maxSliceNs: 100 * MS, ratelimitNs: MS, report });
    for (const id of [0, 1]) {
      p.addVcpu({ id, vm: `v${id}`, index: 0, vmVcpus: 1, params: {}, state: "runnable" });
    }
    const first = p.pickNext(0, 0)!.vcpu;
    p.onHalt(first, 30 * MS, 30 * MS - stolenNs, stolenNs);
    const second = p.pickNext(0, 30 * MS)!.vcpu;
    p.onHalt(second, 60 * MS, 30 * MS, 0);
    for (let t = 1; t <= 3; t++) p.onTick(60 * MS + t * 10 * MS);
    return events(evs, "credit", first)[0].value! - events(evs, "credit", second)[0].value!;
  };
  // 10 credits per ms (credit.c CSCHED_CREDITS_PER_MSEC): 20 ms not charged are 200 credits. The
  // accounting supplies 200 fewer (DEVIATION 6), shared by both: the difference stays.
  assert.equal(advantage(0), 0);
  assert.equal(advantage(20 * MS), 200);
});

test("credit: the accounting supplies what the slot delivered, less the steal (DEVIATION 6)", () => {
  /** The credits one accounting hands out after a vCPU held the only slot 30 ms, `stolenNs` of it stolen. */
  const supplied = (stolenNs: number) => {
    const evs: PolicyEvent[] = [];
    const p = new CreditScheduler();
    p.init({
      slots: 1,
      params: {},
      maxSliceNs: 100 * MS,
      ratelimitNs: MS,
      report: (e) => evs.push(e),
    });
    p.addVcpu({ id: 0, vm: "v0", index: 0, vmVcpus: 1, params: {}, state: "runnable" });
    const d = p.pickNext(0, 0)!;
    p.onHalt(d.vcpu, 30 * MS, 30 * MS - stolenNs, stolenNs);
    for (let t = 1; t <= 3; t++) p.onTick(30 * MS + t * 10 * MS);
    // credit after the accounting = supply - what was charged
    return events(evs, "credit", 0)[0].value! + (30 * MS - stolenNs) / MS * 10;
  };
  // Nothing stolen: a full 30 ms slot's worth, 300 credits (credit.c prv->credit for one pCPU).
  // 20 ms stolen: 200 credits fewer, the time the slot did not deliver to the vCPU.
  assert.equal(supplied(0) - supplied(20 * MS), 200);
});

test("credit2: steal is not charged: the vCPU that lost its CPU keeps its credit", () => {
  /** Who credit2 runs next after v0 held the slot 10 ms and v1 12 ms, `stolenNs` of it stolen. */
  const next = (stolenNs: number) => {
    const p = new Credit2Scheduler();
    p.init({ slots: 1, params: {}, maxSliceNs: 100 * MS, ratelimitNs: MS, report: () => {} });
    for (const id of [0, 1]) {
      p.addVcpu({ id, vm: `v${id}`, index: 0, vmVcpus: 1, params: {}, state: "runnable" });
    }
    const a = p.pickNext(0, 0)!.vcpu;
    p.onDeschedule(a, 0, 10 * MS, "slice", 10 * MS, 0);
    const b = p.pickNext(0, 10 * MS)!.vcpu;
    assert.notEqual(a, b);
    p.onDeschedule(b, 0, 12 * MS - stolenNs, "slice", 22 * MS, stolenNs);
    return { first: a, second: b, next: p.pickNext(0, 22 * MS)!.vcpu };
  };
  const charged = next(0), stolen = next(8 * MS);
  assert.equal(charged.next, charged.first, "charged 12 ms against 10: the first goes next");
  assert.equal(stolen.next, stolen.second, "charged 4 ms against 10: the second goes on");
});

// ---------------------------------------------------------------------------------------------
// gang
// ---------------------------------------------------------------------------------------------

test("gang: the slots switch VMs together and VMs alternate", () => {
  const p = new GangScheduler();
  const turns: string[] = [];
  p.init({
    slots: 2,
    params: { slice_ms: 10 },
    maxSliceNs: 100 * MS,
    ratelimitNs: MS,
    report: (e) => {
      if (e.kind === "gang") turns.push(e.detail ?? "");
    },
  });
  let id = 0;
  for (const vm of ["x", "y"]) {
    for (let i = 0; i < 2; i++) {
      p.addVcpu({ id: id++, vm, index: i, vmVcpus: 2, params: {}, state: "runnable" });
    }
  }
  const vmOf = (v: number) => (v < 2 ? "x" : "y");
  let now = 0;
  let a = p.pickNext(0, now)!;
  let b = p.pickNext(1, now)!;
  for (let turn = 0; turn < 10; turn++) {
    assert.equal(vmOf(a.vcpu), vmOf(b.vcpu), `turn ${turn}: slots run one VM`);
    assert.notEqual(a.vcpu, b.vcpu);
    assert.equal(a.sliceNs, 10 * MS);
    now += a.sliceNs;
    p.onDeschedule(a.vcpu, 0, a.sliceNs, "slice", now);
    const na = p.pickNext(0, now)!;
    p.onDeschedule(b.vcpu, 1, b.sliceNs, "slice", now);
    const nb = p.pickNext(1, now)!;
    assert.notEqual(vmOf(na.vcpu), vmOf(a.vcpu), "the other VM's turn");
    a = na;
    b = nb;
  }
  assert.deepEqual(turns.slice(0, 4), ["x", "y", "x", "y"]);
});

test("gang: idle slots are backfilled, and a waking gang member takes its slot back", () => {
  const p = new GangScheduler();
  p.init({
    slots: 2,
    params: { slice_ms: 30 },
    maxSliceNs: 100 * MS,
    ratelimitNs: MS,
    report: () => {},
  });
  p.addVcpu({ id: 0, vm: "x", index: 0, vmVcpus: 2, params: {}, state: "runnable" });
  p.addVcpu({ id: 1, vm: "x", index: 1, vmVcpus: 2, params: {}, state: "halted" });
  p.addVcpu({ id: 2, vm: "y", index: 0, vmVcpus: 1, params: {}, state: "runnable" });
  assert.equal(p.pickNext(0, 0)!.vcpu, 0); // x's turn
  assert.equal(p.pickNext(1, 0)!.vcpu, 2, "backfill with y");
  // x's second vCPU wakes during x's turn: it preempts the backfill.
  assert.equal(p.onWake(1, 2 * MS), 1);
  p.onDeschedule(2, 1, 2 * MS, "preempt", 2 * MS);
  assert.equal(p.pickNext(1, 2 * MS)!.vcpu, 1);
});

// ---------------------------------------------------------------------------------------------
// Behaviour in the simulator (src/sim): the real core, a virtual clock, guest workloads
// ---------------------------------------------------------------------------------------------

/** Whether `simulate` is implemented yet (it is published before it works). */
const plugin = (name: string) => new URL(`../plugins/${name}.ts`, import.meta.url).pathname;

function sim(o: SimOptions): Promise<SimResult> {
  return simulate({ seed: 7, ...o }).then((r) => {
    assert.deepEqual(r.ejections, [], `ejected: ${JSON.stringify(r.ejections)}`);
    assert.ok(r.maxRunning <= r.slots);
    return r;
  });
}

function vm(r: SimResult, name: string) {
  const v = r.vms.find((x) => x.name === name);
  assert.ok(v, `no VM ${name}`);
  return v;
}

test({
  name: "sim: every plugin runs sandboxed through the real core without ejection",
  async fn() {
    for (const name of ["credit", "credit2", "rtds", "gang"]) {
      const r = await sim({
        plugin: plugin(name),
        slots: 2,
        seconds: 1,
        vms: [
          { name: "spin", vcpus: 2, workload: { kind: "spin" } },
          { name: "echo", vcpus: 1, workload: { kind: "echo", mode: "closed", serviceUs: 50 } },
          { name: "rt", vcpus: 1, workload: { kind: "periodic", periodMs: 10, computeMs: 2 } },
        ],
      });
      assert.equal(r.finalPlugin, name);
      const total = r.vms.reduce((s, v) => s + v.share, 0);
      assert.ok(total > 0.95, `${name}: machine share ${total}`);
    }
  },
});

test({
  name: "sim: credit shares follow weights 1:2:4 on one slot (within 1 pp)",
  async fn() {
    const r = await sim({
      plugin: new CreditScheduler(),
      slots: 1,
      seconds: 20,
      vms: [
        { name: "w1", vcpus: 1, params: { weight: 256 }, workload: { kind: "spin" } },
        { name: "w2", vcpus: 1, params: { weight: 512 }, workload: { kind: "spin" } },
        { name: "w4", vcpus: 1, params: { weight: 1024 }, workload: { kind: "spin" } },
      ],
    });
    for (const [name, want] of [["w1", 1 / 7], ["w2", 2 / 7], ["w4", 4 / 7]] as const) {
      const share = vm(r, name).share;
      console.log(
        `  credit ${name}: ${(share * 100).toFixed(2)} % (want ${(want * 100).toFixed(2)})`,
      );
      assert.ok(Math.abs(share - want) < 0.01, `${name}: ${share}`);
    }
  },
});

test({
  name: "sim: a credit cap of 25 % holds beside an uncapped hog",
  async fn() {
    const r = await sim({
      plugin: new CreditScheduler(),
      slots: 1,
      seconds: 10,
      vms: [
        { name: "capped", vcpus: 1, params: { cap: 25 }, workload: { kind: "spin" } },
        { name: "free", vcpus: 1, workload: { kind: "spin" } },
      ],
    });
    const share = vm(r, "capped").share;
    console.log(`  credit capped: ${(share * 100).toFixed(2)} %`);
    assert.ok(share <= 0.26 && share >= 0.2, `capped ${share}`);
    assert.ok((r.policyEvents.park ?? 0) > 10, "parked and unparked");
    // A capped VM alone cannot use more either: 50 % of one slot is 25 % of two.
    const alone = await sim({
      plugin: new CreditScheduler(),
      slots: 2,
      seconds: 10,
      vms: [{ name: "capped", vcpus: 2, params: { cap: 50 }, workload: { kind: "spin" } }],
    });
    const aloneShare = vm(alone, "capped").share;
    console.log(`  credit capped alone: ${(aloneShare * 100).toFixed(2)} % of 2 slots`);
    assert.ok(aloneShare <= 0.26 && aloneShare >= 0.2, `alone ${aloneShare}`);
  },
});

test({
  name: "sim: credit BOOST keeps an echo server's wake latency low beside hogs",
  async fn() {
    const vms: SimOptions["vms"] = [
      {
        name: "echo",
        vcpus: 1,
        workload: { kind: "echo", mode: "closed", serviceUs: 50, thinkUs: 2000 },
      },
      { name: "hog1", vcpus: 1, workload: { kind: "spin" } },
      { name: "hog2", vcpus: 1, workload: { kind: "spin" } },
    ];
    // Realistic EMT latencies here: 20 us grant → guest, 10 us poke.
    const lat = { handoffNs: 20_000, pokeNs: 10_000 };
    const r = await sim({ plugin: new CreditScheduler(), slots: 1, seconds: 10, vms, ...lat });
    const p99 = vm(r, "echo").wakeLatency.p99;
    console.log(`  credit echo wake latency p99: ${(p99 / 1e3).toFixed(1)} us`);
    assert.ok(p99 < 1_000_000, `p99 ${p99}`);
    assert.ok((r.policyEvents.boost ?? 0) > 100);
    // Round-robin never preempts: the echo server waits for the hogs' 10 ms slices.
    const rr = await sim({
      plugin: plugin("rr"),
      sandbox: false,
      slots: 1,
      seconds: 10,
      vms,
      ...lat,
    });
    const rrP99 = vm(rr, "echo").wakeLatency.p99;
    console.log(`  rr echo wake latency p99: ${(rrP99 / 1e3).toFixed(1)} us`);
    assert.ok(rrP99 > 10 * p99 && rrP99 > 5_000_000, `rr p99 ${rrP99}`);
  },
});

test({
  name: "sim: the tick-sampling attacker gets no more than its share + 1 pp under credit",
  async fn() {
    // Jobs released 0.1 ms after each 10 ms tick, 9.5 ms long: with no rate limit delaying its
    // preemption of the hog, the vCPU runs between ticks and halts before each one. Xen's
    // sampling of the active list makes it keep BOOST and take about 95 % (see
    // plugins/credit.ts, DEVIATION 1); its fair share is 50 %.
    const r = await sim({
      plugin: new CreditScheduler(),
      slots: 1,
      seconds: 20,
      ratelimitNs: 0,
      vms: [
        {
          name: "attacker",
          vcpus: 1,
          workload: { kind: "periodic", periodMs: 10, computeMs: 9.5, offsetMs: 0.1 },
        },
        { name: "hog", vcpus: 1, workload: { kind: "spin" } },
      ],
    });
    const share = vm(r, "attacker").share;
    console.log(`  credit attacker: ${(share * 100).toFixed(2)} %`);
    assert.ok(share <= 0.51, `attacker ${share}`);
  },
});

test({
  name: "sim: credit2 shares follow weights",
  async fn() {
    const r = await sim({
      plugin: new Credit2Scheduler(),
      slots: 1,
      seconds: 10,
      vms: [
        { name: "w1", vcpus: 1, params: { weight: 256 }, workload: { kind: "spin" } },
        { name: "w2", vcpus: 1, params: { weight: 512 }, workload: { kind: "spin" } },
        { name: "w4", vcpus: 1, params: { weight: 1024 }, workload: { kind: "spin" } },
      ],
    });
    for (const [name, want] of [["w1", 1 / 7], ["w2", 2 / 7], ["w4", 4 / 7]] as const) {
      const share = vm(r, name).share;
      console.log(`  credit2 ${name}: ${(share * 100).toFixed(2)} %`);
      assert.ok(Math.abs(share - want) < 0.01, `${name}: ${share}`);
    }
  },
});

test({
  name: "sim: a credit2 cap holds (30 % of one slot beside an uncapped hog, 2 slots)",
  async fn() {
    const r = await sim({
      plugin: new Credit2Scheduler(),
      slots: 2,
      seconds: 10,
      vms: [
        { name: "capped", vcpus: 2, params: { cap: 30 }, workload: { kind: "spin" } },
        { name: "free", vcpus: 1, workload: { kind: "spin" } },
      ],
    });
    const share = vm(r, "capped").share;
    console.log(`  credit2 capped: ${(share * 200).toFixed(2)} % of one slot`);
    assert.ok(share <= 0.155 && share >= 0.13, `capped ${share}`);
    assert.ok(vm(r, "free").share >= 0.49);
  },
});

test({
  name: "sim: RTDS without extratime gives exactly the budget; with it, the slack",
  async fn() {
    const r = await sim({
      plugin: new RtdsScheduler(),
      slots: 1,
      seconds: 5,
      vms: [
        {
          name: "b2",
          vcpus: 1,
          params: { budget_ms: 2, extratime: false },
          workload: { kind: "spin" },
        },
        {
          name: "b3",
          vcpus: 1,
          params: { budget_ms: 3, extratime: false },
          workload: { kind: "spin" },
        },
      ],
    });
    assert.ok(Math.abs(vm(r, "b2").share - 0.2) < 0.002, `b2 ${vm(r, "b2").share}`);
    assert.ok(Math.abs(vm(r, "b3").share - 0.3) < 0.002, `b3 ${vm(r, "b3").share}`);
    const x = await sim({
      plugin: new RtdsScheduler(),
      slots: 1,
      seconds: 5,
      vms: [
        { name: "b2", vcpus: 1, params: { budget_ms: 2 }, workload: { kind: "spin" } },
        { name: "b3", vcpus: 1, params: { budget_ms: 3 }, workload: { kind: "spin" } },
      ],
    });
    const total = vm(x, "b2").share + vm(x, "b3").share;
    assert.ok(total > 0.99, `work conserving with extratime: ${total}`);
  },
});

test({
  name: "sim: RTDS runs a schedulable periodic set on 2 slots with no deadline miss",
  async fn() {
    const r = await sim({
      plugin: new RtdsScheduler(),
      slots: 2,
      seconds: 5,
      vms: [
        {
          name: "p10",
          vcpus: 1,
          params: { period_ms: 10, budget_ms: 4 },
          workload: { kind: "periodic", periodMs: 10, computeMs: 3 },
        },
        {
          name: "p20",
          vcpus: 2,
          params: { period_ms: 20, budget_ms: 8 },
          workload: { kind: "periodic", periodMs: 20, computeMs: 7 },
        },
        {
          name: "p5",
          vcpus: 1,
          params: { period_ms: 5, budget_ms: 2 },
          workload: { kind: "periodic", periodMs: 5, computeMs: 1.5 },
        },
        {
          name: "hog",
          vcpus: 2,
          params: { period_ms: 10, budget_ms: 2 },
          workload: { kind: "spin" },
        },
      ],
    });
    for (const name of ["p10", "p20", "p5"]) {
      const p = vm(r, name).periodic;
      assert.ok(p && p.jobs > 100, `${name} jobs`);
      console.log(`  rtds ${name}: ${p.jobs} jobs, ${p.misses} misses`);
      assert.equal(p.misses, 0, `${name} misses`);
    }
  },
});

test({
  name: "sim: gang gives a lock VM more acquisitions than credit does",
  async fn() {
    const vms: SimOptions["vms"] = [
      { name: "lock", vcpus: 4, workload: { kind: "lock", csUs: 20, workUs: 50 } },
      { name: "spin", vcpus: 2, workload: { kind: "spin" } },
    ];
    const g = await sim({ plugin: new GangScheduler(), slots: 2, seconds: 10, vms });
    const c = await sim({ plugin: new CreditScheduler(), slots: 2, seconds: 10, vms });
    const ga = vm(g, "lock").lock!.acquisitions;
    const ca = vm(c, "lock").lock!.acquisitions;
    console.log(`  lock acquisitions: gang ${ga}, credit ${ca}`);
    assert.ok(ga > ca, `gang ${ga} <= credit ${ca}`);
  },
});

// ---------------------------------------------------------------------------------------------
// extendSlice: a vCPU alone on its slot goes on without new grants, accounted as it runs
// ---------------------------------------------------------------------------------------------

/**
 * One vCPU alone on one slot for `ms` of virtual time under the real core with slice extension
 * on: the EMT side is played here (slice ends at the deadline the core last set).
 */
function runAlone(plugin: SchedulerPlugin, params: Record<string, number | boolean>, ms: number) {
  const core = new SchedCore({
    slots: 1,
    policy: new LocalPolicy(plugin),
    extendLeadNs: 0.5 * MS,
  });
  let deadline = Infinity, grantAt = 0, grants = 0, extensions = 0, t = 0;
  const apply = (actions: SchedAction[]) => {
    for (const a of actions) {
      if (a.type === "grant") [grants, deadline, grantAt] = [grants + 1, a.deadline, t];
      else if (a.type === "extend") [extensions, deadline] = [extensions + 1, a.deadline];
    }
  };
  apply(core.addVcpu({ id: 1, vm: "a", index: 0, vmVcpus: 1, params, state: "runnable" }, 0));
  while (t < ms * MS) {
    const next = Math.min(core.nextTimerAt(), deadline);
    if (next === Infinity) break;
    t = next;
    if (t >= deadline) {
      deadline = Infinity;
      apply(core.sliceEnd(1, t, t - grantAt));
    } else apply(core.advance(t));
  }
  return { grants, extensions, runNs: core.stats(t).vcpus[0].runNs, end: t };
}

for (const [name, make] of PLUGINS.filter(([n]) => n === "credit" || n === "credit2")) {
  test(`${name}: extendSlice keeps a lone vCPU running without new grants, all of it accounted`, () => {
    const r = runAlone(make(), {}, 300);
    assert.equal(r.grants, 1);
    assert.ok(r.extensions >= 10, `${r.extensions} extensions in 300 ms`);
    // The core adds a run to the stats at each extension: all but the last part is in.
    assert.ok(r.runNs <= r.end && r.runNs >= r.end - 30 * MS, `ran ${r.runNs} of ${r.end} ns`);
  });
}

test("rtds: extendSlice goes on within the budget; a budget used up ends the slice (extratime or not)", () => {
  // Extratime (the default): a new priority level and budget when the budget is spent, through
  // a new grant, as rt_schedule runs then; extended where a replenishment refilled it meanwhile.
  // Up to three grants a period: its reserved time, its extratime, and the reserved time after
  // the replenishment; each change of kind is a new grant (its EMT holds the CPU differently).
  const x = runAlone(new RtdsScheduler(), {}, 100);
  assert.ok(x.grants >= 10 && x.grants <= 31, `${x.grants} grants`);
  assert.ok(x.extensions >= 5, `${x.extensions} extensions`);
  assert.ok(x.runNs >= x.end - 4 * MS, `ran ${x.runNs} of ${x.end} ns`);
  // Without extratime: 4 ms of every 10.
  const r = runAlone(new RtdsScheduler(), { period_ms: 10, budget_ms: 4, extratime: false }, 100);
  // 4 ms of every 10: about 10 grants, each extended up to its budget and no further.
  assert.ok(r.grants >= 9 && r.grants <= 11, `${r.grants} grants`);
  assert.ok(Math.abs(r.runNs - 0.4 * r.end) <= 0.02 * r.end, `ran ${r.runNs} of ${r.end} ns`);
});
