/**
 * Reading a trace: {@linkcode analyzeTrace} replays the records through the same state machine
 * the scheduler core runs (halted → runnable → running), giving per-vCPU state spans, per-slot
 * runs, wake→grant latencies and decisions; {@linkcode summarizeTrace} condenses that into the
 * totals `xenalyze -s` prints for Xen (per vCPU running / runnable / halted time, per pCPU busy
 * and idle time), and {@linkcode renderSummary} prints them. The Perfetto exporter and the text
 * dump read the same analysis.
 *
 * Why replay in record order, not time order: the records are in the order the core handled
 * them, which is the order its state machine saw; times of EMT-reported events (`runEnd`,
 * `wake`, `halt`) are the EMT's clock and can be a few µs before a record the core wrote just
 * before them. Sorting first would sometimes put a `runEnd` before its own `grant`. So the
 * replay follows the core's order and clamps each span's start so that no span runs backwards;
 * the outputs are then sorted by time.
 *
 * @module
 */
import {
  DECISION_HOOK,
  decodeTrace,
  GRANT_VIA,
  RUN_END_REASON,
  TRACE,
  type TraceData,
  type TraceRecord,
  type TraceVcpu,
  WAKE_SOURCE_NAME,
} from "./events.ts";

/** A vCPU's scheduling state, as the core keeps it. */
export type VcpuRunState = "halted" | "runnable" | "running";

/** One stretch of time a vCPU spent in one state (ns, CLOCK_MONOTONIC). */
export interface VcpuSpan {
  /** The state. */
  state: VcpuRunState;
  /** Start, ns. */
  start: number;
  /** End, ns. */
  end: number;
  /** Slot it held (running only), else -1. */
  slot: number;
  /** Still in this state when the trace ends. */
  open: boolean;
}

/** One grant on a slot, from `grant` to `runEnd`. */
export interface SlotRun {
  /** The slot. */
  slot: number;
  /** The vCPU (scheduler id). */
  vcpu: number;
  /** Grant time, ns (or the first record's time when the grant was overwritten in the ring). */
  start: number;
  /** `runEnd` time, ns: when the EMT left guest mode (or the trace's end while running). */
  end: number;
  /**
   * When the core handled the `runEnd` and the slot was free to grant again (the time of the
   * `decision` record that follows it), ns; `end` when unknown. `freedAt - end` is the hop from
   * the EMT to the core; the core's `slotBusyNs` counts from `start` to `freedAt`.
   */
  freedAt: number;
  /** Slice granted, ns (NaN when the grant was overwritten). */
  sliceNs: number;
  /** Guest ns it ran (the EMT's count in `runEnd`; 0 while still running). */
  ranNs: number;
  /** Why it left ({@linkcode RUN_END_REASON}), or `"running"` at the trace's end. */
  reason: string;
  /** ns other host threads took from its EMT's CPU during this run (the `runEnd`'s steal). */
  stolenNs: number;
  /** It began with a slice extension (the same vCPU went on in guest mode), not a grant. */
  extended?: boolean;
}

/** An instant on a vCPU (wake, preempt request, halt while waiting, policy event). */
export interface VcpuMark {
  /** Time, ns. */
  t: number;
  /** `wake`, `preempt`, `halt`, or `policy`. */
  kind: "wake" | "preempt" | "halt" | "policy";
  /** Policy event kind (`boost`, `credit`, ...), for `policy`. */
  name?: string;
  /** Policy event value, for `policy`. */
  value?: number;
  /** Wake of a vCPU that was not halted: the core ignored it (the interrupt is seen on run). */
  ignored?: boolean;
  /** For a wake: what woke it (`timer`, `ipi`, `device`, `start`, `unknown`). */
  source?: string;
  /** For a preempt request: the slot. */
  slot?: number;
}

/** One call into the policy. */
export interface Decision {
  /** Time, ns. */
  t: number;
  /** The vCPU whose event it answered, or -1 (timers). */
  vcpu: number;
  /** The hook ({@linkcode DECISION_HOOK}). */
  hook: string;
  /** How long the policy took (through the sandbox), ns. */
  latencyNs: number;
}

/** A plugin ejection. */
export interface Ejection {
  /** Time, ns. */
  t: number;
  /** Reason and detail. */
  reason: string;
}

