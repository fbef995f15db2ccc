/** `trace misses`: late periodic jobs found in a trace and attributed to the scheduler, the host or the work. */
import { deepStrictEqual as assertEquals, match } from "node:assert/strict";
import { TRACE, TraceRecorder } from "../src/trace/events.ts";
import { analyzeTrace } from "../src/trace/summary.ts";
import { formatLateJobs, lateJobs } from "../src/trace/misses.ts";
import { writeTraceFile } from "../src/trace/write.ts";
import { runCli } from "./helpers/cli.ts";
import { test } from "./helpers/deadline.ts";

const T0 = 1e12, ms = 1e6;
const HALT = 0, SLICE = 1, TIMER = 1;

/** rt (10 ms period) and a hog on one slot: one job on time, then late ones for each reason. */
function recorded() {
  const rec = new TraceRecorder(1024);
  rec.nameVcpu({ id: 1, vm: "rt", index: 0 });
  rec.nameVcpu({ id: 2, vm: "hog", index: 0 });
  rec.record(TRACE.vcpuAdd, T0, 1, -1, 0, 0, rec.intern("rt"));
  rec.record(TRACE.vcpuAdd, T0, 2, -1, 0, 0, rec.intern("hog"));
  const t = (x: number) => T0 + x * ms;
  const grant = (at: number, v: number) => rec.record(TRACE.grant, t(at), v, 0, 10 * ms);
  const end = (at: number, v: number, ran: number, reason: number, stolenUs = 0) =>
    rec.record(TRACE.runEnd, t(at), v, 0, ran * ms, reason, stolenUs);
  const wake = (at: number, v: number) => rec.record(TRACE.wake, t(at), v, -1, 0, TIMER);
  wake(0, 2);
  wake(0, 1);
  grant(0, 1), end(2, 1, 2, HALT); // job 1: on time
  grant(2, 2);
  wake(10, 1); // job 2: waits 15 ms behind the hog
  end(25, 2, 23, SLICE), grant(25, 1), end(27, 1, 2, HALT), grant(27, 2);
  wake(30, 1); // job 3: its EMT loses 9 ms of its slot to other threads
  end(30, 2, 3, SLICE), grant(30, 1), end(43, 1, 4, HALT, 9000), grant(43, 2);
  wake(50, 1); // job 4: 12 ms of guest work in a 10 ms period
  end(50, 2, 7, SLICE), grant(50, 1), end(62, 1, 12, HALT), grant(62, 2);
  wake(70, 1); // job 5: holds its slot 12 ms, 3 in guest mode and 1 stolen: 8 ms in the VMM
  end(70, 2, 8, SLICE), grant(70, 1), end(82, 1, 3, HALT, 1000), grant(82, 2);
  // job 6: its budget runs out after 3 ms (rtds reports it) and it waits for its next period
  const policy = (at: number, kind: string) =>
    rec.record(TRACE.policy, t(at), 1, -1, 0, 0, rec.intern(kind));
  wake(90, 1);
  end(90, 2, 8, SLICE), grant(90, 1), end(93, 1, 3, SLICE), policy(93, "depleted"), grant(93, 2);
  policy(100, "replenish");
  end(104, 2, 11, SLICE), grant(104, 1), end(106, 1, 2, HALT), grant(106, 2);
  end(110, 2, 4, SLICE);
  return rec.collect({ slots: 1, policy: "test" });
}

test("late jobs: one per cause, with who held the slot while it waited", () => {
  const jobs = lateJobs(analyzeTrace(recorded()), new Map([["rt", 10 * ms]]));
  assertEquals(jobs.map((j) => [j.vcpu, j.startNs / ms, j.endNs / ms, j.jobs, j.verdict]), [
    ["rt/0", 10, 27, 1, "scheduler"],
    ["rt/0", 30, 43, 1, "host"],
    ["rt/0", 50, 62, 1, "work"],
    ["rt/0", 70, 82, 1, "vmm"],
    ["rt/0", 90, 106, 1, "budget"],
  ]);
  assertEquals([jobs[4].waitingNs, jobs[4].budgetWaitNs], [11 * ms, 7 * ms]);
  assertEquals(jobs[0].budgetWaitNs, 0);
  assertEquals([jobs[3].vmmNs, jobs[3].stolenNs, jobs[3].guestNs], [8 * ms, 1 * ms, 3 * ms]);
  assertEquals(jobs[0].waitingNs, 15 * ms);
  assertEquals(jobs[0].heldBy, { "hog/0": 15 * ms });
  assertEquals([jobs[1].stolenNs, jobs[1].heldNs], [9 * ms, 13 * ms]);
  assertEquals([jobs[2].guestNs, jobs[2].lateNs], [12 * ms, 2 * ms]);
  match(
    formatLateJobs(jobs),
    /rt\/0 {2}1 late, busy 17\.00 ms .*waited 15\.00 .*\[slots: hog\/0 15\.00\].* -> scheduler/,
  );
  // A VM with no period given is not looked at.
  assertEquals(lateJobs(analyzeTrace(recorded()), new Map([["other", 10 * ms]])), []);
});

