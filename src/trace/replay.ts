/**
 * "What would policy X have done with this run?": {@linkcode replayTrace} turns a recorded run's
 * per-vCPU demand ({@linkcode traceDemand}) into a simulator workload, replays it under a plugin
 * on the recorded number of slots, for the recorded time, with the host's costs measured in the
 * same trace (hand-off per grant, poke, the EMT-to-core hop), and summarizes the replay's trace as
 * `trace summary` does the recording's. {@linkcode renderReplay} prints the two side by side.
 *
 * What a trace cannot say and how it is modelled is in `src/trace/demand.ts` and
 * `docs/replay.md`. The replay is deterministic: it draws no random numbers.
 *
 * @module
 */
import type { SchedParams, SchedulerPlugin } from "../sched/contract.ts";
import { simulate } from "../sim/mod.ts";
import type { CostSeries, SimVmSpec } from "../sim/types.ts";
import type { TraceData } from "./events.ts";
import { type TraceDemand, traceDemand } from "./demand.ts";
import {
  analyzeTrace,
  percentile,
  summarizeTrace,
  table,
  type TraceAnalysis,
  type TraceSummary,
} from "./summary.ts";

/** Options of {@linkcode replayTrace}. */
export interface ReplayOptions {
  /** The recorded trace (`readTraceFile`). */
  trace: TraceData;
  /** The policy to replay it under: a plugin path or URL, or a plugin object. */
  plugin: string | URL | SchedulerPlugin;
  /** Plugin parameters (default: those the trace recorded for its policy, else none). */
  params?: SchedParams;
  /**
   * Per VM, scheduling parameters over those the trace recorded (a trace written before they
   * were recorded has none: weights, caps and budgets must come from here).
   */
  vmParams?: Record<string, SchedParams>;
  /** Context-switch rate limit (ns); default the trace's, else 1 ms. */
  ratelimitNs?: number;
  /** Timer wakes at their recorded time (`absolute`, default) or after the recorded sleep. */
  timers?: "absolute" | "relative";
  /** Device wakes: `gap` (default), `absolute` or `relative` (`ReplayWorkload.devices`). */
  devices?: "gap" | "absolute" | "relative";
  /**
   * Host costs (ns) over those measured in the trace: a constant, or samples to draw from. By
   * default each grant, preemption and report takes the trace's own sample for its time.
   */
  costs?: {
    /** Grant → guest mode. */
    handoffNs?: number | number[] | CostSeries;
    /** Preempt → out of guest mode. */
    pokeNs?: number | number[] | CostSeries;
    /** EMT report of leaving guest mode → core. */
    reportDelayNs?: number | number[] | CostSeries;
    /** EMT wake → core. */
    wakeDelayNs?: number | number[] | CostSeries;
    /** Share of guest-mode time stolen (0..0.95). */
    stealShare?: number | number[] | CostSeries;
  };
  /** Run a path/URL plugin in the sandbox (default true), as `simulate` does. */
  sandbox?: boolean;
  /** Hosts a remote plugin may be imported from. */
  allowImport?: string[];
}

/** One VM, recorded and replayed. */
export interface ReplayVmComparison {
  /** VM name. */
  name: string;
  /** Recorded share of the slots: its vCPUs' slot time / (slots × traced time). */
  share: number;
  /** Replayed share. */
  replayShare: number;
  /** Recorded guest time / (slots × traced time). */
  guestShare: number;
  /** Replayed guest share. */
  replayGuestShare: number;
  /** Recorded wakes (halted → runnable). */
  wakes: number;
  /** Replayed wakes. */
  replayWakes: number;
  /** Recorded wake → grant p50 (ns; NaN without wakes). */
  wakeP50Ns: number;
  /** Replayed wake → grant p50. */
  replayWakeP50Ns: number;
  /** Recorded p99. */
  wakeP99Ns: number;
  /** Replayed p99. */
  replayWakeP99Ns: number;
}

/** What {@linkcode replayTrace} returns. */
export interface ReplayResult {
  /** The recording's policy. */
  recordedPolicy: string;
  /** The policy it was replayed under. */
  policy: string;
  /** The demand read from the trace (bursts, costs, what was guessed). */
  demand: TraceDemand;
  /** The host costs the replay charged: each one's mean (ns). */
  costs: {
    handoffNs: number;
    pokeNs: number;
    reportDelayNs: number;
    wakeDelayNs: number;
    /** Mean share of guest-mode time stolen. */
    stealShare: number;
  };
  /** The recording's summary (`trace summary`). */
  original: TraceSummary;
  /** The replay's summary, from the simulator's trace of it. */
  replay: TraceSummary;
  /** The replay's trace (times from 0; write it with `writeTraceFile`). */
  replayTrace: TraceData;
  /** Per VM, side by side. */
  vms: ReplayVmComparison[];
  /** Plugin ejections during the replay (`reason: detail`). */
  ejections: string[];
}

