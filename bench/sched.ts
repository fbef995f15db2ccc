/**
 * The scheduler's costs, each against a baseline from the same run:
 *
 * - decision latency through the sandbox (a `pickNext` round trip to the plugin's Worker, and
 *   to the plugin's child process, interleaved), against the same call to the same plugin
 *   in-process;
 * - slot hand-off: two spinning 1-vCPU VMs on one slot with 1 ms slices; the time the slot
 *   spends between one vCPU leaving guest mode and the next entering it, per grant, and the
 *   scheduler's part of it (give-back to grant, from the trace), against a C futex ping-pong's
 *   one-way hand-off with both threads on the slot's CPU, as the slot's threads are
 *   (`bench/baseline/futex_pingpong`), and with them on two CPUs;
 * - the floor of a hand-off: a lone EMT with no scheduler leaving guest mode at a run deadline
 *   every 1 ms and entering again at once, its EMT on the slot's CPU; the hand-off with the
 *   next vCPU decided ahead (`queueNext`) and without, against it;
 * - enforcement cost: spin progress of 1 VM on 1 slot under the scheduler (its threads share
 *   slot 0's CPU) against a free VM spinning at the same time on the other CPU; and of 1 VM on
 *   1 slot and 2 VMs on 2 slots against the same VMs with no scheduler run just before
 *   (vCPUs <= slots), also with slice extension off, where every 10 ms slice ends in an exit.
 */
import { type Vm, Vmm } from "../mod.ts";
import { LocalPolicy } from "../src/sched/policy_port.ts";
import { SandboxPolicy } from "../src/sched/sandbox.ts";
import { ProcessSandboxPolicy } from "../src/sched/sandbox_process.ts";
import rr from "../plugins/rr.ts";
import type { PolicyPort } from "../src/sched/policy_port.ts";
import { KERNEL } from "./exits.ts";
import { colocate, REALTIME_PRIORITY, schedulerCpu } from "../src/sched/affinity.ts";
import { defaultPinMap } from "../src/sched/scheduler.ts";
import { decodeTrace, TRACE, type TraceData } from "../src/trace/events.ts";
import {
  applyThreadAttr,
  processThreads,
  setThreadCpus,
  threadAttr,
  threadPolicy,
  threadRunNs,
} from "../src/sched/host_threads.ts";
import { median, percentile } from "./stats.ts";

const ROOT = new URL("../", import.meta.url);
const FUTEX = new URL("bench/baseline/build/futex_pingpong", ROOT).pathname;
const RR = new URL("plugins/rr.ts", ROOT).href;
const SPIN = "workload=spin seconds=0";

/** Makes `port` ready for {@linkcode pickSamples}: one slot, four runnable vCPUs. */
function pickSetup(port: PolicyPort): void {
  port.init({ slots: 1, maxSliceNs: 100e6, ratelimitNs: 1e6 });
  for (let id = 1; id <= 4; id++) {
    port.addVcpu({ id, vm: "v", index: id - 1, vmVcpus: 4, params: {}, state: "runnable" });
  }
}

/** `calls` pickNext round trips on `port` (set up by {@linkcode pickSetup}), ns each. */
function pickSamples(port: PolicyPort, calls: number, from = 0): number[] {
  const lat: number[] = [];
  let now = from;
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    const d = port.pickNext(0, now);
    lat.push((performance.now() - t0) * 1e6);
    if (d) port.onDeschedule(d.vcpu, 0, d.sliceNs, "slice", now += d.sliceNs);
  }
  return lat;
}

/** p50/p99 of `calls` pickNext round trips on `port` (ns). */
function pickLatency(port: PolicyPort, calls: number): { p50: number; p99: number } {
  pickSetup(port);
  const lat = pickSamples(port, calls);
  lat.splice(0, Math.floor(calls / 10)); // warm-up
  return { p50: median(lat), p99: percentile(lat, 99) };
}

