/**
 * Judges each run against its scenario's goal (`src/scenario/goal.ts`) and says, per scenario,
 * which plugins met it. What a scenario asks for follows from its VMs:
 *
 * - uncapped CPU-bound VMs (`spin`, `attacker`), two or more: each gets its weight's share of
 *   what they got together, within `sharePp`;
 * - a capped VM gets no more than its cap (% of one slot, as Xen's cap) plus `sharePp`;
 * - a periodic VM misses at most `missRatio` of its jobs;
 * - an echo VM's p99 request latency is at most `p99Ms` (when set), and an open-loop echo VM
 *   answers at least `echoRate` of the offered rate;
 * - a lock VM reaches `throughputOfBest` of the best compared policy's acquisitions/s;
 * - and no run ejects the plugin.
 *
 * A plugin meets the goal when every check passes in every run.
 *
 * @module
 */
import { resolveGoal } from "../scenario/goal.ts";
import type { ScenarioResult } from "../scenario/result.ts";
import type { Scenario, ScenarioVm } from "../scenario/scenario.ts";
import type { CompareData, CompareRun } from "./run.ts";

/** One check of a run against the goal. */
export interface GoalCheck {
  /** Which check: `shares`, `caps`, `misses`, `p99`, `echoRate`, `lock`, `ejections`. */
  key: string;
  /** What it measures, for people. */
  what: string;
  /** Unit of `value` and `limit` as printed: `pp`, `%`, `ms`, `x`. */
  unit: string;
  /** The measured value. */
  value: number;
  /** The limit. */
  limit: number;
  /** `value` must be at most `limit` (else at least). */
  atMost: boolean;
  /** It passed. */
  ok: boolean;
}

/** How one plugin did on one scenario. */
export interface PluginVerdict {
  /** Plugin label. */
  plugin: string;
  /** Every check passed in every run. */
  met: boolean;
  /** Runs in which every check passed. */
  runsMet: number;
  /** The checks of each run, in run order. */
  runs: { run: number; checks: GoalCheck[] }[];
  /** The headline check's value per run, in run order. */
  headline: number[];
}

/** The verdict on one scenario. */
export interface ScenarioVerdict {
  /** Scenario name. */
  scenario: string;
  /** The check the report charts across runs (the first that applies); null when none does. */
  headline: { key: string; what: string; unit: string; limit: number; atMost: boolean } | null;
  /** Per plugin, in the report's order. */
  plugins: PluginVerdict[];
  /** One line: which plugins met the goal. */
  line: string;
}

const CPU_BOUND = new Set(["spin", "attacker"]);

/**
 * The checks in the order a run lists them; the first that applies is the scenario's headline.
 * Deadlines and latency come first: where a scenario has both, they are what it is about (the
 * hogs of `overcommit` are there to load the slots).
 */
const CHECK_ORDER = ["misses", "p99", "echoRate", "shares", "caps", "lock", "ejections"];

function capOf(vm: ScenarioVm): number {
  const c = Number(vm.sched.cap ?? 0);
  return Number.isFinite(c) && c > 0 ? c : 0;
}

function weightOf(vm: ScenarioVm): number {
  return Number(vm.sched.weight ?? 256);
}

/** The uncapped CPU-bound VMs whose weights divide what they get (two or more, else none). */
export function weightedGroup(s: Scenario): ScenarioVm[] {
  const g = s.vms.filter((v) => CPU_BOUND.has(v.workload.kind) && capOf(v) === 0);
  return g.length >= 2 ? g : [];
}

/**
 * Each VM's target share of the slots in a run, where the goal sets one: for the weighted group,
 * its weight's part of what the group got; for a capped VM, its cap. Others have none.
 */