const mean = (c: number | readonly number[] | CostSeries) => {
  const xs = typeof c === "number" ? [c] : Array.isArray(c) ? c : (c as CostSeries).ns;
  return xs.length ? xs.reduce((a, x) => a + x, 0) / xs.length : 0;
};

/** Per VM: slot and guest time, and wake latencies, from an analysis. */
function vmTotals(a: TraceAnalysis, name: string) {
  let held = 0, guest = 0;
  const lat: number[] = [];
  for (const tl of a.vcpus.values()) {
    if (tl.vcpu.vm !== name) continue;
    for (const s of tl.spans) if (s.state === "running") held += s.end - s.start;
    guest += tl.guestNs;
    lat.push(...tl.wakeLatencies);
  }
  const whole = Math.max(1, a.slots * (a.end - a.start));
  return {
    share: held / whole,
    guestShare: guest / whole,
    wakes: lat.length,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
  };
}

/**
 * Replays a recorded run's demand under `options.plugin` in the simulator and summarizes both.
 * Rejects with a `PluginLoadError` for a plugin that cannot be loaded, and with a RangeError for
 * a trace with no vCPU demand in it.
 */
export async function replayTrace(options: ReplayOptions): Promise<ReplayResult> {
  const data = options.trace;
  const oa = analyzeTrace(data);
  const demand = traceDemand(data, oa);
  if (demand.vms.length === 0 || !(demand.durationNs > 0)) {
    throw new RangeError("the trace has no vCPU activity to replay");
  }
  const costs = { ...demand.costs, ...options.costs };
  const vms: SimVmSpec[] = demand.vms.map((vm) => ({
    name: vm.name,
    vcpus: vm.vcpus.length,
    params: { ...vm.params, ...options.vmParams?.[vm.name] },
    workload: {
      kind: "replay",
      vcpus: vm.vcpus,
      timers: options.timers ?? "absolute",
      devices: options.devices ?? "gap",
    },
  }));
  for (const name of Object.keys(options.vmParams ?? {})) {
    if (!vms.some((v) => v.name === name)) {
      throw new RangeError(
        `no VM ${name} in the trace (VMs: ${vms.map((v) => v.name).join(", ")})`,
      );
    }
  }
  const r = await simulate({
    plugin: options.plugin,
    params: options.params ?? data.policyParams ?? {},
    slots: data.slots,
    seconds: demand.durationNs / 1e9,
    ratelimitNs: options.ratelimitNs ?? data.ratelimitNs ?? 1_000_000,
    handoffNs: costs.handoffNs,
    pokeNs: costs.pokeNs,
    reportDelayNs: costs.reportDelayNs,
    wakeDelayNs: costs.wakeDelayNs,
    stealShare: costs.stealShare,
    sandbox: options.sandbox,
    allowImport: options.allowImport,
    vms,
    // Another policy may decide far more often than the recorded one (short slices): room for
    // 16 times the recorded records, at least 2^18 (8 MB), at most 2^22 (128 MB).
    traceRecords: Math.min(1 << 22, Math.max(1 << 18, (data.records.byteLength / 32) * 16)),
  });
  const replayTrace = r.trace!;
  const ra = analyzeTrace(replayTrace);
  return {
    recordedPolicy: data.policy,
    policy: r.plugin,
    demand,
    costs: {
      handoffNs: mean(costs.handoffNs),
      pokeNs: mean(costs.pokeNs),
      reportDelayNs: mean(costs.reportDelayNs),
      wakeDelayNs: mean(costs.wakeDelayNs),
      stealShare: mean(costs.stealShare),
    },
    original: summarizeTrace(oa),
    replay: summarizeTrace(ra),
    replayTrace,
    vms: demand.vms.map((vm) => {
      const o = vmTotals(oa, vm.name), p = vmTotals(ra, vm.name);
      return {
        name: vm.name,
        share: o.share,
        replayShare: p.share,
        guestShare: o.guestShare,
        replayGuestShare: p.guestShare,
        wakes: o.wakes,
        replayWakes: p.wakes,
        wakeP50Ns: o.p50,
        replayWakeP50Ns: p.p50,
        wakeP99Ns: o.p99,
        replayWakeP99Ns: p.p99,
      };
    }),
    ejections: r.ejections.map((e) => `${e.reason}: ${e.detail}`),
  };
}

const pct = (x: number) => (x * 100).toFixed(1);
const us = (ns: number) => (Number.isFinite(ns) ? (ns / 1e3).toFixed(1) : "-");
const ms = (ns: number) => (ns / 1e6).toFixed(1);
const frac = (part: number, whole: number) =>
  whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "-";