/** Result of {@linkcode benchDecisions}. */
export interface DecisionResult {
  /** Sandboxed pickNext round trip, ns. */
  sandboxP50Ns: number;
  /** See `sandboxP50Ns`. */
  sandboxP99Ns: number;
  /** In-process pickNext, ns. */
  localP50Ns: number;
  /** pickNext round trip to the process sandbox (interleaved with the Worker's), ns. */
  processP50Ns: number;
  /** See `processP50Ns`. */
  processP99Ns: number;
  /** processP50Ns / sandboxP50Ns. */
  processRatio: number;
  /** Start-up of each sandbox with rr (create to ready), ms. */
  workerLoadMs: number;
  /** See `workerLoadMs`. */
  processLoadMs: number;
  /** Resident memory of the process sandbox's child (VmRSS), MB. */
  processRssMb: number;
}

/**
 * Decision latency through the sandbox, the Worker and the process sandbox in interleaved
 * rounds (`rounds` each, the first one a warm-up), against in-process, with the caller and each
 * sandbox on one CPU as the scheduler core runs them (`src/sched/affinity.ts`).
 */
export async function benchDecisions(calls = 20_000, rounds = 10): Promise<DecisionResult> {
  let t = performance.now();
  const worker = await SandboxPolicy.create({ plugin: RR });
  const workerLoadMs = performance.now() - t;
  t = performance.now();
  const child = await ProcessSandboxPolicy.create({ plugin: RR });
  const processLoadMs = performance.now() - t;
  const mine = threadAttr(0); // colocate makes this thread the core: real-time, on one CPU
  colocate(worker.threadId);
  colocate(child.threadId);
  try {
    pickSetup(worker);
    pickSetup(child);
    const w: number[] = [], p: number[] = [];
    const per = Math.ceil(calls / rounds);
    for (let r = 0; r <= rounds; r++) {
      const ws = pickSamples(worker, per, r * per * 1e7);
      const ps = pickSamples(child, per, r * per * 1e7);
      if (r > 0) w.push(...ws), p.push(...ps);
    }
    const l = pickLatency(new LocalPolicy(rr, { name: "rr" }), calls);
    const rss = Deno.readTextFileSync(`/proc/${child.pid}/status`).match(/VmRSS:\s+(\d+) kB/);
    return {
      sandboxP50Ns: median(w),
      sandboxP99Ns: percentile(w, 99),
      localP50Ns: l.p50,
      processP50Ns: median(p),
      processP99Ns: percentile(p, 99),
      processRatio: median(p) / median(w),
      workerLoadMs,
      processLoadMs,
      processRssMb: rss ? Number(rss[1]) / 1024 : NaN,
    };
  } finally {
    worker.close();
    child.close();
    setThreadCpus(0, Array.from({ length: navigator.hardwareConcurrency }, (_, i) => i));
    if (mine) applyThreadAttr(0, mine);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Result of {@linkcode benchHandoffFloor}. */
export interface FloorResult {
  /** Mean time outside guest mode per deadline exit and re-entry, ns. */
  floorNs: number;
  /** Deadline exits in the window. */
  exits: number;
}

/**
 * The floor of a slot hand-off: one spinning 1-vCPU VM with no scheduler, its EMT pinned to
 * the CPU slot 0 would use, leaving guest mode at a run deadline every `sliceUs` and entering
 * again at once (`VmConfig.runSliceUs`). What a hand-off cannot go below on this host: the
 * deadline timer's signal, KVM_RUN's return and the next entry.
 */
export async function benchHandoffFloor(
  seconds = 2,
  pin?: number[],
  sliceUs = 1000,
): Promise<FloorResult> {
  const cpu = pin?.[0] ?? defaultPinMap(1)[0];
  const vmm = await Vmm.create({});
  try {
    const vm = await vmm.createVm({
      name: "floor",
      kernel: KERNEL,
      cmdline: SPIN,
      runSliceUs: sliceUs,
    });
    await vm.start();
    setThreadCpus(vm.emtThreadIds()[0], [cpu]);
    await sleep(300);
    const c0 = vm.counters()[0], t0 = performance.now();
    await sleep(seconds * 1000);
    const c1 = vm.counters()[0], t1 = performance.now();
    const exits = c1.deadlines - c0.deadlines;
    return { floorNs: ((t1 - t0) * 1e6 - (c1.nsGuest - c0.nsGuest)) / exits, exits };
  } finally {
    await vmm.close();
  }
}

/** Result of {@linkcode benchHandoff}. */
export interface HandoffResult {
  /** Mean time per grant outside guest mode, ns: the slice-end exit, the decision, the entry. */
  handoffNs: number;
  /** Median, over hand-offs, of the scheduler's part: the EMT's give-back to the next grant. */
  decisionNs: number;
  /** C futex one-way hand-off with both threads on the slot's CPU (median of 3), ns. */
  futexNs: number;
  /** The same with the two threads on two CPUs, ns. */
  futexCrossNs: number;
  /** handoffNs / futexNs: like for like, since slot 0's hand-offs stay on its CPU. */
  ratio: number;
  /** Grants in the window. */
  grants: number;
  /** Of `grants`, the ones the leaving EMT handed over itself (decided ahead). */
  handed: number;
}

/** Median one-way hand-off of the C futex ping-pong with its threads on `cpus` (ns). */
async function futexOneWay(cpus: [number, number]): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const out = await new Deno.Command(FUTEX, { args: ["20000", ...cpus.map(String)] }).output();
    const m = new TextDecoder().decode(out.stdout).match(/futex one-way: (\d+) ns/);
    if (!m) throw new Error(`futex_pingpong: unexpected output (run deno task build)`);
    runs.push(Number(m[1]));
  }
  return median(runs);
}

