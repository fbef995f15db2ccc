/**
 * `deno task bench:scenarios [--runs N] [--seconds N] [--only NAME] [--policy NAME] [--table]`: every
 * scenario of `bench/scenarios/` on KVM under every built-in policy and under `host` (Linux's
 * scheduler, the baseline, measured in the same run), `--runs` times each (default 3, the runs
 * of a scenario interleaved across policies), with the host's own noise (`host_gaps`) before
 * and after. Then `bench/results/scenarios.json` (every run) and the README's "Results" table
 * between its markers: each cell the median of the runs, with their range. `--only NAME` and
 * `--policy NAME` rerun one scenario or one policy and keep the other cells as stored, saying
 * so under the table. `--table` only rewrites the README's table from the stored runs.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { formatResult, jainIndex, type ScenarioResult } from "../src/scenario/result.ts";
import { runScenarioKvm } from "../src/scenario/run_kvm.ts";
import { loadScenario } from "../src/scenario/scenario.ts";
import { type HostNoise, noiseGaps, probeHostNoise } from "./host_noise.ts";

const ROOT = new URL("../", import.meta.url);
/** The policies of the table, `host` (the baseline) first. */
export const POLICIES = ["host", "rr", "credit", "credit2", "rtds", "gang"];
/** The scenarios of the table, in its order. */
export const ORDER = [
  "io-vs-hog",
  "weights",
  "caps",
  "attacker",
  "rt",
  "lock",
  "lock-ticket",
  "overcommit",
  "overcommit-256",
];

/** A number of a table cell, read from one run, and the digits it is printed with. */
interface Figure {
  value: (r: ScenarioResult) => number;
  digits: number;
}

/** The headline figures of each scenario: a cell is `figures` joined by `sep`. */
const METRIC: Record<string, { label: string; figures: Figure[]; sep?: string[] }> = {
  "io-vs-hog": {
    label: "echo req/s of 1000 offered; p99 ms",
    figures: [
      { value: (r) => vmNamed(r, "echo").throughput, digits: 0 },
      { value: (r) => vmNamed(r, "echo").p99Us / 1000, digits: 1 },
    ],
  },
  weights: {
    label:
      "shares % of the slot (want 14.3 / 28.6 / 57.1); worst 1 s window of the VMs' CPU, pp off the weights",
    figures: [0, 1, 2].map((i) => ({ value: (r) => r.vms[i].share * 100, digits: 1 }) as Figure)
      .concat([{ value: worstWindowPp, digits: 1 }]),
    sep: [" / ", " / ", "; "],
  },
  caps: {
    label: "capped (25 %) / free share %",
    figures: [0, 1].map((i) => ({ value: (r) => r.vms[i].share * 100, digits: 1 })),
    sep: [" / "],
  },
  attacker: {
    label: "attacker / honest share %; guest work, attacker / honest",
    // The share is its EMT's CPU: its guest kernel's and the VMM's work for its halts included.
    // The work ratio is what the two guests' ring-3 loops got done, the same loop on both sides.
    figures: [
      { value: (r) => r.vms[0].share * 100, digits: 1 },
      { value: (r) => r.vms[1].share * 100, digits: 1 },
      { value: (r) => r.vms[0].throughput / r.vms[1].throughput, digits: 2 },
    ],
    sep: [" / ", "; "],
  },
  rt: {
    label: "deadline misses / jobs",
    figures: [
      { value: (r) => r.vms.reduce((s, v) => s + v.misses, 0), digits: 0 },
      { value: (r) => r.vms.reduce((s, v) => s + v.jobs, 0), digits: 0 },
    ],
    sep: [" / "],
  },
  lock: {
    label: "lock acquisitions/s (test-and-set)",
    figures: [{ value: (r) => vmNamed(r, "lock").throughput, digits: 0 }],
  },
  "lock-ticket": {
    label: "lock acquisitions/s (ticket lock)",
    figures: [{ value: (r) => vmNamed(r, "lock").throughput, digits: 0 }],
  },
  overcommit: {
    label: "Jain's index of the hogs' shares; worst wake p99 ms of the periodic VMs",
    figures: [
      // The periodic VMs need less than their share: fairness is among the VMs that want more.
      { value: (r) => jainIndex(r.vms.filter((v) => v.workload === "spin")), digits: 3 },
      {
        value: (r) => {
          const p99s = r.vms.filter((v) => v.workload === "periodic").map((v) => v.p99Us)
            .filter((x) => Number.isFinite(x));
          return p99s.length ? Math.max(...p99s) / 1000 : NaN;
        },
        digits: 1,
      },
    ],
    sep: ["; "],
  },
  "overcommit-256": {
    label: "Jain's index of the spinners' shares; periodic jobs missed %; worst echo p99 ms",
    figures: [
      { value: (r) => jainIndex(r.vms.filter((v) => v.workload === "spin")), digits: 3 },
      {
        value: (r) => {
          const periodic = r.vms.filter((v) => v.workload === "periodic");
          const jobs = periodic.reduce((s, v) => s + v.jobs, 0);
          return jobs ? (100 * periodic.reduce((s, v) => s + v.misses, 0)) / jobs : NaN;
        },
        digits: 1,
      },
      {
        value: (r) => {
          const p99s = r.vms.filter((v) => v.workload === "echo").map((v) => v.p99Us)
            .filter((x) => Number.isFinite(x));
          return p99s.length ? Math.max(...p99s) / 1000 : NaN;
        },
        digits: 0,
      },
    ],
    sep: ["; ", "; "],
  },
};

