/**
 * `deno run -A mod.ts compare --sched my.ts`: runs the given plugins beside the built-in
 * policies on the standard scenarios (the simulator, several seeds; `--kvm` for real VMs),
 * prints the Markdown summary and writes it with the HTML report.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { compareReport } from "../compare/report.ts";
import { BUILTIN_POLICIES, compare, DEFAULT_SEEDS, STANDARD_SCENARIOS } from "../compare/run.ts";
import { UsageError } from "./usage.ts";

/** Help text of `compare`. */
export const COMPARE_HELP =
  `Usage: deno run -A mod.ts compare --sched PLUGIN [--sched PLUGIN ...] [options]

Run your plugins and the built-in policies (${BUILTIN_POLICIES.join(", ")}) on the standard
scenarios and say which met each scenario's goal: a Markdown summary (printed, and written to
--md) and a self-contained HTML report with charts (--html): each VM's share over time against
its target, wake-latency CDFs, slot use, deadline misses, and the spread across seeds or runs.
Each plugin runs sandboxed, as in the VMM.

Options:
  --sched PLUGIN      a plugin to compare (path or URL; repeatable, at least one)
  --scenario S        a standard scenario by name or a scenario file (repeatable; default all:
                      ${STANDARD_SCENARIOS.join(", ")})
  --kvm               run real VMs on KVM instead of the simulator
  --seeds N           seeds in the simulator, or runs on KVM, per plugin and scenario
                      (default ${DEFAULT_SEEDS})
  --seconds S         run each scenario S seconds instead of its own duration
  --builtins LIST     built-ins to run beside them, comma-separated, or none (default all)
  --html FILE         where to write the report (default compare.html)
  --md FILE           where to write the summary (default compare.md)
  -h, --help          this text

A scenario's goal follows from its VMs (weights, caps, deadlines, echo latency and rate,
lock throughput); a scenario file's "goal" object sets its limits.

Example:
  deno run -A mod.ts compare --sched my_policy.ts --scenario weights --scenario rt --seeds 5
`;

function positiveInt(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isInteger(x) || x < 1) {
    throw new UsageError(`${flag} must be an integer >= 1, got '${v}'`);
  }
  return x;
}

/** Runs the `compare` command. */
export async function compareCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      sched: { type: "string", multiple: true },
      scenario: { type: "string", multiple: true },
      kvm: { type: "boolean" },
      seeds: { type: "string" },
      seconds: { type: "string" },
      builtins: { type: "string" },
      html: { type: "string" },
      md: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    console.log(COMPARE_HELP);
    return 0;
  }
  if (positionals.length) {
    throw new UsageError(`unexpected argument '${positionals[0]}' (plugins go after --sched)`);
  }
  if (!values.sched?.length) throw new UsageError("give a plugin to compare: --sched PLUGIN");
  const seeds = positiveInt("--seeds", values.seeds);
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  if (seconds !== undefined && !(seconds > 0)) {
    throw new UsageError(`--seconds must be a positive number, got '${values.seconds}'`);
  }
  const builtins = values.builtins === undefined
    ? undefined
    : values.builtins === "none"
    ? []
    : values.builtins.split(",").map((s) => s.trim()).filter((s) => s);
  for (const b of builtins ?? []) {
    if (!BUILTIN_POLICIES.includes(b)) {
      throw new UsageError(
        `--builtins: no built-in policy '${b}' (known: ${BUILTIN_POLICIES.join(", ")}, or none)`,
      );
    }
  }
  const unit = values.kvm ? "run" : "seed";
  const data = await compare({
    plugins: values.sched,
    scenarios: values.scenario,
    builtins,
    kvm: values.kvm,
    seeds,
    seconds,
    onRun: (r, done, total) =>
      console.error(`[${done}/${total}] ${r.scenario} ${r.plugin} ${unit} ${r.run}`),
  });
  const report = compareReport(data);
  const htmlPath = values.html ?? "compare.html", mdPath = values.md ?? "compare.md";
  await Deno.writeTextFile(htmlPath, report.html);
  await Deno.writeTextFile(mdPath, report.markdown);
  console.log(report.markdown);
  console.log(`report: ${htmlPath}\nsummary: ${mdPath}`);
  return 0;
}
