/**
 * The trace on real KVM and its exporters: records of real VMs under a 1-slot scheduler replay
 * consistently (every grant has its runEnd, slots are never held twice), the run time the trace
 * shows per vCPU equals the core's accounting, and the Perfetto JSON, the dump, the summary, the
 * trace file and the `trace` command all say what happened, naming every VM.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { KERNEL, requireKernel, sleep } from "./helpers/vmm.ts";
import { type SchedStats, type Vm, Vmm } from "../mod.ts";
import {
  decodeTrace,
  RUN_END_REASON,
  TRACE,
  type TraceData,
  TraceRecorder,
} from "../src/trace/events.ts";
import { analyzeTrace, renderSummary, summarizeTrace } from "../src/trace/summary.ts";
import { dumpTrace } from "../src/trace/dump.ts";
import { type PerfettoTrace, SLOTS_PROCESS, toPerfetto } from "../src/trace/perfetto.ts";
import { readPerfettoFile, readTraceFile, writeTraceFile } from "../src/trace/write.ts";
import { timelineSvg } from "../src/trace/timeline_svg.ts";
import { test } from "./helpers/deadline.ts";

const RR = new URL("../plugins/rr.ts", import.meta.url).href;

/** Boots `specs` on one slot, runs `body`, and always closes. */
async function withVms(
  specs: { name: string; vcpus?: number; cmdline: string }[],
  body: (vmm: Vmm, vms: Vm[]) => Promise<void>,
): Promise<void> {
  await requireKernel();
  const vmm = await Vmm.create({ scheduler: { plugin: RR, slots: 1 } });
  try {
    const vms: Vm[] = [];
    for (const s of specs) vms.push(await vmm.createVm({ ...s, kernel: KERNEL }));
    for (const vm of vms) await vm.start();
    await body(vmm, vms);
  } finally {
    await vmm.close();
  }
}

/** Checks the raw records as the core wrote them; returns the vCPUs still running at the end. */
function checkRecords(data: TraceData): Set<number> {
  const recs = decodeTrace(data);
  assert(recs.length > 0, "empty trace");
  const sorted = [...recs].sort((a, b) => a.t - b.t);
  for (let i = 1; i < sorted.length; i++) assert(sorted[i].t >= sorted[i - 1].t);
  // EMT-reported times may precede a record the core wrote just before; by little.
  let skew = 0, latest = -Infinity;
  for (const r of recs) {
    skew = Math.max(skew, latest - r.t);
    latest = Math.max(latest, r.t);
  }
  assert(skew < 1e9, `a record is ${skew / 1e6} ms older than one written before it`);
  // In the core's order: grant → runEnd per vCPU; a slot holds one vCPU at a time.
  const running = new Map<number, number>(); // vcpu → slot
  const holder = new Map<number, number>(); // slot → vcpu
  for (const r of recs) {
    if (r.type === TRACE.grant) {
      assert(!running.has(r.vcpu), `vCPU ${r.vcpu} granted slot ${r.slot} while running`);
      assert(!holder.has(r.slot), `slot ${r.slot} granted to ${r.vcpu} while held`);
      running.set(r.vcpu, r.slot);
      holder.set(r.slot, r.vcpu);
    } else if (r.type === TRACE.runEnd) {
      assertEquals(running.get(r.vcpu), r.slot, `runEnd of vCPU ${r.vcpu} without its grant`);
      assert(r.reason < RUN_END_REASON.length, `bad runEnd reason ${r.reason}`);
      assert(r.value >= 0, `negative run time ${r.value}`);
      running.delete(r.vcpu);
      holder.delete(r.slot);
    } else if (r.type === TRACE.vcpuRemove) {
      assert(!running.has(r.vcpu), `vCPU ${r.vcpu} removed while running, without a runEnd`);
    }
  }
  return new Set(running.keys());
}

