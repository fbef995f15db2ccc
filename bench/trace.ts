/**
 * The cost of tracing: the same scenario with the trace ring on (the default) and off
 * (`traceRecords: 0`), interleaved. The scenario is the busiest for the core: an `ipi` VM (two
 * vCPUs ping-ponging interrupts: every round trip is two wakes, two halts, grants and runEnds,
 * each a trace record and a decision record) beside a `spin` VM on one slot, under credit (a
 * woken vCPU is BOOSTed and preempts the spinner, so the slot changes hands at every wake).
 * Throughput is the ipi VM's round trips per second, from the guest's own counter; the spin
 * VM's iterations per second are reported too.
 *
 * Run alone: `deno run -A bench/trace.ts`.
 *
 * @module
 */
import { type Vm, Vmm } from "../mod.ts";
import { TRACE, TraceRecorder } from "../src/trace/events.ts";
import { median } from "./stats.ts";

const ROOT = new URL("../", import.meta.url);
const KERNEL = new URL("guests/build/kernel.elf", ROOT).pathname;
const CREDIT = new URL("plugins/credit.ts", ROOT).href;

/** One run's rates. */
export interface TracingRun {
  /** Tracing on? */
  traced: boolean;
  /** ipi round trips per second. */
  ipiRate: number;
  /** spin iterations per second. */
  spinRate: number;
  /** Records the ring got per second (0 untraced). */
  recordsPerSecond: number;
}

