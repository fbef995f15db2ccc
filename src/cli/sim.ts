/**
 * `deno run -A mod.ts sim`: run a scheduler plugin in the simulator on a scenario file and print
 * what every VM got.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { SchedParams } from "../sched/contract.ts";
import { type SimOptions, type SimResult, simulate, type SimVmSpec } from "../sim/mod.ts";
import { UsageError } from "./usage.ts";
import { parseParamValue, parseSchedParams } from "./vm_spec.ts";
import { SIM_HANDOFF_US } from "../scenario/run_sim.ts";
import { formatSweep, sweep, type SweepResult } from "../sim/sweep.ts";

/** Help text of `sim`. */
export const SIM_HELP = `Usage: deno run -A mod.ts sim --scenario FILE.json [options]

Run a scheduler plugin in the simulator (virtual time, deterministic for a seed) and print each
VM's share of the slots, waits, wake latency and workload results.

Options:
  --scenario FILE        the scenario (JSON, see below); required
  --sched PATH|URL       the plugin (default: the built-in round-robin, plugins/rr.ts)
  --sched-param K=V      a plugin parameter (repeatable), e.g. --sched-param tslice_ms=30
  --sched-allow-import H let a remote plugin be imported from host H (repeatable)
  --seconds N            virtual seconds to simulate (default: the scenario's, else 10)
  --seed N[,N...]        PRNG seed, or several (default: the scenario's, else 1)
  --seeds N              run N seeds, from --seed on (default 1)
  --sweep K=V1,V2,...    vary plugin parameter K over the values (repeatable: every
                         combination runs, for every seed)
  --jobs N               simulations at once for several seeds or values (default: the
                         host's CPUs); each runs in its own sandbox Worker
  --slots N              slots (default: the scenario's, else 1)
  --no-sandbox           run the plugin in-process (faster; no permission sandbox)
  --sched-sandbox process
                         run the engine here and each batch of plugin calls in a child
                         deno process with no permissions (default: the whole
                         simulation in the plugin's sandbox Worker)
  --json FILE            also write the full result as JSON
  -h, --help             this text

Scenario file:
  {
    "slots": 2, "seconds": 10, "seed": 1,
    "ratelimitUs": 1000, "handoffUs": 36, "pokeUs": 0, "windowMs": 1000,
    "vms": [
      { "name": "web", "vcpus": 2, "params": { "weight": 512 },
        "workload": { "kind": "echo", "mode": "open", "ratePerSec": 2000, "serviceUs": 50 } },
      { "name": "batch", "vcpus": 4, "workload": { "kind": "spin" } },
      { "name": "rt", "vcpus": 1, "params": { "period_ms": 10, "budget_ms": 2 },
        "workload": { "kind": "periodic", "periodMs": 10, "computeMs": 2 } },
      { "name": "db", "vcpus": 4, "workload": { "kind": "lock", "csUs": 20, "workUs": 100 } },
      { "name": "pp", "vcpus": 2, "workload": { "kind": "ipi", "workUs": 5 } }
    ]
  }

With several seeds or values, one table shows each combination and VM, each cell the mean
± the standard deviation over the seeds.

Examples:
  deno run -A mod.ts sim --sched plugins/credit.ts --sched-param tslice_ms=30 \\
    --scenario scenario.json --seconds 10
  deno run -A mod.ts sim --sched plugins/credit.ts --scenario scenario.json \\
    --seeds 8 --sweep tslice_ms=5,30
`;

/** The scenario file's shape. */
interface ScenarioFile {
  /** Default policy (a plugin path), as in bench/scenarios/ files. */
  policy?: string;
  slots?: number;
  seconds?: number;
  seed?: number;
  ratelimitUs?: number;
  handoffUs?: number;
  pokeUs?: number;
  windowMs?: number;
  starvationMs?: number;
  maxSliceMs?: number;
  params?: SchedParams;
  vms: SimVmSpec[];
}

function positive(flag: string, v: string | undefined, int: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || (int && !Number.isInteger(n))) {
    throw new UsageError(`${flag} must be a positive ${int ? "integer" : "number"}, got '${v}'`);
  }
  return n;
}

