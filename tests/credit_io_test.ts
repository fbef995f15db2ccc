/**
 * Credit beside an I/O VM, in the simulator: two CPU hogs weighted 512 and 256 share one slot
 * with an echo VM and must split what it leaves 2:1 (plugins/credit.ts, DEVIATIONS 1 and 7),
 * and the tick-sampling attacker must still get no more than its share. Each scenario also runs
 * with the deviation switched off, so that what it changes is measured, not assumed.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { PolicyEvent, SchedParams, SchedulerPlugin } from "../mod.ts";
import { CreditScheduler } from "../plugins/credit.ts";
import { Credit2Scheduler } from "../plugins/credit2.ts";
import { type SimOptions, type SimResult, simulate } from "../src/sim/mod.ts";
import { test } from "./helpers/deadline.ts";

const MS = 1_000_000;
/** credit.c `credits_per_tslice` at the default 30 ms slice. */
const CREDITS_PER_PERIOD = 300;

const HOGS: SimOptions["vms"] = [
  { name: "heavy", vcpus: 1, params: { weight: 512 }, workload: { kind: "spin" } },
  { name: "light", vcpus: 1, params: { weight: 256 }, workload: { kind: "spin" } },
];

/** The demo's echo VM: open loop, Poisson arrivals, 50 us of guest time each. */
function echo(ratePerSec: number): SimOptions["vms"][number] {
  return {
    name: "echo",
    vcpus: 1,
    workload: { kind: "echo", mode: "open", ratePerSec, serviceUs: 50 },
  };
}

/** One row of the table: what runs beside the hogs, and the core's rate limit. */
interface Row {
  label: string;
  vms: SimOptions["vms"];
  ratelimitNs: number;
}

const ROWS: Row[] = [
  { label: "nothing", vms: HOGS, ratelimitNs: MS },
  { label: "echo 1000 req/s, ratelimit 1 ms", vms: [echo(1000), ...HOGS], ratelimitNs: MS },
  {
    label: "echo 1000 req/s, ratelimit 100 us",
    vms: [echo(1000), ...HOGS],
    ratelimitNs: 100_000,
  },
  { label: "echo 100 req/s, ratelimit 1 ms", vms: [echo(100), ...HOGS], ratelimitNs: MS },
];

interface Run {
  result: SimResult;
  events: { at: number; event: PolicyEvent }[];
}

/** 10 s of one row under credit with `params`, seed 1 (the scenario runner's default). */
async function run(
  row: Row,
  params: SchedParams = {},
  plugin: SchedulerPlugin = new CreditScheduler(),
): Promise<Run> {
  const events: Run["events"] = [];
  const result = await simulate({
    plugin,
    params,
    slots: 1,
    seconds: 10,
    seed: 1,
    ratelimitNs: row.ratelimitNs,
    vms: row.vms,
    onPolicyEvent: (event, at) => events.push({ at, event }),
  });
  assert.deepEqual(result.ejections, [], `ejected: ${JSON.stringify(result.ejections)}`);
  return { result, events };
}

function share(r: SimResult, name: string): number {
  const v = r.vms.find((x) => x.name === name);
  assert.ok(v, `no VM ${name}`);
  return v.share;
}

/** The heavy hog's part of what the two hogs got: 2/3 for weights 512:256. */
function heavyPart(r: SimResult): number {
  return share(r, "heavy") / (share(r, "heavy") + share(r, "light"));
}

function vcpuOf(r: SimResult, vm: string): number {
  const v = r.vcpus.find((x) => x.vm === vm);
  assert.ok(v, `no vCPU of ${vm}`);
  return v.id;
}

function values(run: Run, kind: string, vcpu: number): number[] {
  return run.events.filter((e) => e.event.kind === kind && e.event.vcpu === vcpu)
    .map((e) => e.event.value!);
}

function print(label: string, r: SimResult): void {
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  console.log(
    `  ${label.padEnd(34)} heavy ${pct(share(r, "heavy"))}, light ${pct(share(r, "light"))}, ` +
      `ratio ${(share(r, "heavy") / share(r, "light")).toFixed(2)}`,
  );
}

test("credit beside an echo VM: the hogs split what it leaves 2:1 (within 1 pp)", async () => {
  // Measured (seed 1): heavy's part 66.4 % alone, 66.4 % beside echo at 1,000 req/s with either
  // rate limit, 66.4 % beside echo at 100 req/s; without DEVIATION 7 these were 63.7, 65.4 and
  // 62.4 % (ratios 1.75, 1.89, 1.66).
  for (const row of ROWS) {
    const { result } = await run(row);
    print(row.label, result);
    const part = heavyPart(result);
    assert.ok(Math.abs(part - 2 / 3) <= 0.01, `${row.label}: heavy's part ${part}`);
  }
});

test("credit2 beside the same echo VM splits 2:1 too (the table's reference row)", async () => {
  const { result } = await run(ROWS[1], {}, new Credit2Scheduler());
  print("credit2, " + ROWS[1].label, result);
  assert.ok(Math.abs(heavyPart(result) - 2 / 3) <= 0.01, `heavy's part ${heavyPart(result)}`);
});

