/**
 * The watchdog's starvation bound under heavy overcommit (DESIGN.md, invariant 9): in the
 * simulator, hundreds of spinning vCPUs per slot under rr, credit, credit2 and rtds for a minute
 * of virtual time get no policy ejected, while a plugin that forgets one vCPU among many is still
 * ejected, the reason naming that vCPU and the bound in force. The bound follows the load
 * (`src/sched/watchdog.ts`): 1 s on a lightly loaded machine, up to 60 s.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import type { SchedulerPlugin, VcpuId } from "../mod.ts";
import { type SimResult, simulate, type SimVmSpec } from "../src/sim/mod.ts";
import { SchedCore } from "../src/sched/core.ts";
import { LocalPolicy } from "../src/sched/policy_port.ts";
import {
  DEFAULT_STARVATION_NS,
  ROUNDS_PER_SQRT_SLOT,
  STARVATION_CAP_NS,
} from "../src/sched/watchdog.ts";
import { test } from "./helpers/deadline.ts";

const MS = 1_000_000;
const S = 1_000_000_000;
const SLOTS = 2;
const plugin = (name: string) => new URL(`../plugins/${name}.ts`, import.meta.url).href;

/** `n` spinning vCPUs, 4 per VM (as many VMs as 64 x 4 on KVM, times n / 256). */
function spinners(n: number): SimVmSpec[] {
  return Array.from({ length: n / 4 }, (_, i) => ({
    name: `v${i}`,
    vcpus: 4,
    workload: { kind: "spin" as const },
  }));
}

/** What the scaled bound is for this load on 2 slots (`watchdog.ts`), before floor and cap. */
function scaledBound(runnable: number, sliceNs: number): number {
  return ROUNDS_PER_SQRT_SLOT * Math.sqrt(SLOTS) * Math.ceil(runnable / SLOTS) * sliceNs;
}

function longestWait(r: SimResult): { ns: number; who: string } {
  let best = { ns: 0, who: "" };
  for (const v of r.vcpus) {
    if (v.maxWaitNs > best.ns) best = { ns: v.maxWaitNs, who: `${v.vm}#${v.index}` };
  }
  return best;
}

// 4 policies x {256, 1024} spinning vCPUs on 2 slots for 60 s of virtual time. In-process
// (`sandbox: false`): the bound lives in the core, which is the same either way (sim_test.ts
// shows sandboxed and in-process runs are identical); the sandbox's cross-thread calls would
// only make rtds's 60,000 ticks slower. One sandboxed run (credit, 1,024) follows.
for (const n of [256, 1024]) {
  for (const policy of ["rr", "credit", "credit2", "rtds"]) {
    test(`watchdog scale: ${n} spinning vCPUs on 2 slots under ${policy}, 60 s: no ejection`, async () => {
      const t0 = performance.now();
      const r = await simulate({
        plugin: plugin(policy),
        slots: SLOTS,
        seconds: 60,
        sandbox: false,
        vms: spinners(n),
      });
      const wallMs = performance.now() - t0;
      assertEquals(r.ejections, [], JSON.stringify(r.ejections));
      assertEquals(r.finalPlugin, r.plugin);
      assert(r.maxRunning <= SLOTS);
      // Every vCPU ran: the policy went round (a minute is many rounds for each of them).
      for (const v of r.vcpus) assert(v.runNs > 0, `${v.vm}#${v.index} never ran`);
      // The old fixed 1 s bound would have ejected it: some vCPU waited longer than that for
      // its turn (except under rtds at 256: its 4 ms budgets make a round 128 x 4 ms = 0.5 s).
      const wait = longestWait(r);
      if (!(policy === "rtds" && n === 256)) {
        assert(wait.ns > DEFAULT_STARVATION_NS, `${wait.who} waited ${wait.ns / MS} ms`);
      }
      assert(r.starvationBoundNs <= STARVATION_CAP_NS, `bound ${r.starvationBoundNs}`);
      console.log(
        `${policy} ${n} vCPUs: longest wait ${(wait.ns / MS).toFixed(0)} ms (${wait.who}), ` +
          `bound at the end ${(r.starvationBoundNs / MS).toFixed(0)} ms, ` +
          `wall ${wallMs.toFixed(0)} ms`,
      );
    });
  }
}