async function readScenario(path: string): Promise<ScenarioFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UsageError(`--scenario: cannot read ${path}: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--scenario ${path}: not valid JSON: ${(e as Error).message}`);
  }
  const s = data as ScenarioFile;
  if (!s || typeof s !== "object" || !Array.isArray(s.vms) || s.vms.length === 0) {
    throw new UsageError(`--scenario ${path}: expected {"vms": [ ... ]} with at least one VM`);
  }
  // The scenario files of `bench/scenarios/` (src/scenario/scenario.ts) run here too: their VMs
  // default to 1 vCPU and carry their parameters in `sched`.
  const vms = s.vms as Array<SimVmSpec & { sched?: SchedParams }>;
  s.vms = vms.map((v) => ({ ...v, vcpus: v.vcpus ?? 1, params: v.params ?? v.sched }));
  return s;
}

const fmt = (ns: number, unit: number, digits = 1) =>
  Number.isFinite(ns) ? (ns / unit).toFixed(digits) : "-";

/** Formats a result as a per-VM table. */
export function formatResult(r: SimResult): string {
  const rows = [[
    "vm",
    "vcpus",
    "share%",
    "run ms",
    "wait ms",
    "halt ms",
    "grants",
    "preempt",
    "wake p50/p99 µs",
    "workload",
  ]];
  for (const vm of r.vms) {
    let w = "";
    if (vm.echo) {
      w = `echo ${vm.echo.throughputPerSec.toFixed(0)}/s p50 ${fmt(vm.echo.latency.p50, 1e3)} ` +
        `p99 ${fmt(vm.echo.latency.p99, 1e3)} µs`;
    } else if (vm.periodic) {
      w = `periodic ${vm.periodic.misses}/${vm.periodic.jobs} missed` +
        (vm.periodic.lateness.count
          ? `, late p99 ${fmt(vm.periodic.lateness.p99, 1e6, 2)} ms`
          : "");
    } else if (vm.lock) {
      w = `lock ${vm.lock.acquisitionsPerSec.toFixed(0)} acq/s, spin ${
        fmt(vm.lock.spinNs, 1e6, 0)
      } ms`;
    } else if (vm.ipi) {
      w = `ipi ${vm.ipi.ipisPerSec.toFixed(0)}/s p50 ${fmt(vm.ipi.latency.p50, 1e3)} µs`;
    }
    rows.push([
      vm.name,
      String(vm.vcpus),
      (vm.share * 100).toFixed(2),
      fmt(vm.runNs, 1e6, 0),
      fmt(vm.waitNs, 1e6, 0),
      fmt(vm.haltedNs, 1e6, 0),
      String(vm.grants),
      String(vm.preemptions),
      `${fmt(vm.wakeLatency.p50, 1e3)}/${fmt(vm.wakeLatency.p99, 1e3)}`,
      w,
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines = rows.map((r) =>
    r.map((
      cell,
      c,
    ) => (c === 0 || c === r.length - 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
      .join("  ").trimEnd()
  );
  const head = `plugin ${r.plugin}${r.finalPlugin !== r.plugin ? ` → ${r.finalPlugin}` : ""}, ` +
    `${r.slots} slot${r.slots > 1 ? "s" : ""}, ${(r.elapsedNs / 1e9).toFixed(1)} s simulated, ` +
    `seed ${r.seed}, ${r.events} events (${(r.eventsPerSec / 1e6).toFixed(2)} M/s)`;
  const ej = r.ejections.map((e) =>
    `ejected ${e.plugin} at ${(e.at / 1e6).toFixed(1)} ms (${e.reason}): ${e.detail}`
  );
  return [head, ...lines, ...ej].join("\n");
}

/** Runs the `sim` command; returns the process exit status. */
export async function simCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      scenario: { type: "string" },
      sched: { type: "string" },
      "sched-param": { type: "string", multiple: true },
      "sched-allow-import": { type: "string", multiple: true },
      seconds: { type: "string" },
      seed: { type: "string" },
      seeds: { type: "string" },
      sweep: { type: "string", multiple: true },
      jobs: { type: "string" },
      slots: { type: "string" },
      "no-sandbox": { type: "boolean" },
      "sched-sandbox": { type: "string" },
      json: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(SIM_HELP);
    return 0;
  }
  if (values.scenario === undefined) throw new UsageError("--scenario FILE is required");
  const scenario = await readScenario(values.scenario);
  const params: SchedParams = {
    ...(scenario.params ?? {}),
    ...parseSchedParams(values["sched-param"] ?? []),
  };
  const seedList = values.seed?.split(",").map((x) => x.trim());
  for (const x of seedList ?? []) {
    if (x === "" || !Number.isInteger(Number(x))) {
      throw new UsageError(`--seed must be an integer or a list of them, got '${values.seed}'`);
    }
  }
  const first = seedList !== undefined ? Number(seedList[0]) : scenario.seed ?? 1;
  const count = positive("--seeds", values.seeds, true);
  if (count !== undefined && seedList !== undefined && seedList.length > 1) {
    throw new UsageError("give either a list of seeds (--seed A,B) or a count (--seeds N)");
  }
  const seeds = count !== undefined
    ? Array.from({ length: count }, (_, i) => first + i)
    : seedList?.map(Number) ?? [first];
  const varied = parseSweep(values.sweep ?? []);
  const jobs = positive("--jobs", values.jobs, true);
  const us = (v: number | undefined) => (v === undefined ? undefined : v * 1e3);
  const options: SimOptions = {
    plugin: values.sched ?? scenario.policy ?? new URL("../../plugins/rr.ts", import.meta.url).href,
    params,
    slots: positive("--slots", values.slots, true) ?? scenario.slots ?? 1,
    seconds: positive("--seconds", values.seconds, false) ?? scenario.seconds ?? 10,
    seed: first,
    sandbox: simSandbox(values["no-sandbox"], values["sched-sandbox"]),
    ratelimitNs: us(scenario.ratelimitUs),
    handoffNs: us(scenario.handoffUs ?? SIM_HANDOFF_US),
    pokeNs: us(scenario.pokeUs),
    windowNs: scenario.windowMs !== undefined ? scenario.windowMs * 1e6 : undefined,
    starvationNs: scenario.starvationMs !== undefined ? scenario.starvationMs * 1e6 : undefined,
    maxSliceNs: scenario.maxSliceMs !== undefined ? scenario.maxSliceMs * 1e6 : undefined,
    allowImport: values["sched-allow-import"],
    vms: scenario.vms,
  };
  const several = seeds.length > 1 || Object.keys(varied).length > 0;
  let out: SimResult | SweepResult;
  try {
    out = several
      ? await sweep({ base: options, seeds, params: varied, jobs })
      : await simulate(options);
  } catch (e) {
    if (e instanceof RangeError) {
      throw new UsageError(`--scenario ${values.scenario}: ${e.message}`);
    }
    throw e;
  }
  console.log("cells" in out ? formatSweep(out) : formatResult(out));
  if (values.json !== undefined) {
    await Deno.writeTextFile(values.json, JSON.stringify(out, null, 2) + "\n");
  }
  return 0;
}

/** `--sweep K=V1,V2` flags: each parameter with its values (numbers where they parse). */
function parseSweep(flags: string[]): Record<string, Array<string | number | boolean>> {
  const out: Record<string, Array<string | number | boolean>> = {};
  for (const f of flags) {
    const eq = f.indexOf("=");
    const name = f.slice(0, eq).trim();
    const values = f.slice(eq + 1).split(",").map((v) => v.trim());
    if (eq <= 0 || values.some((v) => v === "")) {
      throw new UsageError(`--sweep must be NAME=V1,V2,..., got '${f}'`);
    }
    if (name in out) throw new UsageError(`--sweep ${name} is given twice`);
    out[name] = values.map(parseParamValue);
  }
  return out;
}

/** Where the plugin runs, from `--no-sandbox` and `--sched-sandbox`. */
function simSandbox(none: boolean | undefined, kind: string | undefined): SimOptions["sandbox"] {
  if (kind !== undefined && kind !== "worker" && kind !== "process") {
    throw new UsageError(`--sched-sandbox must be worker or process, got '${kind}'`);
  }
  if (none && kind !== undefined) throw new UsageError("give --no-sandbox or --sched-sandbox");
  return none ? false : kind === "process" ? "process" : true;
}
