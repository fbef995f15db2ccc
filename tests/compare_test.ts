/**
 * `compare`: latency distributions, the goal checks and verdicts on runs made by hand, the
 * command's bad input (exit 2), a run in the simulator through the CLI (files, verdicts,
 * determinism), and a short run on KVM through the API.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { test } from "./helpers/deadline.ts";
import { runCli } from "./helpers/cli.ts";
import { requireKernel } from "./helpers/vmm.ts";
import { compare, type CompareData, compareReport, type CompareRun } from "../mod.ts";
import { Histogram } from "../src/sched/histogram.ts";
import { cdfOfHistogram, cdfOfSamples, cdfQuantile, mergeCdfs } from "../src/compare/cdf.ts";
import { shareTargets, verdicts } from "../src/compare/verdict.ts";
import { parseScenario, type Scenario } from "../src/scenario/scenario.ts";
import type { ScenarioResult, VmOutcome } from "../src/scenario/result.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** A copy of plugins/rr.ts named `my_rr.ts` in a temporary directory: a user's plugin. */
async function userPlugin(): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-compare-" });
  const src = (await Deno.readTextFile(`${ROOT}plugins/rr.ts`)).replace(
    /from "\.\.\/mod\.ts"/,
    `from "${new URL("../mod.ts", import.meta.url).href}"`,
  );
  await Deno.writeTextFile(`${dir}/my_rr.ts`, src);
  return { dir, path: `${dir}/my_rr.ts` };
}

test("cdf: from samples, from a histogram, merged by counts", () => {
  const a = cdfOfSamples([4000, 1000, 2000, 2000]);
  assertEquals(a, { count: 4, points: [[1, 0.25], [2, 0.75], [4, 1]] });
  assertEquals(cdfQuantile(a, 0.5), 2);
  assertEquals(cdfQuantile(a, 0.9), 4);
  const b = cdfOfSamples([
    3000,
    5000,
    6000,
    7000,
    8000,
    9000,
    10000,
    11000,
    12000,
    13000,
    14000,
    15000,
  ]);
  const m = mergeCdfs([a, b, { count: 0, points: [] }]);
  assertEquals(m.count, 16);
  // 1 µs is 1 of 16 samples; 4 µs is the 5th (1, 2, 2, 3, 4).
  assertEquals(m.points[0], [1, 1 / 16]);
  assertEquals(m.points.find((p) => p[0] === 4), [4, 5 / 16]);
  assertEquals(m.points[m.points.length - 1], [15, 1]);
  // A histogram's CDF: monotone, ends at [max, 1], and agrees with its quantiles.
  const h = new Histogram();
  for (let i = 1; i <= 1000; i++) h.record(i * 1000);
  const pts = h.cdf();
  assert(pts.every((p, i) => i === 0 || (p[0] > pts[i - 1][0] && p[1] > pts[i - 1][1])));
  assertEquals(pts[pts.length - 1], [1_000_000, 1]);
  const c = cdfOfHistogram(h.count, pts);
  assert(c.points.length <= 200);
  for (const q of [0.1, 0.5, 0.99]) {
    const got = cdfQuantile(c, q), want = h.quantile(q) / 1e3;
    assert(Math.abs(got - want) / want < 0.04, `q${q}: ${got} against ${want}`);
  }
});

/** A VM outcome with defaults. */
function vm(name: string, o: Partial<VmOutcome>): VmOutcome {
  return {
    name,
    workload: "spin",
    weight: 256,
    share: 0,
    shareMin: 0,
    shareMax: 0,
    vmShare: 0,
    vmShareMin: 0,
    vmShareMax: 0,
    p50Us: NaN,
    p99Us: NaN,
    throughput: 0,
    unit: "",
    misses: 0,
    jobs: 0,
    ...o,
  };
}

function result(scenario: string, policy: string, vms: VmOutcome[], ejections: string[] = []) {
  const r: ScenarioResult = {
    scenario,
    mode: "sim",
    policy,
    slots: 1,
    seconds: 2,
    vms,
    jain: 1,
    ejections,
    date: "2026-01-01T00:00:00Z",
  };
  return r;
}

/** A scenario of every kind of check: weights, a cap, a periodic VM, open echo, a lock VM. */
function mixed(): Scenario {
  return parseScenario({
    name: "mixed",
    slots: 2,
    seconds: 2,
    goal: { p99Ms: 1, sharePp: 2 },
    vms: [
      { name: "w1", workload: { kind: "spin" }, sched: { weight: 256 } },
      { name: "w3", workload: { kind: "spin" }, sched: { weight: 768 } },
      { name: "capped", workload: { kind: "spin" }, sched: { cap: 20 } },
      { name: "rt", workload: { kind: "periodic", periodMs: 10, computeMs: 1 } },
      { name: "echo", workload: { kind: "echo", mode: "open", ratePerSec: 1000, serviceUs: 50 } },
      { name: "lock", vcpus: 2, workload: { kind: "lock" } },
    ],
  }, "mixed.json");
}

