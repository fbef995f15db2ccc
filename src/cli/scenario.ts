/**
 * `deno run -A mod.ts scenario FILE`: runs a scenario file on KVM (or `--sim` in the
 * simulator) under its policy or `--sched`, prints the per-VM table and writes the result JSON.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { formatResult, type ScenarioResult } from "../scenario/result.ts";
import { runScenarioKvm } from "../scenario/run_kvm.ts";
import { runScenarioSim } from "../scenario/run_sim.ts";
import { loadScenario } from "../scenario/scenario.ts";
import { UsageError } from "./usage.ts";
import { parseSchedParams } from "./vm_spec.ts";
import { count } from "./sched_flags.ts";
import { startTop, type Top } from "./top.ts";
import type { Vmm } from "../vmm.ts";
import { writeTraceFile } from "../trace/write.ts";

/** Help text of `scenario`. */
export const SCENARIO_HELP = `Usage: deno run -A mod.ts scenario FILE [options]

Run a scenario (bench/scenarios/*.json: VMs, workloads, weights, caps, periods, slots,
policy, duration) and print, per VM: CPU share, latency p50/p99, throughput, deadline misses.

Options:
  --sched PLUGIN|host  the policy (default: the file's); host = no slots, Linux schedules
                       the vCPU threads (weights as nice levels), what QEMU users have
  --sched-param K=V    a plugin parameter (repeatable)
  --sim                run in the simulator (deterministic, no KVM) instead
  --seconds N          measure for N seconds (default: the file's)
  --seed N             simulator seed (default 1)
  --ratelimit-us US    context-switch rate limit (default: the file's, else Xen's 1000)
  --handoff-us US      with --sim: what each grant costs before guest mode (default 36, the
                       hand-off measured on KVM here; 0: none, every slot switches in lockstep)
  --json FILE          where to write the result (default: SCENARIO-POLICY-MODE.json)
  --top                a live view of every VM and vCPU while it runs (KVM only)
  --trace FILE         on KVM: write the scheduler's trace of the whole run (Perfetto JSON,
                       as 'run --trace'; read it with 'trace summary FILE' or 'trace replay')
  -h, --help           this text

Example:
  deno run -A mod.ts scenario bench/scenarios/weights.json --sched plugins/credit.ts
`;

/** Runs one scenario; returns its result (shared by the command and the scenario bench). */
export async function runScenarioFile(
  file: string,
  o: {
    policy?: string;
    params?: Record<string, number | string | boolean>;
    sim?: boolean;
    seconds?: number;
    seed?: number;
    ratelimitUs?: number;
    handoffUs?: number;
    onVmm?: (vmm: Vmm) => void;
    beforeClose?: (vmm: Vmm) => Promise<void>;
  },
): Promise<ScenarioResult> {
  const scenario = await loadScenario(file);
  const policy = o.policy ?? scenario.policy;
  return o.sim
    ? await runScenarioSim(scenario, {
      policy,
      params: o.params,
      seconds: o.seconds,
      seed: o.seed,
      ratelimitUs: o.ratelimitUs,
      handoffUs: o.handoffUs,
    })
    : await runScenarioKvm(scenario, {
      policy,
      params: o.params,
      seconds: o.seconds,
      ratelimitUs: o.ratelimitUs,
      onVmm: o.onVmm,
      beforeClose: o.beforeClose,
    });
}

/** Runs the `scenario` command. */
export async function scenarioCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      sched: { type: "string" },
      "sched-param": { type: "string", multiple: true },
      sim: { type: "boolean" },
      seconds: { type: "string" },
      seed: { type: "string" },
      "ratelimit-us": { type: "string" },
      "handoff-us": { type: "string" },
      json: { type: "string" },
      top: { type: "boolean" },
      trace: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    console.log(SCENARIO_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("give exactly one scenario FILE");
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  if (seconds !== undefined && !(seconds > 0)) {
    throw new UsageError(`--seconds must be a positive number, got '${values.seconds}'`);
  }
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (seed !== undefined && !Number.isInteger(seed)) {
    throw new UsageError(`--seed must be an integer, got '${values.seed}'`);
  }
  if (values.top && values.sim) throw new UsageError("--top shows live VMs: not with --sim");
  if (values.trace !== undefined && (values.sim || values.sched === "host")) {
    throw new UsageError("--trace records the scheduler on KVM: not with --sim or --sched host");
  }
  if (values["handoff-us"] !== undefined && !values.sim) {
    throw new UsageError("--handoff-us sets the simulator's hand-off: only with --sim");
  }
  let top: Top | undefined;
  const result = await runScenarioFile(positionals[0], {
    policy: values.sched,
    params: parseSchedParams(values["sched-param"] ?? []),
    sim: values.sim,
    seconds,
    seed,
    ratelimitUs: count("--ratelimit-us", values["ratelimit-us"], 0),
    handoffUs: count("--handoff-us", values["handoff-us"], 0),
    onVmm: values.top ? (vmm) => top = startTop(vmm) : undefined,
    beforeClose: async (vmm) => {
      await top?.stop();
      if (values.trace === undefined || !vmm.scheduler) return;
      await writeTraceFile(values.trace, await vmm.scheduler.trace());
      console.error(`trace written to ${values.trace}`);
    },
  });
  console.log(formatResult(result));
  const out = values.json ?? `${result.scenario}-${result.policy}-${result.mode}.json`;
  await Deno.writeTextFile(out, JSON.stringify(result, null, 2) + "\n");
  console.log(`result: ${out}`);
  return 0;
}
