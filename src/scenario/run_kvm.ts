/**
 * Runs a scenario on KVM: boots its VMs under a policy plugin (or `host`: no slots, Linux
 * schedules the EMTs, weights as nice levels), generates the echo load, measures shares over
 * 1 s windows from its EMT threads' CPU time and the workloads' own counters, and reports.
 *
 * @module
 */
import type { EchoResult } from "../devices/echo.ts";
import type { SchedStats } from "../sched/runtime_protocol.ts";
import type { SchedulerOptions } from "../sched/scheduler.ts";
import type { Vm } from "../vm/vm.ts";
import { Vmm } from "../vmm.ts";
import { niceForWeight, setThreadCpus, setThreadNice, threadRunNs } from "../sched/host_threads.ts";
import { jainIndex, type ScenarioResult, sharesOfVms, type VmOutcome } from "./result.ts";
import type { Scenario, ScenarioVm } from "./scenario.ts";

/** Options of {@linkcode runScenarioKvm}. */
export interface KvmRunOptions {
  /** Policy plugin path/URL, or `host`. */
  policy: string;
  /** Plugin parameters (over the scenario's). */
  params?: Record<string, number | string | boolean>;
  /** Override the scenario's seconds. */
  seconds?: number;
  /** Kernel image (default: the built-in guest kernel, built into the cache on first use). */
  kernel?: string;
  /** Called with each VMM once it exists (live views). */
  onVmm?: (vmm: Vmm) => void;
  /** Override the scenario's context-switch rate limit (µs). */
  ratelimitUs?: number;
  /** Scheduler options beyond plugin/params/slots/rate limit (trace size...). */
  scheduler?: Partial<SchedulerOptions>;
  /** Called after the measurement, before the VMM closes (to collect a trace). */
  beforeClose?: (vmm: Vmm) => Promise<void>;
}

/** The guest command line of a scenario VM running for `seconds`. */
export function cmdlineFor(vm: ScenarioVm, seconds: number): string {
  const w = vm.workload;
  const long = Math.ceil(seconds) + 30; // outlives the measurement; the VM is stopped after
  switch (w.kind) {
    case "spin":
      return "workload=spin seconds=0";
    case "periodic":
      return `workload=periodic period_ms=${w.periodMs} compute_us=${
        Math.round(w.computeMs * 1000)
      } ` +
        `jobs=${Math.ceil((long * 1000) / w.periodMs)}`;
    case "echo":
      return `workload=echo service_us=${w.serviceUs}`;
    case "lock":
      return `workload=lock lock=${w.lock ?? "tas"} seconds=${long} cs_us=${w.csUs} ` +
        `work_us=${w.workUs}`;
    case "ipi":
      return "workload=ipi rounds=100000000";
    case "attacker":
      return `workload=attacker seconds=0 run_us=${w.runUs ?? 9500} sleep_us=${w.sleepUs ?? 500}`;
  }
}