/** Sum of runEnd values per vCPU label. */
function traceRunNs(data: TraceData): Map<string, number> {
  const names = new Map(data.vcpus.map((v) => [v.id, `${v.vm}/${v.index}`]));
  const out = new Map<string, number>();
  for (const r of decodeTrace(data)) {
    if (r.type !== TRACE.runEnd) continue;
    const k = names.get(r.vcpu)!;
    out.set(k, (out.get(k) ?? 0) + r.value);
  }
  return out;
}

test("trace: per-vCPU run time equals the core's accounting (1 slot, 4 vCPUs)", async () => {
  await withVms([
    { name: "spin", cmdline: "workload=spin seconds=0" },
    { name: "sleeper", cmdline: "workload=sleep count=100000 ms=5" },
    { name: "ipi", vcpus: 2, cmdline: "workload=ipi rounds=1000000" },
  ], async (vmm, vms) => {
    await sleep(1200);
    // Paused, every vCPU gives its slot back: the core's runNs is final for each run.
    for (const vm of vms) vm.pause();
    await sleep(150);
    const stats: SchedStats = await vmm.scheduler!.stats();
    const data = await vmm.scheduler!.trace();
    const stillRunning = checkRecords(data);
    assertEquals(stillRunning.size, 0, "every vCPU gave its slot back when paused");
    assertEquals(data.dropped, 0);
    const fromTrace = traceRunNs(data);
    const summary = summarizeTrace(data);
    assertEquals(stats.vcpus.length, 4);
    let worst = 0;
    for (const v of stats.vcpus) {
      const label = `${v.vm}/${v.index}`;
      const t = fromTrace.get(label) ?? 0;
      assert(v.runNs > 0, `${label} never ran`);
      assert(
        Math.abs(t - v.runNs) <= 0.01 * v.runNs,
        `${label}: trace says ${t / 1e6} ms, core ${v.runNs / 1e6} ms`,
      );
      worst = Math.max(worst, Math.abs(t - v.runNs) / v.runNs);
      const s = summary.vcpus.find((x) => x.vm === v.vm && x.index === v.index)!;
      assertEquals(s.grants, v.grants, `${label} grants`);
      assertEquals(s.extensions, v.extensions, `${label} slice extensions`);
      assertEquals(s.preemptions, v.preemptions, `${label} preemptions`);
      assert(Math.abs(s.guestNs - v.runNs) <= 0.01 * v.runNs);
      // Steal: µs in the trace, ns in the stats (the same figures, rounded).
      assert(
        Math.abs(s.stolenNs - v.stolenNs) <= 1e3 * s.grants + 1e3,
        `${label}: steal ${s.stolenNs} ns in the trace, ${v.stolenNs} ns in the stats`,
      );
    }
    // Slot 0 was busy in the trace about as long as the core says.
    const busy = summary.slotTotals[0].busyNs;
    assert(
      Math.abs(busy - stats.slotBusyNs[0]) <= 0.01 * stats.slotBusyNs[0],
      `slot busy: trace ${busy / 1e6} ms, core ${stats.slotBusyNs[0] / 1e6} ms`,
    );
    console.log(
      `  ${summary.records} records; run time, trace vs core: worst ${
        (worst * 100).toFixed(4)
      } %; slot busy ${(busy / 1e6).toFixed(1)} vs ${(stats.slotBusyNs[0] / 1e6).toFixed(1)} ms`,
    );
    for (const vm of vms) vm.resume();
  });
});

