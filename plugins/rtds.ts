/**
 * RTDS: Xen's Real-Time Deferrable Server scheduler (RT-Xen; Sisu Xi, Meng Xu, Chenyang Lu,
 * Linh Phan, Christopher Gill, Oleg Sokolsky, Insup Lee, "Real-Time Multi-Core Virtual Machine
 * Scheduling in Xen", EMSOFT 2014; made event driven by Tianyang Chen and Dagaen Golomb, 2016),
 * as a deno-vmm plugin.
 *
 * Read against `xen/common/sched/rt.c` (Xen commit c447b7308b13, 2025; line numbers refer to that
 * file). The policy, as the paper's pseudo-code has it:
 *
 * - Every vCPU is a **deferrable server** with a period and a budget (VM params `period_ms` and
 *   `budget_ms`, default 10 ms and 4 ms, `RTDS_DEFAULT_PERIOD`/`_BUDGET`): at the start of each
 *   period its budget is replenished in full and its deadline set to the period's end
 *   (`rt_update_deadline`); while it runs it burns budget (`burn_budget`); while it is halted
 *   its budget is kept, not consumed (that is what "deferrable" means); unused budget is lost
 *   at the period's end.
 * - **Global EDF** over all slots: the runnable vCPU with budget and the earliest deadline runs
 *   first (`compare_unit_priority`, `runq_pick`); one run queue for all slots.
 * - **Preemption** (`runq_tickle`): when a vCPU becomes runnable (wake) or is replenished, it
 *   takes an idle slot if there is one, else the slot running the latest deadline, if that is
 *   later than its own.
 * - **Extratime** (VM param `extratime`, default on as in `rt_alloc_udata`): a vCPU that used
 *   up its budget and has the flag gets its budget again one priority level lower
 *   (`priority_level++`), below every vCPU still within its reservation, and keeps running in
 *   the background; without it, it waits (depleted queue) for its next period.
 * - **Reserved time** (deno-vmm's, not rt.c's): a slice within the budget is marked `reserved`,
 *   so its EMT holds the host CPU against the host's other threads, as a Xen pCPU runs nothing
 *   else; extratime is not (best effort), and a change between the two is a new grant.
 *
 * Budget is burned by the time a vCPU held its slot, as rt.c burns `now - last_start`, less the
 * time other host threads held its EMT's CPU meanwhile (`stolenNs`: on Xen nothing else runs
 * on the vCPU's pCPU; on a host V8's helper threads can, for up to a kernel tick). DEVIATION: among equal priorities the vCPU that ran least recently goes
 * first (see `#runqInsert`).
 *
 * Deciding ahead (`queueNext`, deno-vmm's): while a vCPU runs and others wait, the run queue's
 * head is named as the slot's next vCPU when `rt_schedule` will surely take it whenever the
 * running vCPU leaves: the head comes before the running vCPU as it is now (so before it once its
 * budget is burned too, or once it halts), no deadline is due before the running vCPU's slice
 * ends (a replenishment could change the order), and no other slot's slice ends sooner (that
 * slot would take the head first). The leaving EMT then hands the slot over
 * itself. A wake, the tick and a parameter change take the choice back first (the core does),
 * and it goes back to the run queue.
 *
 * Replenishment: rt.c arms a timer at the earliest deadline (`repl_timer_handler`). Plugins have
 * no timers, so replenishments happen on the tick (`tickNs`, param `tick_us`, default 1000 us;
 * deadlines are multiples of the period from time 0, as in rt.c where the first deadline is
 * computed from 0, so a tick that divides every period replenishes exactly on time), and
 * lazily in `pickNext`.
 *
 * Parameters. Per VM (`VcpuInfo.params`, `setParams(vm, ...)`): `period_ms`, `budget_ms` (or
 * `period_us`, `budget_us`; 10 us <= budget <= period, `rt_validate_params`), `extratime`
 * (boolean). Policy-wide: `tick_us`; `reserve` (boolean, default true): mark the time within a
 * budget as reserved (`PickDecision.reserved`), which its EMT holds against the host's other
 * threads; false leaves every grant fair-class, for comparison.
 *
 * Policy events (`ctx.report`): `replenish` (value: new deadline, ns), `depleted` (the vCPU ran
 * out of budget without extratime), `extratime` (value: its new priority level).
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

// ---------------------------------------------------------------------------------------------
// Constants (rt.c:92-123)
// ---------------------------------------------------------------------------------------------

/** rt.c:92 `RTDS_DEFAULT_PERIOD`: 10 ms. */
const RTDS_DEFAULT_PERIOD = 10_000 * NS_PER_US;
/** rt.c:93 `RTDS_DEFAULT_BUDGET`: 4 ms. */
const RTDS_DEFAULT_BUDGET = 4_000 * NS_PER_US;
/** rt.c:102 `RTDS_MIN_PERIOD`: 10 us. */
const RTDS_MIN_PERIOD = 10 * NS_PER_US;
/** rt.c:109 `RTDS_MIN_BUDGET`: 10 us. */
const RTDS_MIN_BUDGET = 10 * NS_PER_US;
/** rt.c:115 `RTDS_MAX_PRIORITY_LEVEL`: saturate instead of wrapping around. */
const RTDS_MAX_PRIORITY_LEVEL = 0xffff_ffff;
/** rt.c:123 `UPDATE_LIMIT_SHIFT`: beyond 1024 periods late, compute the deadline directly. */
const UPDATE_LIMIT_SHIFT = 10;
/** Default replenishment tick. */
const DEFAULT_TICK_US = 1000;

