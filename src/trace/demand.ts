/**
 * A recorded run's demand, read from its trace: per vCPU, the bursts of guest time it asked
 * for, each with the wake that began it, for the simulator to replay under any policy
 * (`kind: "replay"`, `src/sim/replay_behaviour.ts`); and the costs of the host it ran on
 * (hand-off, poke, the EMT-to-core hop), measured from the same trace.
 *
 * A burst runs from a wake (halted → runnable) to the next halt; its guest time is the sum of
 * its runs' `runEnd` values. What the trace cannot say, and how it is modelled:
 *
 * - **Demand never served.** A vCPU still runnable when the trace ends wanted more than it got,
 *   but not how much more. One that never halted after it started is a CPU hog: its burst is
 *   open-ended (`guestNs: Infinity`). One that halted before is taken to need what its last
 *   burst got or the median of its earlier bursts, whichever is more. A burst that ended in a
 *   halt needed exactly what it got.
 * - **Work that arrived during a burst.** Only a halted vCPU's wake is recorded: an interrupt
 *   that finds it running or waiting leaves no record, so its work counts in the burst it fell
 *   in, as if it had arrived with that burst's wake. A policy that serves the vCPU sooner would
 *   finish that burst sooner than the guest could have.
 * - **A timer's deadline.** The trace has the time a timer wake was delivered, not the deadline
 *   the guest armed, nor whether it was absolute or an interval: it is replayed at the delivered
 *   time (`absolute`), or, with `timers: "relative"`, after the recorded sleep from the end of
 *   the previous burst.
 * - **An IPI's sender.** The record names the woken vCPU only. The sender is taken to be a vCPU
 *   of the same VM that was running then (or halted within 1 ms before), and the IPI is replayed
 *   when that vCPU has run as much guest time as it had then; with none, at the recorded time.
 * - **Device and start wakes** come from outside the guest: replayed at the recorded time.
 * - **Parameters.** Weights, caps and budgets are in the trace only when it was written with
 *   them (`TraceVcpu.params`); otherwise they must be given (`--scenario`, `--vm-param`).
 *
 * @module
 */
import { decodeTrace, TRACE, type TraceData, type TraceVcpu, WAKE_SOURCE_NAME } from "./events.ts";
import { analyzeTrace, percentile, type TraceAnalysis } from "./summary.ts";
import type { CostSeries, ReplayBurst, ReplayWake } from "../sim/types.ts";

/** One VM's replayed demand. */
export interface VmDemand {
  /** VM name. */
  name: string;
  /** Its scheduling parameters as the trace recorded them (`{}` when it did not). */
  params: Record<string, number | string | boolean>;
  /** Per vCPU (index in the VM), its bursts. */
  vcpus: ReplayBurst[][];
}

/**
 * The host's costs measured in the trace, which the simulator charges: each one's samples, one
 * per grant, preemption or report, with the time it was measured (ns from the trace's start). The
 * replay charges a use at time t the sample measured at or after t: it sees the spread of each
 * cost, and the moments the host was slow in the recording (everything slower together) stay
 * slow in the replay.
 */
export interface HostCosts {
  /**
   * Slot time per grant not spent in guest mode and not stolen (ns): the EMT's wake-up and entry,
   * its exits' handling (an extension of a slice costs none).
   */
  handoffNs: CostSeries;
  /**
   * Share of a grant's time in guest mode other host threads took from its EMT's CPU (steal,
   * the `runEnd`'s stolen time), 0..1: the guest made no progress then, and the policy was told.
   */
  stealShare: CostSeries;
  /** Preempt request → the EMT out of guest mode (ns). */
  pokeNs: CostSeries;
  /** An EMT's report of leaving guest mode (halt, slice end, preempted) → the core (ns). */
  reportDelayNs: CostSeries;
  /** An EMT's wake → the core handling it (ns). */
  wakeDelayNs: CostSeries;
}

/** Counts that say how much of the demand had to be guessed. */
export interface DemandNotes {
  /** Bursts, by what released them. */
  wakes: Record<string, number>;
  /** IPI wakes tied to a sender. */
  ipisWithSender: number;
  /** Bursts still open when the trace ended (a hog's is open-ended; see the module doc). */
  openBursts: number;
  /** Wakes of a vCPU that was not halted (the core ignored them). */
  ignoredWakes: number;
  /** Records the ring overwrote before the trace was collected. */
  droppedRecords: number;
  /** Whether the trace carried the VMs' scheduling parameters. */
  hasParams: boolean;
}

/** What {@linkcode traceDemand} returns. */
export interface TraceDemand {
  /** Slots of the recorded run. */
  slots: number;
  /** Policy that recorded it. */
  policy: string;
  /** Traced time, first to last record (ns). */
  durationNs: number;
  /** Per VM, in the trace's order. */
  vms: VmDemand[];
  /** The host's costs, measured. */
  costs: HostCosts;
  /** What had to be guessed. */
  notes: DemandNotes;
}

