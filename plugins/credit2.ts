/**
 * Credit2: Xen's credit2 scheduler (George Dunlap, Citrix 2009; Dario Faggioli et al. since), as
 * a deno-vmm plugin.
 *
 * Read against `xen/common/sched/credit2.c` (Xen commit c447b7308b13, 2025; line numbers refer to
 * that file) and the design on the Xen wiki ("Credit2 Scheduler"). The policy:
 *
 * - Credit is time, in ns. Every vCPU starts with `CSCHED2_CREDIT_INIT` = 10 ms of credit.
 * - A running vCPU **burns** credit at a rate inversely proportional to its VM's weight:
 *   `ran × max_weight / weight` (`t2c_update`), so the heaviest vCPU burns 1 ns per ns and a
 *   vCPU with half the weight burns twice as fast; `ran` is the time it held its slot, as
 *   credit2.c charges `now - start_time`, less the time other host threads held its EMT's CPU
 *   (`stolenNs`, see `#held`). Credit never goes below -10 ms.
 * - The run queue is ordered by credit, highest first (`runq_insert`); a free slot runs the
 *   vCPU with the most credit (`runq_candidate`). No priorities, no BOOST: a vCPU that woke from
 *   a halt simply tends to have more credit left than the hogs, and preempts the running vCPU
 *   with the least credit if it has more (`runq_tickle`, `tickle_score`).
 * - **Credit reset** (`reset_credit`): when the vCPU about to run and the head of the queue both
 *   have no credit left (<= 0), every vCPU gets 10 ms more, and whatever exceeds
 *   10 ms + `CSCHED2_CARRYOVER_MAX` (0.5 ms) is cut: an epoch ends and at most 0.5 ms of
 *   unspent credit carries over.
 * - **Slice** (`csched2_runtime`): run until your credit reaches the next waiting vCPU's, i.e.
 *   `(credit - next.credit)` converted back to time, at most `CSCHED2_MAX_TIMER` = 10 ms and at
 *   least `CSCHED2_MIN_TIMER` = 0.5 ms (and at least the rate limit, as credit2.c does).
 * - **Caps** (param `cap`, % of one slot): a per-VM budget of `cap`% of
 *   `CSCHED2_BDGT_REPL_PERIOD` (10 ms), replenished every period; a vCPU grabs a quota of it to
 *   run (`unit_grab_budget`) and returns what it did not use (`unit_return_budget`); a vCPU that
 *   finds the pool empty is parked until the next replenishment (`replenish_domain_budget`).
 *
 * Simplifications: one run queue for all slots (credit2.c has one per core/socket group and
 * balances load between them, `balance_load`; our slot counts fit one queue), no soft affinity,
 * no load tracking. DEVIATION: the migration resistance (`CSCHED2_MIGRATE_RESIST`) is not
 * applied when the slot would otherwise stay idle, so a free slot never leaves a vCPU waiting.
 *
 * Deciding ahead (`queueNext`): while a slot's vCPU runs, its next is the head of the queue if
 * `runq_candidate` would take it when the current vCPU's slice ends (its credit then is what
 * it has less what it burns until its deadline) and also if it halts (the head is the first
 * candidate then), so the choice is what `csched2_schedule` will make either way. Not decided
 * ahead (null): when the current vCPU would stay (its credit at the deadline is still the
 * highest: Xen runs it another minimum slice), when a credit reset is due, or when a capped VM
 * is involved (grabbing budget has side effects). DEVIATION: the credit at the deadline assumes
 * no steal (steal is not burned, so a vCPU robbed of its CPU ends with a little more credit,
 * and Xen might keep it for one more minimum slice), and the head's slice assumes the current
 * vCPU goes back into the queue (if it halts instead, the next waiting vCPU may have less
 * credit and Xen's slice would be longer). The core takes the choice back at every wake, tick
 * and parameter change; a revoked head goes back in front of its credit.
 *
 * Parameters. Per VM (`VcpuInfo.params`, `setParams(vm, ...)`): `weight` (default 256), `cap`
 * (% of one slot, 0 = none). Policy-wide (`ctx.params`): `cap_period_ms` (default 10).
 *
 * Policy events (`ctx.report`): `reset` (value: credit added), `park` (1 parked, 0 unparked),
 * `credit` (the picked vCPU's credit at a reset, ns).
 *
 * @module
 */
import type {
  DescheduleReason,
  PickDecision,
  SchedContext,
  SchedParams,
  SchedulerPlugin,
  SlotId,
  VcpuId,
  VcpuInfo,
} from "../mod.ts";

const NS_PER_US = 1_000;
const NS_PER_MS = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Constants (credit2.c:229-276, 324, 418)
// ---------------------------------------------------------------------------------------------