function vmNamed(r: ScenarioResult, name: string) {
  const v = r.vms.find((x) => x.name === name);
  if (!v) throw new Error(`${r.scenario}: no VM named ${name}`);
  return v;
}

/** How far the worst 1 s window of any VM is from its weight, as a share of the VMs' CPU (pp). */
export function worstWindowPp(r: ScenarioResult): number {
  const weights = r.vms.reduce((s, v) => s + v.weight, 0);
  return 100 * Math.max(...r.vms.map((v) => {
    const want = v.weight / weights;
    return Math.max(Math.abs(v.vmShareMin - want), Math.abs(v.vmShareMax - want));
  }));
}

/** The median of `xs` (the mean of the middle two for an even count); NaN for none. */
export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** `median (min-max)` of `xs`, or just the value when every run gave the same; `-` for none. */
export function spread(xs: number[], digits: number): string {
  const s = xs.filter((x) => Number.isFinite(x));
  if (s.length === 0) return "-";
  const f = (x: number) => x.toFixed(digits);
  const lo = f(Math.min(...s)), hi = f(Math.max(...s));
  return lo === hi ? f(median(s)) : `${f(median(s))} (${lo}-${hi})`;
}

/** One table cell: every figure of `runs` (the runs of one scenario under one policy). */
export function cellOf(scenario: string, runs: ScenarioResult[]): string {
  if (runs.length === 0) return "-";
  const m = METRIC[scenario];
  const parts = m.figures.map((f) => spread(runs.map(f.value), f.digits));
  let text = parts[0];
  for (let i = 1; i < parts.length; i++) text += (m.sep?.[i - 1] ?? "; ") + parts[i];
  const ejected = runs.filter((r) => r.ejections.length > 0).length;
  return text + (ejected ? ` (ejected in ${ejected} of ${runs.length})` : "");
}

/** rt: per policy, the runs with a miss and the misses per 10,000 jobs over all its runs. */
export function rtMisses(results: ScenarioResult[]): string {
  const parts = POLICIES.map((p) => {
    const runs = results.filter((r) => r.scenario === "rt" && r.policy === p);
    if (runs.length === 0) return null;
    const misses = runs.map((r) => r.vms.reduce((s, v) => s + v.misses, 0));
    const jobs = runs.reduce((s, r) => s + r.vms.reduce((a, v) => a + v.jobs, 0), 0);
    const per = jobs ? (misses.reduce((a, b) => a + b, 0) / jobs) * 1e4 : 0;
    return `${p} ${misses.filter((m) => m > 0).length} of ${runs.length} runs, ${
      per.toFixed(per < 10 ? 1 : 0)
    } per 10,000 jobs`;
  }).filter((x) => x !== null);
  if (parts.length === 0) return "";
  return `rt, runs with a deadline miss and misses per 10,000 jobs: ${parts.join("; ")}.`;
}

/** The host's noise (`host_gaps`) as a sentence: CPU lost for over 1 ms, per probe run. */
export function noiseText(noise: HostNoise[]): string {
  if (noise.length === 0) return "";
  const runs = noise.map((n) => {
    const { over1ms, longestMs } = noiseGaps(n);
    return `${over1ms} (longest ${longestMs.toFixed(1)} ms) at ${n.at.slice(11, 16)} UTC`;
  });
  return `The host's own noise in the same hours (\`bench/baseline/host_gaps\`, ${
    noise[0].seconds
  } s, no VMM running): a CPU gone for over 1 ms ${runs.join(", ")}.`;
}

/** The README table of `stored`: a cell per scenario and policy, the median of its runs. */
export function resultsTable(stored: StoredResults): string {
  const lines = [
    `| scenario | metric | ${POLICIES.join(" | ")} |`,
    `| --- | --- | ${POLICIES.map(() => "---").join(" | ")} |`,
  ];
  for (const name of ORDER) {
    const cells = POLICIES.map((p) =>
      cellOf(name, stored.results.filter((x) => x.scenario === name && x.policy === p))
    );
    lines.push(`| ${name} | ${METRIC[name].label} | ${cells.join(" | ")} |`);
  }
  const runs = new Set(
    ORDER.flatMap((n) =>
      POLICIES.map((p) => stored.results.filter((x) => x.scenario === n && x.policy === p).length)
    ).filter((n) => n > 0),
  );
  return [
    lines.join("\n"),
    "",
    `Each cell: the median of ${[...runs].sort((a, b) => a - b).join(" or ")} run${
      runs.size === 1 && runs.has(1) ? "" : "s"
    }, ` +
    `(min-max) when they differ. ${stored.measured}; \`host\` is the same VMs with no slots ` +
    `(Linux schedules the vCPU threads, confined to as many CPUs as the scenario has slots, ` +
    `weights as nice levels). ${rtMisses(stored.results)} ${noiseText(stored.hostNoise)}`,
  ].join("\n");
}