/** The core handled an EMT's event late (`coreLate`). */
export interface CoreLate {
  /** When the event came (the EMT's time), ns. */
  at: number;
  /** The event's vCPU. */
  vcpu: number;
  /** How long after it the core handled it, ns. */
  lagNs: number;
  /** Of the lag, what the core's thread spent asleep after the event woke it, ns. */
  asleepNs: number;
}

/** A policy event with no vCPU. */
export interface PolicyEventMark {
  /** Time, ns. */
  t: number;
  /** Kind. */
  name: string;
  /** Value. */
  value: number;
}

/** Everything the trace says about one vCPU. */
export interface VcpuTimeline {
  /** Who it is. */
  vcpu: TraceVcpu;
  /** Its label, `vm/index`. */
  label: string;
  /** State spans, in time order, back to back. */
  spans: VcpuSpan[];
  /** Instants. */
  marks: VcpuMark[];
  /** Wake (halted → runnable) to grant latencies, ns (EMT's wake time to the core's grant). */
  wakeLatencies: number[];
  /** Grants. */
  grants: number;
  /** Slices extended without leaving guest mode (the core's `extensions`). */
  extensions: number;
  /** Runs that ended by preemption (the core's `preemptions`). */
  preemptions: number;
  /** Guest ns run, the sum of `runEnd` values (the core's `runNs`). */
  guestNs: number;
  /** ns other host threads took from its EMT's CPU while it held a slot (`runEnd` aux, µs). */
  stolenNs: number;
}

/** The replayed trace. */
export interface TraceAnalysis {
  /** Policy in charge when collected. */
  policy: string;
  /** Slots. */
  slots: number;
  /** Records overwritten in the ring before collection. */
  dropped: number;
  /** Records in the trace. */
  records: number;
  /** First record's time, ns (0 when empty): every exporter's time origin. */
  start: number;
  /** Last record's time, ns. */
  end: number;
  /** Per vCPU, by scheduler id, in the order of their ids. */
  vcpus: Map<number, VcpuTimeline>;
  /** VM names in order of their first vCPU id. */
  vmNames: string[];
  /** Per slot, its runs in time order. */
  slotRuns: SlotRun[][];
  /** Policy calls. */
  decisions: Decision[];
  /** Ejections. */
  ejections: Ejection[];
  /** Policy events not tied to a vCPU. */
  policyEvents: PolicyEventMark[];
  /** Events the core handled late, by when they came. */
  coreLate: CoreLate[];
  /** The records sorted by time (stable). */
  sorted: TraceRecord[];
}

interface Live {
  tl: VcpuTimeline;
  state: VcpuRunState | "unknown";
  since: number;
  slot: number;
  wokenAt: number;
  run: SlotRun | null;
  /** The run whose `runEnd` was the last record: the next decision for this vCPU frees it. */
  freeing: SlotRun | null;
  /** Its last run ended with a slice extension: the next grant continues it. */
  extending: boolean;
}

/** Label of a vCPU, `vm/index` (`#id` when the trace does not name it). */
export function vcpuLabel(v: TraceVcpu | undefined, id: number): string {
  return v ? `${v.vm}/${v.index}` : `#${id}`;
}

