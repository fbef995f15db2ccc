/**
 * `trace replay`: a recorded run's demand replayed in the simulator. The fixture
 * (`tests/fixtures/replay/demo_rr_trace.json`, recorded on KVM with
 * `scenario tests/fixtures/replay/demo_rr_scenario.json --trace`) is an echo server at 500
 * requests/s beside hogs weighted 512 and 256 on one slot under round-robin, which ignores the
 * weights. Replayed under rr it must reproduce each VM's share (2 pp) and echo's wake p50 (20 %);
 * under credit2 the hogs must split by their weights instead. Also: the demand read from the
 * trace, IPI chains and relative timers in the replay behaviour, the simulator's own trace, and
 * the command's errors.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { test } from "./helpers/deadline.ts";
import { runCli } from "./helpers/cli.ts";
import { readTraceFile } from "../src/trace/write.ts";
import { traceDemand } from "../src/trace/demand.ts";
import { renderReplay, replayTrace } from "../mod.ts";
import { simulate } from "../src/sim/mod.ts";
import { analyzeTrace, summarizeTrace } from "../src/trace/summary.ts";

const FIXTURE = new URL("./fixtures/replay/demo_rr_trace.json", import.meta.url).pathname;
const plugin = (name: string) => new URL(`../plugins/${name}.ts`, import.meta.url).href;

test("replay: the fixture's demand: echo's device-woken bursts, open-ended hogs, weights", async () => {
  const data = await readTraceFile(FIXTURE);
  const d = traceDemand(data);
  const s = summarizeTrace(data);
  assertEquals(d.vms.map((v) => v.name), ["echo", "heavy", "light"]);
  assertEquals(d.vms.map((v) => v.params.weight), [undefined, 512, 256]);
  const echo = d.vms[0].vcpus[0];
  // One burst per recorded wake, the first its start; the rest woken by the device (the load).
  assertEquals(echo.length, s.vcpus.find((v) => v.vm === "echo")!.wakes);
  assertEquals(echo[0].wake?.source, "start");
  assert(echo.slice(1, -1).every((b) => b.wake?.source === "device" && b.guestNs > 0));
  // Guest time is conserved: the bursts that ended add up to what the trace says echo ran, but for
  // the last one, still waiting at the end: it needs at least what it got.
  const sum = (bs: typeof echo) => bs.reduce((a, b) => a + b.guestNs, 0);
  const recorded = s.vcpus.find((v) => v.vm === "echo")!.guestNs;
  assert(sum(echo.slice(0, -1)) <= recorded, `${sum(echo.slice(0, -1))} vs ${recorded}`);
  assert(sum(echo) >= recorded && Number.isFinite(sum(echo)), `${sum(echo)} vs ${recorded}`);
  // A hog never halted: one burst from its start wake, open-ended.
  for (const hog of d.vms.slice(1)) {
    assertEquals(hog.vcpus[0].length, 1);
    assertEquals(hog.vcpus[0][0].guestNs, Infinity);
  }
  assert(d.costs.handoffNs.ns.length > 0 && d.costs.wakeDelayNs.ns.length > 0);
});

test("replay: under the recording's policy (rr) shares within 2 pp, echo's wake p50 within 20 %", async () => {
  const trace = await readTraceFile(FIXTURE);
  const r = await replayTrace({ trace, plugin: plugin("rr"), sandbox: false });
  assertEquals(r.recordedPolicy, "rr");
  for (const vm of r.vms) {
    const pp = Math.abs(vm.replayShare - vm.share) * 100;
    assert(pp <= 2, `${vm.name}: ${pp.toFixed(2)} pp off`);
  }
  const echo = r.vms.find((v) => v.name === "echo")!;
  assert(echo.wakes > 50, `${echo.wakes} wakes`);
  const off = Math.abs(echo.replayWakeP50Ns / echo.wakeP50Ns - 1);
  assert(off <= 0.2, `echo wake p50 ${echo.wakeP50Ns} recorded, ${echo.replayWakeP50Ns} replayed`);
  // Deterministic: the same replay again gives the same summary.
  const again = await replayTrace({ trace, plugin: plugin("rr"), sandbox: false });
  assertEquals(again.replay, r.replay);
  match(renderReplay(r), /recorded under rr, replayed under rr/);
});

test("replay: under credit2 the hogs split by their weights (2:1), not evenly as under rr", async () => {
  const trace = await readTraceFile(FIXTURE);
  const r = await replayTrace({ trace, plugin: plugin("credit2") });
  const vm = (n: string) => r.vms.find((v) => v.name === n)!;
  const recorded = vm("heavy").share / vm("light").share;
  const replayed = vm("heavy").replayShare / vm("light").replayShare;
  assert(recorded < 1.2, `rr's recording: heavy/light ${recorded.toFixed(2)}`);
  assert(replayed > 1.7 && replayed < 2.5, `credit2: heavy/light ${replayed.toFixed(2)}`);
  assertEquals(r.ejections, []);
  // Echo's demand is the same and credit2 serves it all: it gets the guest time it got under rr
  // (its bursts are finite; its last one, still waiting at the end, a typical one), much sooner.
  assert(Math.abs(vm("echo").replayGuestShare - vm("echo").guestShare) < 0.005);
  assert(vm("echo").replayWakeP50Ns < vm("echo").wakeP50Ns / 4);
});

test("replay: IPI chains keep their order, relative timers sleep after the burst", async () => {
  // vCPU 0 runs 1 ms then IPIs vCPU 1, which runs 1 ms and IPIs back, three rounds; vCPU 0 of a
  // second VM sleeps 5 ms on a timer after each 1 ms burst.
  const ms = 1e6;
  const r = await simulate({
    plugin: plugin("rr"),
    sandbox: false,
    slots: 1,
    seconds: 0.05,
    traceRecords: 4096,
    vms: [
      {
        name: "pp",
        vcpus: 2,
        workload: {
          kind: "replay",
          vcpus: [
            [
              { wake: null, guestNs: ms },
              { wake: { source: "ipi", atNs: 0, sender: { index: 1, guestNs: ms } }, guestNs: ms },
              {
                wake: { source: "ipi", atNs: 0, sender: { index: 1, guestNs: 2 * ms } },
                guestNs: ms,
              },
            ],
            [
              { wake: { source: "ipi", atNs: 0, sender: { index: 0, guestNs: ms } }, guestNs: ms },
              {
                wake: { source: "ipi", atNs: 0, sender: { index: 0, guestNs: 2 * ms } },
                guestNs: ms,
              },
            ],
          ],
        },
      },
      {
        name: "sleeper",
        vcpus: 1,
        workload: {
          kind: "replay",
          timers: "relative",
          vcpus: [[
            { wake: null, guestNs: ms },
            { wake: { source: "timer", atNs: 40 * ms, sleepNs: 5 * ms }, guestNs: ms },
            { wake: { source: "timer", atNs: 40 * ms, sleepNs: 5 * ms }, guestNs: ms },
          ]],
        },
      },
    ],
  });
  // Every burst ran, each vCPU exactly its demand.
  assertEquals(r.vcpus.map((v) => v.runNs), [3 * ms, 2 * ms, 3 * ms]);
  const a = analyzeTrace(r.trace!);
  const wakes = (vm: string, i: number) =>
    [...a.vcpus.values()].find((t) => t.vcpu.vm === vm && t.vcpu.index === i)!.marks
      .filter((m) => m.kind === "wake" && m.source !== "start").map((m) => ({
        t: m.t,
        source: m.source,
      }));
  // The ping-pong alternates: pp/1 woken, then pp/0, then pp/1, then pp/0.
  const pp = [...wakes("pp", 0), ...wakes("pp", 1)].sort((x, y) => x.t - y.t);
  assertEquals(pp.length, 4);
  assert(pp.every((w) => w.source === "ipi"));
  // The sleeper's timer wakes come 5 ms after its bursts end, not at the recorded 40 ms.
  const sl = wakes("sleeper", 0);
  assertEquals(sl.map((w) => w.source), ["timer", "timer"]);
  assert(sl.every((w) => w.t < 40 * ms), JSON.stringify(sl));
  assert(sl[1].t - sl[0].t >= 6 * ms, JSON.stringify(sl)); // 1 ms burst + 5 ms sleep at least
});

test("sim: the simulator's trace reads like the core's (guest time and wakes match its stats)", async () => {
  const r = await simulate({
    plugin: plugin("credit"),
    sandbox: false,
    slots: 1,
    seconds: 0.5,
    traceRecords: 1 << 16,
    vms: [
      {
        name: "echo",
        vcpus: 1,
        workload: { kind: "echo", mode: "open", ratePerSec: 500, serviceUs: 50 },
      },
      { name: "hog", vcpus: 1, workload: { kind: "spin" } },
    ],
  });
  const s = summarizeTrace(r.trace!);
  assertEquals(s.durationNs, 0.5e9);
  for (const v of r.vcpus) {
    const t = s.vcpus.find((x) => x.vm === v.vm)!;
    assertEquals(t.guestNs, v.runNs);
    assertEquals(t.grants, v.grants);
  }
  const a = analyzeTrace(r.trace!);
  const echo = [...a.vcpus.values()].find((t) => t.vcpu.vm === "echo")!;
  assert(echo.marks.filter((m) => m.kind === "wake" && m.source === "device").length > 100);
});

test("trace replay: bad input is a clear error with exit status 2", async () => {
  /** The command's run, with its message and no stack trace. */
  const cli = async (args: string[]) => {
    const r = await runCli(args);
    assert(!r.stderr.includes("    at "), `a stack trace instead of a message:\n${r.stderr}`);
    return r;
  };
  const dir = await Deno.makeTempDir();
  try {
    const missing = await cli([
      "trace",
      "replay",
      `${dir}/nope.json`,
      "--sched",
      "plugins/rr.ts",
    ]);
    assertEquals(missing.code, 2);
    match(missing.stderr, /nope\.json: no such file/);

    const other = `${dir}/v2.json`;
    await Deno.writeTextFile(other, JSON.stringify({ version: 2, records: "", vcpus: [] }));
    const v2 = await cli(["trace", "replay", other, "--sched", "plugins/rr.ts"]);
    assertEquals(v2.code, 2);
    match(v2.stderr, /not a deno-vmm trace \(version 1/);

    const noPlugin = await cli(["trace", "replay", FIXTURE, "--sched", `${dir}/missing.ts`]);
    assertEquals(noPlugin.code, 2);
    match(noPlugin.stderr, /missing\.ts/);

    const noSched = await cli(["trace", "replay", FIXTURE]);
    assertEquals(noSched.code, 2);
    match(noSched.stderr, /--sched PLUGIN is required/);

    const simTrace = await cli(
      ["scenario", "bench/scenarios/weights.json", "--sim", "--trace", `${dir}/t.json`],
    );
    assertEquals(simTrace.code, 2);
    match(simTrace.stderr, /--trace records the scheduler on KVM: not with --sim/);

    const badVm = await cli(
      ["trace", "replay", FIXTURE, "--sched", "plugins/rr.ts", "--vm-param", "nosuch:weight=1"],
    );
    assertEquals(badVm.code, 2);
    match(badVm.stderr, /no VM nosuch in the trace \(VMs: echo, heavy, light\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("trace replay: the command prints the replay beside the recording", async () => {
  const r = await runCli(["trace", "replay", FIXTURE, "--sched", "plugins/credit2.ts"]);
  assertEquals(r.code, 0, r.stderr);
  match(r.stdout, /recorded under rr, replayed under credit2/);
  match(r.stdout, /^heavy\s/m);
  match(r.stdout, /^\s+replayed\s/m);
});

test("sim: steal slows the guest and is reported, not charged; cost series go by time and vCPU", async () => {
  const spin = (name: string) => ({ name, vcpus: 1, workload: { kind: "spin" as const } });
  const r = await simulate({
    plugin: plugin("credit2"),
    sandbox: false,
    slots: 1,
    seconds: 1,
    traceRecords: 1 << 14,
    // vCPU 0 loses a quarter of its guest-mode time to other threads, vCPU 1 none; grants of
    // vCPU 1 cost 1 ms before guest mode after 0.5 s (its own series), none before.
    stealShare: { atNs: [0, 0], ns: [0.25, 0], vcpu: [0, 1] },
    handoffNs: { atNs: [0, 0.5e9, 0], ns: [0, 1e6, 0], vcpu: [1, 1, 0] },
    vms: [spin("a"), spin("b")],
  });
  const s = summarizeTrace(r.trace!);
  const [a, b] = s.vcpus;
  // Credit2 does not charge stolen time: a holds the slot longer, by what was stolen from it.
  const charged = a.runningNs - a.stolenNs;
  assert(a.runningNs > 1.2 * b.runningNs, `${a.runningNs} ${b.runningNs}`);
  assert(Math.abs(charged - b.runningNs) < 0.03 * b.runningNs, `${charged} ${b.runningNs}`);
  // ...but a's guest progress is three quarters of its time in guest mode, the rest stolen.
  const aGuestMode = a.guestNs + a.stolenNs;
  assert(Math.abs(a.stolenNs / aGuestMode - 0.25) < 0.01, `${a.stolenNs} of ${aGuestMode}`);
  assertEquals(b.stolenNs, 0);
  // b's grants after 0.5 s each lose 1 ms of slot time outside guest mode.
  const late = analyzeTrace(r.trace!).slotRuns[0].filter((x) => x.vcpu === b.id && x.start > 0.5e9);
  assert(late.length > 10);
  assert(late.every((x) => x.end - x.start - x.ranNs >= 1e6 - 1), "b's late grants cost 1 ms");
});
