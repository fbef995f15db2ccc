/**
 * Late jobs of periodic vCPUs, read from a trace, and what made them late.
 *
 * A periodic guest job wakes on its timer at its release, runs its work and halts; a job that
 * is not done by the next release is late, and the guest goes on to the next job without
 * halting. So in the trace late jobs are a busy stretch (from a wake to the next halt) longer
 * than the period: about one late job for each release it spans (`jobs`). The stretch from a
 * vCPU's start (its `start` wake) to its first halt is its boot and set-up, not a job, and is
 * left out (the guest counts no miss for it). Within the stretch,
 * its time is accounted to what the vCPU lacked:
 *
 * - **waiting**: runnable with no slot, the scheduler's part (the policy's choice or the core);
 *   the slot runs of other vCPUs meanwhile say who had the slots;
 * - **steal**: other host threads took its EMT's CPU while it held a slot (the EMT's own count,
 *   `runEnd` records), the host's part; so is the waiting while the host held deno-vmm off a
 *   CPU: the core's thread, woken by an EMT's event, not yet running (`coreLate` records:
 *   nothing of deno-vmm runs above the core on its CPU, so only the kernel or the hypervisor
 *   below can hold it off), or a slot's holder past its slice's end while its EMT's CPU was
 *   taken (the run's steal, counted from the slice's end: its EMT could not leave);
 * - **vmm**: it held its slot, outside guest mode and not counted as steal: its EMT waking up
 *   after the grant, handling exits and devices, and V8's garbage collection or compiling on
 *   that thread (the trace cannot tell these apart);
 * - **work**: the guest itself ran longer than the period in guest mode (more work than fits).
 *
 * The verdict names the largest of waiting (`scheduler`), steal and the waiting the host held off
 * (`host`)
 * and VMM time (`vmm`),
 * or `work` when the three together are under a tenth of the stretch (the guest had the CPU
 * nearly all along). Waiting is `budget` instead when most of it came after the vCPU's
 * reservation was used up: between a `depleted` or `extratime` policy event (rtds reports them)
 * and its next `replenish`. The job then cost more slot time than its budget holds; the policy
 * charges the time a vCPU held its slot less steal, so VMM time spends budget too.
 *
 * Under a deadline policy (the trace has rtds's `replenish` events, whose value is the vCPU's new
 * deadline) waiting with budget left is split further by who held the slots: `edf` when every
 * holder came first in global EDF's order (within its budget while the waiter was too, with a
 * deadline no later than the waiter's; or the waiter out of budget): the policy ran what it had
 * to, and the slots were too few for the load; `scheduler` when a holder came later in that
 * order (a priority inversion: a slot not yet taken back, a hand-off, the core's rate limit).
 *
 * @module
 */
import type { Scenario } from "../scenario/scenario.ts";
import type { SlotRun, TraceAnalysis, VcpuMark, VcpuSpan } from "./summary.ts";

/** Late jobs: a busy stretch longer than its period. */
export interface LateJob {
  /** The vCPU, `vm/index`. */
  vcpu: string;
  /** Its VM. */
  vm: string;
  /** Wake (release) time, ns since the trace's start. */
  startNs: number;
  /** Halt time (or the trace's end), ns since the trace's start. */
  endNs: number;
  /** The VM's period, ns. */
  periodNs: number;
  /** Releases it spans while busy: about how many jobs were late. */
  jobs: number;
  /** How far past the first job's deadline it ended, ns (`end - start - period`). */
  lateNs: number;
  /** Runnable without a slot, ns, within the stretch. */
  waitingNs: number;
  /**
   * Of the waiting, while the host held deno-vmm off a CPU: the core's thread after an event woke
   * it, or a slot's holder past its slice's end (its steal), ns.
   */
  hostWaitNs: number;
  /** Of the waiting, what came after its budget was used up (until its next replenishment). */
  budgetWaitNs: number;
  /**
   * Of the waiting with budget left, what a slot holder later in global EDF's order took (rtds
   * traces only; 0 otherwise): the part of the wait that was not the policy's order.
   */
  inversionNs: number;
  /** Time the vCPU held a slot, ns. */
  heldNs: number;
  /** Of the held time, what other host threads took from its EMT's CPU, ns. */
  stolenNs: number;
  /** Guest-mode time of its runs, ns. */
  guestNs: number;
  /** Held time neither in guest mode nor stolen: the EMT's wake-up and own work, ns. */
  vmmNs: number;
  /** Who held the slots while it waited: label to ns. */
  heldBy: Record<string, number>;
  /** What made it late (see the module's documentation). */
  verdict: "scheduler" | "edf" | "budget" | "host" | "vmm" | "work";
}

/** The largest cause of a stretch's lateness, or `work` if every cause is small. */
function verdictOf(
  waiting: number,
  budgetWait: number,
  inversion: number | null,
  stolen: number,
  vmm: number,
  busy: number,
): LateJob["verdict"] {
  if (waiting + stolen + vmm < busy / 10) return "work";
  if (waiting >= stolen && waiting >= vmm) {
    if (budgetWait * 2 >= waiting) return "budget";
    // Without deadlines in the trace, any wait with budget left is the scheduler's.
    if (inversion === null) return "scheduler";
    return inversion * 2 >= waiting - budgetWait ? "scheduler" : "edf";
  }
  return stolen >= vmm ? "host" : "vmm";
}