/** credit2.c:229 `CSCHED2_DEFAULT_WEIGHT`. */
const CSCHED2_DEFAULT_WEIGHT = 256;
/** credit2.c:234 `CSCHED2_MIN_TIMER`: never set a timer shorter than this. */
const CSCHED2_MIN_TIMER = 500 * NS_PER_US;
/** credit2.c:240 `CSCHED2_CREDIT_INIT`: the credit of a new vCPU, and of every vCPU after a reset. */
const CSCHED2_CREDIT_INIT = 10 * NS_PER_MS;
/** credit2.c:250 `CSCHED2_CREDIT_MIN`. */
const CSCHED2_CREDIT_MIN = -CSCHED2_CREDIT_INIT;
/** credit2.c:256 `CSCHED2_IDLE_CREDIT`: what an idle slot "has". */
const CSCHED2_IDLE_CREDIT = CSCHED2_CREDIT_MIN - 1;
/** credit2.c:261 `CSCHED2_CARRYOVER_MAX`: extra credit carried over a reset. */
const CSCHED2_CARRYOVER_MAX = CSCHED2_MIN_TIMER;
/** credit2.c:266, 324 `CSCHED2_MIGRATE_RESIST` (`opt_migrate_resist` = 500 us). */
const CSCHED2_MIGRATE_RESIST = 500 * NS_PER_US;
/** credit2.c:268 `CSCHED2_MIGRATE_COMPENSATION`. */
const CSCHED2_MIGRATE_COMPENSATION = 50 * NS_PER_US;
/** credit2.c:270 `CSCHED2_RATELIMIT_TICKLE_TOLERANCE`. */
const CSCHED2_RATELIMIT_TICKLE_TOLERANCE = 50 * NS_PER_US;
/** credit2.c:272 `CSCHED2_CREDIT_RESET`: reset when the best credit is at or below this. */
const CSCHED2_CREDIT_RESET = 0;
/** credit2.c:274 `CSCHED2_MAX_TIMER`. */
const CSCHED2_MAX_TIMER = CSCHED2_CREDIT_INIT;
/** credit2.c:276, 418 `CSCHED2_BDGT_REPL_PERIOD` (`opt_cap_period` = 10 ms). */
const CSCHED2_DEFAULT_CAP_PERIOD_MS = 10;

/** A VM: `struct csched2_dom`. */
interface Dom {
  name: string;
  weight: number;
  /** % of one slot; 0 = none. */
  cap: number;
  units: Unit[];
  /** The budget pool (ns). */
  budget: number;
  /** Budget per period (ns). */
  totBudget: number;
  nextRepl: number;
  parked: Unit[];
}

/** A vCPU: `struct csched2_unit`. */
interface Unit {
  id: VcpuId;
  dom: Dom;
  weight: number;
  /** ns of credit. */
  credit: number;
  residual: number;
  /** `queued`: chosen ahead for its slot (`queueNext`), off the run queue, not running yet. */
  state: "runnable" | "running" | "halted" | "queued";
  /** Slot it runs on or last ran on (`sched_unit_master`). */
  slot: SlotId;
  onRunq: boolean;
  /** Its order among equal credits on the run queue (first queued first). */
  runqSeq: number;
  yielding: boolean;
  parked: boolean;
  /** Budget grabbed from the VM's pool (capped VMs only). */
  budget: number;
  budgetQuota: number;
  grantAt: number;
  chargedNs: number;
  /** When the current slice ends (running), or the slice it was queued with (queued). */
  deadline: number;
  /** Credit added when it was queued for another slot (migration compensation). */
  queuedBonus: number;
}

/** A slot. */
interface Pcpu {
  curr: Unit | null;
  /** The vCPU chosen ahead to run when `curr` leaves (`queueNext`), or null. */
  next: Unit | null;
  /** The vCPU just descheduled here (credit2.c's `scurr` when it is still runnable). */
  prev: Unit | null;
  /** Time this idle slot was chosen for a waking vCPU (`rqd->tickled`), or -1. */
  tickledAt: number;
}

/** Xen's credit2 scheduler, one run queue. */
export class Credit2Scheduler implements SchedulerPlugin {
  /** Name shown in traces. */
  readonly name = "credit2";
  /** Cap budgets are replenished on the tick (`replenish_domain_budget`): one period. */
  tickNs = CSCHED2_DEFAULT_CAP_PERIOD_MS * NS_PER_MS;

  #ctx: SchedContext | null = null;
  #pcpus: Pcpu[] = [];
  #units = new Map<VcpuId, Unit>();
  #doms = new Map<string, Dom>();
  /** `rqd->runq`, ordered by credit (highest first). */
  #runq = new RunQueue();
  /** `rqd->max_weight`. */
  #maxWeight = 1;
  #capPeriod = CSCHED2_DEFAULT_CAP_PERIOD_MS * NS_PER_MS;
  #now = 0;