/** `bench/results/scenarios.json`: every run, and how they were measured. */
export interface StoredResults {
  /** "Measured with `COMMAND` on DATE", and any scenario rerun alone since. */
  measured: string;
  /** The host's noise probe, before and after the runs. */
  hostNoise: HostNoise[];
  /** Every run: `--runs` per scenario and policy. */
  results: ScenarioResult[];
}

/**
 * `before` with the runs of `fresh` in place of the stored runs of the same scenario and policy
 * (a rerun of one scenario or policy keeps the other cells).
 */
export function mergeRuns(before: ScenarioResult[], fresh: ScenarioResult[]): ScenarioResult[] {
  const key = (r: ScenarioResult) => `${r.scenario}\0${r.policy}`;
  const redone = new Set(fresh.map(key));
  return [...before.filter((r) => !redone.has(key(r))), ...fresh];
}

const RESULTS = new URL("bench/results/scenarios.json", ROOT);

async function readStored(): Promise<StoredResults | null> {
  try {
    const s = JSON.parse(await Deno.readTextFile(RESULTS));
    return Array.isArray(s?.results) ? { hostNoise: [], ...s } : null; // older files: a bare array
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Rewrites the README's table between its markers (and `deno fmt`s the README). */
async function writeReadme(table: string): Promise<void> {
  const readme = new URL("README.md", ROOT);
  const text = await Deno.readTextFile(readme);
  const begin = "<!-- scenarios:begin -->", end = "<!-- scenarios:end -->";
  const i = text.indexOf(begin), j = text.indexOf(end);
  if (i < 0 || j < i) return;
  await Deno.writeTextFile(
    readme,
    text.slice(0, i + begin.length) + "\n" + table + "\n" + text.slice(j),
  );
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", readme.pathname] }).output();
  console.log("README.md: Results table updated");
}

function usage(message: string): never {
  console.error(`bench:scenarios: ${message}`);
  Deno.exit(2);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string" },
      runs: { type: "string" },
      only: { type: "string" },
      policy: { type: "string" },
      table: { type: "boolean" },
    },
  });
  if (values.table) {
    // No runs: the README's table from the stored results (after editing a metric, say).
    const stored = await readStored();
    if (!stored) usage(`--table: no results in ${RESULTS.pathname}`);
    const table = resultsTable(stored);
    console.log(table);
    await writeReadme(table);
    Deno.exit(0);
  }
  if (values.only && !ORDER.includes(values.only)) {
    usage(`--only: unknown scenario '${values.only}' (${ORDER.join(", ")})`);
  }
  if (values.policy && !POLICIES.includes(values.policy)) {
    usage(`--policy: unknown policy '${values.policy}' (${POLICIES.join(", ")})`);
  }
  const runs = values.runs === undefined ? 3 : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) usage(`--runs must be a positive integer`);
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  if (seconds !== undefined && !(seconds > 0)) usage(`--seconds must be a positive number`);
  const policies = POLICIES.filter((p) => !values.policy || p === values.policy);
  const hostNoise = [await probeHostNoise()];
  const results: ScenarioResult[] = [];
  for (const name of ORDER) {
    if (values.only && values.only !== name) continue;
    const scenario = await loadScenario(new URL(`bench/scenarios/${name}.json`, ROOT).pathname);
    for (let run = 1; run <= runs; run++) {
      for (const p of policies) {
        const policy = p === "host" ? "host" : new URL(`plugins/${p}.ts`, ROOT).href;
        const r = await runScenarioKvm(scenario, { policy, seconds });
        console.log(`run ${run} of ${runs}: ` + formatResult(r) + "\n");
        results.push(r);
      }
    }
  }
  hostNoise.push(await probeHostNoise());
  const date = new Date().toISOString().slice(0, 10);
  const flags = [
    values.seconds ? ` --seconds ${values.seconds}` : "",
    values.runs ? ` --runs ${values.runs}` : "",
    values.only ? ` --only ${values.only}` : "",
    values.policy ? ` --policy ${values.policy}` : "",
  ].join("");
  const command = `\`deno task bench:scenarios${flags}\` on ${date}`;
  const before = values.only || values.policy ? await readStored() : null;
  // A partial rerun: the other cells stay as they were measured, and the note says so.
  const stored: StoredResults = before
    ? {
      measured: `${before.measured}; then ${command}`,
      hostNoise: [...before.hostNoise, ...hostNoise],
      results: mergeRuns(before.results, results),
    }
    : { measured: `Measured with ${command}`, hostNoise, results };
  await Deno.mkdir(new URL("bench/results/", ROOT), { recursive: true });
  await Deno.writeTextFile(RESULTS, JSON.stringify(stored, null, 2) + "\n");
  const table = resultsTable(stored);
  console.log(table);
  await writeReadme(table);
}
