/**
 * The scheduler's costs, each against a baseline from the same run:
 *
 * - decision latency through the sandbox (a `pickNext` round trip to the plugin's Worker),
 *   against the same call to the same plugin in-process;
 * - slot hand-off: two spinning 1-vCPU VMs on one slot with 1 ms slices; the time the slot
 *   spends between one vCPU leaving guest mode and the next entering it, per grant, against a
 *   C futex ping-pong's one-way hand-off (`bench/baseline/futex_pingpong`);
 * - enforcement cost: spin progress of 1 VM on 1 slot and of 2 VMs on 2 slots under the
 *   scheduler (its threads share slot 0's CPU), against the same VMs with no scheduler
 *   (vCPUs <= slots); also with slice extension off, where every 10 ms slice ends in an exit.
 */
import { type Vm, Vmm } from "../mod.ts";
import { LocalPolicy } from "../src/sched/policy_port.ts";
import { SandboxPolicy } from "../src/sched/sandbox.ts";
import rr from "../plugins/rr.ts";
import type { PolicyPort } from "../src/sched/policy_port.ts";
import { KERNEL } from "./exits.ts";
import { colocate } from "../src/sched/affinity.ts";
import { setThreadCpus } from "../src/sched/host_threads.ts";
import { median, percentile } from "./stats.ts";

const ROOT = new URL("../", import.meta.url);
const FUTEX = new URL("bench/baseline/build/futex_pingpong", ROOT).pathname;
const RR = new URL("plugins/rr.ts", ROOT).href;

/** p50/p99 of `calls` pickNext round trips on `port` (ns). */
function pickLatency(port: PolicyPort, calls: number): { p50: number; p99: number } {
  port.init({ slots: 1, maxSliceNs: 100e6, ratelimitNs: 1e6 });
  for (let id = 1; id <= 4; id++) {
    port.addVcpu({ id, vm: "v", index: id - 1, vmVcpus: 4, params: {}, state: "runnable" });
  }
  const lat: number[] = [];
  let now = 0;
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    const d = port.pickNext(0, now);
    lat.push((performance.now() - t0) * 1e6);
    if (d) port.onDeschedule(d.vcpu, 0, d.sliceNs, "slice", now += d.sliceNs);
  }
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
}

/**
 * Decision latency through the sandbox against in-process, with the caller and the sandbox on
 * one CPU as the scheduler core runs them (`src/sched/affinity.ts`).
 */
export async function benchDecisions(calls = 20_000): Promise<DecisionResult> {
  const sandbox = await SandboxPolicy.create({ plugin: RR });
  colocate(sandbox.threadId);
  try {
    const s = pickLatency(sandbox, calls);
    const l = pickLatency(new LocalPolicy(rr, { name: "rr" }), calls);
    return { sandboxP50Ns: s.p50, sandboxP99Ns: s.p99, localP50Ns: l.p50 };
  } finally {
    sandbox.close();
    setThreadCpus(0, Array.from({ length: navigator.hardwareConcurrency }, (_, i) => i));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Result of {@linkcode benchHandoff}. */
export interface HandoffResult {
  /** Mean slot hand-off, ns. */
  handoffNs: number;
  /** C futex one-way hand-off, ns. */
  futexNs: number;
  /** handoffNs / futexNs. */
  ratio: number;
  /** Grants in the window. */
  grants: number;
}

/** Slot hand-off between two spinning VMs on one slot, 1 ms slices. */
export async function benchHandoff(seconds = 2, pin?: number[]): Promise<HandoffResult> {
  const vmm = await Vmm.create({
    scheduler: { plugin: RR, params: { slice_ms: 1 }, slots: 1, ratelimitUs: 0, pin },
  });
  let handoffNs = NaN, grants = 0;
  try {
    const vms: Vm[] = [];
    for (const name of ["h1", "h2"]) {
      vms.push(await vmm.createVm({ name, kernel: KERNEL, cmdline: "workload=spin seconds=0" }));
    }
    for (const vm of vms) await vm.start();
    await sleep(300);
    const guest = () => vms.reduce((s, vm) => s + vm.counters()[0].nsGuest, 0);
    const grantCount = async () =>
      (await vmm.scheduler!.stats()).vcpus.reduce((s, v) => s + v.grants, 0);
    const g0 = guest(), n0 = await grantCount(), t0 = performance.now();
    await sleep(seconds * 1000);
    const g1 = guest(), n1 = await grantCount(), t1 = performance.now();
    grants = n1 - n0;
    handoffNs = ((t1 - t0) * 1e6 - (g1 - g0)) / grants;
  } finally {
    await vmm.close();
  }
  const out = await new Deno.Command(FUTEX, { args: ["20000"] }).output();
  const m = new TextDecoder().decode(out.stdout).match(/futex one-way: (\d+) ns/);
  if (!m) throw new Error(`futex_pingpong: unexpected output (run deno task build)`);
  const futexNs = Number(m[1]);
  return { handoffNs, futexNs, ratio: handoffNs / futexNs, grants };
}

/** Spin iterations per second of two 1-vCPU VMs, with or without a scheduler on 2 slots. */
async function spinRate(
  scheduled: boolean,
  seconds: number,
  count: number,
  options: { pin?: boolean; extendSlices?: boolean } = {},
): Promise<number> {
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
      vms.push(await vmm.createVm({ name, kernel: KERNEL, cmdline: "workload=spin seconds=0" }));
    }
    for (const vm of vms) await vm.start();
    await sleep(200);
    const it = () => vms.reduce((s, vm) => s + Number(vm.stats()!.vcpus[0].iterations), 0);
    const i0 = it(), t0 = performance.now();
    await sleep(seconds * 1000);
    return (it() - i0) / ((performance.now() - t0) / 1000);
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
  /** 1 - scheduled / free. */
  cost: number;
  /** Iterations/s with the scheduler but slices never extended (every one ends in an exit). */
  unextendedRate: number;
  /** 1 - unextended / free. */
  unextendedCost: number;
}

/** Enforcement cost when vCPUs <= slots, interleaved `rounds` times. */
export async function benchEnforcement(
  rounds = 3,
  seconds = 1,
  options: { pin?: boolean; vms?: 1 | 2 } = {},
): Promise<EnforcementResult> {
  const free: number[] = [], sched: number[] = [], unext: number[] = [];
  const count = options.vms ?? 2;
  for (let i = 0; i < rounds; i++) {
    free.push(await spinRate(false, seconds, count));
    sched.push(await spinRate(true, seconds, count, { pin: options.pin }));
    unext.push(await spinRate(true, seconds, count, { pin: options.pin, extendSlices: false }));
  }
  const freeRate = median(free), scheduledRate = median(sched), unextendedRate = median(unext);
  return {
    freeRate,
    scheduledRate,
    cost: 1 - scheduledRate / freeRate,
    unextendedRate,
    unextendedCost: 1 - unextendedRate / freeRate,
  };
}