export function shareTargets(s: Scenario, r: ScenarioResult): Record<string, number> {
  const out: Record<string, number> = {};
  const g = weightedGroup(s);
  const shareOf = (name: string) => r.vms.find((v) => v.name === name)?.share ?? 0;
  const got = g.reduce((a, v) => a + shareOf(v.name), 0);
  const w = g.reduce((a, v) => a + weightOf(v), 0);
  for (const v of g) out[v.name] = (weightOf(v) / w) * got;
  for (const v of s.vms) if (capOf(v) > 0) out[v.name] = capOf(v) / 100 / s.slots;
  return out;
}

function check(
  key: string,
  what: string,
  unit: string,
  value: number,
  limit: number,
  atMost: boolean,
): GoalCheck {
  const ok = Number.isFinite(value) && (atMost ? value <= limit + 1e-9 : value >= limit - 1e-9);
  return { key, what, unit, value, limit, atMost, ok };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length
    ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2)
    : NaN;
}

/** The checks of one run; `bestLock` is the best median acq/s per lock VM over the plugins. */
function checksOf(s: Scenario, r: ScenarioResult, bestLock: Map<string, number>): GoalCheck[] {
  const goal = resolveGoal(s.goal);
  const out: GoalCheck[] = [];
  const vm = (name: string) => r.vms.find((v) => v.name === name);
  const g = weightedGroup(s);
  if (g.length) {
    const got = g.reduce((a, v) => a + (vm(v.name)?.share ?? 0), 0);
    const w = g.reduce((a, v) => a + weightOf(v), 0);
    const off = Math.max(
      ...g.map((v) =>
        got > 0 ? Math.abs((vm(v.name)?.share ?? 0) / got - weightOf(v) / w) * 100 : 100
      ),
    );
    out.push(
      check("shares", "worst CPU-bound VM's share off its weight", "pp", off, goal.sharePp, true),
    );
  }
  const capped = s.vms.filter((v) => capOf(v) > 0);
  if (capped.length) {
    const over = Math.max(
      ...capped.map((v) => (vm(v.name)?.share ?? 0) * s.slots * 100 - capOf(v)),
    );
    out.push(
      check("caps", "capped VMs over their cap (of a slot)", "pp", over, goal.sharePp, true),
    );
  }
  const periodic = s.vms.filter((v) => v.workload.kind === "periodic");
  if (periodic.length) {
    const worst = Math.max(...periodic.map((v) => {
      const o = vm(v.name);
      return o && o.jobs > 0 ? o.misses / o.jobs : 0;
    }));
    out.push(
      check(
        "misses",
        "worst periodic VM's deadline misses",
        "%",
        worst * 100,
        goal.missRatio * 100,
        true,
      ),
    );
  }
  const echo = s.vms.filter((v) => v.workload.kind === "echo");
  if (echo.length && goal.p99Ms !== undefined) {
    const worst = Math.max(...echo.map((v) => (vm(v.name)?.p99Us ?? NaN) / 1e3));
    out.push(check("p99", "echo p99 request latency", "ms", worst, goal.p99Ms, true));
  }
  const open = echo.filter((v) => v.workload.kind === "echo" && v.workload.mode === "open");
  if (open.length) {
    const least = Math.min(...open.map((v) => {
      const rate = v.workload.kind === "echo" ? v.workload.ratePerSec ?? 1000 : 1;
      return (vm(v.name)?.throughput ?? 0) / rate;
    }));
    out.push(
      check(
        "echoRate",
        "echo requests answered, of those offered",
        "%",
        least * 100,
        goal.echoRate * 100,
        false,
      ),
    );
  }
  const locks = s.vms.filter((v) => v.workload.kind === "lock");
  if (locks.length) {
    const least = Math.min(...locks.map((v) => {
      const best = bestLock.get(v.name) ?? 0;
      return best > 0 ? (vm(v.name)?.throughput ?? 0) / best : 1;
    }));
    out.push(
      check(
        "lock",
        "lock acquisitions/s, of the best policy's",
        "%",
        least * 100,
        goal.throughputOfBest * 100,
        false,
      ),
    );
  }
  out.push(check("ejections", "plugin ejections", "", r.ejections.length, 0, true));
  return CHECK_ORDER.flatMap((k) => out.filter((c) => c.key === k));
}

