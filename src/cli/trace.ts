/**
 * `deno run -A mod.ts trace <timeline|dump|summary|misses|replay> FILE`: pictures and reports of a trace file
 * written by `run --trace FILE` (Perfetto JSON with deno-vmm's records; see `src/trace/write.ts`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dumpLines } from "../trace/dump.ts";
import { analyzeTrace, renderSummary, summarizeTrace } from "../trace/summary.ts";
import { formatLateJobs, lateJobs, scenarioPeriods } from "../trace/misses.ts";
import { loadScenario } from "../scenario/scenario.ts";
import { timelineSvg } from "../trace/timeline_svg.ts";
import { readPerfettoFile, readTraceFile } from "../trace/write.ts";
import { EXIT_USAGE, UsageError } from "./usage.ts";
import { replayCommand } from "./trace_replay.ts";

/** Help text of `trace`. */
export const TRACE_HELP = `Usage: deno run -A mod.ts trace <command> FILE [options]

Read a trace file written by 'run --trace FILE' (Perfetto JSON: it also opens at
https://ui.perfetto.dev and in chrome://tracing).

Commands:
  timeline FILE --svg OUT   draw slots by time (and each vCPU) as an SVG picture
  dump FILE                 one line per event, with a column per slot (xenalyze style)
  summary FILE              per vCPU and per slot totals, latencies, decisions, ejections
  misses FILE               the late jobs of periodic vCPUs, and what made each late
  replay FILE --sched P     what policy P would have done with the recorded run (simulated)

Each command takes --help.
`;

/** Help text of `trace timeline`. */
export const TIMELINE_HELP = `Usage: deno run -A mod.ts trace timeline FILE [options]

Draw a trace as an SVG picture: one row per slot with each grant a box in its VM's colour,
then one row per vCPU (running solid, runnable pale, halted a thin line, wakes as ticks).

Options:
  --svg OUT          where to write the picture (default: FILE with .svg for .json)
  --from MS          start of the window, ms from the trace's start (default 0)
  --to MS            end of the window, ms (default: the end of the trace)
  --width PX         picture width (default 1200)
  --no-vcpus         slots only, no vCPU rows
  --title TEXT       title (default: policy, slots and window)
  -h, --help         this text

Example:
  deno run -A mod.ts trace timeline out.json --svg timeline.svg --from 100 --to 200
`;

/** Help text of `trace dump`. */
export const DUMP_HELP = `Usage: deno run -A mod.ts trace dump FILE [options]

Print every record in time order: time (ms from the trace's start), which vCPU holds each
slot after the record, the event, its vCPU (vm/index), its slot and details.

Options:
  --from MS          first time shown (ms)
  --to MS            last time shown (ms)
  --no-decisions     leave out the policy's decision records
  -h, --help         this text
`;

/** Help text of `trace summary`. */
export const SUMMARY_HELP = `Usage: deno run -A mod.ts trace summary FILE [options]

Print per vCPU running / runnable / halted time, grants, preemptions and wake-to-grant
latency (p50, p99); per slot busy and idle time; decisions and their latency; ejections.

Options:
  --json             print the summary as JSON instead
  -h, --help         this text
`;

function number(flag: string, v: string | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < min) {
    throw new UsageError(`${flag} must be a number >= ${min}, got '${v}'`);
  }
  return n;
}

function oneFile(positionals: string[], command: string): string {
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? `trace ${command}: give the trace FILE (written by 'run --trace FILE')`
        : `trace ${command}: give exactly one FILE, got ${positionals.join(" ")}`,
    );
  }
  return positionals[0];
}

function window(values: { from?: string; to?: string }): { fromMs?: number; toMs?: number } {
  const fromMs = number("--from", values.from);
  const toMs = number("--to", values.to);
  if (fromMs !== undefined && toMs !== undefined && !(toMs > fromMs)) {
    throw new UsageError(`--to (${toMs}) must be after --from (${fromMs})`);
  }
  return { fromMs, toMs };
}

