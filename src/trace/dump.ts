/**
 * The trace as text, one line per record in time order, in the spirit of Xen's `xenalyze`
 * dump mode: the time (ms from the first record, µs precision), a strip with one column per
 * slot saying which vCPU holds it at that moment (after the record: a `grant` shows its new
 * holder, a `runEnd` a free slot, `--`), then the event, its vCPU (`vm/index`), its slot and
 * what goes with it.
 *
 * ```
 * #  time ms | s0        | event      vcpu       slot  details
 *     43.175 | spin/0    | grant      spin/0     s0    slice 10.000 ms
 *     59.126 | --        | run-end    spin/0     s0    slice, ran 12.130 ms
 * ```
 *
 * @module
 */
import {
  DECISION_HOOK,
  GRANT_VIA,
  RUN_END_REASON,
  TRACE,
  type TraceData,
  type TraceRecord,
  WAKE_SOURCE_NAME,
} from "./events.ts";
import { analyzeTrace, type SlotRun, type TraceAnalysis, vcpuLabel } from "./summary.ts";

/** Options of {@linkcode dumpLines}. */
export interface DumpOptions {
  /** First time shown, ms from the first record. */
  fromMs?: number;
  /** Last time shown, ms from the first record. */
  toMs?: number;
  /** Leave out `decision` records (there is one per event). */
  noDecisions?: boolean;
}

/** Event names as the dump prints them. */
export const EVENT_NAMES: Record<number, string> = {
  [TRACE.grant]: "grant",
  [TRACE.runEnd]: "run-end",
  [TRACE.wake]: "wake",
  [TRACE.halt]: "halt",
  [TRACE.preempt]: "preempt",
  [TRACE.decision]: "decision",
  [TRACE.eject]: "eject",
  [TRACE.policy]: "policy",
  [TRACE.vcpuAdd]: "vcpu-add",
  [TRACE.vcpuRemove]: "vcpu-remove",
  [TRACE.coreLate]: "core-late",
};

const ms = (ns: number) => (ns / 1e6).toFixed(3);

/** Which run holds each slot as time goes forward (a sweep over time-ordered queries). */
class SlotStrip {
  #runs: SlotRun[][];
  #next: number[];
  #current: (SlotRun | null)[];

  constructor(runs: SlotRun[][]) {
    this.#runs = runs.map((rs) => [...rs].sort((a, b) => a.start - b.start));
    this.#next = runs.map(() => 0);
    this.#current = runs.map(() => null);
  }

  /** The holder of every slot at `t` (non-decreasing between calls): vCPU id or -1. */
  at(t: number): number[] {
    return this.#runs.map((rs, s) => {
      while (this.#next[s] < rs.length && rs[this.#next[s]].start <= t) {
        this.#current[s] = rs[this.#next[s]++];
      }
      const c = this.#current[s];
      // A run still going when the trace ends holds its slot to the end.
      return c && c.start <= t && (t < c.end || c.reason === "running") ? c.vcpu : -1;
    });
  }
}

function details(r: TraceRecord, data: TraceData, a: TraceAnalysis): string {
  const str = (id: number) => data.strings[id] ?? `#${id}`;
  switch (r.type) {
    case TRACE.grant:
      return `slice ${ms(r.value)} ms` + (r.aux === 1 ? ", reserved" : "") +
        (r.reason === GRANT_VIA.handed
          ? ", handed over by the leaving vCPU (decided ahead)"
          : r.reason === GRANT_VIA.ahead
          ? ", decided ahead"
          : "");
    case TRACE.wake:
      return `by ${WAKE_SOURCE_NAME[r.reason] ?? r.reason}`;
    case TRACE.runEnd:
      return `${RUN_END_REASON[r.reason] ?? r.reason}, ran ${ms(r.value)} ms` +
        (r.aux > 0 ? `, ${ms(r.aux * 1e3)} ms stolen` : "");
    case TRACE.halt:
      return "while waiting for a slot";
    case TRACE.preempt:
      return "poke out of guest mode";
    case TRACE.decision:
      return `hook ${DECISION_HOOK[r.reason] ?? r.reason}, ${(r.value / 1e3).toFixed(1)} µs`;
    case TRACE.eject:
      return str(r.aux);
    case TRACE.policy:
      return `${str(r.aux)} = ${r.value}`;
    case TRACE.vcpuAdd:
      return `vm ${str(r.aux) || a.vcpus.get(r.vcpu)?.vcpu.vm}, index ${r.value}`;
    case TRACE.coreLate:
      return `its event handled ${ms(r.value)} ms late, ${
        ms(r.aux * 1e3)
      } ms of it the core asleep`;
    default:
      return "";
  }
}

/** The dump, line by line (a header line first); see the module doc. */
export function* dumpLines(
  data: TraceData,
  options: DumpOptions = {},
  analysis: TraceAnalysis = analyzeTrace(data),
): Generator<string> {
  const a = analysis;
  const names = new Map(data.vcpus.map((v) => [v.id, v]));
  const label = (id: number) => (id < 0 ? "-" : vcpuLabel(names.get(id), id));
  const width = Math.max(6, ...[...a.vcpus.keys()].map((id) => label(id).length));
  const slotCols = Array.from({ length: a.slots }, (_, s) => `s${s}`.padEnd(width));
  yield `# deno-vmm trace: policy ${a.policy}, ${a.slots} slot(s), ${a.records} records` +
    (a.dropped ? `, ${a.dropped} older records dropped` : "") +
    `; time in ms from the first record`;
  yield `#  time ms | ${slotCols.map((c) => c + " | ").join("")}${"event".padEnd(11)} ${
    "vcpu".padEnd(width)
  } slot  details`;
  const strip = new SlotStrip(a.slotRuns);
  const from = options.fromMs === undefined ? -Infinity : a.start + options.fromMs * 1e6;
  const to = options.toMs === undefined ? Infinity : a.start + options.toMs * 1e6;
  for (const r of a.sorted) {
    if (r.t < from) continue;
    if (r.t > to) break;
    if (options.noDecisions && r.type === TRACE.decision) continue;
    const holders = strip.at(r.t);
    const cols = holders.map((id) => (id < 0 ? "--" : label(id)).padEnd(width) + " | ").join("");
    const slot = r.slot >= 0 ? `s${r.slot}` : "";
    yield `${ms(r.t - a.start).padStart(10)} | ${cols}${
      (EVENT_NAMES[r.type] ?? `type ${r.type}`).padEnd(11)
    } ${label(r.vcpu).padEnd(width)} ${slot.padEnd(5)} ${details(r, data, a)}`.trimEnd();
  }
}

/** The whole dump as one string (ends with a newline). */
export function dumpTrace(data: TraceData, options: DumpOptions = {}): string {
  return [...dumpLines(data, options)].join("\n") + "\n";
}