test("verdict: each check on runs made by hand", () => {
  const s = mixed();
  const good = result("mixed", "good", [
    vm("w1", { share: 0.1 }),
    vm("w3", { share: 0.3 }),
    vm("capped", { share: 0.1 }), // 20 % of one slot of 2
    vm("rt", { workload: "periodic", misses: 0, jobs: 200 }),
    vm("echo", { workload: "echo", p99Us: 800, throughput: 990 }),
    vm("lock", { workload: "lock", throughput: 1000 }),
  ]);
  const bad = result("mixed", "bad", [
    vm("w1", { share: 0.2 }), // half of what the two got, against a quarter: 25 pp off
    vm("w3", { share: 0.2 }),
    vm("capped", { share: 0.2 }), // 40 % of a slot: 20 pp over
    vm("rt", { workload: "periodic", misses: 10, jobs: 200 }),
    vm("echo", { workload: "echo", p99Us: 5000, throughput: 500 }),
    vm("lock", { workload: "lock", throughput: 500 }),
  ], ["starved: vcpu 3"]);
  const targets = shareTargets(s, good);
  assertEquals(Object.keys(targets), ["w1", "w3", "capped"]);
  for (const [k, want] of [["w1", 0.1], ["w3", 0.3], ["capped", 0.1]] as const) {
    assert(Math.abs(targets[k] - want) < 1e-12, `target of ${k}: ${targets[k]}`);
  }
  const run = (plugin: string, r: ScenarioResult, n: number): CompareRun => ({
    scenario: "mixed",
    plugin,
    run: n,
    result: r,
    wake: {},
  });
  const data: CompareData = {
    mode: "sim",
    seeds: 2,
    plugins: [
      { name: "good", source: "good.ts", builtin: false },
      { name: "bad", source: "bad.ts", builtin: true },
      { name: "half", source: "half.ts", builtin: true },
    ],
    scenarios: [s],
    runs: [
      run("good", good, 1),
      run("good", good, 2),
      run("bad", bad, 1),
      run("bad", bad, 2),
      run("half", good, 1),
      run("half", bad, 2),
    ],
    date: "2026-01-01T00:00:00Z",
  };
  const [v] = verdicts(data);
  const byKey = (plugin: string) =>
    Object.fromEntries(
      v.plugins.find((p) => p.plugin === plugin)!.runs[0].checks.map((c) => [c.key, c]),
    );
  const g = byKey("good"), b = byKey("bad");
  assertEquals(Object.keys(g), [
    "misses",
    "p99",
    "echoRate",
    "shares",
    "caps",
    "lock",
    "ejections",
  ]);
  assert(Object.values(g).every((c) => c.ok), JSON.stringify(g));
  assert(Object.values(b).every((c) => !c.ok), JSON.stringify(b));
  assert(Math.abs(b.shares.value - 25) < 1e-9, `shares ${b.shares.value}`);
  assert(Math.abs(b.caps.value - 20) < 1e-9, `caps ${b.caps.value}`);
  assertEquals([b.misses.value, b.p99.value, b.echoRate.value], [5, 5, 50]);
  // The best lock throughput is the best plugin's median (good: 1000).
  assertEquals(b.lock.value, 50);
  assertEquals(v.headline?.key, "misses");
  const met = v.plugins.map((p) => [p.plugin, p.met, p.runsMet]);
  assertEquals(met, [["good", true, 2], ["bad", false, 0], ["half", false, 1]]);
  match(v.line, /^mixed \(worst periodic VM's deadline misses <= 0\.1 %\): met by good; /);
  match(v.line, /in some seeds only by half \(1 of 2\)/);
  match(v.line, /not by bad \(misses 5\.0 %\)/);
  const report = compareReport(data);
  match(
    report.markdown,
    /\| mixed \| .* \| yes: 0\.0 % \| no: 5\.0 % \| 1 of 2: 2\.5 % \(0\.0-5\.0\) \|/,
  );
  match(report.markdown, /- mixed \(worst periodic/);
});

test("compare: bad input is a clear error with exit 2", async () => {
  const { dir, path } = await userPlugin();
  try {
    const cases: [string[], RegExp][] = [
      [["--sched", `${dir}/nope.ts`], /plugin .*nope\.ts: no such file/],
      [
        ["--sched", path, "--scenario", "no-such"],
        /scenario no-such: no such standard scenario \(known: io-vs-hog, /,
      ],
      [["--sched", path, "--scenario", `${dir}/none.json`], /none\.json: cannot read/],
      [["--sched", path, "--seeds", "0"], /--seeds must be an integer >= 1, got '0'/],
      [["--sched", path, "--seeds", "two"], /--seeds must be an integer >= 1, got 'two'/],
      [["--sched", path, "--builtins", "cfs"], /--builtins: no built-in policy 'cfs'/],
      [["--scenario", "weights"], /give a plugin to compare: --sched PLUGIN/],
      [
        ["--sched", `${ROOT}src/version.ts`, "--scenario", "weights", "--seconds", "0.5"],
        /cannot load: .*no default export/,
      ],
    ];
    await Deno.writeTextFile(
      `${dir}/bad_goal.json`,
      JSON.stringify({ vms: [{ name: "a", workload: { kind: "spin" } }], goal: { p99: 3 } }),
    );
    cases.push([
      ["--sched", path, "--scenario", `${dir}/bad_goal.json`],
      /bad_goal\.json: goal\.p99: unknown key/,
    ]);
    for (const [args, want] of cases) {
      const r = await runCli([
        "compare",
        ...args,
        "--html",
        `${dir}/x.html`,
        "--md",
        `${dir}/x.md`,
      ]);
      assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      match(r.stderr, want);
    }
    // Nothing was written.
    await Deno.stat(`${dir}/x.html`).then(() => assert(false, "a report was written"), () => {});
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("compare in the simulator: the CLI writes the summary and report, deterministic per seed", async () => {
  const { dir, path } = await userPlugin();
  try {
    const args = [
      "compare",
      "--sched",
      path,
      "--scenario",
      "weights",
      "--scenario",
      "rt",
      "--builtins",
      "credit,rtds",
      "--seeds",
      "2",
      "--seconds",
      "2",
      "--html",
      `${dir}/r.html`,
      "--md",
      `${dir}/r.md`,
    ];
    const r = await runCli(args);
    assertEquals(r.code, 0, r.stderr);
    const md = await Deno.readTextFile(`${dir}/r.md`);
    assert(r.stdout.includes(md.trim()), "the summary is printed");
    match(md, /\| scenario \| goal \| my_rr \| credit \| rtds \|/);
    // rr and rtds ignore weights; credit divides by them. rtds keeps rt's deadlines; rr cannot.
    match(md, /- weights \(.*\): met by credit; not by my_rr \(shares \d+\.\d pp\), rtds/);
    match(md, /- rt \(.*\): met by .*rtds.*; not by .*my_rr \(misses/);
    const html = await Deno.readTextFile(`${dir}/r.html`);
    assert(html.startsWith("<!doctype html>"));
    assert(!/<script|\bsrc=|\bhref=|@import|url\(/i.test(html), "the report loads nothing");
    match(html, /Content-Security-Policy" content="default-src 'none'/);
    assertEquals(html.match(/<svg /g)?.length, 3, "a header and a section per scenario");
    // The same seeds give the same runs.
    const again = await runCli(args);
    assertEquals(again.code, 0, again.stderr);
    const strip = (s: string) => s.replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, "DATE");
    assertEquals(strip(await Deno.readTextFile(`${dir}/r.md`)), strip(md));
    assertEquals(strip(await Deno.readTextFile(`${dir}/r.html`)), strip(html));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("compare on KVM: one short scenario, a plugin beside one built-in", async () => {
  await requireKernel();
  const { dir, path } = await userPlugin();
  try {
    const data = await compare({
      plugins: [path],
      scenarios: ["io-vs-hog"],
      builtins: ["credit"],
      kvm: true,
      seeds: 1,
      seconds: 1,
    });
    assertEquals(data.mode, "kvm");
    assertEquals(data.runs.map((r) => [r.plugin, r.result.mode, r.result.ejections]), [
      ["my_rr", "kvm", []],
      ["credit", "kvm", []],
    ]);
    for (const r of data.runs) {
      const echo = r.result.vms.find((v) => v.name === "echo")!;
      assert(echo.throughput > 500, `${r.plugin}: echo answered ${echo.throughput}/s`);
      assert((echo.windows?.length ?? 0) >= 1, `${r.plugin}: no share window`);
      // The echo VM halts between requests and wakes for the next: the trace gave its wake
      // latencies (how often it halts depends on the policy: under rr requests queue up).
      assert(r.wake.echo && r.wake.echo.count > 0, `${r.plugin}: no wake of echo`);
      assertEquals(r.wake.echo.points[r.wake.echo.points.length - 1][1], 1);
    }
    const report = compareReport(data);
    assertEquals(report.verdicts.map((v) => v.plugins.map((p) => p.plugin)), [["my_rr", "credit"]]);
    match(report.markdown, /1 run on KVM/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}, { deadlineMs: 90_000 });