/** Replays a trace; see the module doc for how times are read. */
export function analyzeTrace(data: TraceData): TraceAnalysis {
  const recs = decodeTrace(data);
  const sorted = recs.map((r, i) => ({ r, i }))
    .sort((a, b) => a.r.t - b.r.t || a.i - b.i)
    .map((x) => x.r);
  let start = sorted.length ? sorted[0].t : 0;
  const end = sorted.length ? sorted[sorted.length - 1].t : 0;
  const names = new Map(data.vcpus.map((v) => [v.id, v]));
  const live = new Map<number, Live>();
  const slotRuns: SlotRun[][] = Array.from({ length: Math.max(0, data.slots) }, () => []);
  /** Runs whose slot their EMT handed over itself: freed at the hand-off. */
  const handedOver = new Set<SlotRun>();
  const slotLast: number[] = slotRuns.map(() => -Infinity);
  const decisions: Decision[] = [];
  const ejections: Ejection[] = [];
  const policyEvents: PolicyEventMark[] = [];
  const coreLate: CoreLate[] = [];
  const str = (id: number) => data.strings[id] ?? `#${id}`;

  const get = (id: number, t: number): Live => {
    let l = live.get(id);
    if (!l) {
      const v = names.get(id) ?? { id, vm: `#${id}`, index: 0 };
      l = {
        tl: {
          vcpu: v,
          label: vcpuLabel(names.get(id), id),
          spans: [],
          marks: [],
          wakeLatencies: [],
          grants: 0,
          extensions: 0,
          preemptions: 0,
          guestNs: 0,
          stolenNs: 0,
        },
        state: "unknown",
        since: t,
        slot: -1,
        wokenAt: -1,
        run: null,
        freeing: null,
        extending: false,
      };
      live.set(id, l);
    }
    return l;
  };
  /** Ends the current span at `t` (clamped) and starts `state`. */
  const enter = (l: Live, state: VcpuRunState | "unknown", t: number, slot = -1) => {
    const at = Math.max(t, l.since);
    if (l.state !== "unknown" && at > l.since) {
      const last = l.tl.spans[l.tl.spans.length - 1];
      if (last && last.state === l.state && last.slot === l.slot && last.end === l.since) {
        last.end = at; // merge back-to-back spans of one state (ignored transitions)
      } else {
        l.tl.spans.push({ state: l.state, start: l.since, end: at, slot: l.slot, open: false });
      }
    }
    l.state = state;
    l.since = at;
    l.slot = slot;
  };
  const slotOf = (s: number) => s >= 0 && s < slotRuns.length;
  const closeRun = (l: Live, t: number, ranNs: number, reason: string) => {
    const run = l.run;
    if (!run) return;
    run.end = Math.max(t, run.start);
    run.freedAt = run.end;
    run.ranNs = ranNs;
    run.reason = reason;
    if (slotOf(run.slot)) slotLast[run.slot] = run.end;
    l.run = null;
  };

  for (const r of recs) {
    switch (r.type) {
      case TRACE.vcpuAdd: {
        const l = get(r.vcpu, r.t);
        if (l.state === "unknown") {
          l.since = r.t;
          l.state = "halted";
        }
        break;
      }
      case TRACE.wake: {
        const l = get(r.vcpu, r.t);
        const ignored = l.state !== "halted" && l.state !== "unknown";
        const source = WAKE_SOURCE_NAME[r.reason] ?? "unknown";
        l.tl.marks.push({ t: r.t, kind: "wake", source, ...(ignored ? { ignored } : {}) });
        if (!ignored) {
          enter(l, "runnable", r.t);
          l.wokenAt = r.t;
        }
        break;
      }
      case TRACE.grant: {
        const l = get(r.vcpu, r.t);
        if (l.run) closeRun(l, r.t, 0, "lost"); // a runEnd overwritten: cannot happen unless dropped
        enter(l, "running", r.t, r.slot);
        const extended = l.extending;
        l.extending = false;
        if (extended) l.tl.extensions++;
        else l.tl.grants++;
        if (l.wokenAt >= 0) {
          l.tl.wakeLatencies.push(Math.max(0, r.t - l.wokenAt));
          l.wokenAt = -1;
        }
        const from = slotOf(r.slot) ? Math.max(r.t, slotLast[r.slot]) : r.t;
        if (r.reason === GRANT_VIA.handed && slotOf(r.slot)) {
          // The leaving vCPU handed the slot over itself: it was freed then, not when the core
          // heard of it (the `decision` record that follows).
          const prev = slotRuns[r.slot][slotRuns[r.slot].length - 1];
          if (prev && prev.vcpu !== r.vcpu) {
            prev.freedAt = Math.min(Math.max(prev.end, prev.freedAt), from);
            handedOver.add(prev);
          }
        }
        l.run = {
          slot: r.slot,
          vcpu: r.vcpu,
          start: from,
          end: from,
          freedAt: from,
          sliceNs: r.value,
          ranNs: 0,
          reason: "running",
          stolenNs: 0,
          ...(extended ? { extended } : {}),
        };
        if (slotOf(r.slot)) {
          slotRuns[r.slot].push(l.run);
          slotLast[r.slot] = from;
        }
        break;
      }
      case TRACE.runEnd: {
        const l = get(r.vcpu, r.t);
        const reason = RUN_END_REASON[r.reason] ?? `reason ${r.reason}`;
        if (!l.run) {
          // Its grant was overwritten in the ring: it held the slot since `t - ran` at least
          // (guest time is at most the time held), or since the slot's previous run ended.
          const from = Math.max(r.t - r.value, slotOf(r.slot) ? slotLast[r.slot] : -Infinity);
          if (from < start) start = from;
          l.run = {
            slot: r.slot,
            vcpu: r.vcpu,
            start: from,
            end: from,
            freedAt: from,
            sliceNs: NaN,
            ranNs: 0,
            reason,
            stolenNs: 0,
          };
          if (slotOf(r.slot)) slotRuns[r.slot].push(l.run);
          if (l.state === "unknown") {
            l.state = "running";
            l.since = from;
            l.slot = r.slot;
          }
        }
        l.tl.guestNs += r.value;
        l.tl.stolenNs += r.aux * 1e3;
        l.run.stolenNs = r.aux * 1e3;
        if (reason === "preempt") l.tl.preemptions++;
        l.extending = reason === "extend";
        l.freeing = l.run;
        closeRun(l, r.t, r.value, reason);
        enter(l, reason === "halt" ? "halted" : reason === "gone" ? "unknown" : "runnable", r.t);
        l.wokenAt = -1;
        break;
      }
      case TRACE.halt: {
        const l = get(r.vcpu, r.t);
        l.tl.marks.push({ t: r.t, kind: "halt" });
        enter(l, "halted", r.t);
        l.wokenAt = -1;
        break;
      }
      case TRACE.preempt: {
        const l = get(r.vcpu, r.t);
        l.tl.marks.push({ t: r.t, kind: "preempt", slot: r.slot });
        break;
      }
      case TRACE.decision:
        if (r.vcpu >= 0) {
          const l = live.get(r.vcpu);
          if (l?.freeing) {
            if (!handedOver.has(l.freeing)) l.freeing.freedAt = Math.max(r.t, l.freeing.end);
            l.freeing = null;
          }
        }
        decisions.push({
          t: r.t,
          vcpu: r.vcpu,
          hook: DECISION_HOOK[r.reason] ?? `hook ${r.reason}`,
          latencyNs: r.value,
        });
        break;
      case TRACE.eject:
        ejections.push({ t: r.t, reason: str(r.aux) });
        break;
      case TRACE.coreLate:
        coreLate.push({
          at: r.t - r.value,
          vcpu: r.vcpu,
          lagNs: r.value,
          asleepNs: Math.min(r.value, r.aux * 1e3),
        });
        break;
      case TRACE.policy:
        if (r.vcpu >= 0) {
          get(r.vcpu, r.t).tl.marks.push({
            t: r.t,
            kind: "policy",
            name: str(r.aux),
            value: r.value,
          });
        } else {
          policyEvents.push({ t: r.t, name: str(r.aux), value: r.value });
        }
        break;
      case TRACE.vcpuRemove: {
        const l = get(r.vcpu, r.t);
        if (l.run) closeRun(l, r.t, 0, "gone");
        enter(l, "unknown", r.t);
        break;
      }
    }
  }
  // Whatever is still open ends with the trace.
  for (const l of live.values()) {
    if (l.run) {
      l.run.end = l.run.freedAt = Math.max(end, l.run.start);
      l.run = null;
    }
    if (l.state !== "unknown") {
      const state = l.state;
      enter(l, "unknown", end);
      const last = l.tl.spans[l.tl.spans.length - 1];
      if (last && last.state === state) last.open = true;
    }
  }
  for (const l of live.values()) l.tl.marks.sort((a, b) => a.t - b.t);
  const vcpus = new Map([...live.entries()].sort((a, b) => a[0] - b[0]).map(([k, l]) => [k, l.tl]));
  const vmNames: string[] = [];
  for (const v of [...data.vcpus].sort((a, b) => a.id - b.id)) {
    if (!vmNames.includes(v.vm)) vmNames.push(v.vm);
  }
  for (const tl of vcpus.values()) if (!vmNames.includes(tl.vcpu.vm)) vmNames.push(tl.vcpu.vm);
  return {
    policy: data.policy,
    slots: data.slots,
    dropped: data.dropped,
    records: recs.length,
    start,
    end,
    vcpus,
    vmNames,
    slotRuns,
    decisions,
    ejections,
    policyEvents,
    coreLate: coreLate.sort((x, y) => x.at - y.at),
    sorted,
  };
}