  /** `csched2_init`. */
  init(ctx: SchedContext): void {
    this.#ctx = ctx;
    this.#pcpus = Array.from({ length: ctx.slots }, () => ({
      curr: null,
      next: null,
      prev: null,
      tickledAt: -1,
    }));
    this.#units.clear();
    this.#doms.clear();
    this.#runq = new RunQueue();
    this.#maxWeight = 1;
    this.#now = 0;
    const period = num(ctx.params.cap_period_ms, CSCHED2_DEFAULT_CAP_PERIOD_MS);
    this.#capPeriod = (period > 0 ? period : CSCHED2_DEFAULT_CAP_PERIOD_MS) * NS_PER_MS;
    this.tickNs = this.#capPeriod;
  }

  /** `csched2_alloc_udata` + `csched2_unit_insert`: start with `CSCHED2_CREDIT_INIT`. */
  addVcpu(info: VcpuInfo): void {
    let dom = this.#doms.get(info.vm);
    if (!dom) {
      dom = {
        name: info.vm,
        weight: Math.max(1, Math.trunc(num(info.params.weight, CSCHED2_DEFAULT_WEIGHT))),
        cap: 0,
        units: [],
        budget: 0,
        totBudget: 0,
        nextRepl: 0,
        parked: [],
      };
      this.#doms.set(info.vm, dom);
    }
    const u: Unit = {
      id: info.id,
      dom,
      weight: dom.weight,
      credit: CSCHED2_CREDIT_INIT,
      residual: 0,
      state: "halted",
      slot: info.index % this.#pcpus.length,
      onRunq: false,
      runqSeq: 0,
      yielding: false,
      parked: false,
      budget: Infinity, // STIME_MAX: no cap
      budgetQuota: 0,
      grantAt: this.#now,
      chargedNs: 0,
      deadline: Infinity,
      queuedBonus: 0,
    };
    this.#units.set(u.id, u);
    dom.units.push(u);
    this.#updateMaxWeight();
    const cap = num(info.params.cap, 0);
    if (cap > 0 || dom.cap > 0) this.#setCap(dom, cap > 0 ? cap : dom.cap);
    if (info.state === "running" && info.slot !== undefined && !this.#pcpus[info.slot].curr) {
      u.state = "running";
      u.slot = info.slot;
      u.grantAt = this.#now;
      this.#pcpus[info.slot].curr = u;
    } else if (info.state === "running" && info.slot !== undefined) {
      // Handed the slot by its holder, whose leave is still to come (told after it).
      u.state = "queued";
      u.slot = info.slot;
      u.deadline = CSCHED2_MIN_TIMER;
      this.#pcpus[info.slot].next = u;
    } else if (info.state !== "halted") {
      u.state = "runnable";
      this.#runqInsert(u);
    }
  }

  /** `csched2_unit_remove`. */
  removeVcpu(id: VcpuId): void {
    const u = this.#units.get(id);
    if (!u) return;
    if (u.onRunq) this.#runqRemove(u);
    remove(u.dom.parked, u);
    remove(u.dom.units, u);
    for (let cpu = 0; cpu < this.#pcpus.length; cpu++) {
      const pc = this.#pcpus[cpu];
      if (pc.next === u) pc.next = null;
      if (pc.curr === u) this.#leave(cpu, this.#now);
      if (pc.prev === u) pc.prev = null;
    }
    this.#units.delete(id);
    this.#updateMaxWeight();
  }

  /** `csched2_dom_cntl`: weight and cap of a VM. */
  setParams(target: string, params: SchedParams): void {
    const dom = this.#doms.get(target);
    if (!dom) return;
    const w = Math.trunc(num(params.weight, 0));
    if (w > 0) {
      dom.weight = w;
      for (const u of dom.units) u.weight = w;
      this.#updateMaxWeight();
    }
    if (params.cap !== undefined) this.#setCap(dom, num(params.cap, 0));
  }

  // -------------------------------------------------------------------------------------------
  // Hooks
  // -------------------------------------------------------------------------------------------

  /**
   * `csched2_schedule` for a free slot: `runq_candidate`, then the credit reset check, then
   * `csched2_runtime` for the slice.
   */
  pickNext(slot: SlotId, now: number): PickDecision | null {
    this.#now = now;
    const spc = this.#pcpus[slot];
    spc.tickledAt = -1;
    if (spc.curr) this.#desync(spc.curr, slot, now);
    const scurr = spc.prev && spc.prev.onRunq ? spc.prev : null;
    spc.prev = null;

    const snext = this.#runqCandidate(scurr, slot);
    if (!snext) return null;
    this.#runqRemove(snext);

    // The end of an epoch: the best credit around is used up, so everyone is reset.
    const head = this.#runq.head();
    const topCredit = head ? Math.max(snext.credit, head.credit) : snext.credit;
    if (topCredit <= CSCHED2_CREDIT_RESET) this.#resetCredit(now, snext);

    if (snext.slot !== slot) snext.credit += CSCHED2_MIGRATE_COMPENSATION; // migrated here
    snext.state = "running";
    snext.slot = slot;
    snext.grantAt = now;
    snext.chargedNs = 0;
    spc.curr = snext;
    const sliceNs = this.#runtime(snext);
    snext.deadline = now + sliceNs;
    return { vcpu: snext.id, sliceNs };
  }

  /**
   * Deciding ahead: the head of the queue, if `csched2_schedule` will take it when `running`
   * leaves `slot` whether its slice ends or it halts (see the module documentation).
   */
  queueNext(slot: SlotId, running: VcpuId, now: number): PickDecision | null {
    this.#now = now;
    const spc = this.#pcpus[slot];
    const curr = this.#units.get(running);
    const head = this.#runq.head();
    if (!head || !curr || spc.curr !== curr || spc.next || curr.state !== "running") return null;
    if (this.#hasCap(curr) || this.#hasCap(head)) return null;
    // The current vCPU's credit when its slice ends: what it burns until its deadline.
    this.#burnRunning(curr, now);
    const rest = Math.max(0, curr.deadline - curr.grantAt - curr.chargedNs);
    const val = rest * this.#maxWeight + curr.residual;
    const atDeadline = Math.max(CSCHED2_CREDIT_MIN, curr.credit - Math.floor(val / curr.weight));
    // runq_candidate with it as scurr: the first that beats it (by the migration resistance
    // if last run elsewhere); it must be the head, which a halt would pick.
    let snext: Unit | null = null;
    for (const svc of this.#runq) {
      if (svc.credit <= atDeadline) break;
      if (svc.slot !== slot && atDeadline + CSCHED2_MIGRATE_RESIST > svc.credit) continue;
      snext = svc;
      break;
    }
    if (snext !== head) return null;
    // A credit reset is decided when it is due (it depends on who runs then).
    const second = this.#runq.at(1);
    const after = second && second.credit > atDeadline ? second.credit : atDeadline;
    if (Math.max(head.credit, after) <= CSCHED2_CREDIT_RESET) return null;
    this.#runqRemove(head);
    head.queuedBonus = head.slot !== slot ? CSCHED2_MIGRATE_COMPENSATION : 0;
    head.credit += head.queuedBonus;
    head.state = "queued";
    head.slot = slot;
    spc.next = head;
    // Its slice as csched2_runtime will give it, the current vCPU back in the queue.
    const sliceNs = this.#runtime(head, after);
    head.deadline = sliceNs;
    return { vcpu: head.id, sliceNs };
  }

  /** The vCPU running on `slot` left it: the one chosen ahead, if any, runs there now. */
  #leave(slot: SlotId, now: number): boolean {
    const spc = this.#pcpus[slot];
    spc.curr = null;
    const next = spc.next;
    if (!next) return false;
    spc.next = null;
    next.state = "running";
    next.slot = slot;
    next.grantAt = now;
    next.chargedNs = 0;
    next.queuedBonus = 0;
    next.deadline = now + next.deadline; // it held the slice length while queued
    spc.curr = next;
    return true;
  }

  /** `csched2_unit_sleep` (+ `burn_credits` and `csched2_context_saved` if it was running). */
  onHalt(vcpu: VcpuId, now: number, _ranNs: number, stolenNs = 0): void {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u) return;
    if (u.state === "running") {
      const spc = this.#pcpus[u.slot];
      this.#burnRan(u, this.#held(u, now, stolenNs));
      this.#returnBudget(u);
      if (spc.curr === u) this.#leave(u.slot, now);
    } else if (u.state === "queued") {
      const spc = this.#pcpus[u.slot];
      if (spc.next === u) spc.next = null;
      u.credit -= u.queuedBonus;
      u.queuedBonus = 0;
    }
    if (u.onRunq) this.#runqRemove(u);
    if (u.parked) {
      u.parked = false;
      remove(u.dom.parked, u);
    }
    for (const pc of this.#pcpus) if (pc.prev === u) pc.prev = null;
    u.state = "halted";
  }

  /** `csched2_unit_wake`: into the run queue by credit, then `runq_tickle`. */
  onWake(vcpu: VcpuId, now: number): SlotId | void {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u || u.state !== "halted") return;
    u.state = "runnable";
    this.#runqInsert(u);
    const t = this.#runqTickle(u, now);
    if (t !== null && this.#pcpus[t].curr) return t;
  }

  /** The burn of `csched2_schedule` and `csched2_context_saved`: back in the run queue. */
  onDeschedule(
    vcpu: VcpuId,
    slot: SlotId,
    _ranNs: number,
    reason: DescheduleReason,
    now: number,
    stolenNs = 0,
  ): void {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u) return;
    const spc = this.#pcpus[slot];
    if (reason === "revoked") {
      // Chosen ahead and taken back before it ran: in front of its credit again.
      if (spc.next === u) spc.next = null;
      if (spc.curr === u) spc.curr = null; // its hand-off was cancelled after all
      u.credit -= u.queuedBonus;
      u.queuedBonus = 0;
      u.state = "runnable";
      if (!u.parked && !u.onRunq) this.#runqInsert(u, true);
      return;
    }
    if (u.state === "running") this.#burnRan(u, this.#held(u, now, stolenNs));
    const handed = spc.curr === u && this.#leave(slot, now);
    u.state = "runnable";
    u.slot = slot;
    if (reason === "yield") u.yielding = true; // csched2_unit_yield
    this.#returnBudget(u);
    if (!u.parked && !u.onRunq) this.#runqInsert(u);
    // `scurr` of the next pickNext here, unless the slot was handed over at once.
    spc.prev = handed ? null : u;
  }

  /**
   * `csched2_schedule` when the current vCPU stays (`snext == scurr`: the core asks only when
   * nobody waits): burn what it ran, the credit-reset check, a new `csched2_runtime`. A capped
   * vCPU is not extended (null): its budget goes back and is grabbed again on the usual path.
   *
   * DEVIATION: the core asks shortly before the deadline, when the credit is nearly used up.
   * Xen would run its minimum (`CSCHED2_MIN_TIMER`, or the rate limit if longer) more, go below
   * zero and reset at the next schedule; here the reset comes at once when no more than that
   * minimum of credit is left, so that the vCPU goes on for a full slice instead of a short one
   * and an exit. Everyone gets the same reset, that minimum (1 ms by default) earlier at most.
   */
  extendSlice(
    vcpu: VcpuId,
    _slot: SlotId,
    _ranNs: number,
    now: number,
    stolenNs = 0,
  ): number | null {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u || u.state !== "running") return null;
    this.#burnRan(u, this.#held(u, now, stolenNs));
    // From here the next report counts from now, extended or not (the contract).
    u.grantAt = now;
    u.chargedNs = 0;
    if (this.#hasCap(u)) return null;
    // Nobody else is queued, so its own credit decides the reset (see DEVIATION above).
    if (this.#c2t(u.credit, u) <= this.#minRuntime()) this.#resetCredit(now, u);
    const sliceNs = this.#runtime(u);
    u.deadline = now + sliceNs;
    return sliceNs;
  }

  /**
   * `replenish_domain_budget` for every capped VM whose period ended; the unparked vCPUs are
   * tickled. Also asks for `pickNext` on idle slots while vCPUs wait.
   */
  onTick(now: number): SlotId[] {
    this.#now = now;
    const resched = new Set<SlotId>();
    for (const dom of this.#doms.values()) {
      if (dom.cap === 0 || dom.nextRepl > now) continue;
      // do_replenish once per period that ended, counted at once: a cap set before the first
      // event has no clock yet (nextRepl from 0), and looping up to the monotonic clock's "now"
      // took millions of turns, over the watchdog's 20 ms (the caps scenario ejected credit2).
      const periods = Math.floor((now - dom.nextRepl) / this.#capPeriod) + 1;
      dom.nextRepl += periods * this.#capPeriod;
      dom.budget += periods * dom.totBudget;
      if (dom.budget <= 0) continue; // overran by more than a period: wait for the next one
      dom.budget = Math.min(dom.budget, dom.totBudget);
      this.#unparkAll(dom, now, resched);
    }
    if (this.#runq.size > 0) {
      this.#pcpus.forEach((p, cpu) => {
        if (!p.curr) resched.add(cpu);
      });
    }
    return [...resched];
  }

  // -------------------------------------------------------------------------------------------
  // Credit (credit2.c:816 t2c_update, 830 c2t, 1783 reset_credit, 1865 burn_credits)
  // -------------------------------------------------------------------------------------------

  /** `burn_credits` + `t2c_update`: `delta × max_weight / weight`, remainder kept. */
  #burnCredits(u: Unit, deltaNs: number): void {
    if (deltaNs <= 0) return;
    const val = deltaNs * this.#maxWeight + u.residual;
    const credits = Math.floor(val / u.weight);
    u.residual = val - credits * u.weight;
    u.credit = Math.max(CSCHED2_CREDIT_MIN, u.credit - credits);
    if (this.#hasCap(u)) u.budget -= deltaNs;
  }

  /**
   * What a grant is charged: the time the vCPU held its slot (grant to release), as Xen charges
   * `now - start_time` from the context switch, less `stolenNs`, the time other host threads
   * held its EMT's CPU. On Xen nothing else runs on a vCPU's pCPU; on a host V8's compiler and
   * GC helpers can take it for up to a kernel tick (4 ms here), and that is not the vCPU's use.
   * Hand-offs stay charged: a vCPU that halts and wakes every few microseconds pays for the
   * slot time its hand-offs spend (the simulator's `handoffNs`, about 20 us per grant here).
   * Guest time is no floor: a vCPU preempted inside KVM_RUN counts it as guest time.
   */
  #held(u: Unit, now: number, stolenNs = 0): number {
    return Math.max(0, now - u.grantAt - stolenNs);
  }

  /** Charge the rest of the grant's `ranNs`. */
  #burnRan(u: Unit, ranNs: number): void {
    this.#burnCredits(u, ranNs - u.chargedNs);
    u.chargedNs = Math.max(u.chargedNs, ranNs);
  }

  /** Charge a running vCPU up to `now` (we do not know its exact run time until it stops). */
  #burnRunning(u: Unit, now: number): void {
    this.#burnRan(u, now - u.grantAt);
  }

  /** `c2t`: credit back to time for `u`. */
  #c2t(credit: number, u: Unit): number {
    return Math.floor((credit * u.weight) / this.#maxWeight);
  }

  /**
   * `reset_credit`: everyone (running, queued and halted) gets `CSCHED2_CREDIT_INIT` more,
   * twice that if `snext` is at the floor, clipped to `CREDIT_INIT + CARRYOVER_MAX`.
   */
  #resetCredit(now: number, snext: Unit): void {
    let reset = CSCHED2_CREDIT_INIT;
    if (snext.credit === CSCHED2_CREDIT_MIN) reset += CSCHED2_CREDIT_INIT;
    this.#report("credit", snext.id, snext.credit);
    for (const svc of this.#units.values()) {
      if (svc.state === "running") this.#burnRunning(svc, now);
      svc.credit = Math.min(svc.credit + reset, CSCHED2_CREDIT_INIT + CSCHED2_CARRYOVER_MAX);
    }
    this.#report("reset", undefined, reset);
    // No need to resort: everyone's order stays the same. Credits clipped to the same value
    // keep their order as queued: renumber them so.
    this.#runq.renumber();
  }

  // -------------------------------------------------------------------------------------------
  // Run queue (credit2.c:1437 runq_insert, 3384 runq_candidate, 3281 csched2_runtime)
  // -------------------------------------------------------------------------------------------

  /** `runq_insert` (see {@linkcode RunQueue.insert}). */
  #runqInsert(u: Unit, first = false): void {
    this.#runq.insert(u, first);
    u.onRunq = true;
  }

  #runqRemove(u: Unit): void {
    this.#runq.remove(u);
    u.onRunq = false;
  }

  /**
   * `runq_candidate`: keep `scurr` (the vCPU just descheduled here, if still runnable) unless
   * someone in the queue has more credit, or `scurr` yielded; vCPUs last run on another slot
   * must beat it by `CSCHED2_MIGRATE_RESIST`; capped vCPUs must get budget (else parked).
   */
  #runqCandidate(scurr: Unit | null, cpu: SlotId): Unit | null {
    const yielded = scurr !== null && scurr.yielding;
    if (scurr) scurr.yielding = false;
    let snext: Unit | null = scurr;
    if (snext && this.#hasCap(snext) && !this.#grabBudget(snext)) snext = null;
    const snextCredit = () => (snext ? snext.credit : CSCHED2_IDLE_CREDIT);

    // In queue order. Only a vCPU that fails to get budget leaves the queue meanwhile (parked):
    // then the next one has taken its place.
    const q = this.#runq;
    for (let i = 0; i < q.size; i++) {
      const svc = q.at(i)!;
      if (svc === scurr) continue;
      // Nobody further down has more credit than what we have (unless we yielded).
      if (!(yielded && snext === scurr) && svc.credit <= snextCredit()) break;
      // Don't pull a vCPU from another slot unless it has clearly more credit (not when this
      // slot would otherwise idle: DEVIATION).
      if (snext && svc.slot !== cpu && snextCredit() + CSCHED2_MIGRATE_RESIST > svc.credit) {
        continue;
      }
      // Budget is the very last check: grabbing it has side effects.
      if (this.#hasCap(svc) && !this.#grabBudget(svc)) {
        if (!svc.onRunq) i--; // parked
        continue;
      }
      if (snext && snext === scurr && this.#hasCap(snext)) this.#returnBudget(snext);
      snext = svc;
      break;
    }
    return snext;
  }

  /** The shortest run `csched2_runtime` gives: `CSCHED2_MIN_TIMER`, or the rate limit if longer. */
  #minRuntime(): number {
    return Math.max(CSCHED2_MIN_TIMER, this.#ctx?.ratelimitNs ?? 0);
  }

  /**
   * `csched2_runtime`: run until our credit falls to the next waiting vCPU's (or to 0), within
   * [max(`CSCHED2_MIN_TIMER`, rate limit), `CSCHED2_MAX_TIMER`], and within the cap budget.
   */
  #runtime(snext: Unit, waitingCredit = this.#runq.head()?.credit ?? 0): number {
    const minTime = this.#minRuntime();
    let rtCredit = snext.credit;
    const swaitCredit = waitingCredit > 0 ? waitingCredit : 0;
    if (swaitCredit > 0) rtCredit = snext.credit - swaitCredit;
    let time = rtCredit > 0 ? this.#c2t(rtCredit, snext) : 0;
    if (this.#hasCap(snext)) time = Math.min(time, Math.max(0, snext.budget));
    if (time < minTime) time = minTime;
    else if (time > CSCHED2_MAX_TIMER) time = CSCHED2_MAX_TIMER;
    return Math.max(1, Math.min(time, this.#ctx?.maxSliceNs ?? time));
  }

  /**
   * `runq_tickle`: an idle (and not already tickled) slot, the vCPU's own first; otherwise the
   * busy slot whose vCPU has the least credit, if the new vCPU has more (`tickle_score`).
   */
  #runqTickle(u: Unit, now: number): SlotId | null {
    const n = this.#pcpus.length;
    for (let k = 0; k < n; k++) {
      const cpu = (u.slot + k) % n;
      const p = this.#pcpus[cpu];
      if (!p.curr && p.tickledAt !== now) {
        p.tickledAt = now;
        return cpu;
      }
    }
    let ipid: SlotId | null = null;
    let max = 0;
    for (let k = 0; k < n; k++) {
      const cpu = (u.slot + k) % n;
      if (this.#pcpus[cpu].tickledAt === now) continue;
      const score = this.#tickleScore(u, cpu, now);
      if (score > max) {
        max = score;
        ipid = cpu;
      }
    }
    if (ipid !== null) this.#pcpus[ipid].tickledAt = now;
    return ipid;
  }

  /** `tickle_score`: how much more credit `u` has than the vCPU running on `cpu` (or -1). */
  #tickleScore(u: Unit, cpu: SlotId, now: number): number {
    const cur = this.#pcpus[cpu].curr;
    if (!cur) return -1;
    const ratelimit = this.#ctx?.ratelimitNs ?? 0;
    // is_preemptable: has it run for (about) the rate limit already?
    if (
      ratelimit > CSCHED2_RATELIMIT_TICKLE_TOLERANCE &&
      now - cur.grantAt <= ratelimit - CSCHED2_RATELIMIT_TICKLE_TOLERANCE
    ) return -1;
    this.#burnRunning(cur, now);
    let score = u.credit - cur.credit;
    if (u.slot !== cpu) score -= CSCHED2_MIGRATE_RESIST;
    return score;
  }

  // -------------------------------------------------------------------------------------------
  // Caps (credit2.c:1948 unit_grab_budget, 1995 unit_return_budget, 2089 replenish)
  // -------------------------------------------------------------------------------------------

  #hasCap(u: Unit): boolean {
    return u.budget !== Infinity;
  }

  /** `csched2_dom_cntl`, cap part: `tot_budget` = period × cap / 100, per-vCPU quotas. */
  #setCap(dom: Dom, cap: number): void {
    const c = Math.min(Math.max(0, Math.trunc(cap)), 100 * Math.max(1, dom.units.length));
    if (c > 0) {
      dom.totBudget = Math.floor((this.#capPeriod * c) / 100);
      for (const u of dom.units) {
        u.budgetQuota = Math.max(Math.floor(dom.totBudget / dom.units.length), CSCHED2_MIN_TIMER);
      }
      if (dom.cap === 0) {
        dom.budget = dom.totBudget;
        dom.nextRepl = this.#now + this.#capPeriod;
        for (const u of dom.units) {
          if (u.state === "running") this.#burnRunning(u, this.#now);
          u.budget = 0; // must grab budget before running again
        }
      }
      for (const u of dom.units) if (u.budget === Infinity) u.budget = 0;
      dom.cap = c;
    } else if (dom.cap !== 0) {
      for (const u of dom.units) {
        u.budget = Infinity;
        u.budgetQuota = 0;
      }
      dom.cap = 0;
      this.#unparkAll(dom, this.#now, new Set());
    }
  }

  /** `unit_grab_budget`: take a quota from the VM's pool, or park. */
  #grabBudget(u: Unit): boolean {
    if (u.budget > 0) return true;
    const dom = u.dom;
    dom.budget += u.budget; // an overrun is paid back from the pool
    if (dom.budget > 0) {
      const b = Math.min(u.budgetQuota, dom.budget);
      u.budget = b;
      dom.budget -= b;
    } else {
      u.budget = 0;
      this.#park(u);
    }
    return u.budget > 0;
  }

  /** `unit_return_budget`: put back what was not used; maybe unpark the VM's parked vCPUs. */
  #returnBudget(u: Unit): void {
    if (!this.#hasCap(u)) return;
    const dom = u.dom;
    dom.budget += u.budget;
    u.budget = 0;
    if (dom.budget > 0 && dom.parked.length > 0) this.#unparkAll(dom, this.#now, new Set());
  }

  /** `park_unit`. */
  #park(u: Unit): void {
    if (u.parked) return;
    u.parked = true;
    if (u.onRunq) this.#runqRemove(u);
    u.dom.parked.push(u);
    this.#report("park", u.id, 1);
  }

  /** `unpark_parked_units`: back to the run queue, tickled. */
  #unparkAll(dom: Dom, now: number, resched: Set<SlotId>): void {
    const parked = dom.parked;
    dom.parked = [];
    for (const u of parked) {
      u.parked = false;
      this.#report("park", u.id, 0);
      if (u.state === "runnable" && !u.onRunq) {
        this.#runqInsert(u);
        const t = this.#runqTickle(u, now);
        if (t !== null) resched.add(t);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Helpers
  // -------------------------------------------------------------------------------------------

  /** `update_max_weight`. */
  #updateMaxWeight(): void {
    let m = 1;
    for (const u of this.#units.values()) m = Math.max(m, u.weight);
    this.#maxWeight = m;
  }

  /** The core says `slot` is free but we think `u` runs there: treat it as descheduled. */
  #desync(u: Unit, slot: SlotId, now: number): void {
    this.#pcpus[slot].curr = null;
    this.#burnRunning(u, now);
    u.state = "runnable";
    this.#returnBudget(u);
    if (!u.parked && !u.onRunq) this.#runqInsert(u);
  }

  #report(kind: string, vcpu: VcpuId | undefined, value: number): void {
    this.#ctx?.report(vcpu === undefined ? { kind, value } : { kind, vcpu, value });
  }
}