/** A vCPU: `struct rt_unit` (rt.c:203). */
interface Unit {
  id: VcpuId;
  vm: string;
  period: number;
  budget: number;
  curBudget: number;
  curDeadline: number;
  priorityLevel: number;
  extratime: boolean;
  /** `RTDS_depleted`. */
  depleted: boolean;
  state: "runnable" | "running" | "queued" | "halted";
  slot: SlotId;
  /** On the run queue (`runq`) or the depleted queue. */
  queue: "runq" | "depletedq" | null;
  grantAt: number;
  /** When its current slice ends (running), ns. */
  sliceEnd: number;
  /** Chosen ahead: the slice and reserved flag it was given, taken up at its hand-off. */
  queuedSlice: number;
  queuedReserved: boolean;
  /** When it was last granted a slot (-1: never): the tie-break among equal priorities. */
  lastRan: number;
  /** Run time of the current grant already accounted (burned, or forgiven by a replenishment). */
  chargedNs: number;
  /** The current grant is reserved time (priority level 0, within the budget). */
  reserved: boolean;
  /** When it last joined the run queue: the order among otherwise equal vCPUs (first in first). */
  queuedSeq: number;
  /** Its place in the run queue's heap (-1 when not on it). */
  heapIndex: number;
  /** When it joined the scheduler: the order the replenishment handler visits vCPUs in. */
  order: number;
}

/** A slot. */
interface Pcpu {
  curr: Unit | null;
  /** The vCPU chosen ahead to take the slot when `curr` leaves it (`queueNext`). */
  next: Unit | null;
  /** Time this slot was last tickled (`prv->tickled`), -1 if not. */
  tickledAt: number;
}

/**
 * `compare_unit_priority`: > 0 if `v1` has higher priority than `v2` (lower priority level,
 * then earlier deadline), < 0 if lower, 0 if equal.
 */
function compareUnitPriority(v1: Unit, v2: Unit): number {
  const prio = v2.priorityLevel - v1.priorityLevel;
  if (prio === 0) return v2.curDeadline - v1.curDeadline;
  return prio;
}

/** Xen's RTDS scheduler: global EDF of deferrable servers. */
export class RtdsScheduler implements SchedulerPlugin {
  /** Name shown in traces. */
  readonly name = "rtds";
  /** The replenishment tick (param `tick_us`). */
  tickNs = DEFAULT_TICK_US * NS_PER_US;
  /**
   * No rate limit: a wake or replenishment with an earlier deadline preempts at once. rt.c has
   * none (`sched_ratelimit_us` is credit's and credit2's), and a deadline cannot wait for one.
   */
  readonly ratelimit = false;