/** The p-th percentile (0..100) of `xs`, nearest rank (NaN when empty). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Per-vCPU totals. */
export interface VcpuSummary {
  /** VM name. */
  vm: string;
  /** Index in the VM. */
  index: number;
  /** Scheduler id. */
  id: number;
  /** ns holding a slot (grant to runEnd). */
  runningNs: number;
  /** Guest ns (sum of runEnd values; equals the core's `runNs`). */
  guestNs: number;
  /** ns of `runningNs` other host threads took from its EMT's CPU (steal; not charged). */
  stolenNs: number;
  /** ns runnable, waiting for a slot. */
  runnableNs: number;
  /** ns halted. */
  haltedNs: number;
  /** Time the trace saw it (running + runnable + halted), ns. */
  observedNs: number;
  /** Grants. */
  grants: number;
  /** Slices extended without leaving guest mode. */
  extensions: number;
  /** Runs that ended by preemption. */
  preemptions: number;
  /** Wakes (halted → runnable). */
  wakes: number;
  /** Wake→grant latency p50, ns (NaN with no wake). */
  wakeLatencyP50Ns: number;
  /** Wake→grant latency p99, ns. */
  wakeLatencyP99Ns: number;
}

/** Per-slot totals. */
export interface SlotSummary {
  /** Slot. */
  slot: number;
  /** ns a vCPU held it, grant to the core's handling of its runEnd (the core's `slotBusyNs`). */
  busyNs: number;
  /** ns idle (within the trace). */
  idleNs: number;
  /** Grants on it. */
  grants: number;
}