/**
 * The replay beside the recording: per VM share, guest share and wake latency; per vCPU the
 * columns of `trace summary` (running, runnable, halted, grants, preemptions, wakes, wake → grant
 * p50 and p99), recorded then replayed; per slot busy time; what the demand model had to guess.
 */
export function renderReplay(r: ReplayResult): string {
  const o = r.original, p = r.replay, d = r.demand;
  const out: string[] = [];
  out.push(
    `recorded under ${r.recordedPolicy}, replayed under ${r.policy}: ${o.slots} slot${
      o.slots === 1 ? "" : "s"
    }, ${ms(o.durationNs)} ms`,
  );
  out.push(
    `host costs (means; each grant, poke and report is charged the trace's sample for its time): hand-off ${
      us(r.costs.handoffNs)
    } µs, steal ${pct(r.costs.stealShare)} %, poke ${us(r.costs.pokeNs)} µs, EMT→core ${
      us(r.costs.reportDelayNs)
    } µs, wake→core ${us(r.costs.wakeDelayNs)} µs`,
  );
  const wakes = Object.entries(d.notes.wakes).map(([k, n]) => `${k} ${n}`).join(", ");
  out.push(
    `demand: bursts by wake: ${wakes || "none"}; ${d.notes.openBursts} open at the end ` +
      `(a hog's open-ended)` +
      (d.notes.wakes.ipi ? `; IPIs tied to a sender: ${d.notes.ipisWithSender}` : "") +
      (d.notes.droppedRecords ? `; ${d.notes.droppedRecords} records dropped (ring full)` : "") +
      (d.notes.hasParams ? "" : "; the trace has no VM parameters (give --scenario or --vm-param)"),
  );
  out.push("");
  out.push("per VM (share: slot time / (slots × traced time); recorded → replayed):");
  const vrows = [[
    "vm",
    "share %",
    "replay %",
    "Δ pp",
    "guest %",
    "replay %",
    "wakes",
    "replay",
    "wake p50 µs",
    "replay",
    "p99 µs",
    "replay",
  ]];
  for (const v of r.vms) {
    vrows.push([
      v.name,
      pct(v.share),
      pct(v.replayShare),
      ((v.replayShare - v.share) * 100).toFixed(1),
      pct(v.guestShare),
      pct(v.replayGuestShare),
      String(v.wakes),
      String(v.replayWakes),
      us(v.wakeP50Ns),
      us(v.replayWakeP50Ns),
      us(v.wakeP99Ns),
      us(v.replayWakeP99Ns),
    ]);
  }
  out.push(table(vrows));
  out.push("");
  out.push(
    "per vCPU (ms; % of the time the trace saw it), as trace summary: recorded, then replayed",
  );
  const rows = [[
    "vcpu",
    "",
    "running",
    "%",
    "guest",
    "runnable",
    "%",
    "halted",
    "%",
    "grants",
    "preempt",
    "wakes",
    "wake→grant p50 µs",
    "p99 µs",
  ]];
  for (const v of o.vcpus) {
    const w = p.vcpus.find((x) => x.vm === v.vm && x.index === v.index);
    for (const [tag, s] of [["recorded", v], ["replayed", w]] as const) {
      if (!s) continue;
      rows.push([
        tag === "recorded" ? `${v.vm}/${v.index}` : "",
        tag,
        ms(s.runningNs),
        frac(s.runningNs, s.observedNs),
        ms(s.guestNs),
        ms(s.runnableNs),
        frac(s.runnableNs, s.observedNs),
        ms(s.haltedNs),
        frac(s.haltedNs, s.observedNs),
        String(s.grants),
        String(s.preemptions),
        String(s.wakes),
        us(s.wakeLatencyP50Ns),
        us(s.wakeLatencyP99Ns),
      ]);
    }
  }
  out.push(table(rows));
  out.push("");
  out.push("per slot (ms busy; recorded → replayed):");
  const srows = [["slot", "busy", "%", "replay", "%", "grants", "replay"]];
  o.slotTotals.forEach((x, i) => {
    const y = p.slotTotals[i];
    srows.push([
      `s${x.slot}`,
      ms(x.busyNs),
      frac(x.busyNs, o.durationNs),
      y ? ms(y.busyNs) : "-",
      y ? frac(y.busyNs, p.durationNs) : "-",
      String(x.grants),
      y ? String(y.grants) : "-",
    ]);
  });
  out.push(table(srows));
  const pe = (s: TraceSummary) =>
    Object.entries(s.policyEvents).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
  out.push("");
  out.push(`policy events: recorded ${pe(o)}; replayed ${pe(p)}`);
  out.push(`ejections: recorded ${o.ejections.length}; replayed ${r.ejections.length}`);
  for (const e of r.ejections) out.push(`  ${e}`);
  return out.join("\n") + "\n";
}