function num(v: number | string | boolean | undefined, dflt: number): number {
  const n = typeof v === "string" ? Number(v) : typeof v === "number" ? v : NaN;
  return Number.isFinite(n) ? n : dflt;
}

/**
 * `rqd->runq`: runnable vCPUs by credit (highest first), then by when each joined (FIFO among
 * equals). credit2.c walks a list, fine for a few vCPUs per run queue, not thousands: here both
 * ends of a change are a binary search. The array is kept in reverse (the head last), so that
 * what changes most, the head taken and a choice made ahead put back in front, moves nothing.
 */
class RunQueue {
  /** Lowest priority first: `#a[#a.length - 1]` is the head. */
  #a: Unit[] = [];
  #seq = 0;
  /** Join numbers of vCPUs put back in front of their equals (decreasing). */
  #frontSeq = 0;

  get size(): number {
    return this.#a.length;
  }

  /** The `i`-th in queue order (0: the head). */
  at(i: number): Unit | undefined {
    return this.#a[this.#a.length - 1 - i];
  }

  head(): Unit | undefined {
    return this.#a[this.#a.length - 1];
  }

  /** In queue order. */
  *[Symbol.iterator](): IterableIterator<Unit> {
    for (let i = this.#a.length - 1; i >= 0; i--) yield this.#a[i];
  }

  /**
   * `runq_insert`: before the first vCPU with less credit, behind its equals (`first`: in front
   * of them, for a choice made ahead coming back).
   */
  insert(u: Unit, first: boolean): void {
    u.runqSeq = first ? --this.#frontSeq : ++this.#seq;
    const i = this.#slot(u);
    if (i === this.#a.length) this.#a.push(u);
    else this.#a.splice(i, 0, u);
  }

  remove(u: Unit): void {
    const q = this.#a;
    let i = this.#slot(u);
    if (q[i] !== u) i = q.indexOf(u); // not where its keys say: cannot happen, but never lose it
    if (i < 0) return;
    if (i === q.length - 1) q.pop();
    else q.splice(i, 1);
  }

  /** Equal credits keep their order as queued: numbered so again (after a credit reset). */
  renumber(): void {
    for (let i = this.#a.length - 1; i >= 0; i--) this.#a[i].runqSeq = ++this.#seq;
  }

  /** Where `u` goes in the reversed array: after everything that queues behind it. */
  #slot(u: Unit): number {
    const q = this.#a;
    let lo = 0, hi = q.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const v = q[mid];
      if (v.credit < u.credit || (v.credit === u.credit && v.runqSeq > u.runqSeq)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function remove<T>(list: T[], x: T): void {
  const i = list.indexOf(x);
  if (i >= 0) list.splice(i, 1);
}

/** The plugin: one credit2 scheduler. */
const credit2: Credit2Scheduler = new Credit2Scheduler();
export default credit2;