  #ctx: SchedContext | null = null;
  #pcpus: Pcpu[] = [];
  #units = new Map<VcpuId, Unit>();
  /**
   * `prv->runq`: runnable vCPUs with budget (or extratime), by priority. rt.c keeps a sorted
   * list (O(n) insert); a binary heap gives the same head in O(log n), which matters for
   * thousands of vCPUs.
   */
  #runq = new RunQueue();
  /** `prv->depletedq`: runnable vCPUs without budget, unsorted. */
  #depletedq = new Set<Unit>();
  /**
   * `prv->replq`: when each non-halted vCPU's deadline comes (rt.c:150, sorted by deadline), so
   * that a replenishment visits only the vCPUs that are due. Entries are `[deadline, unit]`;
   * one whose deadline is no longer the vCPU's is stale and skipped.
   */
  #replq = new DeadlineHeap();
  #joined = 0;
  #queuedSeq = 0;
  #now = 0;
  /** Param `reserve`: budget time is reserved time. */
  #reserve = true;

  /** `rt_init`. */
  init(ctx: SchedContext): void {
    this.#ctx = ctx;
    this.#pcpus = Array.from(
      { length: ctx.slots },
      () => ({ curr: null, next: null, tickledAt: -1 }),
    );
    this.#units.clear();
    this.#runq = new RunQueue();
    this.#depletedq = new Set();
    this.#replq = new DeadlineHeap();
    this.#now = 0;
    const tick = num(ctx.params.tick_us, DEFAULT_TICK_US);
    this.tickNs = Math.max(1, Math.round((tick > 0 ? tick : DEFAULT_TICK_US) * NS_PER_US));
    this.#reserve = ctx.params.reserve === undefined ? true : bool(ctx.params.reserve);
  }

  /** `rt_alloc_udata` + `rt_unit_insert`. */
  addVcpu(info: VcpuInfo): void {
    const u: Unit = {
      id: info.id,
      vm: info.vm,
      period: RTDS_DEFAULT_PERIOD,
      budget: RTDS_DEFAULT_BUDGET,
      curBudget: 0,
      curDeadline: 0,
      priorityLevel: 0,
      extratime: true, // rt.c:881: set by default
      depleted: false,
      state: "halted",
      slot: info.index % this.#pcpus.length,
      queue: null,
      grantAt: this.#now,
      sliceEnd: 0,
      queuedSlice: 0,
      queuedReserved: false,
      lastRan: -1,
      chargedNs: 0,
      reserved: false,
      queuedSeq: 0,
      heapIndex: -1,
      order: this.#joined++,
    };
    this.#applyParams(u, info.params);
    this.#units.set(u.id, u);
    const now = this.#now;
    if (now >= u.curDeadline) this.#updateDeadline(now, u);
    if (info.state === "running" && info.slot !== undefined && !this.#pcpus[info.slot].curr) {
      u.state = "running";
      u.slot = info.slot;
      this.#pcpus[info.slot].curr = u;
    } else if (info.state === "running" && info.slot !== undefined) {
      // Handed the slot by its holder, whose leave is still to come (told after it).
      u.state = "queued";
      u.slot = info.slot;
      u.queuedReserved = false;
      u.queuedSlice = this.#slice(u);
      this.#pcpus[info.slot].next = u;
    } else if (info.state !== "halted") {
      u.state = "runnable";
      this.#runqInsert(u);
    }
    if (u.state !== "halted") this.#replq.push(u.curDeadline, u);
  }

  /** `rt_unit_remove`. */
  removeVcpu(id: VcpuId): void {
    const u = this.#units.get(id);
    if (!u) return;
    this.#qRemove(u);
    for (const p of this.#pcpus) {
      if (p.curr === u) this.#leave(p, this.#now);
      if (p.next === u) p.next = null;
    }
    this.#units.delete(id);
  }

  /** `rt_dom_cntl` (putinfo): new period/budget/extratime for every vCPU of a VM. */
  setParams(target: string, params: SchedParams): void {
    for (const u of this.#units.values()) {
      if (u.vm !== target) continue;
      const wasExtra = u.extratime;
      this.#applyParams(u, params);
      // Turning extratime on while depleted: demote and refill, as rt_dom_cntl does.
      if (!wasExtra && u.extratime && u.curBudget <= 0) {
        u.priorityLevel = Math.min(u.priorityLevel + 1, RTDS_MAX_PRIORITY_LEVEL);
        u.curBudget = u.budget;
        u.depleted = false;
        if (u.queue) {
          this.#qRemove(u);
          this.#runqInsert(u);
        }
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Hooks
  // -------------------------------------------------------------------------------------------

  /** `rt_schedule` for a free slot: the head of the run queue, for its remaining budget. */
  pickNext(slot: SlotId, now: number): PickDecision | null {
    this.#now = now;
    const spc = this.#pcpus[slot];
    spc.tickledAt = -1;
    if (spc.curr) this.#desync(spc.curr, slot, now);
    if (spc.next) this.#unqueue(spc.next); // the core takes choices back first; never lose one
    this.#replenish(now, new Set()); // a late timer: nothing to tickle, we are picking anyway

    const snext = this.#runq.head(); // runq_pick: every vCPU on the runq is runnable with budget
    if (!snext) return null;
    this.#qRemove(snext);
    snext.state = "running";
    snext.slot = slot;
    snext.grantAt = now;
    snext.lastRan = now;
    snext.chargedNs = 0;
    spc.curr = snext;
    // Within its budget the vCPU runs on reserved time, which its EMT holds against the host's
    // other threads; extratime is best effort (DEVIATION: Xen's pCPU has no other threads).
    snext.reserved = this.#onReservedTime(snext);
    const sliceNs = this.#slice(snext);
    snext.sliceEnd = now + sliceNs;
    return { vcpu: snext.id, sliceNs, reserved: snext.reserved };
  }

  /**
   * Deciding ahead: the run queue's head, if `rt_schedule` will take it whenever `running`
   * leaves `slot` (see the module documentation).
   */
  queueNext(slot: SlotId, running: VcpuId, now: number): PickDecision | null {
    this.#now = now;
    const spc = this.#pcpus[slot];
    const curr = this.#units.get(running);
    const head = this.#runq.head();
    if (!head || !curr || spc.curr !== curr || spc.next || curr.state !== "running") return null;
    // A replenishment before the slot frees could reorder the queue: decide then.
    if (this.#replq.size > 0 && this.#replq.minKey() <= Math.max(now, curr.sliceEnd)) return null;
    // Another slot whose slice ends first would take the head then: never bind it to a slot
    // held longer (it would wait behind that holder while the other slot changed hands).
    for (const p of this.#pcpus) {
      if (p !== spc && p.curr && p.curr.state === "running" && p.curr.sliceEnd < curr.sliceEnd) {
        return null;
      }
    }
    // The head must beat the running vCPU as it is now: then also once its budget is burned
    // (a lower level, or depleted), and if it halts the head is the pick anyway.
    if (!before(head, curr)) return null;
    this.#qRemove(head);
    head.state = "queued";
    head.slot = slot;
    spc.next = head;
    head.queuedReserved = this.#onReservedTime(head);
    head.queuedSlice = this.#slice(head);
    return { vcpu: head.id, sliceNs: head.queuedSlice, reserved: head.queuedReserved };
  }

  /** The vCPU running on `p` left it: the one chosen ahead, if any, runs there from `now`. */
  #leave(p: Pcpu, now: number): void {
    p.curr = null;
    const next = p.next;
    if (!next) return;
    p.next = null;
    next.state = "running";
    next.grantAt = now;
    next.lastRan = now;
    next.chargedNs = 0;
    next.reserved = next.queuedReserved;
    next.sliceEnd = now + next.queuedSlice;
    p.curr = next;
  }

  /** A choice made ahead comes back (revoked): into the run queue again, as it was. */
  #unqueue(u: Unit): void {
    for (const p of this.#pcpus) {
      if (p.next === u) p.next = null;
      if (p.curr === u) p.curr = null; // its hand-off was cancelled after all
    }
    u.state = "runnable";
    if (!u.queue) this.#runqInsert(u);
  }

  /** `rt_unit_sleep` (+ the burn of `rt_schedule`): the budget is kept for later. */
  onHalt(vcpu: VcpuId, now: number, _ranNs: number, stolenNs = 0): void {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u) return;
    if (u.state === "running") {
      const p = this.#pcpus[u.slot];
      this.#burnRan(u, this.#held(u, now, stolenNs));
      if (p.curr === u) this.#leave(p, now);
    } else if (u.state === "queued") {
      for (const p of this.#pcpus) if (p.next === u) p.next = null;
    }
    this.#qRemove(u);
    u.state = "halted";
  }

  /**
   * `rt_unit_wake`: a new period if the deadline passed while it was halted; queue; tickle the
   * slot running the latest deadline if ours is earlier.
   */
  onWake(vcpu: VcpuId, now: number): SlotId | void {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u || u.state !== "halted") return;
    u.state = "runnable";
    if (now >= u.curDeadline) this.#updateDeadline(now, u);
    this.#replq.push(u.curDeadline, u); // rt.c:1349 replq_insert (halted, it had left replq)
    this.#runqInsert(u);
    if (u.queue !== "runq") return; // depleted: waits for its replenishment
    const t = this.#runqTickle(u, now);
    if (t !== null && this.#pcpus[t].curr) return t;
  }

  /** The burn of `rt_schedule`, then `rt_context_saved`: back in a queue. */
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
    if (reason === "revoked") return this.#unqueue(u); // chosen ahead, it never ran
    const p = this.#pcpus[slot];
    if (u.state === "running") this.#burnRan(u, this.#held(u, now, stolenNs));
    if (p.curr === u) this.#leave(p, now);
    u.state = "runnable";
    u.slot = slot;
    if (!u.queue) this.#runqInsert(u);
  }

  /**
   * `rt_schedule` when the current vCPU is still the best (the core asks only when nobody
   * waits): burn what it ran, replenish what is due, and go on for the budget left. Null when
   * the budget ran out without extratime: the slice ends and the vCPU waits, depleted.
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
    u.lastRan = now;
    u.chargedNs = 0;
    this.#replenish(now, new Set()); // a late timer: nobody waits, nothing to tickle
    if (u.depleted) return null;
    // From reserved time into extratime or back: a new grant, so that its EMT holds the CPU as
    // the time it runs on now allows (an extension keeps the grant's hold).
    if (u.reserved !== this.#onReservedTime(u)) return null;
    const sliceNs = this.#slice(u);
    u.sliceEnd = now + sliceNs;
    return sliceNs;
  }

  /** Whether `u` runs on reserved time now: within its budget (level 0), `reserve` on. */
  #onReservedTime(u: Unit): boolean {
    return this.#reserve && u.priorityLevel === 0;
  }

  /** "Invoke the scheduler next time": when `u`'s budget runs out (within the core's bound). */
  #slice(u: Unit): number {
    return Math.max(1, Math.min(u.curBudget, this.#ctx?.maxSliceNs ?? u.curBudget));
  }

  /** `repl_timer_handler`: replenish every vCPU whose deadline passed, tickle as needed. */
  onTick(now: number): SlotId[] {
    this.#now = now;
    const resched = new Set<SlotId>();
    this.#replenish(now, resched);
    if (this.#runq.size > 0) {
      this.#pcpus.forEach((p, cpu) => {
        if (!p.curr) resched.add(cpu);
      });
    }
    return [...resched];
  }

  // -------------------------------------------------------------------------------------------
  // Budget and deadlines (rt.c:436 rt_update_deadline, 967 burn_budget, 1543 repl handler)
  // -------------------------------------------------------------------------------------------

  /**
   * `rt_update_deadline`: move the deadline to the end of the period containing `now`; full
   * budget, priority level 0.
   */
  #updateDeadline(now: number, u: Unit): void {
    if (u.curDeadline + u.period * 2 ** UPDATE_LIMIT_SHIFT > now) {
      do u.curDeadline += u.period; while (u.curDeadline <= now);
    } else {
      const count = Math.floor((now - u.curDeadline) / u.period) + 1;
      u.curDeadline += count * u.period;
    }
    u.curBudget = u.budget;
    u.priorityLevel = 0;
    // Time run before this instant belonged to the old period.
    if (u.state === "running") u.chargedNs = Math.max(u.chargedNs, now - u.grantAt);
    this.#report("replenish", u.id, u.curDeadline);
  }

  /** `burn_budget`: nanosecond accounting; extratime demotes and refills, else depleted. */
  #burnBudget(u: Unit, delta: number): void {
    if (delta <= 0) return;
    u.curBudget -= delta;
    if (u.curBudget <= 0) {
      if (u.extratime) {
        if (u.priorityLevel < RTDS_MAX_PRIORITY_LEVEL) u.priorityLevel++;
        u.curBudget = u.budget;
        this.#report("extratime", u.id, u.priorityLevel);
      } else {
        u.curBudget = 0;
        u.depleted = true;
        this.#report("depleted", u.id, 0);
      }
    }
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

  #burnRan(u: Unit, ranNs: number): void {
    this.#burnBudget(u, ranNs - u.chargedNs);
    u.chargedNs = Math.max(u.chargedNs, ranNs);
  }

  /**
   * `repl_timer_handler`: every non-halted vCPU whose deadline is due gets its new period; a
   * replenished running vCPU that is no longer the best lets the queue's head preempt (through
   * the tickle); a replenished depleted vCPU is tickled itself.
   */
  #replenish(now: number, resched: Set<SlotId>): void {
    // The due vCPUs, from replq: each once, in the order they joined (as a walk over them all).
    const due = new Set<Unit>();
    while (this.#replq.size > 0 && this.#replq.minKey() <= now) {
      const [deadline, u] = this.#replq.pop();
      if (u.curDeadline === deadline && u.state !== "halted" && this.#units.get(u.id) === u) {
        due.add(u);
      }
    }
    if (due.size === 0) return;
    const updated: { u: Unit; wasDepleted: boolean }[] = [];
    for (const u of [...due].sort((a, b) => a.order - b.order)) {
      const wasDepleted = u.depleted;
      u.depleted = false;
      const queued = u.queue !== null;
      if (queued) this.#qRemove(u); // its place in the run queue depends on the deadline
      this.#updateDeadline(now, u);
      if (queued) this.#runqInsert(u);
      this.#replq.push(u.curDeadline, u);
      updated.push({ u, wasDepleted });
    }
    for (const { u, wasDepleted } of updated) {
      const head = this.#runq.head();
      let t: SlotId | null = null;
      if (u.state === "running" && head) {
        if (compareUnitPriority(u, head) < 0) t = this.#runqTickle(head, now);
      } else if (wasDepleted && u.queue === "runq") {
        t = this.#runqTickle(u, now);
      }
      if (t !== null) resched.add(t);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Queues (rt.c:507 deadline_queue_insert, 568 runq_insert, 1214 runq_tickle)
  // -------------------------------------------------------------------------------------------

  /**
   * `runq_insert`: with budget (or extratime) into the run queue, behind every vCPU of higher
   * priority; without, onto the depleted queue. DEVIATION: among equal priorities (same level
   * and deadline, which vCPUs with the same period always have, deadlines being multiples of
   * the period) the vCPU that ran least recently goes first; rt.c puts the newcomer last, and in
   * overload the replenishment handler's order then starves the same vCPUs every period (the
   * core's watchdog ejects a policy that leaves a runnable vCPU waiting 1 s).
   */
  #runqInsert(u: Unit): void {
    if (u.curBudget > 0 || u.extratime) {
      if (u.curBudget <= 0) {
        // extratime turned on for a vCPU that had no budget: as burn_budget would have done.
        u.priorityLevel = Math.min(u.priorityLevel + 1, RTDS_MAX_PRIORITY_LEVEL);
        u.curBudget = u.budget;
      }
      u.queuedSeq = ++this.#queuedSeq;
      this.#runq.push(u);
      u.queue = "runq";
    } else {
      this.#depletedq.add(u);
      u.queue = "depletedq";
    }
  }

  #qRemove(u: Unit): void {
    if (u.queue === "runq") this.#runq.remove(u);
    else if (u.queue === "depletedq") this.#depletedq.delete(u);
    u.queue = null;
  }

  /**
   * `runq_tickle`: an idle slot not yet tickled (the vCPU's own first); otherwise the slot whose
   * running vCPU has the lowest priority, if lower than `u`'s. Returns it, or null.
   */
  #runqTickle(u: Unit, now: number): SlotId | null {
    const n = this.#pcpus.length;
    let latest: SlotId | null = null;
    for (let k = 0; k < n; k++) {
      const cpu = (u.slot + k) % n;
      const p = this.#pcpus[cpu];
      if (p.tickledAt === now) continue;
      if (!p.curr) {
        p.tickledAt = now;
        return cpu;
      }
      if (latest === null || compareUnitPriority(p.curr, this.#pcpus[latest].curr!) < 0) {
        latest = cpu;
      }
    }
    if (latest !== null && compareUnitPriority(this.#pcpus[latest].curr!, u) < 0) {
      this.#pcpus[latest].tickledAt = now;
      return latest;
    }
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // Helpers
  // -------------------------------------------------------------------------------------------

  /** `rt_validate_params` + putinfo: bad values are ignored (the VM keeps its parameters). */
  #applyParams(u: Unit, params: SchedParams): void {
    let period = u.period;
    let budget = u.budget;
    if (params.period_us !== undefined) period = num(params.period_us, NaN) * NS_PER_US;
    if (params.period_ms !== undefined) period = num(params.period_ms, NaN) * 1e6;
    if (params.budget_us !== undefined) budget = num(params.budget_us, NaN) * NS_PER_US;
    if (params.budget_ms !== undefined) budget = num(params.budget_ms, NaN) * 1e6;
    period = Math.round(period);
    budget = Math.round(budget);
    if (period >= RTDS_MIN_PERIOD && budget >= RTDS_MIN_BUDGET && budget <= period) {
      u.period = period;
      u.budget = budget;
      u.curBudget = Math.min(u.curBudget, budget);
    }
    if (params.extratime !== undefined) u.extratime = bool(params.extratime);
  }

  /** The core says `slot` is free but we think `u` runs there: treat it as descheduled. */
  #desync(u: Unit, slot: SlotId, now: number): void {
    this.#pcpus[slot].curr = null;
    this.#burnRan(u, now - u.grantAt);
    u.state = "runnable";
    if (!u.queue) this.#runqInsert(u);
  }

  #report(kind: string, vcpu: VcpuId, value: number): void {
    this.#ctx?.report({ kind, vcpu, value });
  }
}

