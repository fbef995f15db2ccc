/**
 * Runs a scenario in the simulator (`src/sim`): the same VMs and workloads, the same plugin
 * through the same core and sandbox, on a virtual clock, deterministic for a seed. `host` has
 * no simulated equivalent (it is Linux's scheduler), and the attacker is modelled as a
 * periodic task of `runUs` work every `runUs + sleepUs`.
 *
 * @module
 */
import { simulate } from "../sim/mod.ts";
import type { SimResult } from "../sim/types.ts";
import { ConfigError } from "../vm/config.ts";
import { jainIndex, type ScenarioResult, sharesOfVms, type VmOutcome } from "./result.ts";
import type { Scenario } from "./scenario.ts";

/** Options of {@linkcode runScenarioSim}. */
export interface SimRunOptions {
  /** Policy plugin path/URL. */
  policy: string;
  /** Plugin parameters (over the scenario's). */
  params?: Record<string, number | string | boolean>;
  /** Override the scenario's seconds. */
  seconds?: number;
  /** Seed (default 1). */
  seed?: number;
  /** Override the scenario's context-switch rate limit (µs). */
  ratelimitUs?: number;
  /** Grant to guest mode, per grant (µs); default {@linkcode SIM_HANDOFF_US}, 0 for none. */
  handoffUs?: number;
  /** Called with the simulator's whole result (wake-latency distributions...) before it is summarised. */
  onSimResult?: (result: SimResult) => void;
}

/**
 * The hand-off a scenario's grants cost in the simulator (µs): a grant's time outside guest
 * mode as `deno task bench` measures it on KVM here (README, Performance: 36.0 µs). With none,
 * every slot's slices end at the same instants forever, which no host does: a ticket lock then
 * kept flowing across slice switches (credit: 8,700 acquisitions/s against 44 on KVM; with the
 * hand-off, 564).
 */
export const SIM_HANDOFF_US = 36;

/** Runs `scenario` in the simulator and reports. */
export async function runScenarioSim(
  scenario: Scenario,
  options: SimRunOptions,
): Promise<ScenarioResult> {
  if (options.policy === "host") {
    throw new ConfigError("--sched", "host is Linux's scheduler: it only runs on KVM, not --sim");
  }
  const seconds = options.seconds ?? scenario.seconds;
  const ratelimitUs = options.ratelimitUs ?? scenario.ratelimitUs;
  const r = await simulate({
    plugin: options.policy,
    params: { ...scenario.params, ...options.params },
    slots: scenario.slots,
    ratelimitNs: ratelimitUs * 1000,
    seconds,
    seed: options.seed ?? 1,
    windowNs: 1e9,
    handoffNs: (options.handoffUs ?? SIM_HANDOFF_US) * 1000,
    vms: scenario.vms.map((v) => ({
      name: v.name,
      vcpus: v.vcpus,
      params: v.sched,
      workload: v.workload,
    })),
  });
  options.onSimResult?.(r);
  const ofVms = sharesOfVms(
    r.vms.map((vm) => (r.windows ?? []).map((w) => w.shares[vm.name] ?? 0)),
    r.vms.map((vm) => vm.share),
  );
  const outcomes: VmOutcome[] = r.vms.map((vm, i) => {
    const spec = scenario.vms[i];
    const windows = (r.windows ?? []).map((w) => w.shares[vm.name] ?? 0);
    let p50 = vm.wakeLatency.p50 / 1e3, p99 = vm.wakeLatency.p99 / 1e3;
    let throughput = 0, unit = "";
    if (vm.echo) {
      p50 = vm.echo.latency.p50 / 1e3;
      p99 = vm.echo.latency.p99 / 1e3;
      throughput = vm.echo.throughputPerSec;
      unit = "req/s";
    } else if (vm.periodic) {
      throughput = vm.periodic.completed / seconds;
      unit = "jobs/s";
    } else if (vm.lock) {
      throughput = vm.lock.acquisitionsPerSec;
      unit = "acq/s";
    } else if (vm.ipi) {
      throughput = vm.ipi.ipisPerSec;
      unit = "ipi/s";
    } else {
      throughput = (vm.runNs / 1e6) / seconds;
      unit = "ms/s";
    }
    return {
      name: vm.name,
      workload: spec.workload.kind,
      weight: Number(spec.sched.weight ?? 256),
      share: vm.share,
      shareMin: windows.length ? Math.min(...windows) : vm.share,
      shareMax: windows.length ? Math.max(...windows) : vm.share,
      windows,
      ...ofVms[i],
      p50Us: p50,
      p99Us: p99,
      throughput,
      unit,
      misses: vm.periodic?.misses ?? 0,
      jobs: vm.periodic?.jobs ?? 0,
    };
  });
  return {
    scenario: scenario.name,
    mode: "sim",
    policy: options.policy.replace(/^.*\//, "").replace(/\.ts$/, ""),
    slots: scenario.slots,
    seconds,
    ratelimitUs,
    vms: outcomes,
    jain: jainIndex(outcomes),
    ejections: r.ejections.map((e) => `${e.reason}: ${e.detail}`),
    date: new Date().toISOString(),
  };
}
