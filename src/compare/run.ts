/**
 * Runs the comparison: every given plugin and every built-in policy on each scenario, several
 * seeds in the simulator (default) or several runs on KVM, keeping for each run its scenario
 * result (with each VM's share per 1 s window) and each VM's wake-latency distribution.
 *
 * ```ts
 * import { compare } from "./src/compare/run.ts";
 * const data = await compare({ plugins: ["my_policy.ts"], scenarios: ["weights"], seeds: 2 });
 * ```
 *
 * @module
 */
import { PluginLoadError } from "../sched/load.ts";
import { resolvePluginUrl } from "../sched/sandbox.ts";
import { analyzeTrace } from "../trace/summary.ts";
import { ConfigError } from "../vm/config.ts";
import type { ScenarioResult } from "../scenario/result.ts";
import { runScenarioKvm } from "../scenario/run_kvm.ts";
import { runScenarioSim } from "../scenario/run_sim.ts";
import { defaultJobs, runPool } from "../sim/pool.ts";
import { loadScenario, parseScenario, type Scenario } from "../scenario/scenario.ts";
import type { SimResult } from "../sim/types.ts";
import type { TraceData } from "../trace/events.ts";
import { type Cdf, cdfOfHistogram, cdfOfSamples } from "./cdf.ts";

/** The built-in policies, by name (`plugins/NAME.ts`), in the order the report shows them. */
export const BUILTIN_POLICIES: readonly string[] = ["rr", "credit", "credit2", "rtds", "gang"];

/** The standard scenarios, by name (`bench/scenarios/NAME.json`). */
export const STANDARD_SCENARIOS: readonly string[] = [
  "io-vs-hog",
  "weights",
  "caps",
  "attacker",
  "rt",
  "lock",
  "lock-ticket",
  "overcommit",
];

/** Simulator seeds (or KVM runs) per plugin and scenario when not given. */
export const DEFAULT_SEEDS = 3;

/** A policy in the comparison. */
export interface ComparePlugin {
  /** Its label in the report: the file name without `.ts` (made unique). */
  name: string;
  /** Path or URL it was loaded from. */
  source: string;
  /** One of {@linkcode BUILTIN_POLICIES}. */
  builtin: boolean;
}

/** One run of one plugin on one scenario. */
export interface CompareRun {
  /** Scenario name. */
  scenario: string;
  /** Plugin label ({@linkcode ComparePlugin.name}). */
  plugin: string;
  /** The simulator's seed, or the KVM run's number (1, 2, ...). */
  run: number;
  /** What the scenario runner reports (per VM: share, its windows, latency, misses...). */
  result: ScenarioResult;
  /** Per VM that woke during the run: its vCPUs' wake → grant latency distribution. */
  wake: Record<string, Cdf>;
}

/** Everything a report is made from. */
export interface CompareData {
  /** `sim`: the simulator, deterministic per seed; `kvm`: real VMs. */
  mode: "sim" | "kvm";
  /** Seeds (sim) or runs (kvm) per plugin and scenario. */
  seeds: number;
  /** The policies: the given plugins first, then the built-ins. */
  plugins: ComparePlugin[];
  /** The scenarios, as run (`seconds` already overridden when asked). */
  scenarios: Scenario[];
  /** Every run. */
  runs: CompareRun[];
  /** When it ran (ISO 8601). */
  date: string;
}

/** Options of {@linkcode compare}. */
export interface CompareOptions {
  /** The plugins to compare (paths or URLs); each runs sandboxed. */
  plugins: string[];
  /**
   * Scenarios: a standard name (see {@linkcode STANDARD_SCENARIOS}), a scenario file's path, or
   * a parsed scenario. Default: every standard scenario.
   */
  scenarios?: (string | Scenario)[];
  /** Built-in policies to run beside them (names); default all of {@linkcode BUILTIN_POLICIES}. */
  builtins?: string[];
  /** Run on KVM instead of the simulator. */
  kvm?: boolean;
  /** Seeds (sim) or runs (kvm) per plugin and scenario; default {@linkcode DEFAULT_SEEDS}. */
  seeds?: number;
  /** Override every scenario's duration (s). */
  seconds?: number;
  /** Called after each run, with how many of how many are done. */
  onRun?: (run: CompareRun, done: number, total: number) => void;
}