/**
 * A vCPU's place in global EDF's order over time, from rtds's policy events: its deadline (each
 * `replenish` sets it) and whether it is out of budget (`depleted`/`extratime` until the next
 * `replenish`).
 */
class EdfOrder {
  #times: number[] = [];
  #deadlines: number[] = [];
  #out: [number, number][];

  constructor(marks: VcpuMark[], end: number) {
    for (const m of [...marks].sort((x, y) => x.t - y.t)) {
      if (m.kind === "policy" && m.name === "replenish") {
        this.#times.push(m.t);
        this.#deadlines.push(m.value ?? NaN);
      }
    }
    this.#out = budgetOut(marks, end);
  }

  /** Whether the trace gave this vCPU deadlines at all. */
  get known(): boolean {
    return this.#times.length > 0;
  }

  /** `[level, deadline]` at `t`: level 1 out of budget, else 0; deadline NaN before the first. */
  at(t: number): [number, number] {
    let lo = 0, hi = this.#times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#times[mid] <= t) lo = mid + 1;
      else hi = mid;
    }
    const deadline = lo > 0 ? this.#deadlines[lo - 1] : NaN;
    const level = this.#out.some(([b0, b1]) => b0 <= t && t < b1) ? 1 : 0;
    return [level, deadline];
  }
}

/**
 * Whether `holder` comes before `waiter` in global EDF's order (ties go to the holder); false
 * when a deadline is not known yet.
 */
function edfBefore(holder: [number, number], waiter: [number, number]): boolean {
  if (holder[0] !== waiter[0]) return holder[0] < waiter[0];
  if (Number.isNaN(holder[1]) || Number.isNaN(waiter[1])) return false;
  return holder[1] <= waiter[1];
}

/** The intervals in which a vCPU's reservation was used up: a depletion to its replenishment. */
function budgetOut(marks: VcpuMark[], end: number): [number, number][] {
  const out: [number, number][] = [];
  let from = -1;
  for (const m of [...marks].sort((x, y) => x.t - y.t)) {
    if (m.kind !== "policy") continue;
    if ((m.name === "depleted" || m.name === "extratime") && from < 0) from = m.t;
    else if (m.name === "replenish" && from >= 0) {
      out.push([from, m.t]);
      from = -1;
    }
  }
  if (from >= 0) out.push([from, end]);
  return out;
}

/**
 * When the host held deno-vmm off a CPU, merged, in order: the core after an event woke it
 * (`coreLate`), and each slot run past its slice's end for as long as its steal lasts.
 */
function hostWindows(a: TraceAnalysis): [number, number][] {
  const ws: [number, number][] = [];
  for (const c of a.coreLate) if (c.asleepNs > 0) ws.push([c.at, c.at + c.asleepNs]);
  for (const r of a.slotRuns.flat()) {
    const due = r.start + r.sliceNs;
    if (!(r.end > due) || !(r.stolenNs > 0)) continue;
    ws.push([due, Math.min(r.end, due + r.stolenNs)]);
  }
  ws.sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [w0, w1] of ws) {
    const last = out[out.length - 1];
    if (last && w0 <= last[1]) last[1] = Math.max(last[1], w1);
    else out.push([w0, w1]);
  }
  return out;
}

function overlap(a0: number, a1: number, b0: number, b1: number): number {
  return Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));
}

/** The periods of a scenario's periodic VMs (VM name to ns), as {@linkcode lateJobs} takes them. */
export function scenarioPeriods(scenario: Scenario): Map<string, number> {
  const periods = new Map<string, number>();
  for (const vm of scenario.vms) {
    if (vm.workload.kind === "periodic") periods.set(vm.name, vm.workload.periodMs * 1e6);
  }
  return periods;
}

/**
 * The late jobs of the vCPUs of the VMs in `periods` (VM name to period, ns). A stretch still
 * open at the trace's end counts only if it is already longer than its period.
 */