/** Decimal places a value in `unit` is printed with. */
export function digitsOf(unit: string): number {
  return unit === "ms" ? 2 : unit === "" ? 0 : 1;
}

/** Formats a check's value with its unit. */
export function formatValue(value: number, unit: string): string {
  if (!Number.isFinite(value)) return "-";
  const d = digitsOf(unit);
  if (Math.abs(value) < 0.5 / 10 ** d) value = 0; // no "-0.0"
  return `${value.toFixed(d)}${unit === "" ? "" : ` ${unit}`}`;
}

function lineOf(
  s: Scenario,
  plugins: PluginVerdict[],
  o: { seeds: number; what: string; goal: string },
): string {
  const { seeds, what } = o;
  const met = plugins.filter((p) => p.met).map((p) => p.plugin);
  const partly = plugins.filter((p) => !p.met && p.runsMet > 0).map((p) =>
    `${p.plugin} (${p.runsMet} of ${seeds})`
  );
  const not = plugins.filter((p) => p.runsMet === 0).map((p) => {
    const failed = p.runs.flatMap((r) => r.checks).find((c) => !c.ok);
    return failed
      ? `${p.plugin} (${failed.key} ${formatValue(failed.value, failed.unit)})`
      : p.plugin;
  });
  const parts = [met.length ? `met by ${met.join(", ")}` : "met by none"];
  if (partly.length) parts.push(`in some ${what} only by ${partly.join(", ")}`);
  if (not.length) parts.push(`not by ${not.join(", ")}`);
  return `${s.name} (${o.goal}): ${parts.join("; ")}`;
}

/** Judges every scenario of a comparison. */
export function verdicts(data: CompareData): ScenarioVerdict[] {
  return data.scenarios.map((s) => {
    const runs = data.runs.filter((r) => r.scenario === s.name);
    const bestLock = new Map<string, number>();
    for (const v of s.vms.filter((v) => v.workload.kind === "lock")) {
      const med = data.plugins.map((p) =>
        median(
          runs.filter((r) => r.plugin === p.name).map((r) =>
            r.result.vms.find((x) => x.name === v.name)?.throughput ?? 0
          ),
        )
      );
      bestLock.set(v.name, Math.max(0, ...med.filter(Number.isFinite)));
    }
    let headline: ScenarioVerdict["headline"] = null;
    const plugins = data.plugins.map((p): PluginVerdict => {
      const mine: CompareRun[] = runs.filter((r) => r.plugin === p.name).sort((a, b) =>
        a.run - b.run
      );
      const per = mine.map((r) => ({ run: r.run, checks: checksOf(s, r.result, bestLock) }));
      const first = per[0]?.checks[0];
      if (!headline && first && first.key !== "ejections") {
        headline = {
          key: first.key,
          what: first.what,
          unit: first.unit,
          limit: first.limit,
          atMost: first.atMost,
        };
      }
      const runsMet = per.filter((x) => x.checks.every((c) => c.ok)).length;
      return {
        plugin: p.name,
        met: per.length > 0 && runsMet === per.length,
        runsMet,
        runs: per,
        headline: per.map((x) =>
          x.checks[0]?.key === "ejections" ? NaN : x.checks[0]?.value ?? NaN
        ),
      };
    });
    const what = data.mode === "sim" ? "seeds" : "runs";
    const h = headline as ScenarioVerdict["headline"];
    const goal = h
      ? `${h.what} ${h.atMost ? "<=" : ">="} ${formatValue(h.limit, h.unit)}`
      : "no goal but no ejection";
    return {
      scenario: s.name,
      headline: h,
      plugins,
      line: lineOf(s, plugins, { seeds: data.seeds, what, goal }),
    };
  });
}
