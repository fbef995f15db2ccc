/**
 * {@linkcode sweep}: one simulation for every combination of seeds and plugin parameter values,
 * run side by side on the host's CPUs (each simulation of a plugin given by path or URL is its
 * own sandbox Worker, `sandboxed.ts`), summarised per combination and VM as a mean and a spread.
 *
 * ```ts
 * import { sweep } from "./src/sim/sweep.ts";
 * const s = await sweep({
 *   base: {
 *     plugin: "plugins/credit.ts",
 *     slots: 1,
 *     seconds: 2,
 *     vms: [
 *       { name: "a", vcpus: 1, params: { weight: 512 }, workload: { kind: "spin" } },
 *       { name: "b", vcpus: 1, workload: { kind: "spin" } },
 *     ],
 *   },
 *   seeds: [1, 2, 3],
 *   params: { tslice_ms: [10, 30] },
 * });
 * console.log(s.cells.map((c) => `${c.label} ${c.vm} ${c.share.mean}`));
 * ```
 *
 * @module
 */
import type { SchedParams } from "../sched/contract.ts";
import { simulate } from "./mod.ts";
import { defaultJobs, runPool } from "./pool.ts";
import type { SimOptions, SimResult, SimVmResult } from "./types.ts";

/** Options of {@linkcode sweep}. */
export interface SweepOptions {
  /** The simulation every run starts from (its `seed` and `params` are the sweep's defaults). */
  base: SimOptions;
  /** Seeds to run each combination with (default: `[base.seed ?? 1]`). */
  seeds?: number[];
  /**
   * Plugin parameters to vary: each name with its values. Every combination of values is run
   * (a cartesian product), on top of `base.params`.
   */
  params?: Record<string, Array<string | number | boolean>>;
  /** Simulations at once (default: the host's CPUs, `navigator.hardwareConcurrency`). */
  jobs?: number;
}

/** Mean and spread of one measure over a combination's runs. */
export interface Spread {
  /** Runs that had a value (a VM that never woke has no wake latency). */
  n: number;
  /** Arithmetic mean (`NaN` when `n` is 0). */
  mean: number;
  /** Sample standard deviation (0 for one run). */
  sd: number;
  /** Smallest value. */
  min: number;
  /** Largest value. */
  max: number;
}

/** One VM under one combination of parameter values, over every seed. */
export interface SweepCell {
  /** The combination, as `name=value` pairs joined by spaces ("" when nothing is varied). */
  label: string;
  /** The parameter values of the combination. */
  params: SchedParams;
  /** The VM. */
  vm: string;
  /** Share of the machine. */
  share: Spread;
  /** Time waiting for a slot (ns). */
  waitNs: Spread;
  /** Wake-up latency p50 (ns). */
  wakeP50: Spread;
  /** Wake-up latency p99 (ns). */
  wakeP99: Spread;
  /** Deadline misses (periodic workloads). */
  misses: Spread;
  /** Echo latency p99 (ns). */
  echoP99: Spread;
}

/** What {@linkcode sweep} returns. */
export interface SweepResult {
  /** Seeds run. */
  seeds: number[];
  /** Each combination of parameter values, in order. */
  combinations: SchedParams[];
  /** Per combination and VM (combination-major). */
  cells: SweepCell[];
  /** Every run's result, per combination (in `combinations` order), per seed. */
  runs: SimResult[][];
  /** Plugin ejections seen in any run, with the combination and seed. */
  ejections: { label: string; seed: number; plugin: string; reason: string; detail: string }[];
  /** Wall time of the whole sweep (ms). */
  wallMs: number;
  /** Simulations run at once. */
  jobs: number;
}

/** Every combination of `params`' values (one empty combination when there are none). */
export function combinations(
  params: Record<string, Array<string | number | boolean>> = {},
): SchedParams[] {
  let out: SchedParams[] = [{}];
  for (const [name, values] of Object.entries(params)) {
    if (!Array.isArray(values) || values.length === 0) {
      throw new RangeError(`sweep: parameter ${name} needs at least one value`);
    }
    out = out.flatMap((c) => values.map((v) => ({ ...c, [name]: v })));
  }
  return out;
}

/** Mean, sample standard deviation and range of the finite values of `xs`. */
export function spread(xs: number[]): Spread {
  const v = xs.filter(Number.isFinite);
  const n = v.length;
  if (n === 0) return { n, mean: NaN, sd: NaN, min: NaN, max: NaN };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { n, mean, sd, min: Math.min(...v), max: Math.max(...v) };
}

const label = (c: SchedParams) => Object.entries(c).map(([k, v]) => `${k}=${v}`).join(" ");

/**
 * Runs `base` for every seed and combination of parameter values, `jobs` at a time, and
 * summarises each VM per combination. Rejects like {@linkcode simulate} (a plugin that cannot
 * be loaded, a bad option) on the first run that does.
 */