test("late jobs: the stretch from a vCPU's start to its first halt is its boot, not a job", () => {
  const rec = new TraceRecorder(1024);
  rec.nameVcpu({ id: 1, vm: "rt", index: 0 });
  const t = (x: number) => T0 + x * ms;
  const START = 4; // WAKE_SOURCE_NAME index of "start"
  rec.record(TRACE.wake, t(0), 1, -1, 0, START);
  rec.record(TRACE.grant, t(0), 1, 0, 20 * ms);
  rec.record(TRACE.runEnd, t(15), 1, 0, 15 * ms, HALT, 0); // boot and calibration: 15 ms
  rec.record(TRACE.wake, t(20), 1, -1, 0, TIMER);
  rec.record(TRACE.grant, t(20), 1, 0, 20 * ms);
  rec.record(TRACE.runEnd, t(32), 1, 0, 12 * ms, HALT, 0); // a job of 12 ms: late
  const jobs = lateJobs(
    analyzeTrace(rec.collect({ slots: 1, policy: "test" })),
    new Map([["rt", 10 * ms]]),
  );
  assertEquals(jobs.map((j) => [j.startNs / ms, j.endNs / ms, j.verdict]), [[20, 32, "work"]]);
});

test("late jobs: waiting while the core, woken by an event, was held off its CPU is the host's", () => {
  const rec = new TraceRecorder(1024);
  rec.nameVcpu({ id: 1, vm: "rt", index: 0 });
  rec.nameVcpu({ id: 2, vm: "hog", index: 0 });
  const t = (x: number) => T0 + x * ms;
  rec.record(TRACE.wake, t(0), 2, -1, 0, TIMER);
  rec.record(TRACE.grant, t(0), 2, 0, 30 * ms);
  rec.record(TRACE.wake, t(10), 1, -1, 0, TIMER);
  // The core handled rt's wake 12 ms late, 11 of them asleep (its thread held off its CPU).
  rec.record(TRACE.coreLate, t(22), 1, -1, 12 * ms, 0, 11_000);
  rec.record(TRACE.runEnd, t(25), 2, 0, 25 * ms, SLICE, 0);
  rec.record(TRACE.grant, t(25), 1, 0, 10 * ms);
  rec.record(TRACE.runEnd, t(27), 1, 0, 2 * ms, HALT, 0);
  const a = analyzeTrace(rec.collect({ slots: 1, policy: "test" }));
  assertEquals(a.coreLate, [{ at: t(10), vcpu: 1, lagNs: 12 * ms, asleepNs: 11 * ms }]);
  const [job] = lateJobs(a, new Map([["rt", 10 * ms]]));
  assertEquals([job.waitingNs, job.hostWaitNs, job.verdict], [15 * ms, 11 * ms, "host"]);
  match(formatLateJobs([job]), /waited 15\.00 \(host held off 11\.00\)/);
});