function num(v: number | string | boolean | undefined, dflt: number): number {
  const n = typeof v === "string" ? Number(v) : typeof v === "number" ? v : NaN;
  return Number.isFinite(n) ? n : dflt;
}

function bool(v: number | string | boolean): boolean {
  if (typeof v === "string") return !["0", "false", "no", "off", ""].includes(v.toLowerCase());
  return Boolean(v);
}

/**
 * Whether `u` goes before `v` in the run queue: higher priority (`compare_unit_priority`), then
 * the one that ran least recently (DEVIATION, see `#runqInsert`), then the one queued first (as
 * rt.c's sorted insert puts a newcomer behind its equals).
 */
function before(u: Unit, v: Unit): boolean {
  const c = compareUnitPriority(u, v);
  if (c !== 0) return c > 0;
  if (u.lastRan !== v.lastRan) return u.lastRan < v.lastRan;
  return u.queuedSeq < v.queuedSeq;
}

/** The run queue: a binary heap by {@linkcode before}, each vCPU knowing its place. */
class RunQueue {
  #a: Unit[] = [];

  get size(): number {
    return this.#a.length;
  }

  /** The highest-priority vCPU, or undefined. */
  head(): Unit | undefined {
    return this.#a[0];
  }

  push(u: Unit): void {
    u.heapIndex = this.#a.length;
    this.#a.push(u);
    this.#up(u.heapIndex);
  }