/** What {@linkcode summarizeTrace} returns. */
export interface TraceSummary {
  /** Policy in charge when collected. */
  policy: string;
  /** Slots. */
  slots: number;
  /** Records. */
  records: number;
  /** Records overwritten before collection (the summary covers only what is left). */
  dropped: number;
  /** Traced time, ns (first to last record). */
  durationNs: number;
  /** VM names. */
  vms: string[];
  /** Per vCPU, by id. */
  vcpus: VcpuSummary[];
  /** Per slot. */
  slotTotals: SlotSummary[];
  /** Policy decisions. */
  decisions: {
    /** Calls. */
    count: number;
    /** Latency p50, ns. */
    latencyP50Ns: number;
    /** Latency p99, ns. */
    latencyP99Ns: number;
    /** Calls per hook. */
    byHook: Record<string, number>;
  };
  /** Ejections, `t` relative to the first record. */
  ejections: Ejection[];
  /** Policy events per kind. */
  policyEvents: Record<string, number>;
}

/** Totals of a trace, as `xenalyze -s` gives them for Xen. */
export function summarizeTrace(data: TraceData | TraceAnalysis): TraceSummary {
  const a = "sorted" in data ? data : analyzeTrace(data);
  const vcpus: VcpuSummary[] = [];
  const policyEvents: Record<string, number> = {};
  for (const [id, tl] of a.vcpus) {
    const sum = (s: VcpuRunState) =>
      tl.spans.reduce((n, x) => n + (x.state === s ? x.end - x.start : 0), 0);
    const runningNs = sum("running"), runnableNs = sum("runnable"), haltedNs = sum("halted");
    for (const m of tl.marks) {
      if (m.kind === "policy") policyEvents[m.name!] = (policyEvents[m.name!] ?? 0) + 1;
    }
    vcpus.push({
      vm: tl.vcpu.vm,
      index: tl.vcpu.index,
      id,
      runningNs,
      guestNs: tl.guestNs,
      stolenNs: tl.stolenNs,
      runnableNs,
      haltedNs,
      observedNs: runningNs + runnableNs + haltedNs,
      grants: tl.grants,
      extensions: tl.extensions,
      preemptions: tl.preemptions,
      wakes: tl.wakeLatencies.length,
      wakeLatencyP50Ns: percentile(tl.wakeLatencies, 50),
      wakeLatencyP99Ns: percentile(tl.wakeLatencies, 99),
    });
  }
  for (const e of a.policyEvents) policyEvents[e.name] = (policyEvents[e.name] ?? 0) + 1;
  const durationNs = a.end - a.start;
  const slotTotals = a.slotRuns.map((runs, slot) => {
    const busyNs = runs.reduce((n, r) => n + (r.freedAt - r.start), 0);
    return {
      slot,
      busyNs,
      idleNs: Math.max(0, durationNs - busyNs),
      grants: runs.filter((r) => !Number.isNaN(r.sliceNs) && !r.extended).length,
    };
  });
  const lat = a.decisions.map((d) => d.latencyNs);
  const byHook: Record<string, number> = {};
  for (const d of a.decisions) byHook[d.hook] = (byHook[d.hook] ?? 0) + 1;
  return {
    policy: a.policy,
    slots: a.slots,
    records: a.records,
    dropped: a.dropped,
    durationNs,
    vms: a.vmNames,
    vcpus,
    slotTotals,
    decisions: {
      count: a.decisions.length,
      latencyP50Ns: percentile(lat, 50),
      latencyP99Ns: percentile(lat, 99),
      byHook,
    },
    ejections: a.ejections.map((e) => ({ t: e.t - a.start, reason: e.reason })),
    policyEvents,
  };
}

