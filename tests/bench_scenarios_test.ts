/** The Results table of `deno task bench:scenarios`: medians, ranges, partial reruns. */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { cellOf, median, mergeRuns, resultsTable, rtMisses, spread } from "../bench/scenarios.ts";
import type { ScenarioResult, VmOutcome } from "../src/scenario/result.ts";
import { summarizeStudy } from "../bench/rt_misses.ts";
import type { LateJob } from "../src/trace/misses.ts";
import type { CpuGaps } from "../bench/host_noise.ts";
import { test } from "./helpers/deadline.ts";

function vm(name: string, o: Partial<VmOutcome> = {}): VmOutcome {
  return {
    name,
    workload: "spin",
    weight: 256,
    share: 0.5,
    shareMin: 0.5,
    shareMax: 0.5,
    vmShare: 0.5,
    vmShareMin: 0.5,
    vmShareMax: 0.5,
    p50Us: NaN,
    p99Us: NaN,
    throughput: 0,
    unit: "it/s",
    misses: 0,
    jobs: 0,
    ...o,
  };
}

function run(scenario: string, policy: string, vms: VmOutcome[], ejected = false): ScenarioResult {
  return {
    scenario,
    mode: "kvm",
    policy,
    slots: 2,
    seconds: 10,
    vms,
    jain: 1,
    ejections: ejected ? ["budget: slow"] : [],
    date: "2026-01-01",
  };
}

test("median and spread: the middle run, and the range only when runs differ", () => {
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, 3, 2]), 2.5);
  assert(Number.isNaN(median([NaN])));
  assertEquals(spread([10.04, 9.96, 10.2], 1), "10.0 (10.0-10.2)");
  assertEquals(spread([5, 5, 5], 0), "5");
  assertEquals(spread([NaN, NaN], 1), "-");
});

test("a cell is the median of its runs with their range, and counts ejections", () => {
  const lock = (n: number, ejected = false) =>
    run("lock", "gang", [vm("lock", { throughput: n }), vm("hog")], ejected);
  assertEquals(
    cellOf("lock", [lock(40), lock(7000), lock(45, true)]),
    "45 (40-7000) (ejected in 1 of 3)",
  );
  const rt = (m: number) =>
    run("rt", "rtds", [vm("rt1", { workload: "periodic", misses: m, jobs: 1000 }), vm("hog")]);
  assertEquals(cellOf("rt", [rt(0), rt(2), rt(0)]), "0 (0-2) / 1000");
  match(rtMisses([rt(0), rt(2), rt(0)]), /rtds 1 of 3 runs, 6\.7 per 10,000 jobs/);
  assertEquals(cellOf("rt", []), "-");
});

test("a partial rerun replaces only its scenario and policy; the table says how many runs", () => {
  const a = run("lock", "gang", [vm("lock", { throughput: 1 }), vm("hog")]);
  const b = run("lock", "credit", [vm("lock", { throughput: 2 }), vm("hog")]);
  const b2 = run("lock", "credit", [vm("lock", { throughput: 3 }), vm("hog")]);
  assertEquals(mergeRuns([a, b, b], [b2]), [a, b2]);
  const table = resultsTable({ measured: "Measured with x", hostNoise: [], results: [a, b2] });
  match(
    table,
    /^\| lock \| lock acquisitions\/s \(test-and-set\) \| - \| - \| 3 \| - \| - \| 1 \|$/m,
  );
  match(table, /Each cell: the median of 1 run,/);
});

test("bench:rt's summary: runs with a miss, misses per 10,000 jobs, verdicts, host noise", () => {
  const late = (verdict: LateJob["verdict"]) => ({ verdict }) as LateJob;
  const gaps = (over1ms: number, maxUs: number) => ({ over1ms, maxUs }) as CpuGaps;
  const s = summarizeStudy({
    measured: "x",
    policy: "rtds",
    hostNoise: [
      { at: "", seconds: 10, cpus: [gaps(1, 1200), gaps(2, 3400)] },
      { at: "", seconds: 10, cpus: [gaps(0, 400), gaps(0, 300)] },
    ],
    runs: [
      { at: "", misses: 0, jobs: 2000, late: [], ejections: [] },
      { at: "", misses: 3, jobs: 2000, late: [late("host"), late("host")], ejections: [] },
      { at: "", misses: 1, jobs: 4000, late: [late("scheduler"), late("vmm")], ejections: [] },
    ],
  });
  match(s, /^rtds: 2 of 3 runs with a miss, 4 misses in 8000 jobs \(5\.0 per 10,000\)$/m);
  match(
    s,
    /^late stretches in the traces: 4 \(scheduler 1, edf 0, budget 0, host 2, vmm 1, work 0\)$/m,
  );
  match(s, /3 gaps over 1 ms \(longest 3\.4 ms\); then 0 gaps over 1 ms \(longest 0\.4 ms\)/);
});
