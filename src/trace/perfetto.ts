/**
 * The trace as Chrome / Perfetto JSON: the "JSON Object Format" of the Trace Event Format
 * (https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU, the format
 * `chrome://tracing` and https://ui.perfetto.dev open). What this writes, per that document:
 *
 * - `{"displayTimeUnit": "ms", "otherData": {...}, "traceEvents": [...]}`. Perfetto's importer
 *   knows only the keys `traceEvents`, `systemTraceEvents`, `displayTimeUnit` (`"ms"` or `"ns"`),
 *   `otherData` and `metadata`, and stops reading at any other key, so nothing else is written.
 * - Every event has `name`, `ph` (phase), `ts` (µs, here relative to the first record, with ns
 *   precision as a fraction), `pid` and `tid` (integers; Perfetto's string pids are a hack).
 * - Complete events `ph: "X"` carry `dur` (µs); instant events `ph: "i"` carry a scope `s`
 *   (`"t"` thread, `"g"` global); metadata events `ph: "M"` name processes and threads
 *   (`process_name`, `thread_name`, `args.name`) and order them (`process_sort_index`,
 *   `thread_sort_index`, `args.sort_index`).
 *
 * The tracks:
 *
 * - Process {@linkcode SLOTS_PID} "slots": one thread per slot, named `slot N`, with a complete
 *   event `vm/vcpuN` per grant, from the grant to its `runEnd`; args `vm`, `vcpu` (index in the
 *   VM), `slot`, `reason` (why it left: halt, slice, preempt, yield, gone, or running at the
 *   trace's end), `ran_ns` (guest ns), `slice_ns`, `handoff_us` (from the EMT leaving guest mode
 *   to the core handling it: the slot is free for the next grant only then). A thread "policy" holds timer decisions and
 *   ejections.
 * - One process per VM (pid {@linkcode VM_PID_BASE} + its order), named `vm NAME`; one thread per
 *   vCPU, named `vcpu I`, with complete events `running` / `runnable` / `halted` back to back,
 *   and instants `wake`, `preempt`, `halt`, policy events (`boost`, `credit`, ... with `value`)
 *   and `decision` (args `hook`, `latency_us`).
 *
 * Thread ids are unique across the whole trace (slot k is tid 1000 + k + 1; vCPU i of the VM with
 * pid p is tid 1000·p + i + 1) because Perfetto's importer names a thread by its tid alone
 * (`thread_name`); the slot and vCPU index are in each event's args and in the thread names.
 *
 * @module
 */
import type { TraceData } from "./events.ts";
import { analyzeTrace, type TraceAnalysis } from "./summary.ts";

/** pid of the "slots" process. */
export const SLOTS_PID = 1;
/** pid of the first VM's process (the next VM is one more). */
export const VM_PID_BASE = 2;
/** Name of the slots process (the timeline finds the slot tracks by it). */
export const SLOTS_PROCESS = "slots";

/** Thread id of slot `slot`. */
export function slotTid(slot: number): number {
  return 1000 * SLOTS_PID + slot + 1;
}

/** Thread id of the "policy" thread of the slots process. */
export const POLICY_TID = 1000 * SLOTS_PID;

/** Thread id of vCPU `index` of the VM with process id `pid`. */
export function vcpuTid(pid: number, index: number): number {
  return 1000 * pid + index + 1;
}

/** Values an event's args may hold. */
export type PerfettoArg = string | number | boolean | null;

/** One Trace Event Format event, as this module writes and the timeline reads it. */
export interface PerfettoEvent {
  /** Name. */
  name: string;
  /** Phase: `X` complete, `i` instant, `M` metadata. */
  ph: string;
  /** Timestamp, µs. */
  ts: number;
  /** Duration, µs (`X` only). */
  dur?: number;
  /** Process id. */
  pid: number;
  /** Thread id. */
  tid: number;
  /** Category. */
  cat?: string;
  /** Instant scope: `t` thread, `p` process, `g` global. */
  s?: string;
  /** Arguments shown with the event. */
  args?: Record<string, PerfettoArg>;
}

/** What {@linkcode toPerfetto} returns (JSON-serialisable). */
export interface PerfettoTrace {
  /** Display unit for the UI. */
  displayTimeUnit: "ms" | "ns";
  /** Trace-wide facts (policy, slots, time origin, dropped records). */
  otherData: Record<string, string | number>;
  /** The events, metadata first, then by time. */
  traceEvents: PerfettoEvent[];
}

/** ns → µs rounded to the ns (keeps JSON short and exact). */
function usOf(ns: number): number {
  return Math.round(ns) / 1e3;
}

