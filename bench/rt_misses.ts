/**
 * `deno task bench:rt [--runs N] [--seconds N] [--sched PLUGIN]`: the rt scenario
 * (`bench/scenarios/rt.json`) under rtds, N times (default 10, 10 s each), with the host's own
 * noise (`host_gaps`, no VMM running) before and after. For each run: the guest's deadline
 * misses and jobs, and each stretch of late jobs the trace shows with what made it late
 * (`src/trace/misses.ts`: waiting for a slot, steal, or the work itself). Prints runs with a
 * miss, misses per 10,000 jobs and every late stretch; writes `bench/results/rt_misses.json`.
 * With `--traces DIR`, the trace of each run with a late stretch not the host's or the work's
 * (`scheduler`, `edf`, `budget`, `vmm`) goes to `DIR/run-N.json`, for `mod.ts trace`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runScenarioKvm } from "../src/scenario/run_kvm.ts";
import { loadScenario } from "../src/scenario/scenario.ts";
import { analyzeTrace } from "../src/trace/summary.ts";
import { writeTraceFile } from "../src/trace/write.ts";
import { formatLateJobs, type LateJob, lateJobs, scenarioPeriods } from "../src/trace/misses.ts";
import { type HostNoise, noiseGaps, probeHostNoise } from "./host_noise.ts";

const ROOT = new URL("../", import.meta.url);

/** One run of the rt scenario. */
export interface RtRun {
  /** When it started (ISO time). */
  at: string;
  /** Deadline misses the guests counted. */
  misses: number;
  /** Jobs released. */
  jobs: number;
  /** Late stretches in the trace, and what made each late. */
  late: LateJob[];
  /** Ejections (none expected). */
  ejections: string[];
}

/** What `bench:rt` measured. */
export interface RtStudy {
  /** The command and date. */
  measured: string;
  /** Policy. */
  policy: string;
  /** The host's noise probe before and after. */
  hostNoise: HostNoise[];
  /** Every run. */
  runs: RtRun[];
}

/** The study in a few lines: runs with a miss, misses per 10,000 jobs, verdicts. */
export function summarizeStudy(s: RtStudy): string {
  const jobs = s.runs.reduce((a, r) => a + r.jobs, 0);
  const misses = s.runs.reduce((a, r) => a + r.misses, 0);
  const late = s.runs.flatMap((r) => r.late);
  const by = (v: string) => late.filter((j) => j.verdict === v).length;
  const noise = s.hostNoise.map((n) => {
    const { over1ms, longestMs } = noiseGaps(n);
    return `${over1ms} gaps over 1 ms (longest ${longestMs.toFixed(1)} ms)`;
  });
  return [
    `${s.policy}: ${s.runs.filter((r) => r.misses > 0).length} of ${s.runs.length} runs with a ` +
    `miss, ${misses} misses in ${jobs} jobs (${(misses / Math.max(1, jobs) * 1e4).toFixed(1)} ` +
    `per 10,000)`,
    `late stretches in the traces: ${late.length} (${
      ["scheduler", "edf", "budget", "host", "vmm", "work"].map((v) => `${v} ${by(v)}`).join(", ")
    })`,
    `host noise, ${s.hostNoise[0]?.seconds ?? 0} s with no VMM: ${noise.join("; then ")}`,
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string" },
      seconds: { type: "string" },
      sched: { type: "string" },
      traces: { type: "string" },
    },
  });
  const runs = Number(values.runs ?? 10), seconds = Number(values.seconds ?? 10);
  if (!Number.isInteger(runs) || runs < 1 || !(seconds > 0)) {
    console.error("bench:rt: --runs must be a positive integer and --seconds positive");
    Deno.exit(2);
  }
  const file = new URL("bench/scenarios/rt.json", ROOT).pathname;
  const scenario = await loadScenario(file);
  const policy = values.sched ?? new URL("plugins/rtds.ts", ROOT).href;
  const periods = scenarioPeriods(scenario);
  const study: RtStudy = {
    measured: `\`deno task bench:rt${Deno.args.length ? " " + Deno.args.join(" ") : ""}\` on ${
      new Date().toISOString().slice(0, 10)
    }`,
    policy: policy.split("/").pop()!.replace(/\.ts$/, ""),
    hostNoise: [await probeHostNoise()],
    runs: [],
  };
  for (let i = 1; i <= runs; i++) {
    const at = new Date().toISOString();
    let late: LateJob[] = [];
    const r = await runScenarioKvm(scenario, {
      policy,
      seconds,
      scheduler: { traceRecords: 1 << 20 },
      beforeClose: async (vmm) => {
        const trace = await vmm.scheduler!.trace();
        late = lateJobs(analyzeTrace(trace), periods);
        const ours = late.some((j) => j.verdict !== "host" && j.verdict !== "work");
        if (values.traces && ours) {
          await Deno.mkdir(values.traces, { recursive: true });
          await writeTraceFile(`${values.traces}/run-${i}.json`, trace);
        }
      },
    });
    const run: RtRun = {
      at,
      misses: r.vms.reduce((a, v) => a + v.misses, 0),
      jobs: r.vms.reduce((a, v) => a + v.jobs, 0),
      late,
      ejections: r.ejections,
    };
    study.runs.push(run);
    console.log(`run ${i} of ${runs}: ${run.misses} misses of ${run.jobs} jobs`);
    if (late.length) console.log(formatLateJobs(late));
  }
  study.hostNoise.push(await probeHostNoise());
  await Deno.writeTextFile(
    new URL("bench/results/rt_misses.json", ROOT),
    JSON.stringify(study, null, 2) + "\n",
  );
  console.log(summarizeStudy(study));
}