test("late jobs: waiting behind a holder past its slice while its EMT's CPU was taken is the host's", () => {
  const rec = new TraceRecorder(1024);
  rec.nameVcpu({ id: 1, vm: "rt", index: 0 });
  rec.nameVcpu({ id: 2, vm: "hog", index: 0 });
  const t = (x: number) => T0 + x * ms;
  rec.record(TRACE.wake, t(0), 2, -1, 0, TIMER);
  rec.record(TRACE.grant, t(0), 2, 0, 1 * ms); // a 1 ms slice...
  rec.record(TRACE.wake, t(2), 1, -1, 0, TIMER);
  rec.record(TRACE.runEnd, t(12), 2, 0, 1 * ms, SLICE, 10_000); // ...left at 12, 10 ms stolen
  rec.record(TRACE.grant, t(12), 1, 0, 10 * ms);
  rec.record(TRACE.runEnd, t(14), 1, 0, 2 * ms, HALT, 0);
  const [job] = lateJobs(
    analyzeTrace(rec.collect({ slots: 1, policy: "test" })),
    new Map([["rt", 10 * ms]]),
  );
  // Held off from the slice's end (1 ms) for its 10 ms of steal: 9 of rt's 10 ms of waiting.
  assertEquals([job.waitingNs, job.hostWaitNs, job.verdict], [10 * ms, 9 * ms, "host"]);
});

/**
 * Two rtds VMs on one slot, deadlines in the trace (`replenish` events): `a` (period 10 ms) waits
 * behind `b` twice, once while `b`'s deadline is earlier (EDF's order: the load's) and once while
 * it is later (an inversion: the scheduler's).
 */
function edfTrace() {
  const rec = new TraceRecorder(1024);
  rec.nameVcpu({ id: 1, vm: "a", index: 0 });
  rec.nameVcpu({ id: 2, vm: "b", index: 0 });
  const t = (x: number) => T0 + x * ms;
  const grant = (at: number, v: number) => rec.record(TRACE.grant, t(at), v, 0, 10 * ms);
  const end = (at: number, v: number, ran: number, reason: number) =>
    rec.record(TRACE.runEnd, t(at), v, 0, ran * ms, reason, 0);
  const wake = (at: number, v: number) => rec.record(TRACE.wake, t(at), v, -1, 0, TIMER);
  const deadline = (at: number, v: number, d: number) =>
    rec.record(TRACE.policy, t(at), v, -1, t(d), 0, rec.intern("replenish"));
  deadline(0, 1, 10), deadline(0, 2, 5);
  wake(0, 2), wake(0, 1);
  // b (deadline 5) runs first, 14 ms: a (deadline 10) waits behind an earlier deadline.
  grant(0, 2), end(14, 2, 14, SLICE), grant(14, 1), end(16, 1, 2, HALT);
  // Then a's deadline is 30 and b's 40, and b still holds the slot from 20 to 34.
  deadline(20, 1, 30), deadline(20, 2, 40);
  wake(20, 1);
  grant(20, 2), end(34, 2, 14, SLICE), grant(34, 1), end(36, 1, 2, HALT);
  return rec.collect({ slots: 1, policy: "rtds" });
}

test("late jobs under rtds: waiting behind earlier deadlines is EDF's order, behind later ones the scheduler's", () => {
  const jobs = lateJobs(analyzeTrace(edfTrace()), new Map([["a", 10 * ms]]));
  assertEquals(jobs.map((j) => [j.startNs / ms, j.endNs / ms, j.verdict]), [
    [0, 16, "edf"],
    [20, 36, "scheduler"],
  ]);
  assertEquals([jobs[0].waitingNs, jobs[0].inversionNs], [14 * ms, 0]);
  assertEquals([jobs[1].waitingNs, jobs[1].inversionNs], [14 * ms, 14 * ms]);
  match(formatLateJobs(jobs), /behind later deadlines 14\.00\).* -> scheduler/);
});

test("trace misses on the command line: periods by flag, usage errors named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/t.json`;
    await writeTraceFile(file, recorded());
    let r = await runCli(["trace", "misses", file, "--period", "rt=10"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout.trim().split("\n").map((l) => l.split(" -> ")[1]), [
      "scheduler",
      "host",
      "work",
      "vmm",
      "budget",
    ]);
    r = await runCli(["trace", "misses", file, "--period", "rt=10", "--json"]);
    assertEquals(JSON.parse(r.stdout).length, 5);
    r = await runCli(["trace", "misses", file]);
    assertEquals(r.code, 2);
    match(r.stderr, /give --period VM=MS or --scenario FILE/);
    r = await runCli(["trace", "misses", file, "--period", "rt=x"]);
    assertEquals(r.code, 2);
    match(r.stderr, /--period must be VM=MS with MS > 0, got 'rt=x'/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