/**
 * Slot hand-off between two spinning VMs on one slot, 1 ms slices. The futex baselines run
 * first, with no VMM threads about (measured after one, they read 5-20x slower).
 */
export async function benchHandoff(
  seconds = 2,
  pin?: number[],
  sandbox: "worker" | "process" = "worker",
  options: { decideAhead?: boolean; futex?: boolean } = {},
): Promise<HandoffResult> {
  const cpu = pin?.[0] ?? schedulerCpu();
  const futexNs = options.futex === false ? NaN : await futexOneWay([cpu, cpu]);
  const futexCrossNs = options.futex === false ? NaN : await futexOneWay([cpu === 0 ? 1 : 0, cpu]);
  const vmm = await Vmm.create({
    scheduler: {
      plugin: RR,
      params: { slice_ms: 1 },
      slots: 1,
      ratelimitUs: 0,
      pin,
      sandbox,
      decideAhead: options.decideAhead,
    },
  });
  let handoffNs = NaN, grants = 0, decisionNs = NaN, handed = 0;
  try {
    const vms: Vm[] = [];
    for (const name of ["h1", "h2"]) {
      vms.push(await vmm.createVm({ name, kernel: KERNEL, cmdline: "workload=spin seconds=0" }));
    }
    for (const vm of vms) await vm.start();
    await sleep(300);
    const guest = () => vms.reduce((s, vm) => s + vm.counters()[0].nsGuest, 0);
    const grantCount = async () => {
      const v = (await vmm.scheduler!.stats()).vcpus;
      return [v.reduce((s, x) => s + x.grants, 0), v.reduce((s, x) => s + x.handedGrants, 0)];
    };
    await vmm.scheduler!.trace(true);
    const g0 = guest(), [n0, h0] = await grantCount(), t0 = performance.now();
    await sleep(seconds * 1000);
    const g1 = guest(), [n1, h1] = await grantCount(), t1 = performance.now();
    grants = n1 - n0;
    handed = h1 - h0;
    handoffNs = ((t1 - t0) * 1e6 - (g1 - g0)) / grants;
    decisionNs = median(giveBackToGrant(await vmm.scheduler!.trace()));
  } finally {
    await vmm.close();
  }
  return {
    handoffNs,
    decisionNs,
    futexNs,
    futexCrossNs,
    ratio: handoffNs / futexNs,
    grants,
    handed,
  };
}

