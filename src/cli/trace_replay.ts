/**
 * `deno run -A mod.ts trace replay FILE --sched PLUGIN`: what another policy would have done with
 * a recorded run (`src/trace/replay.ts`), printed beside the recording.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { PluginLoadError } from "../sched/load.ts";
import type { SchedParams } from "../sched/contract.ts";
import { loadScenario } from "../scenario/scenario.ts";
import { renderReplay, replayTrace } from "../trace/replay.ts";
import { readTraceFile, writeTraceFile } from "../trace/write.ts";
import { renderSummary } from "../trace/summary.ts";
import type { TraceData } from "../trace/events.ts";
import { UsageError } from "./usage.ts";
import { parseSchedParams } from "./vm_spec.ts";
import { count } from "./sched_flags.ts";

/** Help text of `trace replay`. */
export const REPLAY_HELP = `Usage: deno run -A mod.ts trace replay FILE --sched PLUGIN [options]

Replay a recorded run under another policy in the simulator: each vCPU's bursts of guest time,
its halts and its wakes (timer, IPI, device) are read from the trace and replayed on the same
slots for the same time, with the hand-off, poke and EMT-to-core costs measured in the trace.
Prints the replay beside the recording: per VM share and wake latency, per vCPU the columns of
'trace summary'. What a trace cannot say and how it is modelled: docs/replay.md.

Options:
  --sched PLUGIN       the policy to replay under (path or URL); required
  --sched-param K=V    a plugin parameter (repeatable; default: the recording's)
  --scenario FILE      take the VMs' parameters (weights, caps, budgets), the plugin's and the
                       rate limit from the scenario the trace was recorded with (for traces
                       that do not carry them)
  --vm-param VM:K=V    a VM's scheduling parameter, e.g. --vm-param heavy:weight=512 (repeatable)
  --ratelimit-us US    context-switch rate limit (default: the trace's, else 1000)
  --timers MODE        absolute (default): timer wakes at their recorded time; relative: the
                       recorded sleep after the previous burst ends
  --devices MODE       gap (default): a device wake at its recorded time, or the recorded
                       gap after the previous burst's end when the replay ends it earlier;
                       absolute: at the recorded time; relative: always the recorded gap
  --out FILE           also write the replay's trace (read it with trace summary, timeline)
  --full               also print both complete 'trace summary' reports
  --json               print the comparison as JSON
  --no-sandbox         run the plugin in-process (faster; no permission sandbox)
  -h, --help           this text

Example:
  deno run -A mod.ts scenario bench/scenarios/weights.json --sched plugins/rr.ts --trace out.json
  deno run -A mod.ts trace replay out.json --sched plugins/credit2.ts
`;

function mode<T extends string>(flag: string, v: string | undefined, ok: T[]): T | undefined {
  if (v === undefined || (ok as string[]).includes(v)) return v as T | undefined;
  throw new UsageError(`${flag} must be ${ok.join(" or ")}, got '${v}'`);
}

/** Parses `--vm-param VM:K=V` flags. */
function vmParams(values: string[]): Record<string, SchedParams> {
  const out: Record<string, SchedParams> = {};
  for (const v of values) {
    const m = v.match(/^([^:]+):(.+=.*)$/);
    if (!m) throw new UsageError(`--vm-param must be VM:KEY=VALUE, got '${v}'`);
    out[m[1]] = { ...out[m[1]], ...parseSchedParams([m[2]]) };
  }
  return out;
}

async function readTrace(file: string): Promise<TraceData> {
  try {
    return await readTraceFile(file);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Runs `trace replay`; returns the exit status. */
export async function replayCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      sched: { type: "string" },
      "sched-param": { type: "string", multiple: true },
      scenario: { type: "string" },
      "vm-param": { type: "string", multiple: true },
      "ratelimit-us": { type: "string" },
      timers: { type: "string" },
      devices: { type: "string" },
      out: { type: "string" },
      full: { type: "boolean" },
      json: { type: "boolean" },
      "no-sandbox": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    console.log(REPLAY_HELP);
    return 0;
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? "trace replay: give the trace FILE (written by 'run --trace' or 'scenario --trace')"
        : `trace replay: give exactly one FILE, got ${positionals.join(" ")}`,
    );
  }
  if (values.sched === undefined) throw new UsageError("trace replay: --sched PLUGIN is required");
  const timers = mode("--timers", values.timers, ["absolute", "relative"]);
  const devices = mode("--devices", values.devices, ["gap", "absolute", "relative"]);
  const ratelimitUs = count("--ratelimit-us", values["ratelimit-us"], 0);
  const trace = await readTrace(positionals[0]);
  let params: SchedParams | undefined;
  let perVm: Record<string, SchedParams> = {};
  let ratelimitNs = ratelimitUs === undefined ? undefined : ratelimitUs * 1000;
  if (values.scenario !== undefined) {
    const s = await loadScenario(values.scenario);
    params = { ...s.params };
    for (const vm of s.vms) perVm[vm.name] = { ...vm.sched };
    ratelimitNs ??= s.ratelimitUs * 1000;
    const names = new Set(trace.vcpus.map((v) => v.vm));
    perVm = Object.fromEntries(Object.entries(perVm).filter(([k]) => names.has(k)));
  }
  if (values["sched-param"]?.length) {
    params = { ...params, ...parseSchedParams(values["sched-param"]) };
  }
  for (const [vm, p] of Object.entries(vmParams(values["vm-param"] ?? []))) {
    perVm[vm] = { ...perVm[vm], ...p };
  }
  let r;
  try {
    r = await replayTrace({
      trace,
      plugin: values.sched,
      params,
      vmParams: perVm,
      ratelimitNs,
      timers,
      devices,
      sandbox: !values["no-sandbox"],
    });
  } catch (e) {
    if (e instanceof PluginLoadError || e instanceof RangeError) {
      throw new UsageError(`${positionals[0]}: ${(e as Error).message}`);
    }
    throw e;
  }
  if (values.out !== undefined) {
    await writeTraceFile(values.out, r.replayTrace);
    console.error(`replay's trace written to ${values.out}`);
  }
  if (values.json) {
    const { demand: _d, replayTrace: _t, ...rest } = r;
    console.log(JSON.stringify({ ...rest, notes: r.demand.notes }, null, 2));
    return 0;
  }
  console.log(renderReplay(r).trimEnd());
  if (values.full) {
    console.log(`\nrecorded (trace summary):\n${renderSummary(r.original).trimEnd()}`);
    console.log(`\nreplayed (trace summary):\n${renderSummary(r.replay).trimEnd()}`);
  }
  return 0;
}