test("credit without DEVIATION 7: an echo VM at 100 req/s dilutes the hogs' weights", async () => {
  // credit.c's peak with DEVIATION 1: the echo VM is handed its weight's share of every period
  // while it burns a few credits; the hogs, handed less than they run, are both OVER most of
  // the time and take equal 30 ms turns. Measured: 62.1 / 37.4 %, heavy's part 62.4 %.
  const { result } = await run(ROWS[3], { halted_peak: false });
  print("halted_peak=false, " + ROWS[3].label, result);
  assert.ok(heavyPart(result) < 2 / 3 - 0.03, `heavy's part ${heavyPart(result)}`);
});

test("credit: echo is handed what it burns, not its weight's share (DEVIATION 7)", async () => {
  const row = ROWS[3];
  const on = await run(row);
  const off = await run(row, { halted_peak: false });
  for (const [label, r] of [["DEVIATION 7", on], ["credit.c's peak", off]] as const) {
    const id = vcpuOf(r.result, "echo");
    const allotted = values(r, "allot", id).reduce((a, b) => a + b, 0);
    const burned = (r.result.vcpus[id].runNs / MS) * 10; // 10 credits per ms
    const active = values(r, "active", id);
    console.log(
      `  ${label}: echo handed ${allotted} credits, burned ${burned.toFixed(0)}; ` +
        `joined the active list ${active.filter((v) => v === 1).length} times, ` +
        `left ${active.filter((v) => v === 0).length}`,
    );
  }
  // With the rule: what it burned, plus one fill from 0 to a period's worth, plus at most one
  // credit of rounding up per accounting (measured: handed 811, burned 512).
  const id = vcpuOf(on.result, "echo");
  const allots = values(on, "allot", id);
  const allotted = allots.reduce((a, b) => a + b, 0);
  const burned = (on.result.vcpus[id].runNs / MS) * 10;
  assert.ok(
    allotted <= burned + CREDITS_PER_PERIOD + allots.length,
    `handed ${allotted}, burned ${burned}`,
  );
  assert.deepEqual(values(on, "active", id), [1], "joins once and stays on the active list");
  assert.ok(values(on, "credit", id).every((c) => c >= 0 && c <= CREDITS_PER_PERIOD));
  assert.ok(!values(on, "prio", id).includes(-2), "never OVER: it keeps BOOST");
  // Without it (measured: handed 28,809, burned 512; left the active list 161 times).
  const offId = vcpuOf(off.result, "echo");
  const offAllotted = values(off, "allot", offId).reduce((a, b) => a + b, 0);
  const offBurned = (off.result.vcpus[offId].runNs / MS) * 10;
  assert.ok(offAllotted > 20 * offBurned, `handed ${offAllotted}, burned ${offBurned}`);
  assert.ok(values(off, "active", offId).filter((v) => v === 0).length > 100);
});

test("credit: echo's p99 latency is within 10 % of what it is without DEVIATION 7", async () => {
  for (const row of ROWS.slice(1)) {
    const p99 = async (params: SchedParams) => {
      const echoVm = (await run(row, params)).result.vms.find((v) => v.name === "echo");
      assert.ok(echoVm?.echo, "echo results");
      return echoVm.echo.latency.p99;
    };
    const on = await p99({}), off = await p99({ halted_peak: false });
    console.log(`  ${row.label}: echo p99 ${on / 1e3} us (${off / 1e3} us without)`);
    assert.ok(on <= off * 1.1, `${row.label}: p99 ${on} vs ${off}`);
  }
});

/** The tick-sampling attacker of tests/plugins_test.ts beside a hog of the same weight. */
function attacker(params: SchedParams): Promise<SimResult> {
  return simulate({
    plugin: new CreditScheduler(),
    params,
    slots: 1,
    seconds: 20,
    seed: 7,
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
}

test("credit: DEVIATION 1's trade-off: the attacker with and without it (and 7)", async () => {
  // Measured: the attacker gets 50.1 % with DEVIATION 1 and 95.0 % without it (credit.c's
  // rule), whatever DEVIATION 7.
  for (const haltedPeak of [true, false]) {
    const closed = share(await attacker({ halted_peak: haltedPeak }), "attacker");
    const open = share(
      await attacker({ halted_peak: haltedPeak, active_on_burn: false }),
      "attacker",
    );
    console.log(
      `  halted_peak=${haltedPeak}: attacker ${(closed * 100).toFixed(1)} % with DEVIATION 1, ` +
        `${(open * 100).toFixed(1)} % without`,
    );
    assert.ok(closed <= 0.51, `attacker ${closed} with DEVIATION 1`);
    assert.ok(open >= 0.9, `attacker ${open} without DEVIATION 1 (the attack works)`);
  }
  // credit.c's rules (neither deviation) do not dilute the hogs' weights either: a tick rarely
  // finds the echo VM running, so it is on the active list at 12 of 333 accountings (measured:
  // 66.2 / 33.3 %). What they leave open is the attack above.
  const xen = await run(ROWS[3], { active_on_burn: false, halted_peak: false });
  print("credit.c's rules, " + ROWS[3].label, xen.result);
  assert.ok(Math.abs(heavyPart(xen.result) - 2 / 3) <= 0.01, `${heavyPart(xen.result)}`);
});