test("watchdog scale: 1,024 vCPUs under credit in the sandbox, 60 s: no ejection", async () => {
  const t0 = performance.now();
  const r = await simulate({
    plugin: plugin("credit"),
    slots: SLOTS,
    seconds: 60,
    vms: spinners(1024),
  });
  assertEquals(r.ejections, []);
  assertEquals(r.finalPlugin, r.plugin);
  // credit's 30 ms slices, 512 runnable per slot: 87 s scaled, so the cap.
  assertEquals(r.starvationBoundNs, Math.min(STARVATION_CAP_NS, scaledBound(1024, 30 * MS)));
  const wait = longestWait(r);
  // One round is 512 x 30 ms = 15.4 s: the old 1 s bound would have ejected credit at once.
  assert(wait.ns > 15 * S, `${wait.who} waited ${wait.ns / MS} ms`);
  console.log(
    `credit 1024 vCPUs (sandbox): longest wait ${(wait.ns / MS).toFixed(0)} ms, bound ${
      r.starvationBoundNs / MS
    } ms, wall ${(performance.now() - t0).toFixed(0)} ms`,
  );
});

/**
 * A FIFO round-robin with `sliceNs` slices that, once `victim` has run `afterRuns` times, never
 * picks it again: a plugin that really forgets one vCPU.
 */
function forgetful(victim: VcpuId, sliceNs: number, afterRuns = 1): SchedulerPlugin {
  let q: VcpuId[] = [];
  let runs = 0;
  return {
    name: "forgetful",
    init() {
      q = [];
      runs = 0;
    },
    addVcpu(info) {
      if (info.state !== "halted") q.push(info.id);
    },
    pickNext() {
      let i = 0;
      if (runs >= afterRuns) { while (i < q.length && q[i] === victim) i++; }
      if (i >= q.length) return null;
      const [v] = q.splice(i, 1);
      if (v === victim) runs++;
      return { vcpu: v, sliceNs };
    },
    onHalt(v) {
      q = q.filter((x) => x !== v);
    },
    onWake(v) {
      q.push(v);
    },
    onDeschedule(v) {
      q.push(v);
    },
  };
}