  remove(u: Unit): void {
    const i = u.heapIndex;
    if (i < 0 || this.#a[i] !== u) return;
    const last = this.#a.pop()!;
    u.heapIndex = -1;
    if (i === this.#a.length) return;
    this.#a[i] = last;
    last.heapIndex = i;
    this.#up(i);
    this.#down(last.heapIndex);
  }

  #up(i: number): void {
    const a = this.#a;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i], a[p])) break;
      this.#swap(i, p);
      i = p;
    }
  }

  #down(i: number): void {
    const a = this.#a;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < a.length && before(a[l], a[m])) m = l;
      if (r < a.length && before(a[r], a[m])) m = r;
      if (m === i) return;
      this.#swap(i, m);
      i = m;
    }
  }

  #swap(i: number, j: number): void {
    const a = this.#a;
    [a[i], a[j]] = [a[j], a[i]];
    a[i].heapIndex = i;
    a[j].heapIndex = j;
  }
}

/** `replq`: a binary min-heap of `[deadline, unit]` entries. */
class DeadlineHeap {
  #a: [number, Unit][] = [];

  get size(): number {
    return this.#a.length;
  }

  /** The earliest deadline (call only when not empty). */
  minKey(): number {
    return this.#a[0][0];
  }

  push(deadline: number, u: Unit): void {
    const a = this.#a;
    a.push([deadline, u]);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p][0] <= a[i][0]) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }

  pop(): [number, Unit] {
    const a = this.#a;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && a[l][0] < a[m][0]) m = l;
        if (r < a.length && a[r][0] < a[m][0]) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

/** The plugin: one RTDS scheduler. */
const rtds: RtdsScheduler = new RtdsScheduler();
export default rtds;