test("trace: exporters of a finished run (spin, sleep, ipi on 1 slot)", async () => {
  let data: TraceData | undefined;
  await withVms([
    { name: "spin", cmdline: "workload=spin seconds=0" },
    { name: "sleeper", cmdline: "workload=sleep count=10 ms=5" },
    { name: "ipi", vcpus: 2, cmdline: "workload=ipi rounds=50" },
  ], async (vmm, vms) => {
    const [spin, sleeper, ipi] = vms;
    const timer = setTimeout(() => [sleeper, ipi].forEach((vm) => vm.stop()), 20_000);
    const exits = await Promise.all([sleeper.wait(), ipi.wait()]);
    clearTimeout(timer);
    assertEquals(exits, [{ kind: "exit", status: 0 }, { kind: "exit", status: 0 }]);
    await spin.stop();
    data = await vmm.scheduler!.trace();
  });
  const trace = data!;
  assertEquals(checkRecords(trace).size, 0, "every grant has its runEnd once the VMs ended");
  const vms = ["spin", "sleeper", "ipi"];
  assertEquals(new Set(trace.vcpus.map((v) => v.vm)), new Set(vms));

  // The replay: spans back to back, slot runs in order and apart.
  const a = analyzeTrace(trace);
  for (const tl of a.vcpus.values()) {
    for (let i = 1; i < tl.spans.length; i++) {
      assert(tl.spans[i].start >= tl.spans[i - 1].end, `${tl.label}: spans overlap`);
    }
    assert(tl.grants > 0, `${tl.label} never granted`);
  }
  for (let i = 1; i < a.slotRuns[0].length; i++) {
    assert(a.slotRuns[0][i].start >= a.slotRuns[0][i - 1].end, "slot runs overlap");
  }
  const sleeper = [...a.vcpus.values()].find((v) => v.vcpu.vm === "sleeper")!;
  assert(sleeper.wakeLatencies.length >= 10, "the sleeper woke at least 10 times");
  assert(sleeper.spans.some((s) => s.state === "halted"), "the sleeper halted");

  // Perfetto JSON: the Trace Event Format's fields, and it survives JSON.
  const p: PerfettoTrace = JSON.parse(JSON.stringify(toPerfetto(trace)));
  assertEquals(
    Object.keys(p).at(-1),
    "traceEvents",
    "unknown keys before traceEvents stop Perfetto",
  );
  assert(p.traceEvents.length > 100);
  for (const e of p.traceEvents) {
    assert(typeof e.name === "string" && e.name !== "", `no name: ${JSON.stringify(e)}`);
    assert(["X", "i", "M"].includes(e.ph), `phase ${e.ph}`);
    assert(Number.isFinite(e.ts) && e.ts >= 0, `ts ${e.ts}`);
    assert(Number.isInteger(e.pid) && Number.isInteger(e.tid), `pid/tid ${e.pid}/${e.tid}`);
    if (e.ph === "X") assert(Number.isFinite(e.dur) && e.dur! >= 0, `dur ${e.dur}`);
    if (e.ph === "i") assert(["t", "p", "g"].includes(e.s!), `scope ${e.s}`);
    if (e.ph === "M") assert(typeof e.args?.name === "string" || "sort_index" in e.args!);
  }
  const meta = p.traceEvents.filter((e) => e.ph === "M");
  assert(meta.some((e) => e.name === "process_name" && e.args!.name === SLOTS_PROCESS));
  for (const vm of vms) {
    assert(meta.some((e) => e.name === "process_name" && e.args!.name === `vm ${vm}`), vm);
  }
  const slotEvents = p.traceEvents.filter((e) => e.ph === "X" && e.cat === "slot");
  assertEquals(slotEvents.length, a.slotRuns[0].length);
  for (const e of slotEvents) {
    assert(typeof e.args!.reason === "string" && typeof e.args!.ran_ns === "number");
    match(e.name, /^\w+\/vcpu\d$/);
  }
  const names = new Set(p.traceEvents.map((e) => e.name));
  for (const n of ["running", "runnable", "halted", "wake", "decision"]) assert(names.has(n), n);
  // Events on one thread track nest (complete events back to back, never crossing).
  const byTrack = new Map<string, { ts: number; end: number }[]>();
  for (const e of p.traceEvents) {
    if (e.ph !== "X") continue;
    const k = `${e.pid}:${e.tid}`;
    if (!byTrack.has(k)) byTrack.set(k, []);
    byTrack.get(k)!.push({ ts: e.ts, end: e.ts + e.dur! });
  }
  for (const [k, xs] of byTrack) {
    xs.sort((x, y) => x.ts - y.ts);
    for (let i = 1; i < xs.length; i++) {
      assert(xs[i].ts >= xs[i - 1].end - 1e-6, `track ${k}: events cross at ${xs[i].ts} µs`);
    }
  }

  // Dump and summary name every VM; the summary's numbers add up.
  const dump = dumpTrace(trace);
  const s = summarizeTrace(trace);
  const text = renderSummary(s);
  for (const vm of vms) {
    match(dump, new RegExp(`grant +${vm}/0 `));
    match(text, new RegExp(`^${vm}/0 `, "m"));
  }
  match(dump, /^ +\d+\.\d{3} \| (spin|sleeper|ipi)\/\d +\| grant /m);
  assertEquals(dump.trimEnd().split("\n").length, a.records + 2);
  for (const v of s.vcpus) {
    assert(v.runningNs + v.runnableNs + v.haltedNs <= s.durationNs + 1);
    assert(v.guestNs <= v.runningNs * 1.01 + 1e6, `${v.vm}/${v.index}: guest > held`);
  }
  assert(s.slotTotals[0].busyNs + s.slotTotals[0].idleNs >= s.durationNs * 0.999);
  assert(s.decisions.count > 0 && s.decisions.latencyP50Ns > 0);
  assertEquals(s.ejections.length, 0);
  match(text, /decisions: \d+, latency p50 [\d.]+ µs, p99 [\d.]+ µs/);

  // The trace file: Perfetto JSON with the raw records after the events.
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/out.json`;
    await writeTraceFile(file, trace);
    const back = await readTraceFile(file);
    assertEquals(new Uint8Array(back.records), new Uint8Array(trace.records));
    assertEquals(back.vcpus, trace.vcpus);
    const pf = await readPerfettoFile(file);
    assertEquals(pf.traceEvents.length, p.traceEvents.length);
    const svg = timelineSvg(pf);
    match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    for (const vm of vms) assert(svg.includes(`>${vm}</text>`), `legend names ${vm}`);
    const size = (await Deno.stat(file)).size;
    console.log(
      `  ${a.records} records: ${trace.records.byteLength} bytes raw, trace file ${size} bytes ` +
        `(${(size / a.records).toFixed(0)} B/record), ${p.traceEvents.length} Perfetto events`,
    );
    await cliChecks(file, dir, vms);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs `traceCommand` in a subprocess as `main` would (UsageError → 2, Error → 1). */
async function traceCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const mod = new URL("../src/cli/trace.ts", import.meta.url).href;
  const usage = new URL("../src/cli/usage.ts", import.meta.url).href;
  const code = `import { traceCommand } from ${JSON.stringify(mod)};
import { UsageError } from ${JSON.stringify(usage)};
try { Deno.exit(await traceCommand(${JSON.stringify(args)})); }
catch (e) { console.error("deno-vmm trace: " + e.message); Deno.exit(e instanceof UsageError || e.code?.startsWith("ERR_PARSE_ARGS") ? 2 : 1); }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function cliChecks(file: string, dir: string, vms: string[]): Promise<void> {
  const sum = await traceCli(["summary", file]);
  assertEquals(sum.code, 0, sum.stderr);
  for (const vm of vms) match(sum.stdout, new RegExp(`^${vm}/0 `, "m"));
  const dump = await traceCli(["dump", file, "--no-decisions", "--from", "0", "--to", "100000"]);
  assertEquals(dump.code, 0, dump.stderr);
  assert(!dump.stdout.includes(" decision "));
  for (const vm of vms) assert(dump.stdout.includes(`${vm}/0`), vm);
  const svg = `${dir}/t.svg`;
  const tl = await traceCli(["timeline", file, "--svg", svg, "--from", "0", "--to", "50"]);
  assertEquals(tl.code, 0, tl.stderr);
  match(await Deno.readTextFile(svg), /viewBox="0 0 1200 \d+"/);
  for (const sub of ["timeline", "dump", "summary"]) {
    const h = await traceCli([sub, "--help"]);
    assertEquals(h.code, 0);
    match(h.stdout, new RegExp(`Usage: deno run -A mod.ts trace ${sub} FILE`));
  }
  // Bad input: clear messages naming the file or the flag.
  await Deno.writeTextFile(`${dir}/bad.json`, "{ nope");
  await Deno.writeTextFile(`${dir}/other.json`, `{"traceEvents": []}`);
  const cases: [string[], number, RegExp][] = [
    [["dump", `${dir}/missing.json`], 1, /missing\.json: no such file/],
    [["summary", `${dir}/bad.json`], 1, /bad\.json: not JSON/],
    [["dump", `${dir}/other.json`], 1, /other\.json: a Perfetto trace without deno-vmm's records/],
    [["timeline", `${dir}/other.json`], 1, /other\.json: not a deno-vmm trace: no process/],
    [["timeline", file, "--from", "x"], 2, /--from must be a number/],
    [["timeline", file, "--from", "9", "--to", "3"], 2, /--to \(3\) must be after --from/],
    [["dump"], 2, /give the trace FILE/],
    [["frobnicate"], 2, /unknown trace command 'frobnicate'/],
    [["summary", file, "--bogus"], 2, /bogus/],
  ];
  for (const [args, code, msg] of cases) {
    const r = await traceCli(args);
    assertEquals(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    match(r.stderr, msg);
  }
}

test("trace: a ring that wrapped (records dropped) still replays and exports", () => {
  // One vCPU on one slot, 8-record ring: the oldest grant is overwritten.
  const rec = new TraceRecorder(8);
  const T0 = 1e12, ms = 1e6;
  rec.nameVcpu({ id: 1, vm: "w", index: 0 });
  rec.record(TRACE.vcpuAdd, T0, 1, -1, 0, 0, rec.intern("w"));
  rec.record(TRACE.wake, T0, 1);
  for (let i = 0; i < 4; i++) {
    rec.record(TRACE.grant, T0 + i * 10 * ms, 1, 0, 10 * ms);
    rec.record(TRACE.runEnd, T0 + (i + 1) * 10 * ms - 0.5 * ms, 1, 0, 9 * ms, 1, 250); // 250 µs stolen
  }
  rec.record(TRACE.grant, T0 + 40 * ms, 1, 0, 10 * ms); // still running at the end
  const data = rec.collect({ slots: 1, policy: "test" });
  assertEquals(data.dropped, 3);
  const a = analyzeTrace(data);
  const runs = a.slotRuns[0];
  assertEquals(runs.map((r) => r.reason), ["slice", "slice", "slice", "slice", "running"]);
  assert(Number.isNaN(runs[0].sliceNs), "the first run's grant was overwritten");
  assertEquals(runs[0].start, T0 + 9.5 * ms - 9 * ms, "inferred from the run time");
  assertEquals(a.start, runs[0].start, "the trace starts with what it knows");
  const s = summarizeTrace(a);
  assertEquals(s.vcpus[0].guestNs, 36 * ms);
  assertEquals(s.vcpus[0].stolenNs, 1 * ms);
  match(renderSummary(s), /stolen/);
  assertEquals(s.slotTotals[0].grants, 4);
  match(renderSummary(s), /3 older records dropped/);
  const p = toPerfetto(a);
  const slot = p.traceEvents.filter((e) => e.cat === "slot");
  assertEquals(slot.length, 5);
  assertEquals(slot[0].args!.slice_ns, null);
  assertEquals(slot[0].ts, 0);
  assertEquals(slot[4].args!.reason, "running");
  assert(p.traceEvents.every((e) => e.ts >= 0));
  const lines = dumpTrace(data).trimEnd().split("\n");
  assertEquals(lines.length, 8 + 2);
  match(lines.at(-1)!, /\| w\/0 +\| grant +w\/0 +s0 +slice 10\.000 ms$/);
});

test("trace: an empty trace exports and draws", () => {
  const data = new TraceRecorder(4).collect({ slots: 2, policy: "none" });
  const p = toPerfetto(data);
  assertEquals(p.traceEvents.filter((e) => e.ph !== "M").length, 0);
  const svg = timelineSvg(JSON.parse(JSON.stringify(p)));
  match(svg, /slot 1<\/text>/);
  match(renderSummary(summarizeTrace(data)), /0 records/);
  assertEquals(dumpTrace(data).trimEnd().split("\n").length, 2);
});