/** The trace as Trace Event Format JSON (see the module doc); `JSON.stringify` it to save. */
export function toPerfetto(data: TraceData | TraceAnalysis): PerfettoTrace {
  const a = "sorted" in data ? data : analyzeTrace(data);
  const t0 = a.start;
  const ts = (t: number) => usOf(t - t0);
  // From rounded ends, so that back-to-back spans share their boundary exactly.
  const dur = (from: number, to: number) => (Math.round(to - t0) - Math.round(from - t0)) / 1e3;
  const meta: PerfettoEvent[] = [];
  const events: PerfettoEvent[] = [];
  const m = (name: string, pid: number, tid: number, args: Record<string, PerfettoArg>) =>
    meta.push({ name, ph: "M", ts: 0, pid, tid, args });

  m("process_name", SLOTS_PID, POLICY_TID, { name: SLOTS_PROCESS });
  m("process_sort_index", SLOTS_PID, POLICY_TID, { sort_index: 0 });
  m("thread_name", SLOTS_PID, POLICY_TID, { name: "policy" });
  m("thread_sort_index", SLOTS_PID, POLICY_TID, { sort_index: a.slots });
  for (let s = 0; s < a.slots; s++) {
    m("thread_name", SLOTS_PID, slotTid(s), { name: `slot ${s}` });
    m("thread_sort_index", SLOTS_PID, slotTid(s), { sort_index: s });
  }
  const pidOf = new Map(a.vmNames.map((vm, i) => [vm, VM_PID_BASE + i]));
  a.vmNames.forEach((vm, i) => {
    const pid = VM_PID_BASE + i;
    m("process_name", pid, vcpuTid(pid, 0), { name: `vm ${vm}` });
    m("process_sort_index", pid, vcpuTid(pid, 0), { sort_index: 1 + i });
  });

  for (const tl of a.vcpus.values()) {
    const pid = pidOf.get(tl.vcpu.vm)!;
    const tid = vcpuTid(pid, tl.vcpu.index);
    m("thread_name", pid, tid, { name: `vcpu ${tl.vcpu.index}` });
    m("thread_sort_index", pid, tid, { sort_index: tl.vcpu.index });
    for (const sp of tl.spans) {
      const args: Record<string, PerfettoArg> = {};
      if (sp.state === "running") args.slot = sp.slot;
      if (sp.open) args.open = true;
      events.push({
        name: sp.state,
        cat: "vcpu",
        ph: "X",
        ts: ts(sp.start),
        dur: dur(sp.start, sp.end),
        pid,
        tid,
        ...(Object.keys(args).length ? { args } : {}),
      });
    }
    for (const mk of tl.marks) {
      const args: Record<string, PerfettoArg> = {};
      if (mk.ignored) args.ignored = true;
      if (mk.source !== undefined) args.source = mk.source;
      if (mk.slot !== undefined) args.slot = mk.slot;
      if (mk.value !== undefined) args.value = mk.value;
      events.push({
        name: mk.kind === "policy" ? mk.name! : mk.kind,
        cat: mk.kind === "policy" ? "policy" : "sched",
        ph: "i",
        s: "t",
        ts: ts(mk.t),
        pid,
        tid,
        ...(Object.keys(args).length ? { args } : {}),
      });
    }
  }

  for (const runs of a.slotRuns) {
    for (const r of runs) {
      const tl = a.vcpus.get(r.vcpu);
      const vm = tl?.vcpu.vm ?? `#${r.vcpu}`;
      const index = tl?.vcpu.index ?? -1;
      events.push({
        name: `${vm}/vcpu${index}`,
        cat: "slot",
        ph: "X",
        ts: ts(r.start),
        dur: dur(r.start, r.end),
        pid: SLOTS_PID,
        tid: slotTid(r.slot),
        args: {
          vm,
          vcpu: index,
          slot: r.slot,
          reason: r.reason,
          ran_ns: r.ranNs,
          slice_ns: Number.isNaN(r.sliceNs) ? null : r.sliceNs,
          handoff_us: usOf(r.freedAt - r.end),
        },
      });
    }
  }

  for (const d of a.decisions) {
    const tl = d.vcpu >= 0 ? a.vcpus.get(d.vcpu) : undefined;
    const pid = tl ? pidOf.get(tl.vcpu.vm)! : SLOTS_PID;
    events.push({
      name: "decision",
      cat: "policy",
      ph: "i",
      s: "t",
      ts: ts(d.t),
      pid,
      tid: tl ? vcpuTid(pid, tl.vcpu.index) : POLICY_TID,
      args: { hook: d.hook, latency_us: usOf(d.latencyNs) },
    });
  }
  for (const e of a.policyEvents) {
    events.push({
      name: e.name,
      cat: "policy",
      ph: "i",
      s: "t",
      ts: ts(e.t),
      pid: SLOTS_PID,
      tid: POLICY_TID,
      args: { value: e.value },
    });
  }
  for (const e of a.ejections) {
    events.push({
      name: "eject",
      cat: "policy",
      ph: "i",
      s: "g",
      ts: ts(e.t),
      pid: SLOTS_PID,
      tid: POLICY_TID,
      args: { reason: e.reason },
    });
  }
  // By time; at one time, longer complete events first so that Perfetto nests them properly.
  events.sort((x, y) => x.ts - y.ts || (y.dur ?? 0) - (x.dur ?? 0));
  return {
    displayTimeUnit: "ms",
    otherData: {
      generator: "deno-vmm",
      policy: a.policy,
      slots: a.slots,
      records: a.records,
      dropped: a.dropped,
      vms: a.vmNames.join(","),
      origin_ns: a.start,
    },
    traceEvents: [...meta, ...events],
  };
}
