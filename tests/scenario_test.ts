/** Scenario files: validation before anything starts, and short runs in the simulator and on KVM. */
import { deepStrictEqual as assertEquals, match, ok as assert, rejects } from "node:assert/strict";
import { parseScenario } from "../src/scenario/scenario.ts";
import { runScenarioSim } from "../src/scenario/run_sim.ts";
import { runScenarioKvm } from "../src/scenario/run_kvm.ts";
import { jainIndex, sharesOfVms } from "../src/scenario/result.ts";
import { loadScenario } from "../src/scenario/scenario.ts";
import { ConfigError } from "../mod.ts";
import { runCli } from "./helpers/cli.ts";
import { requireKernel } from "./helpers/vmm.ts";
import { test } from "./helpers/deadline.ts";

const DIR = new URL("../bench/scenarios/", import.meta.url);
const CREDIT = new URL("../plugins/credit.ts", import.meta.url).href;

const bad: Array<[string, unknown, RegExp]> = [
  ["not an object", [1, 2], /must be a JSON object/],
  ["no VMs", { vms: [] }, /vms: must be a non-empty array/],
  ["unknown key", { vms: [{ name: "a", workload: { kind: "spin" } }], cpus: 2 }, /unknown key/],
  [
    "unknown workload",
    { vms: [{ name: "a", workload: { kind: "fork-bomb" } }] },
    /unknown workload "fork-bomb"/,
  ],
  [
    "impossible periodic",
    { vms: [{ name: "a", workload: { kind: "periodic", periodMs: 10, computeMs: 20 } }] },
    /20 ms of work cannot fit a 10 ms period/,
  ],
  [
    "budget over period",
    { vms: [{ name: "a", workload: { kind: "spin" }, sched: { period_ms: 10, budget_ms: 11 } }] },
    /budget 11 ms exceeds period 10 ms/,
  ],
  [
    "weight 0",
    { vms: [{ name: "a", workload: { kind: "spin" }, sched: { weight: 0 } }] },
    /weight/,
  ],
  ["ipi on 1 vCPU", { vms: [{ name: "a", workload: { kind: "ipi" } }] }, /exactly 2 vCPUs/],
  [
    "unknown lock",
    { vms: [{ name: "a", vcpus: 2, workload: { kind: "lock", lock: "mcs" } }] },
    /vms\[0\]\.workload\.lock: must be "tas" or "ticket"/,
  ],
  [
    "duplicate names",
    { vms: [{ name: "a", workload: { kind: "spin" } }, { name: "a", workload: { kind: "spin" } }] },
    /duplicate VM 'a'/,
  ],
  [
    "0 slots",
    { slots: 0, vms: [{ name: "a", workload: { kind: "spin" } }] },
    /slots: must be >= 1/,
  ],
  [
    "negative ratelimit",
    { ratelimitUs: -1, vms: [{ name: "a", workload: { kind: "spin" } }] },
    /ratelimitUs: must be >= 0, got -1/,
  ],
];

for (const [what, data, message] of bad) {
  test(`scenario validation: ${what} is a ConfigError naming the field`, () => {
    try {
      parseScenario(data, "x.json");
    } catch (e) {
      assert(e instanceof ConfigError, String(e));
      match((e as Error).message, message);
      return;
    }
    throw new Error("accepted a bad scenario");
  });
}

test("scenario ratelimitUs: the file's value, else Xen's 1000 µs", () => {
  const vms = [{ name: "a", workload: { kind: "spin" } }];
  assertEquals(parseScenario({ vms }, "x.json").ratelimitUs, 1000);
  assertEquals(parseScenario({ ratelimitUs: 100, vms }, "x.json").ratelimitUs, 100);
});

test("every shipped scenario file is valid", async () => {
  for await (const f of Deno.readDir(DIR)) {
    if (!f.name.endsWith(".json")) continue;
    const s = await loadScenario(new URL(f.name, DIR).pathname);
    assert(s.vms.length > 0 && s.description.length > 0, f.name);
  }
});

test("cli scenario: bad JSON is a clear error with exit 2 before anything starts", async () => {
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file, "{ not json");
  const r = await runCli(["scenario", file]);
  await Deno.remove(file);
  assertEquals(r.code, 2, r.stderr);
  match(r.stderr, /not valid JSON/);
});

