/**
 * Sweeps: several seeds and plugin parameter values, run side by side in sandbox Workers and
 * summarised per combination and VM (mean and spread), from the API and from `mod.ts sim`.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { simulate } from "../src/sim/mod.ts";
import { combinations, spread, sweep } from "../src/sim/sweep.ts";
import type { SimOptions } from "../src/sim/types.ts";
import { runCli } from "./helpers/cli.ts";
import { test } from "./helpers/deadline.ts";

const CREDIT = new URL("../plugins/credit.ts", import.meta.url).href;

/** Open-loop echo arrivals are random: a different seed, a different run. */
const BASE: SimOptions = {
  plugin: CREDIT,
  slots: 1,
  seconds: 2,
  vms: [
    { name: "hog", vcpus: 1, workload: { kind: "spin" } },
    {
      name: "echo",
      vcpus: 1,
      workload: { kind: "echo", mode: "open", ratePerSec: 500, serviceUs: 100 },
    },
  ],
};

test("sweep: combinations are the cartesian product, spread is mean, sample sd and range", () => {
  assertEquals(combinations(), [{}]);
  assertEquals(combinations({ a: [1, 2], b: ["x", "y"] }), [
    { a: 1, b: "x" },
    { a: 1, b: "y" },
    { a: 2, b: "x" },
    { a: 2, b: "y" },
  ]);
  const s = spread([2, 4, 4, 4, 5, 5, 7, 9, NaN]);
  assertEquals([s.n, s.mean, s.min, s.max], [8, 5, 2, 9]);
  assert(Math.abs(s.sd - Math.sqrt(32 / 7)) < 1e-12);
  assertEquals(spread([3]).sd, 0);
  assertEquals(spread([]).n, 0);
});

test("sweep: every seed x value runs, each cell summarises exactly those runs, in parallel or not", async () => {
  const seeds = [1, 2, 3];
  const s = await sweep({ base: BASE, seeds, params: { tslice_ms: [5, 30] }, jobs: 2 });
  assertEquals(s.combinations, [{ tslice_ms: 5 }, { tslice_ms: 30 }]);
  assertEquals(s.runs.map((rs) => rs.length), [3, 3]);
  assertEquals(s.cells.map((c) => `${c.label} ${c.vm}`), [
    "tslice_ms=5 hog",
    "tslice_ms=5 echo",
    "tslice_ms=30 hog",
    "tslice_ms=30 echo",
  ]);
  // Each run is the simulation simulate() gives for that seed and value.
  const alone = await simulate({ ...BASE, seed: 2, params: { tslice_ms: 30 } });
  assertEquals(s.runs[1][1].vms, alone.vms);
  assertEquals(s.runs[1][1].sandbox, "whole");
  // The cell is the mean over the seeds, with their spread.
  const echo30 = s.cells[3];
  const p99s = s.runs[1].map((r) => r.vms[1].echo!.latency.p99);
  assertEquals(echo30.echoP99.n, 3);
  assert(Math.abs(echo30.echoP99.mean - p99s.reduce((a, b) => a + b) / 3) < 1e-6);
  assertEquals(echo30.echoP99.min, Math.min(...p99s));
  assert(echo30.share.sd > 0, "random arrivals: the seeds differ");
  // One at a time gives the same runs.
  const serial = await sweep({ base: BASE, seeds, params: { tslice_ms: [5, 30] }, jobs: 1 });
  assertEquals(serial.cells, s.cells);
  assertEquals([s.jobs, serial.jobs], [2, 1]);
});

test("sweep: bad seeds, values or jobs are refused with the option named", async () => {
  const refused = (o: Parameters<typeof sweep>[0]) => sweep(o).then(() => "", (e) => String(e));
  match(await refused({ base: BASE, seeds: [] }), /seeds must be integers/);
  match(await refused({ base: BASE, seeds: [1.5] }), /seeds must be integers/);
  match(await refused({ base: BASE, params: { tslice_ms: [] } }), /tslice_ms needs at least/);
  match(await refused({ base: BASE, jobs: 0 }), /jobs must be an integer >= 1/);
});

test("mod.ts sim: several seeds and values print one table of mean ± sd; bad flags exit 2", async () => {
  const scenario = new URL("../bench/scenarios/io-vs-hog.json", import.meta.url).pathname;
  const r = await runCli([
    "sim",
    "--scenario",
    scenario,
    "--sched",
    CREDIT,
    "--seconds",
    "1",
    "--seeds",
    "3",
    "--sweep",
    "tslice_ms=10,30",
  ]);
  assertEquals(r.code, 0, r.stderr);
  match(r.stdout, /6 runs \(seeds 1,2,3 x 2 combinations\), 2 at a time/);
  match(r.stdout, /tslice_ms=10 +\S+ +\d+\.\d+ ± \d+\.\d+/);
  match(r.stdout, /tslice_ms=30 /);
  for (
    const [args, msg] of [
      [["--sweep", "tslice_ms"], /--sweep must be NAME=V1,V2/],
      [["--sweep", "a=1,", "--seeds", "2"], /--sweep must be NAME=V1,V2/],
      [["--sweep", "a=1", "--sweep", "a=2"], /--sweep a is given twice/],
      [["--seed", "1,x"], /--seed must be an integer or a list/],
      [["--seed", "1,2", "--seeds", "3"], /either a list of seeds/],
      [["--seeds", "0"], /--seeds must be a positive integer/],
      [["--jobs", "0", "--seeds", "2"], /--jobs must be a positive integer/],
    ] as const
  ) {
    const bad = await runCli(["sim", "--scenario", scenario, ...args]);
    assertEquals(bad.code, 2, `${args.join(" ")}: exit ${bad.code}, ${bad.stderr}`);
    match(bad.stderr, msg);
  }
});