/** Unmeasured run before the measurement. */
const WARMUP_MS = 500;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A VM's CPU time so far: its EMT threads' run time from the kernel, the same meter under every
 * policy and under `host`. (Wall time in guest mode would also count steal: time other host
 * threads held the EMT's CPU, which the VM did not get.)
 */
export function vmCpuNs(vm: Vm): number {
  return vm.emtThreadIds().reduce((s, tid) => s + threadRunNs(tid), 0);
}

/** Sum of a stats-record word over the VM's vCPUs. */
function statSum(
  vm: Vm,
  pick: (v: { iterations: bigint; rounds: bigint; misses: bigint }) => bigint,
) {
  const s = vm.stats();
  return s ? s.vcpus.reduce((a, v) => a + Number(pick(v)), 0) : 0;
}

/** Wake-ups so far per VM, from the scheduler's per-vCPU statistics. */
function wakesByVm(stats: SchedStats): Map<string, number> {
  const m = new Map<string, number>();
  for (const v of stats.vcpus) m.set(v.vm, (m.get(v.vm) ?? 0) + v.wakes);
  return m;
}

/** Runs `scenario` on KVM and reports. */
export async function runScenarioKvm(
  scenario: Scenario,
  options: KvmRunOptions,
): Promise<ScenarioResult> {
  const seconds = options.seconds ?? scenario.seconds;
  const host = options.policy === "host";
  const ratelimitUs = options.ratelimitUs ?? scenario.ratelimitUs;
  const vmm = await Vmm.create({
    scheduler: host ? undefined : {
      ...options.scheduler,
      plugin: options.policy,
      params: { ...scenario.params, ...options.params },
      slots: scenario.slots,
      ratelimitUs,
    },
  });
  const ejections: string[] = [];
  try {
    options.onVmm?.(vmm);
    const vms: Vm[] = [];
    for (const v of scenario.vms) {
      vms.push(
        await vmm.createVm({
          name: v.name,
          vcpus: v.vcpus,
          kernel: options.kernel,
          cmdline: cmdlineFor(v, seconds),
          sched: v.sched,
        }),
      );
    }
    for (const vm of vms) await vm.start();
    if (host) {
      const cpus = Array.from(
        { length: scenario.slots },
        (_, i) => i % navigator.hardwareConcurrency,
      );
      vms.forEach((vm, i) => {
        const nice = niceForWeight(Number(scenario.vms[i].sched.weight ?? 256));
        for (const tid of vm.emtThreadIds()) {
          setThreadCpus(tid, cpus);
          setThreadNice(tid, nice);
        }
      });
    }
    /** The echo load of VM `i` (its scenario settings) for `secs`; null for other workloads. */
    const echoLoad = (vm: Vm, i: number, secs: number): Promise<EchoResult | null> => {
      const w = scenario.vms[i].workload;
      if (w.kind !== "echo") return Promise.resolve(null);
      return vm.echoLoad({
        mode: w.mode,
        ratePerSec: w.ratePerSec,
        clients: w.clients,
        thinkUs: w.thinkUs,
        seconds: secs,
      });
    };
    // Echo servers print "echo: ready" once calibrated.
    for (const [i, vm] of vms.entries()) {
      if (scenario.vms[i].workload.kind !== "echo") continue;
      for (let k = 0; k < 500 && !vm.consoleText().includes("echo: ready"); k++) await sleep(10);
    }
    // Warm-up: half a second of the same load, not measured, so that the policy settles and
    // the echo path (EMT, core, plugin) is compiled before the first measured request.
    await Promise.all([sleep(WARMUP_MS), ...vms.map((vm, i) => echoLoad(vm, i, WARMUP_MS / 1000))]);

    const shares: number[][] = vms.map(() => []);
    const wakesAtStart = vmm.scheduler ? wakesByVm(await vmm.scheduler.stats()) : undefined;
    const start = vms.map((vm) => ({
      cpu: vmCpuNs(vm),
      iterations: statSum(vm, (v) => v.iterations),
      rounds: statSum(vm, (v) => v.rounds),
      misses: statSum(vm, (v) => v.misses),
    }));
    const echoes = vms.map((vm, i) => echoLoad(vm, i, seconds));
    const t0 = performance.now();
    let last = vms.map(vmCpuNs), lastT = t0;
    while (performance.now() - t0 < seconds * 1000) {
      await sleep(Math.min(1000, seconds * 1000 - (performance.now() - t0)));
      const now = performance.now(), g = vms.map(vmCpuNs);
      const slotNs = scenario.slots * (now - lastT) * 1e6;
      if (now - lastT > 100) vms.forEach((_, i) => shares[i].push((g[i] - last[i]) / slotNs));
      last = g;
      lastT = now;
    }
    const elapsed = (performance.now() - t0) / 1000;
    const echoResults: (EchoResult | null)[] = await Promise.all(echoes);
    const sched = vmm.scheduler ? await vmm.scheduler.stats() : undefined;
    const wakesAtEnd = sched ? wakesByVm(sched) : undefined;
    if (vmm.scheduler) {
      for (const e of vmm.scheduler.ejections) ejections.push(`${e.reason}: ${e.detail}`);
    }

    const totals = vms.map((vm, i) =>
      (vmCpuNs(vm) - start[i].cpu) / (scenario.slots * elapsed * 1e9)
    );
    const ofVms = sharesOfVms(shares, totals);
    const outcomes: VmOutcome[] = vms.map((vm, i) => {
      const spec = scenario.vms[i];
      const w = spec.workload;
      const total = totals[i];
      // Wake latency only for a VM that woke while measured: a spinning VM's one sample is its
      // boot, not a latency of the scenario.
      const woke = wakesAtEnd && wakesAtStart
        ? (wakesAtEnd.get(vm.name) ?? 0) - (wakesAtStart.get(vm.name) ?? 0)
        : 0;
      const wakes = woke > 0 ? sched!.vcpus.filter((v) => v.vm === vm.name) : [];
      let p50 = wakes.length ? Math.max(...wakes.map((v) => v.wakeLatencyP50Ns)) / 1e3 : NaN;
      let p99 = wakes.length ? Math.max(...wakes.map((v) => v.wakeLatencyP99Ns)) / 1e3 : NaN;
      let throughput: number, unit: string, misses = 0, jobs = 0;
      const echo = echoResults[i];
      if (echo) {
        p50 = echo.p50Ns / 1e3;
        p99 = echo.p99Ns / 1e3;
        throughput = echo.throughput;
        unit = "req/s";
      } else if (w.kind === "periodic") {
        jobs = statSum(vm, (v) => v.rounds) - start[i].rounds;
        misses = statSum(vm, (v) => v.misses) - start[i].misses;
        throughput = jobs / elapsed;
        unit = "jobs/s";
      } else if (w.kind === "ipi") {
        throughput = (statSum(vm, (v) => v.rounds) - start[i].rounds) / elapsed;
        unit = "ipi/s";
      } else if (w.kind === "lock") {
        throughput = (statSum(vm, (v) => v.iterations) - start[i].iterations) / elapsed;
        unit = "acq/s";
      } else {
        throughput = (statSum(vm, (v) => v.iterations) - start[i].iterations) / elapsed / 1e6;
        unit = "Mit/s";
      }
      const ws = shares[i].length ? shares[i] : [total];
      return {
        name: vm.name,
        workload: w.kind,
        weight: Number(spec.sched.weight ?? 256),
        share: total,
        shareMin: Math.min(...ws),
        shareMax: Math.max(...ws),
        windows: shares[i],
        ...ofVms[i],
        p50Us: p50,
        p99Us: p99,
        throughput,
        unit,
        misses,
        jobs,
      };
    });
    await options.beforeClose?.(vmm);
    return {
      scenario: scenario.name,
      mode: "kvm",
      policy: host ? "host" : options.policy.replace(/^.*\//, "").replace(/\.ts$/, ""),
      slots: scenario.slots,
      seconds,
      ratelimitUs: host ? undefined : ratelimitUs,
      vms: outcomes,
      jain: jainIndex(outcomes),
      ejections,
      date: new Date().toISOString(),
    };
  } finally {
    await vmm.close();
  }
}