/** Result of {@linkcode benchTracing}. */
export interface TracingResult {
  /** Every run, in order. */
  runs: TracingRun[];
  /** Median ipi round trips/s, traced. */
  tracedIpiRate: number;
  /** Median ipi round trips/s, untraced. */
  untracedIpiRate: number;
  /** Median over the interleaved pairs of traced / untraced ipi rate. */
  ratio: number;
  /** 1 - ratio (goal <= 0.02). */
  cost: number;
  /** ns the core spends on one record (`TraceRecorder.record`, in-process, warm). */
  recordNs: number;
  /**
   * Share of one CPU the core spends recording at the traced runs' record rate
   * (`recordsPerSecond × recordNs`): the part of the cost that noise cannot hide.
   */
  recordCpuShare: number;
  /** traced / untraced spin rate. */
  spinRatio: number;
  /** Median trace records per second while traced. */
  recordsPerSecond: number;
  /** Bytes of trace per second (32 bytes a record). */
  bytesPerSecond: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function runOnce(traced: boolean, seconds: number): Promise<TracingRun> {
  const vmm = await Vmm.create({
    scheduler: {
      plugin: CREDIT,
      params: { tslice_ms: 10 },
      slots: 1,
      ...(traced ? {} : { traceRecords: 0 }),
    },
  });
  try {
    const ipi = await vmm.createVm({
      name: "ipi",
      vcpus: 2,
      kernel: KERNEL,
      cmdline: "workload=ipi rounds=100000000",
    });
    const spin = await vmm.createVm({
      name: "spin",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    await ipi.start();
    await spin.start();
    await sleep(300); // boot and settle
    const rounds = (vm: Vm) => Number(vm.stats()?.vcpus[0]?.rounds ?? 0n);
    const iters = (vm: Vm) => Number(vm.stats()?.vcpus[0]?.iterations ?? 0n);
    await vmm.scheduler!.trace(true); // start the count here
    const r0 = rounds(ipi), s0 = iters(spin), t0 = performance.now();
    await sleep(seconds * 1000);
    const r1 = rounds(ipi), s1 = iters(spin), dt = (performance.now() - t0) / 1000;
    const trace = await vmm.scheduler!.trace();
    const records = traced ? trace.records.byteLength / 32 + trace.dropped : 0;
    return {
      traced,
      ipiRate: (r1 - r0) / dt,
      spinRate: (s1 - s0) / dt,
      recordsPerSecond: records / dt,
    };
  } finally {
    await vmm.close();
  }
}

/** ns per `TraceRecorder.record` call, the core's mix of record types, warm. */
export function recordCost(calls = 2_000_000): number {
  const rec = new TraceRecorder();
  const types = [TRACE.wake, TRACE.decision, TRACE.grant, TRACE.runEnd, TRACE.decision];
  let t = 1e12;
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      rec.record(types[i % 5], t += 1000, i & 7, i & 1, i * 1.5, i % 5, 0);
    }
  };
  run(calls / 10); // JIT warm-up
  const t0 = performance.now();
  run(calls);
  return ((performance.now() - t0) * 1e6) / calls;
}

/**
 * Tracing on against off, interleaved `rounds` times (`seconds` each, alternating which goes
 * first); the ratio is the median of each pair's ratio, so that slow drifts of a shared host
 * cancel out.
 */
export async function benchTracing(rounds = 5, seconds = 1.5): Promise<TracingResult> {
  const runs: TracingRun[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? [true, false] : [false, true];
    const pair: TracingRun[] = [];
    for (const traced of order) pair.push(await runOnce(traced, seconds));
    const [on, off] = pair[0].traced ? pair : [pair[1], pair[0]];
    ratios.push(on.ipiRate / off.ipiRate);
    runs.push(...pair);
  }
  const pick = (traced: boolean, f: (r: TracingRun) => number) =>
    median(runs.filter((r) => r.traced === traced).map(f));
  const ratio = median(ratios);
  const recordsPerSecond = pick(true, (r) => r.recordsPerSecond);
  const recordNs = recordCost();
  return {
    runs,
    tracedIpiRate: pick(true, (r) => r.ipiRate),
    untracedIpiRate: pick(false, (r) => r.ipiRate),
    ratio,
    cost: 1 - ratio,
    spinRatio: pick(true, (r) => r.spinRate) / pick(false, (r) => r.spinRate),
    recordsPerSecond,
    bytesPerSecond: recordsPerSecond * 32,
    recordNs,
    recordCpuShare: (recordsPerSecond * recordNs) / 1e9,
  };
}

if (import.meta.main) {
  const r = await benchTracing(Number(Deno.args[0] ?? 5), Number(Deno.args[1] ?? 1.5));
  for (const x of r.runs) {
    console.log(
      `  ${x.traced ? "traced  " : "untraced"} ipi ${x.ipiRate.toFixed(0)} round trips/s, spin ${
        (x.spinRate / 1e6).toFixed(2)
      } M it/s, ${x.recordsPerSecond.toFixed(0)} records/s`,
    );
  }
  console.log(
    `tracing: ipi ${r.tracedIpiRate.toFixed(0)} vs ${
      r.untracedIpiRate.toFixed(0)
    } round trips/s, ` +
      `ratio ${r.ratio.toFixed(3)}, cost ${(r.cost * 100).toFixed(2)} % (goal <= 2 %); spin ratio ${
        r.spinRatio.toFixed(3)
      }; ${r.recordsPerSecond.toFixed(0)} records/s (${
        (r.bytesPerSecond / 1024).toFixed(0)
      } KiB/s)`,
  );
  console.log(
    `  recording: ${r.recordNs.toFixed(1)} ns/record, ${
      (r.recordCpuShare * 100).toFixed(3)
    } % of the core's CPU at that rate`,
  );
}

/** Result of {@linkcode benchTracingIoVsHog}. */
export interface IoVsHogTracingResult {
  /** Median of traced / untraced hog progress over interleaved pairs. */
  hogRatio: number;
  /** Median echo p50 latency traced / untraced. */
  echoP50Ratio: number;
  /** 1 - hogRatio: what tracing costs the CPU-bound VM (goal <= 0.02). */
  cost: number;
  /** Pairs run. */
  pairs: number;
}

/**
 * The issue's own measure: the `io-vs-hog` scenario (an echo server answering 1000 requests/s
 * beside a hog on one slot, under credit) with tracing off and on, interleaved `pairs` times.
 */
export async function benchTracingIoVsHog(pairs = 3, seconds = 2): Promise<IoVsHogTracingResult> {
  const { loadScenario } = await import("../src/scenario/scenario.ts");
  const { runScenarioKvm } = await import("../src/scenario/run_kvm.ts");
  const scenario = await loadScenario(new URL("bench/scenarios/io-vs-hog.json", ROOT).pathname);
  const hog = [] as number[], p50 = [] as number[];
  for (let i = 0; i < pairs; i++) {
    const run = (traceRecords?: number) =>
      runScenarioKvm(scenario, { policy: CREDIT, seconds, scheduler: { traceRecords } });
    const off = await run(0), on = await run(undefined);
    const pick = (r: typeof on, name: string) => r.vms.find((v) => v.name === name)!;
    hog.push(pick(on, "hog").throughput / pick(off, "hog").throughput);
    p50.push(pick(on, "echo").p50Us / pick(off, "echo").p50Us);
  }
  const hogRatio = median(hog);
  return { hogRatio, echoP50Ratio: median(p50), cost: 1 - hogRatio, pairs };
}