interface Walk {
  vcpu: TraceVcpu;
  state: "unknown" | "halted" | "runnable" | "running";
  bursts: ReplayBurst[];
  open: ReplayBurst | null;
  /** Guest ns so far (rounded runEnd values). */
  guest: number;
  /** Current run's grant time. */
  runStart: number;
  haltAt: number;
  /** IPIs it may have sent during its current run: resolved at its runEnd. */
  sent: { wake: ReplayWake; at: number }[];
  preemptAt: number;
  reportAt: number;
  reportIsWake: boolean;
}

/** IPIs up to this long after a vCPU halted are taken to be its (it sent, then halted). */
const IPI_SENDER_WINDOW_NS = 1_000_000;

/**
 * Reads a trace's per-vCPU demand and host costs; see the module documentation. `analysis` is
 * the trace's `analyzeTrace`, when the caller has it already.
 */
export function traceDemand(data: TraceData, analysis?: TraceAnalysis): TraceDemand {
  const a = analysis ?? analyzeTrace(data);
  const start = a.start;
  const walks = new Map<number, Walk>();
  const names = new Map(data.vcpus.map((v) => [v.id, v]));
  const notes: DemandNotes = {
    wakes: {},
    ipisWithSender: 0,
    openBursts: 0,
    ignoredWakes: 0,
    droppedRecords: data.dropped,
    hasParams: data.vcpus.some((v) => v.params !== undefined),
  };
  type Series = { atNs: number[]; ns: number[]; vcpu: number[] };
  const series = (): Series => ({ atNs: [], ns: [], vcpu: [] });
  /** Trace vCPU id → the replay's id (VMs in order, their vCPUs by index), set below. */
  const simId = new Map<number, number>();
  const add = (c: Series, at: number, ns: number, vcpu: number, round = true) => {
    c.atNs.push(Math.max(0, at - start));
    c.ns.push(round ? Math.max(0, Math.round(ns)) : ns);
    c.vcpu.push(vcpu);
  };
  const pokes = series(), reports = series(), wakeReports = series(), handoffs = series();
  const steal = series();
  const get = (id: number): Walk => {
    let w = walks.get(id);
    if (!w) {
      w = {
        vcpu: names.get(id) ?? { id, vm: `#${id}`, index: 0 },
        state: "unknown",
        bursts: [],
        open: null,
        guest: 0,
        runStart: 0,
        haltAt: -Infinity,
        sent: [],
        preemptAt: -1,
        reportAt: -1,
        reportIsWake: false,
      };
      walks.set(id, w);
    }
    return w;
  };
  const begin = (w: Walk, wake: ReplayWake | null) => {
    w.open = { wake, guestNs: 0 };
    w.bursts.push(w.open);
    const src = wake?.source ?? "running at start";
    notes.wakes[src] = (notes.wakes[src] ?? 0) + 1;
  };
  const close = (w: Walk, t: number) => {
    w.open = null;
    w.haltAt = t;
  };
  const senderOf = (target: Walk, t: number): { w: Walk; running: boolean } | null => {
    let best: { w: Walk; running: boolean } | null = null;
    for (const w of walks.values()) {
      if (w === target || w.vcpu.vm !== target.vcpu.vm) continue;
      if (w.state === "running" && w.runStart <= t) {
        if (!best) best = { w, running: true };
      } else if (w.state === "halted" && t - w.haltAt <= IPI_SENDER_WINDOW_NS && t >= w.haltAt) {
        if (!best || best.running || w.haltAt > best.w.haltAt) best = { w, running: false };
      }
    }
    return best;
  };

  // Record order, as analyzeTrace reads it (the core's order, not time order).
  for (const r of decodeTrace(data)) {
    if (r.vcpu < 0) continue;
    const w = get(r.vcpu);
    switch (r.type) {
      case TRACE.vcpuAdd:
        if (w.state === "unknown") w.state = "halted";
        break;
      case TRACE.wake: {
        if (w.state !== "halted" && w.state !== "unknown") {
          notes.ignoredWakes++;
          break;
        }
        const source = WAKE_SOURCE_NAME[r.reason] ?? "unknown";
        const wake: ReplayWake = { source, atNs: Math.max(0, r.t - start) };
        if (source !== "ipi" && source !== "start" && Number.isFinite(w.haltAt)) {
          wake.sleepNs = Math.max(0, r.t - w.haltAt);
        }
        if (source === "ipi") {
          const s = senderOf(w, r.t);
          if (s?.running) s.w.sent.push({ wake, at: r.t });
          else if (s) wake.sender = { index: s.w.vcpu.index, guestNs: s.w.guest };
          if (s) notes.ipisWithSender++;
        }
        if (w.open) close(w, r.t);
        begin(w, wake);
        w.state = "runnable";
        w.reportAt = r.t;
        w.reportIsWake = true;
        break;
      }
      case TRACE.grant:
        if (!w.open) {
          begin(w, w.bursts.length === 0 ? null : { source: "unknown", atNs: r.t - start });
        }
        if (w.state !== "running") w.runStart = r.t;
        w.state = "running";
        break;
      case TRACE.runEnd: {
        if (!w.open) {
          begin(w, w.bursts.length === 0 ? null : { source: "unknown", atNs: r.t - start });
        }
        const ran = Math.round(r.value);
        const before = w.guest;
        w.guest += ran;
        w.open!.guestNs += ran;
        for (const s of w.sent) {
          s.wake.sender = {
            index: w.vcpu.index,
            guestNs: before + Math.min(ran, Math.max(0, Math.round(s.at - w.runStart))),
          };
        }
        w.sent = [];
        const reason = r.reason; // RUN_END_REASON: halt 0, slice 1, preempt 2, yield 3, gone 4, extend 5
        if (reason === 2 && w.preemptAt >= 0) add(pokes, w.preemptAt, r.t - w.preemptAt, r.vcpu);
        w.preemptAt = -1;
        if (reason === 5) break; // the same run goes on (a grant follows)
        w.reportAt = r.t;
        w.reportIsWake = false;
        if (reason === 0 || reason === 4) {
          close(w, r.t);
          w.state = reason === 0 ? "halted" : "unknown";
        } else w.state = "runnable";
        break;
      }
      case TRACE.halt:
        if (w.open) close(w, r.t);
        w.state = "halted";
        break;
      case TRACE.preempt:
        if (w.preemptAt < 0) w.preemptAt = r.t;
        break;
      case TRACE.decision:
        if (w.reportAt >= 0) {
          add(w.reportIsWake ? wakeReports : reports, w.reportAt, r.t - w.reportAt, r.vcpu);
          w.reportAt = -1;
        }
        break;
      case TRACE.vcpuRemove:
        if (w.open) close(w, r.t);
        w.state = "unknown";
        break;
    }
  }
  for (const w of walks.values()) {
    if (w.open) {
      const earlier = w.bursts.filter((b) => b !== w.open).map((b) => b.guestNs);
      w.open.guestNs = earlier.length === 0
        ? Infinity
        : Math.max(w.open.guestNs, percentile(earlier, 50));
      notes.openBursts++;
    }
    for (const s of w.sent) {
      s.wake.sender = {
        index: w.vcpu.index,
        guestNs: w.guest + Math.max(0, Math.round(s.at - w.runStart)),
      };
    }
  }

  // Costs: slot time per grant beyond guest time; poke and report hops.
  for (const runs of a.slotRuns) {
    for (const run of runs) {
      if (run.reason === "running" || run.reason === "lost" || Number.isNaN(run.sliceNs)) continue;
      if (run.extended) continue;
      // held = hand-off + guest mode; guest mode = guest + stolen (the part of the steal that
      // is not already inside the EMT's guest count).
      const over = Math.max(0, run.end - run.start - run.ranNs);
      const stolen = Math.min(run.stolenNs, over);
      add(handoffs, run.start, over - stolen, run.vcpu);
      const share = run.ranNs + stolen > 0 ? stolen / (run.ranNs + stolen) : 0;
      add(steal, run.start, share, run.vcpu, false);
    }
  }
  let next = 0;
  for (const name of a.vmNames) {
    const mine = [...walks.values()].filter((w) => w.vcpu.vm === name);
    const n = mine.reduce((m, w) => Math.max(m, w.vcpu.index + 1), 0);
    for (const w of mine) simId.set(w.vcpu.id, next + w.vcpu.index);
    next += n;
  }
  for (const c of [pokes, reports, wakeReports, handoffs, steal]) {
    c.vcpu = c.vcpu.map((id) => simId.get(id) ?? -1);
  }
  const costs: HostCosts = {
    handoffNs: handoffs,
    stealShare: steal,
    pokeNs: pokes,
    reportDelayNs: reports,
    wakeDelayNs: wakeReports,
  };

  const vms: VmDemand[] = a.vmNames.map((name) => {
    const mine = [...walks.values()].filter((w) => w.vcpu.vm === name);
    const n = mine.reduce((m, w) => Math.max(m, w.vcpu.index + 1), 0);
    const vcpus: ReplayBurst[][] = Array.from({ length: n }, () => []);
    for (const w of mine) vcpus[w.vcpu.index] = w.bursts;
    const named = data.vcpus.find((v) => v.vm === name && v.params);
    return { name, params: { ...named?.params }, vcpus };
  }).filter((vm) => vm.vcpus.length > 0);
  return {
    slots: data.slots,
    policy: data.policy,
    durationNs: a.end - a.start,
    vms,
    costs,
    notes,
  };
}