/** Per hand-off in `trace`: ns from a vCPU's run end to the next grant of its slot to another. */
function giveBackToGrant(trace: TraceData): number[] {
  const gaps: number[] = [];
  const ended = new Map<number, { t: number; vcpu: number }>();
  for (const r of decodeTrace(trace).sort((a, b) => a.t - b.t)) {
    if (r.type === TRACE.runEnd) ended.set(r.slot, { t: r.t, vcpu: r.vcpu });
    else if (r.type === TRACE.grant) {
      const e = ended.get(r.slot);
      if (e && e.vcpu !== r.vcpu) gaps.push(r.t - e.t);
      ended.delete(r.slot);
    }
  }
  return gaps;
}

/** One spin-rate measurement: iterations/s and, under a scheduler, its threads' CPU share. */
interface SpinSample {
  rate: number;
  /** CPU time of the core and sandbox threads over the window, as a fraction of the window. */
  schedCpu: number;
}

/**
 * From now on, the CPU time of the scheduler's core and sandbox per ns of wall time: of the
 * threads not in `before`, the ones at their SCHED_FIFO priorities (`affinity.ts`). The
 * returned function reads it; NaN when real-time is not permitted (no such thread).
 */
function schedulerCpuMeter(before: Set<number>): () => number {
  const want: number[] = [REALTIME_PRIORITY.core, REALTIME_PRIORITY.sandbox];
  const tids = processThreads().filter((t) => {
    const p = threadPolicy(t);
    return !before.has(t) && p?.policy === 1 && want.includes(p.priority);
  });
  const cpu = () => tids.reduce((s, t) => s + threadRunNs(t), 0);
  const c0 = cpu(), t0 = performance.now();
  return () => tids.length ? (cpu() - c0) / ((performance.now() - t0) * 1e6) : NaN;
}

/** Spin iterations per second of `count` 1-vCPU VMs, with or without a scheduler. */
async function spinRate(
  scheduled: boolean,
  seconds: number,
  count: number,
  options: { pin?: boolean; extendSlices?: boolean } = {},
): Promise<SpinSample> {
  const before = new Set(processThreads());
  const vmm = await Vmm.create(
    scheduled
      ? {
        scheduler: {
          plugin: RR,
          params: { slice_ms: 10 },
          slots: count,
          pin: options.pin,
          extendSlices: options.extendSlices,
        },
      }
      : {},
  );
  try {
    const vms: Vm[] = [];
    for (const name of ["e1", "e2"].slice(0, count)) {
      vms.push(await vmm.createVm({ name, kernel: KERNEL, cmdline: SPIN }));
    }
    for (const vm of vms) await vm.start();
    if (!scheduled) {
      // On the CPUs the slots would be pinned to: the two CPUs here do not run equally fast.
      const cpus = defaultPinMap(count);
      vms.forEach((vm, i) => setThreadCpus(vm.emtThreadIds()[0], [cpus[i]]));
    }
    await sleep(200);
    const it = () => vms.reduce((s, vm) => s + Number(vm.stats()!.vcpus[0].iterations), 0);
    const meter = schedulerCpuMeter(before);
    const i0 = it(), t0 = performance.now();
    await sleep(seconds * 1000);
    const i1 = it(), t1 = performance.now();
    return { rate: (i1 - i0) / ((t1 - t0) / 1000), schedCpu: meter() };
  } finally {
    await vmm.close();
  }
}

/** Result of {@linkcode benchEnforcement}. */
export interface EnforcementResult {
  /** Iterations/s without a scheduler (median). */
  freeRate: number;
  /** Iterations/s with the scheduler (median). */
  scheduledRate: number;
  /** 1 - scheduled / free: the median over rounds of each round's pair. */
  cost: number;
  /** Lowest and highest per-round cost. */
  costRange: [number, number];
  /** CPU time of the scheduler's threads (core, sandbox) per ns of wall time (median). */
  schedulerCpu: number;
  /** Iterations/s with the scheduler but slices never extended (every one ends in an exit). */
  unextendedRate: number;
  /** 1 - unextended / free, the median over rounds. */
  unextendedCost: number;
}