const ms = (ns: number) => (ns / 1e6).toFixed(3);
const us = (ns: number) => (Number.isNaN(ns) ? "-" : (ns / 1e3).toFixed(1));
const pct = (part: number, whole: number) =>
  whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "-";

/** Pads a table's columns (first column left-aligned, the rest right-aligned). */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd()
  ).join("\n");
}

/** The summary as text (times in ms, latencies in µs). */
export function renderSummary(s: TraceSummary): string {
  const out: string[] = [];
  out.push(
    `policy ${s.policy}, ${s.slots} slot${s.slots === 1 ? "" : "s"}, ${
      ms(s.durationNs)
    } ms traced, ${s.records} records` +
      (s.dropped ? `, ${s.dropped} older records dropped (ring full)` : ""),
  );
  out.push(`VMs: ${s.vms.join(", ") || "(none)"}`);
  out.push("");
  out.push("per vCPU (ms; % of the time the trace saw it):");
  const vrows = [[
    "vcpu",
    "running",
    "%",
    "guest",
    "stolen",
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
  for (const v of s.vcpus) {
    vrows.push([
      `${v.vm}/${v.index}`,
      ms(v.runningNs),
      pct(v.runningNs, v.observedNs),
      ms(v.guestNs),
      ms(v.stolenNs),
      ms(v.runnableNs),
      pct(v.runnableNs, v.observedNs),
      ms(v.haltedNs),
      pct(v.haltedNs, v.observedNs),
      String(v.grants),
      String(v.preemptions),
      String(v.wakes),
      us(v.wakeLatencyP50Ns),
      us(v.wakeLatencyP99Ns),
    ]);
  }
  out.push(table(vrows));
  out.push("");
  out.push("per slot (ms):");
  const srows = [["slot", "busy", "%", "idle", "%", "grants"]];
  for (const x of s.slotTotals) {
    srows.push([
      `s${x.slot}`,
      ms(x.busyNs),
      pct(x.busyNs, s.durationNs),
      ms(x.idleNs),
      pct(x.idleNs, s.durationNs),
      String(x.grants),
    ]);
  }
  out.push(table(srows));
  out.push("");
  const d = s.decisions;
  const hooks = Object.entries(d.byHook).map(([k, n]) => `${k} ${n}`).join(", ");
  out.push(
    `decisions: ${d.count}, latency p50 ${us(d.latencyP50Ns)} µs, p99 ${us(d.latencyP99Ns)} µs` +
      (hooks ? ` (${hooks})` : ""),
  );
  const pe = Object.entries(s.policyEvents).map(([k, n]) => `${k} ${n}`).join(", ");
  if (pe) out.push(`policy events: ${pe}`);
  out.push(`ejections: ${s.ejections.length}`);
  for (const e of s.ejections) out.push(`  at ${ms(e.t)} ms: ${e.reason}`);
  return out.join("\n") + "\n";
}