test("sim: weights 256/512/1024 under credit give 1/7, 2/7, 4/7 (within 1 pp)", async () => {
  const s = await loadScenario(new URL("weights.json", DIR).pathname);
  // Over 10 virtual seconds (the first 30 ms accounting periods start everyone equal).
  const r = await runScenarioSim(s, { policy: CREDIT, seconds: 10 });
  const want = [1 / 7, 2 / 7, 4 / 7];
  console.log(`  shares ${r.vms.map((vm) => (vm.share * 100).toFixed(1)).join(" / ")} %`);
  r.vms.forEach((vm, i) =>
    assert(Math.abs(vm.share - want[i]) <= 0.01, `${vm.name}: ${(vm.share * 100).toFixed(2)} %`)
  );
  // Deterministic: the same seed gives the same numbers.
  const again = await runScenarioSim(s, { policy: CREDIT, seconds: 10 });
  assertEquals(again.vms.map((v) => v.share), r.vms.map((v) => v.share));
});

test("sim: io-vs-hog under credit answers every request with low latency", async () => {
  const s = await loadScenario(new URL("io-vs-hog.json", DIR).pathname);
  const credit = await runScenarioSim(s, { policy: CREDIT, seconds: 2 });
  const rr = await runScenarioSim(s, {
    policy: new URL("../plugins/rr.ts", import.meta.url).href,
    seconds: 2,
  });
  const echo = credit.vms.find((v) => v.name === "echo")!;
  assert(echo.throughput >= 950, `echo ${echo.throughput} req/s of ~1000 offered`);
  assert(echo.p99Us < 2000, `echo p99 ${echo.p99Us} us under credit`);
  const rrEcho = rr.vms.find((v) => v.name === "echo")!;
  assert(rrEcho.p99Us > 2 * echo.p99Us, `rr p99 ${rrEcho.p99Us} us vs credit ${echo.p99Us} us`);
});

test("sim: rt keeps every deadline under rtds's reservations, not under credit's weights", async () => {
  const file = await loadScenario(new URL("rt.json", DIR).pathname);
  // The simulator has no guest kernel: on KVM each job here costs about 1.5 ms more than its
  // work (the guest's timer interrupt, sleep and halt, emulated on this host; see the file's
  // description), which the budgets cover. The simulated jobs get that cost as work.
  const s = {
    ...file,
    vms: file.vms.map((v) =>
      v.workload.kind === "periodic"
        ? { ...v, workload: { ...v.workload, computeMs: v.workload.computeMs + 1.5 } }
        : v
    ),
  };
  const rtds = await runScenarioSim(s, {
    policy: new URL("../plugins/rtds.ts", import.meta.url).href,
    seconds: 2,
  });
  const credit = await runScenarioSim(s, { policy: CREDIT, seconds: 2 });
  const jobs = (r: typeof rtds) => r.vms.reduce((n, v) => n + v.jobs, 0);
  const misses = (r: typeof rtds, name: string) => r.vms.find((v) => v.name === name)!.misses;
  // 2 s of 10, 20, 10 and 50 ms periods: 200 + 100 + 200 + 40 jobs, give or take the edges.
  assert(jobs(rtds) >= 530 && jobs(credit) >= 530, `jobs ${jobs(rtds)} / ${jobs(credit)}`);
  for (const vm of rtds.vms) assertEquals([vm.name, vm.misses], [vm.name, 0]);
  // rt1 needs 0.3 of a CPU; beside the 1024-weight batch VM its weight entitles it to about 0.25.
  assert(misses(credit, "rt1") > 100, `credit: rt1 missed only ${misses(credit, "rt1")} of 200`);
});

test("sim: grants cost the measured hand-off, so slots do not switch in lockstep", async () => {
  const s = await loadScenario(new URL("lock-ticket.json", DIR).pathname);
  const acq = (r: Awaited<ReturnType<typeof runScenarioSim>>) =>
    r.vms.find((v) => v.name === "lock")!.throughput;
  const real = acq(await runScenarioSim(s, { policy: CREDIT, seconds: 2 }));
  const none = acq(await runScenarioSim(s, { policy: CREDIT, seconds: 2, handoffUs: 0 }));
  // KVM: 44 acquisitions/s. With no hand-off both slots' 30 ms slices end at the same instants,
  // the lock VM's vCPUs are swapped in and out in pairs, and the ticket lock flows on.
  assert(real < 2000 && none > 4 * real, `with the hand-off ${real}/s, without ${none}/s`);
  const r = await runCli(["scenario", new URL("lock.json", DIR).pathname, "--handoff-us", "5"]);
  assertEquals(r.code, 2, r.stderr);
  match(r.stderr, /--handoff-us .*only with --sim/);
});

test("sim: host is not a simulated policy", async () => {
  const s = await loadScenario(new URL("weights.json", DIR).pathname);
  await rejects(() => runScenarioSim(s, { policy: "host" }), /only runs on KVM/);
});