/**
 * Enforcement cost when vCPUs <= slots: `rounds` rounds of free, scheduled and scheduled
 * without slice extension, back to back, so that each round's ratio compares runs seconds
 * apart (the host drifts by several % over minutes).
 */
export async function benchEnforcement(
  rounds = 3,
  seconds = 1,
  options: { pin?: boolean; vms?: 1 | 2 } = {},
): Promise<EnforcementResult> {
  const free: number[] = [], sched: number[] = [], unext: number[] = [], cpu: number[] = [];
  const count = options.vms ?? 2;
  for (let i = 0; i < rounds; i++) {
    free.push((await spinRate(false, seconds, count)).rate);
    const s = await spinRate(true, seconds, count, { pin: options.pin });
    sched.push(s.rate);
    cpu.push(s.schedCpu);
    unext.push(
      (await spinRate(true, seconds, count, { pin: options.pin, extendSlices: false })).rate,
    );
  }
  const costs = sched.map((r, i) => 1 - r / free[i]);
  return {
    freeRate: median(free),
    scheduledRate: median(sched),
    cost: median(costs),
    costRange: [Math.min(...costs), Math.max(...costs)],
    schedulerCpu: median(cpu),
    unextendedRate: median(unext),
    unextendedCost: median(unext.map((r, i) => 1 - r / free[i])),
  };
}

/** Result of {@linkcode benchEnforcementBeside}. */
export interface BesideResult {
  /** 1 - median(scheduled / beside) / median(free / beside). */
  cost: number;
  /** Lowest and highest cost of a scheduled round against the free round after it. */
  costRange: [number, number];
  /** CPU time of the scheduler's threads (core, sandbox) per ns of wall time (median). */
  schedulerCpu: number;
}

/**
 * Enforcement cost of 1 VM on 1 slot, measured against a free VM that spins at the same time on
 * the other CPU, so that both see the same moment of this shared host (back-to-back runs differ
 * by several %). Two kinds of rounds alternate: the scheduled VM on the slot's CPU beside the
 * free one, and a second free VM on the slot's CPU beside it, which tells how fast the two CPUs
 * run relative to each other.
 */
export async function benchEnforcementBeside(rounds = 9, seconds = 1): Promise<BesideResult> {
  const slotCpu = defaultPinMap(1)[0], otherCpu = slotCpu === 0 ? 1 : 0;
  const round = async (scheduled: boolean): Promise<{ ratio: number; schedCpu: number }> => {
    const before = new Set(processThreads());
    const measured = await Vmm.create(
      scheduled ? { scheduler: { plugin: RR, params: { slice_ms: 10 }, slots: 1 } } : {},
    );
    const beside = await Vmm.create({});
    try {
      const a = await measured.createVm({ name: "a", kernel: KERNEL, cmdline: SPIN });
      const b = await beside.createVm({ name: "b", kernel: KERNEL, cmdline: SPIN });
      await a.start();
      await b.start();
      if (!scheduled) setThreadCpus(a.emtThreadIds()[0], [slotCpu]);
      setThreadCpus(b.emtThreadIds()[0], [otherCpu]);
      await sleep(200);
      const it = (vm: Vm) => Number(vm.stats()!.vcpus[0].iterations);
      const meter = schedulerCpuMeter(before);
      const a0 = it(a), b0 = it(b);
      await sleep(seconds * 1000);
      return { ratio: (it(a) - a0) / (it(b) - b0), schedCpu: meter() };
    } finally {
      await measured.close();
      await beside.close();
    }
  };
  const sched: number[] = [], free: number[] = [], cpu: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const s = await round(true);
    sched.push(s.ratio);
    cpu.push(s.schedCpu);
    free.push((await round(false)).ratio);
  }
  const costs = sched.map((s, i) => 1 - s / free[i]);
  return {
    cost: 1 - median(sched) / median(free),
    costRange: [Math.min(...costs), Math.max(...costs)],
    schedulerCpu: median(cpu),
  };
}