export function lateJobs(a: TraceAnalysis, periods: Map<string, number>): LateJob[] {
  const out: LateJob[] = [];
  const labels = new Map([...a.vcpus.values()].map((t) => [t.vcpu.id, t.label]));
  const slotRuns = a.slotRuns.flat();
  const edf = new Map([...a.vcpus.values()].map((t) => [t.vcpu.id, new EdfOrder(t.marks, a.end)]));
  const hostHeld = hostWindows(a);
  for (const tl of a.vcpus.values()) {
    const period = periods.get(tl.vcpu.vm);
    if (period === undefined) continue;
    const outOfBudget = budgetOut(tl.marks, a.end);
    const startedAt = tl.marks.find((m) => m.kind === "wake" && m.source === "start")?.t;
    // Busy stretches: maximal runs of non-halted spans.
    let stretch: VcpuSpan[] = [];
    const flush = () => {
      if (stretch.length === 0) return;
      const s0 = stretch[0].start, s1 = stretch[stretch.length - 1].end;
      stretch = [];
      if (s1 - s0 <= period) return;
      if (startedAt !== undefined && startedAt >= s0 && startedAt < s1) return; // boot
      const runs = slotRuns.filter((r) =>
        r.vcpu === tl.vcpu.id && overlap(r.start, r.end, s0, s1) > 0
      );
      let waitingNs = 0, heldNs = 0, budgetWaitNs = 0, inversionNs = 0, hostWaitNs = 0;
      const mine = edf.get(tl.vcpu.id)!;
      const heldBy: Record<string, number> = {};
      for (const sp of tl.spans) {
        const o = overlap(sp.start, sp.end, s0, s1);
        if (o === 0) continue;
        if (sp.state === "running") heldNs += o;
        if (sp.state !== "runnable") continue;
        waitingNs += o;
        const w0 = Math.max(sp.start, s0), w1 = Math.min(sp.end, s1);
        for (const [b0, b1] of outOfBudget) budgetWaitNs += overlap(w0, w1, b0, b1);
        for (const [c0, c1] of hostHeld) hostWaitNs += overlap(w0, w1, c0, c1);
        for (const r of slotRuns) {
          const ro = overlap(r.start, r.end, w0, w1);
          if (ro > 0 && r.vcpu !== tl.vcpu.id) {
            const who = labels.get(r.vcpu) ?? `#${r.vcpu}`;
            heldBy[who] = (heldBy[who] ?? 0) + ro;
            // Judged where the overlap begins: who came first in EDF's order then. A holder
            // the trace gives no deadline for cannot be shown to come first.
            const t = Math.max(r.start, w0);
            const holder = edf.get(r.vcpu);
            if (mine.known && !(holder?.known && edfBefore(holder.at(t), mine.at(t)))) {
              inversionNs += ro;
            }
          }
        }
      }
      const part = (r: SlotRun) => overlap(r.start, r.end, s0, s1) / Math.max(1, r.end - r.start);
      const stolenNs = runs.reduce((s, r) => s + r.stolenNs * part(r), 0);
      const guestNs = runs.reduce((s, r) => s + r.ranNs * part(r), 0);
      const lateNs = s1 - s0 - period;
      const vmmNs = Math.max(0, heldNs - guestNs - stolenNs);
      // The core held off is the host's part of the wait; the scheduler's is the rest. A holder
      // later in EDF's order on one slot while the waiter waited: at most that rest.
      const schedWait = waitingNs - hostWaitNs;
      inversionNs = Math.max(0, Math.min(inversionNs, schedWait - budgetWaitNs));
      const verdict = verdictOf(
        schedWait,
        Math.min(budgetWaitNs, schedWait),
        mine.known ? inversionNs : null,
        stolenNs + hostWaitNs,
        vmmNs,
        s1 - s0,
      );
      out.push({
        vcpu: tl.label,
        vm: tl.vcpu.vm,
        startNs: s0 - a.start,
        endNs: s1 - a.start,
        periodNs: period,
        jobs: Math.floor((s1 - s0) / period),
        lateNs,
        waitingNs,
        hostWaitNs,
        budgetWaitNs,
        inversionNs,
        heldNs,
        stolenNs,
        guestNs,
        vmmNs,
        heldBy,
        verdict,
      });
    };
    for (const sp of tl.spans) {
      if (sp.state === "halted") flush();
      else stretch.push(sp);
    }
    flush();
  }
  return out.sort((x, y) => x.startNs - y.startNs);
}

/** One line per stretch of late jobs, for a terminal. */
export function formatLateJobs(jobs: LateJob[]): string {
  if (jobs.length === 0) return "no late jobs";
  const ms = (ns: number) => (ns / 1e6).toFixed(2);
  return jobs.map((j) => {
    const who = Object.entries(j.heldBy).sort((x, y) => y[1] - x[1]).slice(0, 3)
      .map(([k, v]) => `${k} ${ms(v)}`).join(", ");
    return `${(j.startNs / 1e9).toFixed(3)} s  ${j.vcpu}  ${j.jobs} late, busy ${
      ms(j.endNs - j.startNs)
    } ms (period ${ms(j.periodNs)}): waited ${ms(j.waitingNs)}${
      j.hostWaitNs > 0 ? ` (host held off ${ms(j.hostWaitNs)})` : ""
    }${j.budgetWaitNs > 0 ? ` (out of budget ${ms(j.budgetWaitNs)})` : ""}${
      j.inversionNs > 0 ? ` (behind later deadlines ${ms(j.inversionNs)})` : ""
    }${who ? ` [slots: ${who}]` : ""}, held ${ms(j.heldNs)} of which ` +
      `stolen ${ms(j.stolenNs)}, vmm ${ms(j.vmmNs)}, guest ${ms(j.guestNs)}  -> ${j.verdict}`;
  }).join("\n");
}