test("kvm: short weights under credit, loose tolerance (15 pp), in weight order", async () => {
  await requireKernel();
  const s = await loadScenario(new URL("weights.json", DIR).pathname);
  const r = await runScenarioKvm(s, { policy: CREDIT, seconds: 5 });
  const want = [1 / 7, 2 / 7, 4 / 7];
  // Weights divide the CPU the slot delivered to the VMs (vmShare), not the slot's wall time:
  // beside a host CPU hog the three VMs together got a third of the slot (shares of the slot's
  // time 5 / 11 / 17 %). Under that much steal credit's shares of 5 s also wander: beside
  // stress-ng --cpu 1 and a second suite, 5 runs read from 14.1 / 29.1 / 56.8 to
  // 19.6 / 36.7 / 43.6 %, always in weight order (sched_kvm_test holds 3 pp on a quieter host).
  const pct = (x: number) => (x * 100).toFixed(1);
  const got = r.vms.map((vm) => pct(vm.vmShare)).join(" / ");
  console.log(`  shares of the VMs' CPU ${got} %`);
  r.vms.forEach((vm, i) =>
    assert(Math.abs(vm.vmShare - want[i]) <= 0.15, `${vm.name}: ${pct(vm.vmShare)} % (${got})`)
  );
  assert(r.vms[0].vmShare < r.vms[1].vmShare && r.vms[1].vmShare < r.vms[2].vmShare, got);
  // Spinners never wake while measured: no latency column (their one wake was the boot).
  for (const vm of r.vms) assert(Number.isNaN(vm.p50Us), `${vm.name}: p50 ${vm.p50Us} us`);
  assertEquals(r.ejections, []);
});

test("kvm: short io-vs-hog under credit answers (nearly) every request", async () => {
  await requireKernel();
  const s = await loadScenario(new URL("io-vs-hog.json", DIR).pathname);
  const r = await runScenarioKvm(s, { policy: CREDIT, seconds: 2 });
  const echo = r.vms.find((v) => v.name === "echo")!;
  assert(echo.throughput >= 900, `echo ${echo.throughput} req/s of ~1000 offered`);
  assert(echo.p50Us > 0 && echo.p99Us >= echo.p50Us, `echo p50 ${echo.p50Us} p99 ${echo.p99Us}`);
  assert(Number.isNaN(r.vms.find((v) => v.name === "hog")!.p50Us), "the hog has no latency");
  assertEquals(r.ejections, []);
});

test("shares of the VMs' CPU: what weights divide, slot time nobody got left out", () => {
  // Two windows: the VMs got 50 % and 60 % of the slot; over the run 70 %.
  const r = sharesOfVms([[0.2, 0.3], [0.3, 0.3]], [0.25, 0.45]);
  const round = (x: number) => Math.round(x * 1e6) / 1e6;
  assertEquals(r.map((v) => round(v.vmShare)), [round(0.25 / 0.7), round(0.45 / 0.7)]);
  assertEquals(r.map((v) => [round(v.vmShareMin), round(v.vmShareMax)]), [[0.4, 0.5], [0.5, 0.6]]);
});

test("sim: overcommit's periodic VMs are light enough to keep their deadlines; the hogs share fairly", async () => {
  const s = await loadScenario(new URL("overcommit.json", DIR).pathname);
  const r = await runScenarioSim(s, { policy: CREDIT, seconds: 2 });
  const periodic = r.vms.filter((v) => v.workload === "periodic");
  const hogs = r.vms.filter((v) => v.workload === "spin");
  assertEquals([periodic.length, hogs.length], [8, 8]);
  const misses = periodic.reduce((a, v) => a + v.misses, 0);
  const jobs = periodic.reduce((a, v) => a + v.jobs, 0);
  // 16 periodic vCPUs at 0.5 ms in 20 ms need 0.4 of 2 slots: credit's BOOST keeps them on
  // time (the 2 ms in 10 before, 3.2 of 2 slots, missed 1,992-1,998 of 2,000 jobs).
  assert(jobs >= 1500 && misses <= jobs / 100, `${misses} of ${jobs} jobs missed`);
  // Jain's index over the hogs: the VMs that want more than their share.
  assert(jainIndex(hogs) > 0.99, `hogs' Jain index ${jainIndex(hogs)}`);
  assertEquals(r.ejections, []);
});

test("sim: the attacker is the guest's tick-dodging loop, and credit holds it to its half", async () => {
  const s = await loadScenario(new URL("attacker.json", DIR).pathname);
  const r = await runScenarioSim(s, { policy: CREDIT, seconds: 2 });
  const [attacker, honest] = r.vms;
  // It sleeps 0.5 ms after each 9.5 ms run: a wake (and a latency sample) per round.
  assert(attacker.p50Us > 0 && Number.isNaN(honest.p50Us), `p50 ${attacker.p50Us} us`);
  assert(attacker.share <= 0.51 && attacker.share >= 0.45, `attacker ${attacker.share}`);
  assert(honest.share >= 0.48, `honest ${honest.share}`);
  assertEquals(r.ejections, []);
});