export async function sweep(options: SweepOptions): Promise<SweepResult> {
  const t0 = performance.now();
  const seeds = options.seeds ?? [options.base.seed ?? 1];
  if (seeds.length === 0 || !seeds.every(Number.isInteger)) {
    throw new RangeError(`sweep: seeds must be integers, got ${JSON.stringify(seeds)}`);
  }
  const combos = combinations(options.params);
  const jobs = options.jobs ?? defaultJobs();
  if (!Number.isInteger(jobs) || jobs < 1) {
    throw new RangeError(`sweep: jobs must be an integer >= 1, got ${jobs}`);
  }
  const tasks = combos.flatMap((c) =>
    seeds.map((seed) => () =>
      simulate({ ...options.base, seed, params: { ...(options.base.params ?? {}), ...c } })
    )
  );
  const flat = await runPool(tasks, jobs);
  const runs = combos.map((_, i) => flat.slice(i * seeds.length, (i + 1) * seeds.length));
  const cells: SweepCell[] = [];
  const ejections: SweepResult["ejections"] = [];
  combos.forEach((c, i) => {
    const rs = runs[i];
    rs.forEach((r, k) => {
      for (const e of r.ejections) {
        ejections.push({ label: label(c), seed: seeds[k], ...e });
      }
    });
    for (const [j, vm] of rs[0].vms.entries()) {
      const of = (f: (v: SimVmResult) => number) => spread(rs.map((r) => f(r.vms[j])));
      cells.push({
        label: label(c),
        params: c,
        vm: vm.name,
        share: of((v) => v.share),
        waitNs: of((v) => v.waitNs),
        wakeP50: of((v) => v.wakeLatency.p50),
        wakeP99: of((v) => v.wakeLatency.p99),
        misses: of((v) => v.periodic?.misses ?? NaN),
        echoP99: of((v) => v.echo?.latency.p99 ?? NaN),
      });
    }
  });
  return {
    seeds,
    combinations: combos,
    cells,
    runs,
    ejections: ejections.map((e) => ({
      label: e.label,
      seed: e.seed,
      plugin: e.plugin,
      reason: e.reason,
      detail: e.detail,
    })),
    wallMs: performance.now() - t0,
    jobs,
  };
}

/** `mean ± sd` with `digits`, after dividing by `unit`; "-" when there were no values. */
function cell(s: Spread, unit: number, digits: number): string {
  if (s.n === 0) return "-";
  const m = (s.mean / unit).toFixed(digits);
  return s.n > 1 ? `${m} ± ${(s.sd / unit).toFixed(digits)}` : m;
}

/** Formats a sweep as one table: a row per combination and VM, each cell `mean ± sd`. */
export function formatSweep(s: SweepResult): string {
  const varied = s.combinations.some((c) => Object.keys(c).length > 0);
  const hasMisses = s.cells.some((c) => c.misses.n > 0);
  const hasEcho = s.cells.some((c) => c.echoP99.n > 0);
  const head = [
    ...(varied ? ["params"] : []),
    "vm",
    "share %",
    "share min-max",
    "wait ms",
    "wake p50 µs",
    "wake p99 µs",
    ...(hasMisses ? ["misses"] : []),
    ...(hasEcho ? ["echo p99 µs"] : []),
  ];
  const rows = s.cells.map((c) => [
    ...(varied ? [c.label] : []),
    c.vm,
    cell(c.share, 0.01, 2),
    `${(c.share.min * 100).toFixed(2)}-${(c.share.max * 100).toFixed(2)}`,
    cell(c.waitNs, 1e6, 0),
    cell(c.wakeP50, 1e3, 1),
    cell(c.wakeP99, 1e3, 1),
    ...(hasMisses ? [cell(c.misses, 1, 1)] : []),
    ...(hasEcho ? [cell(c.echoP99, 1e3, 1)] : []),
  ]);
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const text = all.map((r) =>
    r.map((x, i) => (i <= (varied ? 1 : 0) ? x.padEnd(widths[i]) : x.padStart(widths[i])))
      .join("  ").trimEnd()
  );
  const runs = s.seeds.length * s.combinations.length;
  const first = s.runs[0][0];
  const summary = `plugin ${first.plugin}, ${first.slots} slot${first.slots > 1 ? "s" : ""}, ` +
    `${(first.elapsedNs / 1e9).toFixed(1)} s simulated; ${runs} run${runs > 1 ? "s" : ""} ` +
    `(seeds ${s.seeds.join(",")}${
      varied ? ` x ${s.combinations.length} combinations` : ""
    }), ${s.jobs} at a time, ${(s.wallMs / 1000).toFixed(1)} s wall; mean ± sd over seeds`;
  const ej = s.ejections.map((e) =>
    `ejected ${e.plugin} (${e.reason}${e.label ? `, ${e.label}` : ""}, seed ${e.seed}): ${e.detail}`
  );
  return [summary, ...text, ...ej].join("\n");
}