async function timeline(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      svg: { type: "string" },
      from: { type: "string" },
      to: { type: "string" },
      width: { type: "string" },
      "no-vcpus": { type: "boolean" },
      title: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    console.log(TIMELINE_HELP);
    return 0;
  }
  const file = oneFile(positionals, "timeline");
  const width = number("--width", values.width, 200);
  const out = values.svg ?? file.replace(/\.json$/i, "") + ".svg";
  const json = await readPerfettoFile(file);
  let svg: string;
  try {
    svg = timelineSvg(json, {
      ...window(values),
      width,
      vcpuRows: !values["no-vcpus"],
      title: values.title,
    });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  await Deno.writeTextFile(out, svg);
  console.error(`wrote ${out} (${svg.length} bytes)`);
  return 0;
}

async function dump(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      from: { type: "string" },
      to: { type: "string" },
      "no-decisions": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    console.log(DUMP_HELP);
    return 0;
  }
  const file = oneFile(positionals, "dump");
  const w = window(values);
  const data = await readTraceFile(file);
  const enc = new TextEncoder();
  let chunk: string[] = [];
  const flush = async () => {
    const bytes = enc.encode(chunk.join("\n") + "\n");
    chunk = [];
    let off = 0;
    while (off < bytes.length) off += await Deno.stdout.write(bytes.subarray(off));
  };
  try {
    for (const line of dumpLines(data, { ...w, noDecisions: values["no-decisions"] })) {
      chunk.push(line);
      if (chunk.length >= 2000) await flush();
    }
    if (chunk.length) await flush();
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe) return 0; // `| head`
    throw e;
  }
  return 0;
}

async function summary(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    console.log(SUMMARY_HELP);
    return 0;
  }
  const file = oneFile(positionals, "summary");
  const s = summarizeTrace(await readTraceFile(file));
  console.log(values.json ? JSON.stringify(s, null, 2) : renderSummary(s).trimEnd());
  return 0;
}

/** Help text of `trace misses`. */
export const MISSES_HELP = `Usage: deno run -A mod.ts trace misses FILE [options]

The late jobs of periodic vCPUs: each busy stretch (a wake to the next halt) longer than its
VM's period, with how long it waited for a slot (and who held the slots), how much of its slot
time other host threads took (steal), how much it held outside guest mode (its EMT waking up,
exits, V8's work on that thread: the VMM), and its guest time. The verdict names the largest:
'scheduler' (waiting), 'host' (steal), 'vmm', or 'work' when all three are small (the guest had
more work than its period); waiting is 'budget' when most of it came after the vCPU's reservation
was used up (rtds's depleted / extratime events, until its replenish), and 'edf' when the trace
has deadlines (rtds's replenish events) and every vCPU that held a slot meanwhile came first in
global EDF's order (the slots were too few for the load, not out of order).

Options:
  --period VM=MS     the period of VM's jobs (repeatable)
  --scenario FILE    take the periods of the scenario's periodic VMs
  --json             print the late jobs as JSON
  -h, --help         this text
`;

async function misses(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      period: { type: "string", multiple: true },
      scenario: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    console.log(MISSES_HELP);
    return 0;
  }
  const file = oneFile(positionals, "misses");
  const periods = values.scenario
    ? scenarioPeriods(await loadScenario(values.scenario))
    : new Map<string, number>();
  for (const p of values.period ?? []) {
    const m = p.match(/^([^=]+)=(\d+(?:\.\d+)?)$/);
    if (!m || !(Number(m[2]) > 0)) {
      throw new UsageError(`--period must be VM=MS with MS > 0, got '${p}'`);
    }
    periods.set(m[1], Number(m[2]) * 1e6);
  }
  if (periods.size === 0) throw new UsageError("give --period VM=MS or --scenario FILE");
  const jobs = lateJobs(analyzeTrace(await readTraceFile(file)), periods);
  console.log(values.json ? JSON.stringify(jobs, null, 2) : formatLateJobs(jobs));
  return 0;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  timeline,
  dump,
  summary,
  misses,
  replay: replayCommand,
};

/** Runs `trace <timeline|dump|summary|misses|replay> ...`; returns the exit status. */
export async function traceCommand(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === undefined || command === "-h" || command === "--help" || command === "help") {
    console.log(TRACE_HELP);
    return command === undefined ? EXIT_USAGE : 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    throw new UsageError(
      `unknown trace command '${command}' (timeline, dump, summary, misses or replay)`,
    );
  }
  return await run(rest);
}