test("watchdog scale: forgetting one vCPU among 256 (30 ms slices) is ejected after the scaled bound", async () => {
  const victim = 77; // v19#1, once it has run
  const r = await simulate({
    plugin: forgetful(victim, 30 * MS),
    slots: SLOTS,
    seconds: 40,
    vms: spinners(256),
  });
  assertEquals(r.ejections.length, 1, JSON.stringify(r.ejections));
  const e = r.ejections[0];
  assertEquals([e.plugin, e.reason], ["forgetful", "starvation"]);
  // 5.66 rounds of 128 runnable vCPUs per slot x 30 ms: 21.7 s, where one fair round is 3.8 s.
  const bound = scaledBound(256, 30 * MS);
  match(
    e.detail,
    /^vCPU 77 \(v19#1\) was runnable for \d+\.\d ms without a slot \(bound 21722\.3 ms: 5\.66 rounds of 128 runnable vCPUs per slot x 30 ms slices\)$/,
  );
  const waited = Number(/runnable for (\d+\.\d) ms/.exec(e.detail)![1]) * MS;
  // Checked every 500 ms: ejected between one bound and one bound plus an interval.
  assert(waited > bound && waited <= bound + DEFAULT_STARVATION_NS / 2 + MS, `${waited / MS} ms`);
  // Every other vCPU's wait stayed well under the bound (about one round).
  const others = r.vcpus.filter((v) => v.id !== victim);
  const worst = Math.max(...others.map((v) => v.maxWaitNs));
  assert(worst < bound / 4, `another vCPU waited ${worst / MS} ms`);
  // The fallback round-robin runs the forgotten vCPU again.
  assertEquals(r.finalPlugin, "rr");
  const v = r.vcpus.find((x) => x.id === victim)!;
  assert(v.grants >= 2, `the forgotten vCPU was granted ${v.grants} times`);
});

test("watchdog scale: the sandboxed faulty plugin starving one vCPU among 256 is ejected within 1.5 s", async () => {
  // 1 ms slices: 5.66 rounds of 128 x 1 ms is 0.72 s, under the floor: the bound is 1 s.
  const r = await simulate({
    plugin: new URL("./fixtures/plugins/faulty.ts", import.meta.url).href,
    params: { fault: "starve", after: 300 },
    slots: SLOTS,
    seconds: 4,
    vms: spinners(256),
  });
  assertEquals(r.ejections.length, 1, JSON.stringify(r.ejections));
  const e = r.ejections[0];
  assertEquals([e.plugin, e.reason], ["faulty", "starvation"]);
  match(e.detail, /^vCPU 0 \(v0#0\) was runnable for \d+\.\d ms without a slot \(bound 1000 ms\)$/);
  const waited = Number(/runnable for (\d+\.\d) ms/.exec(e.detail)![1]) * MS;
  assert(waited > S && waited <= 1.5 * S + MS, `${waited / MS} ms`);
  assert(e.at < 2 * S, `ejected at ${e.at / MS} ms`);
});

/** A FIFO that gives every vCPU `sliceNs`; enough to drive the core by hand. */
function fifo(sliceNs: number): SchedulerPlugin {
  let q: VcpuId[] = [];
  return {
    name: "fifo",
    init() {
      q = [];
    },
    addVcpu(info) {
      if (info.state !== "halted") q.push(info.id);
    },
    pickNext() {
      const v = q.shift();
      return v === undefined ? null : { vcpu: v, sliceNs };
    },
    onHalt(v) {
      q = q.filter((x) => x !== v);
    },
    onWake(v) {
      q.push(v);
    },
    onDeschedule(v) {
      q.push(v);
    },
  };
}

test("watchdog scale: the bound follows the load, remembers it for a bound, and a fixed one stays exact", () => {
  const core = new SchedCore({ slots: SLOTS, policy: new LocalPolicy(fifo(30 * MS)) });
  const running = () => core.stats().vcpus.filter((v) => v.state === "running").map((v) => v.id);
  const vm = (id: number, state: "runnable" | "halted" = "runnable") => ({
    id,
    vm: `v${id >> 2}`,
    index: id & 3,
    vmVcpus: 4,
    params: {},
    state,
  });
  // Light: 4 runnable vCPUs on 2 slots (2 per slot x 30 ms x 5.66 = 0.34 s): the floor.
  for (let id = 0; id < 4; id++) core.addVcpu(vm(id), 0);
  assertEquals(core.starvationBound.kind, "floor");
  assertEquals(core.starvationBound.ns, DEFAULT_STARVATION_NS);
  // Heavy: 256 runnable. Slices end every 30 ms; the watchdog samples at grants and checks.
  for (let id = 4; id < 256; id++) core.addVcpu(vm(id), 0);
  let t = 0;
  const step = (until: number) => {
    while (t < until) {
      t += 30 * MS;
      for (const id of running()) core.sliceEnd(id, t, 30 * MS);
      if (core.nextTimerAt() <= t) core.advance(t);
    }
  };
  step(2 * S);
  const heavy = core.starvationBound;
  assertEquals(heavy.kind, "scaled");
  assertEquals([heavy.runnablePerSlot, heavy.sliceNs], [128, 30 * MS]);
  assertEquals(heavy.ns, Math.round(scaledBound(256, 30 * MS)));
  // The load ends: all but 4 halt. The heavy bound stays in force for at least one bound ...
  const quietAt = t;
  for (let id = 4; id < 256; id++) core.halt(id, t, 0);
  step(quietAt + heavy.ns);
  assertEquals(core.starvationBound.ns, heavy.ns);
  // ... and is forgotten after two.
  step(quietAt + 2 * heavy.ns + S);
  assertEquals(core.starvationBound.ns, DEFAULT_STARVATION_NS);
  assertEquals(core.ejections, []);
  core.close();

  // A fixed bound is exact whatever the load.
  const fixed = new SchedCore({
    slots: SLOTS,
    policy: new LocalPolicy(fifo(30 * MS)),
    watchdog: { starvationNs: 250 * MS },
  });
  for (let id = 0; id < 256; id++) fixed.addVcpu(vm(id), 0);
  assertEquals(fixed.starvationBound, {
    ns: 250 * MS,
    kind: "fixed",
    runnablePerSlot: 0,
    sliceNs: 0,
    rounds: 0,
  });
  assertEquals(fixed.stats().starvationBoundNs, 250 * MS);
  fixed.close();
});