const STANDARD_DIR = new URL("../../bench/scenarios/", import.meta.url);

/** Loads a scenario given by name, path or URL; an unknown name is a ConfigError. */
export async function resolveScenario(spec: string | Scenario): Promise<Scenario> {
  if (typeof spec !== "string") return spec;
  if (STANDARD_SCENARIOS.includes(spec)) {
    const url = new URL(`${spec}.json`, STANDARD_DIR);
    if (url.protocol === "file:") return await loadScenario(url.pathname);
    const res = await fetch(url);
    if (!res.ok) throw new ConfigError(`scenario ${spec}`, `cannot fetch ${url}: ${res.status}`);
    return parseScenario(await res.json(), url.href);
  }
  if (!/[/\\]|\.json$/.test(spec)) {
    throw new ConfigError(
      `scenario ${spec}`,
      `no such standard scenario (known: ${STANDARD_SCENARIOS.join(", ")}); a file needs its path`,
    );
  }
  return await loadScenario(spec);
}

/** The label of a plugin source: its file name without `.ts`. */
function labelOf(source: string): string {
  return source.replace(/[?#].*$/, "").replace(/^.*[/\\]/, "").replace(/\.[jt]s$/, "") ||
    source;
}

/** Checks that a local plugin file exists; names it when not. */
async function checkPlugin(source: string): Promise<URL> {
  const url = resolvePluginUrl(source);
  if (url.protocol === "file:") {
    try {
      const st = await Deno.stat(url);
      if (!st.isFile) throw new ConfigError(`plugin ${source}`, "is not a file");
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ConfigError(`plugin ${source}`, "no such file");
    }
  }
  return url;
}

/** The plugins in the comparison: the given ones, then the built-ins not among them. */
async function pluginList(given: string[], builtins: string[]): Promise<ComparePlugin[]> {
  for (const b of builtins) {
    if (!BUILTIN_POLICIES.includes(b)) {
      throw new ConfigError(
        `built-in ${b}`,
        `no such built-in policy (known: ${BUILTIN_POLICIES.join(", ")})`,
      );
    }
  }
  const out: ComparePlugin[] = [];
  const seen = new Set<string>();
  const taken = new Set<string>();
  const add = (source: string, url: URL, builtin: boolean) => {
    if (seen.has(url.href)) return;
    seen.add(url.href);
    let name = labelOf(source);
    for (let k = 2; taken.has(name); k++) name = `${labelOf(source)}-${k}`;
    taken.add(name);
    out.push({ name, source: url.protocol === "file:" ? url.pathname : url.href, builtin });
  };
  for (const p of given) add(p, await checkPlugin(p), false);
  for (const b of builtins) {
    const url = new URL(`../../plugins/${b}.ts`, import.meta.url);
    add(url.href, url, true);
  }
  return out;
}

/** Each VM's wake-latency CDF from the simulator's per-VM histograms. */
function simWakes(r: SimResult): Record<string, Cdf> {
  const out: Record<string, Cdf> = {};
  for (const vm of r.vms) {
    if (vm.wakeLatency.count > 0 && vm.wakeLatency.cdf) {
      out[vm.name] = cdfOfHistogram(vm.wakeLatency.count, vm.wakeLatency.cdf);
    }
  }
  return out;
}

/** Each VM's wake-latency CDF from a KVM run's trace. */
function traceWakes(data: TraceData): Record<string, Cdf> {
  const byVm = new Map<string, number[]>();
  for (const tl of analyzeTrace(data).vcpus.values()) {
    const xs = byVm.get(tl.vcpu.vm) ?? [];
    xs.push(...tl.wakeLatencies);
    byVm.set(tl.vcpu.vm, xs);
  }
  const out: Record<string, Cdf> = {};
  for (const [vm, xs] of byVm) if (xs.length) out[vm] = cdfOfSamples(xs);
  return out;
}

/** Trace ring size for a KVM run: room for 10 s of busy hand-offs. */
const KVM_TRACE_RECORDS = 1 << 20;

async function runOne(
  scenario: Scenario,
  plugin: ComparePlugin,
  run: number,
  kvm: boolean,
): Promise<CompareRun> {
  let wake: Record<string, Cdf> = {};
  let result: ScenarioResult;
  try {
    if (kvm) {
      result = await runScenarioKvm(scenario, {
        policy: plugin.source,
        scheduler: { traceRecords: KVM_TRACE_RECORDS },
        beforeClose: async (vmm) => {
          if (vmm.scheduler) wake = traceWakes(await vmm.scheduler.trace());
        },
      });
    } else {
      result = await runScenarioSim(scenario, {
        policy: plugin.source,
        seed: run,
        onSimResult: (r) => wake = simWakes(r),
      });
    }
  } catch (e) {
    if (e instanceof PluginLoadError) {
      throw new ConfigError(`plugin ${plugin.source}`, `cannot load: ${e.message}`);
    }
    throw e;
  }
  return {
    scenario: scenario.name,
    plugin: plugin.name,
    run,
    result: { ...result, policy: plugin.name },
    wake,
  };
}

/**
 * Runs every plugin and built-in on every scenario, `seeds` times each. Bad input (no such
 * plugin file, an unknown scenario, a bad count) is a `ConfigError` naming it, before anything
 * runs; a plugin that cannot be loaded is one too.
 */
export async function compare(options: CompareOptions): Promise<CompareData> {
  const seeds = options.seeds ?? DEFAULT_SEEDS;
  if (!Number.isInteger(seeds) || seeds < 1) {
    throw new ConfigError("seeds", `must be an integer >= 1, got ${seeds}`);
  }
  if (options.seconds !== undefined && !(options.seconds > 0)) {
    throw new ConfigError("seconds", `must be > 0, got ${options.seconds}`);
  }
  if (!Array.isArray(options.plugins) || options.plugins.length === 0) {
    throw new ConfigError("plugins", "give at least one plugin to compare");
  }
  const plugins = await pluginList(options.plugins, options.builtins ?? [...BUILTIN_POLICIES]);
  const scenarios: Scenario[] = [];
  for (const spec of options.scenarios ?? STANDARD_SCENARIOS) {
    const s = await resolveScenario(spec);
    if (scenarios.some((x) => x.name === s.name)) {
      throw new ConfigError(`scenario ${s.name}`, "given twice");
    }
    scenarios.push(options.seconds ? { ...s, seconds: options.seconds } : s);
  }
  const kvm = options.kvm ?? false;
  const tasks: (() => Promise<CompareRun>)[] = [];
  // Plugins interleaved within each seed, as the scenario bench does on KVM: a slow spell of
  // the host then touches every plugin, not one.
  for (const scenario of scenarios) {
    for (let run = 1; run <= seeds; run++) {
      for (const plugin of plugins) tasks.push(() => runOne(scenario, plugin, run, kvm));
    }
  }
  // Simulations run side by side, each in its own sandbox Worker; KVM runs one at a time, as
  // their slots are the host's CPUs.
  let done = 0;
  const runs = await runPool(
    tasks,
    kvm ? 1 : defaultJobs(),
    (r) => options.onRun?.(r, ++done, tasks.length),
  );
  return {
    mode: kvm ? "kvm" : "sim",
    seeds,
    plugins,
    scenarios,
    runs,
    date: new Date().toISOString(),
  };
}
