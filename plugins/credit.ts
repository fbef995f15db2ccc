/**
 * Credit: Xen's credit1 scheduler (Emmanuel Ackaouy, XenSource 2006), as a deno-vmm plugin.
 *
 * Read against `xen/common/sched/credit.c` (Xen commit c447b7308b13, 2025; line numbers below
 * refer to that file unless another is named). The policy, in the paper's terms:
 *
 * - Every VM (Xen: domain) has a **weight** (param `weight`, default 256) and an optional
 *   **cap** (param `cap`, in % of one slot, 0 = none).
 * - Every 10 ms **tick** (`csched_tick`) the running vCPU is charged for the time it ran and
 *   loses any BOOST. Every 3 ticks = one 30 ms **accounting period** (`csched_acct`), the credits
 *   one period of all slots is worth (`credits_per_tslice` = 300 per slot) are handed out to the
 *   *active* vCPUs in proportion to their VM's weight, and every active vCPU's priority is
 *   recomputed: **UNDER** if its credit is >= 0, **OVER** otherwise.
 * - A running vCPU burns 10 credits per ms it holds its slot, by exact time (`burn_credits`).
 * - A vCPU that wakes from a halt while UNDER is **BOOST**ed (`csched_unit_wake`): it goes to the
 *   front of the queue and preempts a running UNDER/OVER vCPU (tickle). The boost ends at the
 *   first tick that finds it running (`csched_unit_acct`), or at the next accounting.
 * - Each slot has its own run queue ordered by priority (BOOST > UNDER > OVER), FIFO inside a
 *   priority (`__runq_insert`). A slot whose best local candidate is OVER, or that has nothing,
 *   steals a strictly higher-priority vCPU from another slot's queue (`csched_load_balance`).
 * - A vCPU of a capped VM whose credit falls below the cap's share is **parked** (not scheduled)
 *   at accounting, and unparked at the first accounting that finds its credit >= 0.
 * - The slice is 30 ms (`tslice_ms`); the 1 ms context-switch rate limit (`sched_ratelimit_us`)
 *   is enforced by the deno-vmm core (`ctx.ratelimitNs`), as Xen's core does for credit.
 *
 * Where this plugin departs from credit.c, on purpose (each is marked `DEVIATION` below):
 *
 * 1. Credits are burned exactly at every halt and deschedule (the time the vCPU held its slot,
 *    less the time other host threads took its EMT's CPU, `stolenNs`; a tick's charge of
 *    that time is given back at the release) and for a running vCPU at every tick, as credit.c does since
 *    Xen changeset 78c9b2a64b38 ("Accurate accounting for credit scheduler", 2007), **and** a
 *    vCPU joins the active list whenever it burns credit, not only when a tick finds it
 *    running (credit.c: `__csched_unit_acct_start` is called only from `csched_unit_acct`,
 *    941-975, which only `csched_tick` calls, 1601-1602). In credit.c a vCPU that always halts
 *    just before the tick never becomes active, so accounting never lowers its priority and it
 *    is BOOSTed on every wake: the tick-sampling attack (Zhou et al., "Scheduler
 *    Vulnerabilities and Coordinated Attacks in Cloud Computing", 2011) still takes 95 % of a
 *    slot beside a hog; here it gets its 50 %. The cost: an I/O VM is on the active list at
 *    nearly every accounting, and with credit.c's peak that dilutes the weights of the VMs
 *    beside it (DEVIATION 7 prevents it). Param `active_on_burn=false` restores credit.c's rule.
 * 2. A slot with nothing to run may steal any queued vCPU from any slot, ignoring the 1 ms
 *    load-balance rate limit and the "don't steal from an idle pCPU" rule: in Xen the tickled
 *    idle pCPU would pick the vCPU up itself, here the core asks whichever free slot it likes.
 * 3. When no slot is idle and the vCPU's own slot runs something of equal or higher priority,
 *    a wake preempts the slot running the lowest priority below the waking vCPU's, if any (Xen
 *    only tickles the vCPU's own pCPU and lets load balancing find it later).
 * 4. Accounting's upper bound (credit above one period's worth: leave the active list, keep
 *    half) applies to halted vCPUs only. credit.c applies it to any vCPU; a spinning vCPU of a
 *    heavy VM that waits behind two 30 ms slices then loses half its credit, and three spinning
 *    VMs weighted 1:2:4 on one slot get 15.2 / 29.4 / 55.5 % instead of 14.3 / 28.6 / 57.1 %.
 * 5. Removing a VM's cap (`setParams(vm, {cap: 0})`) unparks its vCPUs at once.
 * 6. Accounting hands out `prv->credit` less the credits of the steal not charged since the
 *    last accounting (DEVIATION 1): what the slots really delivered. With the full supply and
 *    a quarter of every grant stolen nobody ever runs out of credit, and hogs weighted 1:2:4
 *    on one slot got 19 / 38.5 / 42.5 %.
 * 7. Accounting hands a vCPU that halted since the last accounting no more than brings its
 *    credit up to one period's worth (`credits_per_tslice`); what it cannot take goes to the
 *    other VMs through credit.c's own redistribution of what a VM cannot use (`credit_peak`,
 *    credit.c:1444-1498). credit.c's peak is `active vCPUs x credits_per_tslice` for every VM,
 *    what it could burn if its vCPUs ran the whole period. DEVIATION 1 keeps an I/O VM on the
 *    active list at nearly every accounting, and with that peak it is handed its weight's
 *    share of every period: in the simulator an echo VM (weight 256, 100 requests/s of 50 us)
 *    beside hogs of weight 512 and 256 on one slot was on the list at 318 of 333 accountings,
 *    handed 86.5 credits a period and burned 1.5. It shed the excess through the upper bound
 *    (halve, leave the list: 161 times in 10 s) and rejoined at its next wake. The hogs were
 *    handed less than the slot gave them, were both OVER 7 s of 10, where they take 30 ms
 *    turns whatever their weights, and the lower bound (-300) forgave the light hog's debt at
 *    100 accountings: 62.1 / 37.4 %, 1.66:1 where 2:1 is due. With this rule the echo VM is
 *    handed what it burns (2.4 credits a period, 0.9 of them its first fill to 300), stays on
 *    the list at 300 credits, UNDER, so it keeps BOOST, and the hogs get 66.1 / 33.4 %. It
 *    never lowers the share of a vCPU that halts but wants more than its share, as the
 *    tick-sampling attacker does: its credit is negative, so its room exceeds its share.
 *
 * Deciding ahead (`queueNext`): while a slot's vCPU runs, the slot's next vCPU is the head of
 * its run queue, as `csched_schedule` will pick it when the current one leaves: the current
 * vCPU is re-inserted behind every vCPU of its priority or higher (`__runq_insert`), so a head
 * of the same or a higher priority comes first whatever the current one does (slice end,
 * yield or halt). A head of lower priority is not queued (the current vCPU would go on), nor
 * one that `csched_schedule` would pass over for load balancing (an OVER head with other slots
 * to steal from). The core takes the choice back at every wake, tick and parameter change,
 * the events that reorder the queues; a revoked head goes back in front of its priority.
 *
 * Parameters. Per VM (`VcpuInfo.params`, `setParams(vm, ...)`): `weight` (1..65535, default
 * 256), `cap` (% of one slot, 0 = no cap). Policy-wide (`ctx.params`, `setParams("*", ...)`):
 * `tslice_ms` (1..1000, default 30), `ratelimit_us` (informative: the core enforces its own),
 * `active_on_burn` (default true: DEVIATION 1; false: only a tick puts a vCPU on the active
 * list, as credit.c does), `halted_peak` (default true: DEVIATION 7; false: credit.c's peak).
 *
 * Policy events (`ctx.report`): `boost` (value 1 start, 0 end), `prio` (new priority after
 * accounting: 0 BOOST, -1 UNDER, -2 OVER), `allot` (credits an accounting handed the vCPU),
 * `credit` (credit after accounting, after the bounds), `active` (1 joined the active list,
 * 0 left it: `TRC_CSCHED_ACCOUNT_START` / `_STOP`), `park` (1 parked, 0 unparked).
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

// ---------------------------------------------------------------------------------------------
// Constants (credit.c)
// ---------------------------------------------------------------------------------------------

/** credit.c:49 `CSCHED_DEFAULT_WEIGHT`. */
const CSCHED_DEFAULT_WEIGHT = 256;
/** credit.c:50 `CSCHED_TICKS_PER_TSLICE`: accounting runs every 3 ticks. */
const CSCHED_TICKS_PER_TSLICE = 3;
/** credit.c:52 `CSCHED_DEFAULT_TSLICE_MS`. */
const CSCHED_DEFAULT_TSLICE_MS = 30;
/** credit.c:54 `CSCHED_DEFAULT_LOAD_BALANCE_RATELIMIT_US`: at most one steal attempt per ms. */
const CSCHED_DEFAULT_LOAD_BALANCE_RATELIMIT_US = 1000;
/** credit.c:57 `CSCHED_CREDITS_PER_MSEC`. */
const CSCHED_CREDITS_PER_MSEC = 10;
/** xen/include/public/sysctl.h:801-802 `XEN_SYSCTL_CSCHED_TSLICE_MAX` / `_MIN` (ms). */
const TSLICE_MAX_MS = 1000;
const TSLICE_MIN_MS = 1;

/** credit.c:65-68: priorities. A higher number runs first; IDLE is the empty slot. */
const CSCHED_PRI_TS_BOOST = 0; // just woken, preempts UNDER and OVER
const CSCHED_PRI_TS_UNDER = -1; // time-share with credits
const CSCHED_PRI_TS_OVER = -2; // time-share without credits
const CSCHED_PRI_IDLE = -64; // idle

const NS_PER_US = 1_000;
const NS_PER_MS = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Data (credit.c:154-236: struct csched_pcpu, csched_unit, csched_dom, csched_private)
// ---------------------------------------------------------------------------------------------

/** A VM: `struct csched_dom`. */
interface Dom {
  name: string;
  weight: number;
  /** % of one slot; 0 = no cap. */
  cap: number;
  /** `active_unit`: its vCPUs on the active list, in list order. */
  activeUnits: Unit[];
  /** Whether it is on `prv.activeDoms` (`active_sdom_elem`). */
  onActiveList: boolean;
}

/** A vCPU: `struct csched_unit`. */
interface Unit {
  id: VcpuId;
  dom: Dom;
  pri: number;
  /** Credits (10 per ms of run time). */
  credit: number;
  /** Sub-credit remainder of burned time, in credit-ns (`residual`). */
  residual: number;
  /** `queued`: chosen ahead for its slot (`queueNext`), off the run queue, not running yet. */
  state: "runnable" | "running" | "halted" | "queued";
  /** The slot it runs on, or whose run queue it is on / last ran on (`sched_unit_master`). */
  slot: SlotId;
  onRunq: boolean;
  /** On its VM's active list (`active_unit_elem` not empty). */
  active: boolean;
  /** `CSCHED_FLAG_UNIT_PARKED`. */
  parked: boolean;
  /** `CSCHED_FLAG_UNIT_YIELD`. */
  yielding: boolean;
  /** When the current grant began (our `now` at `pickNext`). */
  grantAt: number;
  /** Run time of the current grant already charged (by ticks). */
  chargedNs: number;
  /** It halted since the last accounting (DEVIATION 7). */
  halted: boolean;
}

/** A slot: `struct csched_pcpu`. */
interface Pcpu {
  runq: Unit[];
  curr: Unit | null;
  /** The vCPU chosen ahead to run when `curr` leaves (`queueNext`), or null. */
  next: Unit | null;
  lastLoadBalance: number;
}

/**
 * Xen's credit1 scheduler. The default export is one instance; tests may create more.
 */
export class CreditScheduler implements SchedulerPlugin {
  /** Name shown in traces. */
  readonly name = "credit";
  /** 10 ms: `tick_period_us` = tslice / `CSCHED_TICKS_PER_TSLICE` (credit.c:1248-1257). */
  tickNs = (CSCHED_DEFAULT_TSLICE_MS * NS_PER_MS) / CSCHED_TICKS_PER_TSLICE;

  #ctx: SchedContext | null = null;
  #pcpus: Pcpu[] = [];
  #units = new Map<VcpuId, Unit>();
  #doms = new Map<string, Dom>();
  /** `prv->active_sdom`. */
  #activeDoms: Dom[] = [];
  /** `prv->weight`: sum of the weights of the active vCPUs. */
  #weight = 0;
  /** `prv->credit`: credits one accounting period of all slots is worth. */
  #credit = 0;
  /** `prv->credit_balance`. */
  #creditBalance = 0;
  /** Steal not charged since the last accounting (ns; DEVIATION 6). */
  #stolenNs = 0;
  /** `prv->credits_per_tslice`. */
  #creditsPerTslice = 0;
  /** `prv->tslice` (ns). */
  #tslice = 0;
  /** Ticks per accounting period (`ticks_per_tslice`; see `setParams`). */
  #ticksPerAcct = CSCHED_TICKS_PER_TSLICE;
  #ticks = 0;
  #loadBalanceRatelimit = CSCHED_DEFAULT_LOAD_BALANCE_RATELIMIT_US * NS_PER_US;
  /** `prv->balance_bias` (one NUMA node here). */
  #balanceBias = 0;
  /** `last_tickle_cpu`: where the search for an idle slot starts. */
  #lastTickle = 0;
  #now = 0;
  /** Burning credit puts a vCPU on the active list (DEVIATION 1, param `active_on_burn`). */
  #activeOnBurn = true;
  /** A vCPU that halts is handed at most what fills it up (DEVIATION 7, param `halted_peak`). */
  #haltedPeak = true;

  // -------------------------------------------------------------------------------------------
  // Setup
  // -------------------------------------------------------------------------------------------

  /** `csched_init` + `init_pdata` for every slot. */
  init(ctx: SchedContext): void {
    this.#ctx = ctx;
    this.#pcpus = Array.from({ length: ctx.slots }, () => ({
      runq: [],
      curr: null,
      next: null,
      lastLoadBalance: 0,
    }));
    this.#units.clear();
    this.#doms.clear();
    this.#activeDoms = [];
    this.#weight = 0;
    this.#creditBalance = 0;
    this.#ticks = 0;
    this.#balanceBias = 0;
    this.#lastTickle = 0;
    this.#now = 0;
    this.#activeOnBurn = boolParam(ctx.params.active_on_burn, true);
    this.#haltedPeak = boolParam(ctx.params.halted_peak, true);
    this.#setTslice(msParam(ctx.params.tslice_ms, CSCHED_DEFAULT_TSLICE_MS), true);
    this.tickNs = this.#tslice / this.#ticksPerAcct;
  }

  /** `csched_alloc_udata` + `csched_unit_insert`: new vCPUs start UNDER with no credit. */
  addVcpu(info: VcpuInfo): void {
    const dom = this.#domFor(info.vm, info.params);
    const u: Unit = {
      id: info.id,
      dom,
      pri: CSCHED_PRI_TS_UNDER,
      credit: 0,
      residual: 0,
      state: "halted",
      slot: info.index % this.#pcpus.length,
      onRunq: false,
      active: false,
      parked: false,
      yielding: false,
      grantAt: this.#now,
      chargedNs: 0,
      halted: false,
    };
    this.#units.set(u.id, u);
    if (info.state === "running" && info.slot !== undefined && !this.#pcpus[info.slot].curr) {
      u.state = "running";
      u.slot = info.slot;
      this.#pcpus[info.slot].curr = u;
    } else if (info.state === "running" && info.slot !== undefined) {
      // Handed the slot by its holder, whose leave is still to come (told after it).
      u.state = "queued";
      u.slot = info.slot;
      this.#pcpus[info.slot].next = u;
    } else if (info.state !== "halted") {
      u.state = "runnable";
      // csched_res_pick: an idle pCPU if there is one, else stay where it is.
      u.slot = this.#idleSlot(u.slot) ?? u.slot;
      this.#runqInsert(u, u.slot);
    }
  }

  /** `csched_unit_remove`. */
  removeVcpu(id: VcpuId): void {
    const u = this.#units.get(id);
    if (!u) return;
    if (u.onRunq) this.#runqRemove(u);
    const pc = this.#pcpus[u.slot];
    if (pc && pc.next === u) pc.next = null;
    if (pc && pc.curr === u) this.#leave(u.slot, this.#now);
    if (u.active) this.#acctStop(u);
    this.#units.delete(id);
  }

  /** `csched_dom_cntl` (per VM) and `csched_sys_cntl` (`"*"`). */
  setParams(target: string, params: SchedParams): void {
    if (target === "*") {
      if (params.tslice_ms !== undefined) {
        this.#setTslice(msParam(params.tslice_ms, CSCHED_DEFAULT_TSLICE_MS), false);
      }
      this.#activeOnBurn = boolParam(params.active_on_burn, this.#activeOnBurn);
      this.#haltedPeak = boolParam(params.halted_peak, this.#haltedPeak);
      return;
    }
    const dom = this.#doms.get(target);
    if (!dom) return;
    const weight = intParam(params.weight, 0);
    if (weight > 0) {
      if (dom.onActiveList) {
        this.#weight -= dom.weight * dom.activeUnits.length;
        this.#weight += weight * dom.activeUnits.length;
      }
      dom.weight = weight;
    }
    if (params.cap !== undefined) {
      const cap = Math.max(0, intParam(params.cap, 0));
      if (cap === 0 && dom.cap !== 0) {
        // DEVIATION 5: removing the cap unparks at once (credit.c waits for accounting to
        // find the vCPU's credit back above 0, which can take a second on a busy machine).
        for (const u of this.#units.values()) {
          if (u.dom === dom && u.parked) this.#unpark(u, new Set());
        }
      }
      dom.cap = cap;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Hooks
  // -------------------------------------------------------------------------------------------

  /**
   * `csched_schedule` for a free slot: the best local candidate, or a strictly better one
   * stolen from another slot when the local one is OVER (or there is none).
   */
  pickNext(slot: SlotId, now: number): PickDecision | null {
    this.#now = now;
    const spc = this.#pcpus[slot];
    if (spc.curr) this.#desync(spc.curr, slot, now);

    let snext: Unit | null = spc.runq[0] ?? null;
    const pri = snext ? snext.pri : CSCHED_PRI_IDLE;

    // SMP load balance (credit.c:1980-1994): if our best is OVER (or idle), look for more
    // urgent work on other slots, at most once per load-balance rate limit.
    if (pri === CSCHED_PRI_IDLE) {
      // DEVIATION 2: a free slot takes anything queued anywhere, right away.
      spc.lastLoadBalance = now;
      snext = this.#loadBalance(slot, CSCHED_PRI_IDLE, true);
    } else if (
      pri <= CSCHED_PRI_TS_OVER && now - spc.lastLoadBalance > this.#loadBalanceRatelimit
    ) {
      spc.lastLoadBalance = now;
      snext = this.#loadBalance(slot, pri, false) ?? snext;
    }
    if (!snext) return null; // idle: a wake or the tick will bring work

    if (snext.onRunq) this.#runqRemove(snext);
    snext.state = "running";
    snext.slot = slot;
    snext.grantAt = now;
    snext.chargedNs = 0;
    spc.curr = snext;
    return { vcpu: snext.id, sliceNs: Math.min(this.#tslice, this.#maxSlice()) };
  }

  /**
   * Deciding ahead: the head of `slot`'s run queue, as `csched_schedule` will take it when
   * `running` leaves (see the module documentation), or null to decide then.
   */
  queueNext(slot: SlotId, running: VcpuId, now: number): PickDecision | null {
    this.#now = now;
    const spc = this.#pcpus[slot];
    const curr = this.#units.get(running);
    const head = spc.runq[0];
    if (!head || !curr || spc.curr !== curr || spc.next) return null;
    // Behind the current one once it is re-inserted: it would go on.
    if (head.pri < curr.pri) return null;
    // csched_schedule load-balances for an OVER head: decided then, from the other queues.
    if (head.pri <= CSCHED_PRI_TS_OVER && this.#pcpus.length > 1) return null;
    this.#runqRemove(head);
    head.state = "queued";
    head.slot = slot;
    spc.next = head;
    return { vcpu: head.id, sliceNs: Math.min(this.#tslice, this.#maxSlice()) };
  }

  /** The vCPU running on `slot` left it: the one chosen ahead, if any, runs there now. */
  #leave(slot: SlotId, now: number): void {
    const spc = this.#pcpus[slot];
    spc.curr = null;
    const next = spc.next;
    if (!next) return;
    spc.next = null;
    next.state = "running";
    next.slot = slot;
    next.grantAt = now;
    next.chargedNs = 0;
    spc.curr = next;
  }

  /** `csched_unit_sleep` (and the burn in `csched_schedule` if it was running). */
  onHalt(vcpu: VcpuId, now: number, _ranNs: number, stolenNs = 0): void {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u) return;
    if (u.state === "running") {
      const spc = this.#pcpus[u.slot];
      this.#burnRan(u, this.#held(u, now, stolenNs));
      if (spc.curr === u) this.#leave(u.slot, now);
    } else if (u.state === "queued") {
      const spc = this.#pcpus[u.slot];
      if (spc.next === u) spc.next = null;
    } else if (u.onRunq) {
      this.#runqRemove(u);
    }
    u.state = "halted";
    u.halted = true;
  }

  /** `csched_unit_wake`: BOOST if UNDER and not parked, queue, tickle. */
  onWake(vcpu: VcpuId, now: number): SlotId | void {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u || u.state !== "halted") return;
    u.state = "runnable";
    if (u.pri === CSCHED_PRI_TS_UNDER && !u.parked) {
      u.pri = CSCHED_PRI_TS_BOOST;
      this.#report("boost", u.id, 1);
    }
    if (u.parked) return; // runs again when accounting unparks it
    const t = this.#runqTickle(u);
    // An idle slot is filled by the core; only a busy slot needs preempting.
    if (t !== null && this.#pcpus[t].curr) return t;
  }

  /** The burn of `csched_schedule` for a still-runnable vCPU, then back on the local runq. */
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
      // Chosen ahead and taken back before it ran: the head of its priority again.
      if (spc.next === u) spc.next = null;
      if (spc.curr === u) spc.curr = null; // its hand-off was cancelled after all
      u.state = "runnable";
      if (!u.parked && !u.onRunq) this.#runqInsertFirst(u, slot);
      return;
    }
    if (u.state === "running") this.#burnRan(u, this.#held(u, now, stolenNs));
    if (spc.curr === u) this.#leave(slot, now);
    u.state = "runnable";
    u.slot = slot;
    if (reason === "yield") u.yielding = true; // csched_unit_yield
    if (u.parked || u.onRunq) return; // a parked vCPU waits for accounting to unpark it
    this.#runqInsert(u, slot);
  }

  /**
   * `csched_schedule` at the end of a slice when nothing else is queued (the core asks only
   * then): the current vCPU is re-inserted, found at the head again and goes on without a
   * context switch (credit.c, `snext == scurr`). Charge its run so far, as that path's
   * `burn_credits` does, and give it a new slice; a parked vCPU's slice ends as usual.
   */
  extendSlice(
    vcpu: VcpuId,
    slot: SlotId,
    _ranNs: number,
    now: number,
    stolenNs = 0,
  ): number | null {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u || u.state !== "running" || u.slot !== slot || u.parked) return null;
    this.#burnRan(u, this.#held(u, now, stolenNs));
    u.grantAt = now;
    u.chargedNs = 0;
    return Math.min(this.#tslice, this.#maxSlice());
  }

  /**
   * `csched_tick` on every slot (charge the running vCPU, end its boost), and every third tick
   * `csched_acct` (hand out credits, recompute priorities, park/unpark capped vCPUs, resort).
   * Returns the slots of vCPUs just parked, and of slots that must pick up unparked vCPUs.
   */
  onTick(now: number): SlotId[] {
    this.#now = now;
    const resched = new Set<SlotId>();
    this.#ticks++;
    for (let cpu = 0; cpu < this.#pcpus.length; cpu++) {
      const curr = this.#pcpus[cpu].curr;
      if (curr) this.#unitAcct(curr, now);
    }
    if (this.#ticks % this.#ticksPerAcct === 0) this.#acct(resched);
    // Idle slots while work is queued (e.g. after a steal was rate limited): ask the core to
    // call pickNext there.
    if (this.#pcpus.some((p) => p.runq.length > 0)) {
      this.#pcpus.forEach((p, cpu) => {
        if (!p.curr) resched.add(cpu);
      });
    }
    return [...resched];
  }

  // -------------------------------------------------------------------------------------------
  // Credits (credit.c:334 burn_credits, 941 csched_unit_acct, 1379 csched_acct)
  // -------------------------------------------------------------------------------------------

  /**
   * `burn_credits`: 10 credits per ms of run time, the sub-credit remainder kept in `residual`
   * so that many short runs add up exactly.
   */
  #burnCredits(u: Unit, deltaNs: number): void {
    if (deltaNs === 0) return;
    const val = deltaNs * CSCHED_CREDITS_PER_MSEC + u.residual;
    const credits = Math.floor(val / NS_PER_MS);
    u.residual = val - credits * NS_PER_MS;
    u.credit -= credits;
    // DEVIATION 1: whoever burns credit takes part in the next accounting (credit.c: only a
    // vCPU a tick finds running, `csched_unit_acct`).
    if (this.#activeOnBurn && !u.active && deltaNs > 0) this.#acctStart(u);
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
    const held = Math.max(0, now - u.grantAt);
    const stolen = Math.min(held, stolenNs);
    this.#stolenNs += stolen; // DEVIATION 6: not handed out at the next accounting either
    return held - stolen;
  }

  /** Charges what is left of the grant's `ranNs` (a halt or a deschedule). */
  #burnRan(u: Unit, ranNs: number): void {
    this.#burnCredits(u, ranNs - u.chargedNs);
    u.chargedNs = ranNs;
  }

  /** `csched_unit_acct`: the tick found `u` running. */
  #unitAcct(u: Unit, now: number): void {
    // A tick that finds it still BOOSTed ends the boost: back to UNDER (credit.c:953-961).
    if (u.pri === CSCHED_PRI_TS_BOOST) {
      u.pri = CSCHED_PRI_TS_UNDER;
      this.#report("boost", u.id, 0);
    }
    const ran = Math.max(u.chargedNs, now - u.grantAt);
    this.#burnCredits(u, ran - u.chargedNs);
    u.chargedNs = ran;
    if (!u.active) this.#acctStart(u);
  }

  /** `__csched_unit_acct_start`: onto the active list; its weight counts. */
  #acctStart(u: Unit): void {
    const dom = u.dom;
    u.active = true;
    dom.activeUnits.unshift(u); // list_add: at the head
    this.#weight += dom.weight;
    this.#report("active", u.id, 1);
    if (!dom.onActiveList) {
      dom.onActiveList = true;
      this.#activeDoms.unshift(dom);
    }
  }

  /** `__csched_unit_acct_stop_locked`: off the active list. */
  #acctStop(u: Unit): void {
    const dom = u.dom;
    u.active = false;
    remove(dom.activeUnits, u);
    this.#weight -= dom.weight;
    this.#report("active", u.id, 0);
    if (dom.activeUnits.length === 0) {
      dom.onActiveList = false;
      remove(this.#activeDoms, dom);
    }
  }

  /**
   * `csched_acct` (credit.c:1379-1583): share `credit_total` among the active VMs by weight,
   * capped by each VM's peak (all its vCPUs running for a period) and cap; redistribute what a
   * VM cannot use; then per vCPU: add its share, recompute its priority, park/unpark, clip.
   * Integer arithmetic with Xen's rounding (ceil divisions).
   */
  #acct(resched: Set<SlotId>): void {
    const cpt = this.#creditsPerTslice;
    const weightTotal = this.#weight;
    let creditTotal = this.#credit;
    // DEVIATION 6: hand out what the slots delivered. Steal is not charged (DEVIATION 1), so the
    // credits of the time other host threads took are not supplied either: otherwise, with a
    // quarter of every grant stolen, nobody ever runs out of credit and weights 1:2:4 gave
    // 19 / 38.5 / 42.5 % of a slot.
    creditTotal -= Math.min(
      creditTotal,
      Math.floor((this.#stolenNs * CSCHED_CREDITS_PER_MSEC) / NS_PER_MS),
    );
    this.#stolenNs = 0;

    // What was overspent last period (a negative balance) is added to this period's total.
    if (this.#creditBalance < 0) creditTotal -= this.#creditBalance;

    if (weightTotal === 0) {
      this.#creditBalance = 0;
      return;
    }

    let weightLeft = weightTotal;
    let creditBalance = 0;
    let creditXtra = false;
    let creditCap = 0;

    for (const sdom of [...this.#activeDoms]) {
      const n = sdom.activeUnits.length;
      weightLeft -= sdom.weight * n;

      // The most a VM could burn this period: every active vCPU running the whole period;
      // raised by its weighted part of any overspending (a negative balance).
      let creditPeak = n * cpt;
      if (this.#creditBalance < 0) {
        creditPeak += ceilDiv(-this.#creditBalance * sdom.weight * n, weightTotal);
      }
      // DEVIATION 7: a vCPU that halted since the last accounting could not use more than it
      // had; it can take at most what brings it to one period's worth. Its VM's peak is that
      // room plus the others' part of credit.c's peak; the rest goes to the other VMs below.
      if (this.#haltedPeak) {
        let halted = 0, room = 0;
        for (const u of sdom.activeUnits) {
          if (u.state !== "halted" && !u.halted) continue;
          halted++;
          room += Math.max(0, cpt - u.credit);
        }
        if (halted > 0) {
          creditPeak = Math.min(creditPeak, ceilDiv(creditPeak * (n - halted), n) + room);
        }
      }
      if (sdom.cap !== 0) {
        creditCap = ceilDiv(sdom.cap * cpt, 100);
        if (creditCap < creditPeak) creditPeak = creditCap;
        creditCap = ceilDiv(creditCap, n); // per vCPU
      }

      let creditFair = ceilDiv(creditTotal * sdom.weight * n, weightTotal);
      if (creditFair < creditPeak) {
        creditXtra = true;
      } else {
        // What this VM cannot use is shared among the VMs still to be visited.
        if (weightLeft !== 0) {
          creditTotal += ceilDiv((creditFair - creditPeak) * weightTotal, weightLeft);
        }
        if (creditXtra) {
          // VMs that were given more than their weight's part go first next time.
          remove(this.#activeDoms, sdom);
          this.#activeDoms.unshift(sdom);
        }
        creditFair = creditPeak;
      }

      // Fair share per vCPU.
      creditFair = ceilDiv(creditFair, n);

      for (const svc of [...sdom.activeUnits]) {
        svc.credit += creditFair;
        this.#report("allot", svc.id, creditFair);
        let credit = svc.credit;
        const oldPri = svc.pri;
        if (credit < 0) {
          svc.pri = CSCHED_PRI_TS_OVER;
          // A capped VM out of credit: its vCPUs stop until an accounting puts it back in.
          if (sdom.cap !== 0 && credit < -creditCap && !svc.parked) this.#park(svc, resched);
          // Debt is forgiven beyond one period's worth.
          if (credit < -cpt) {
            credit = -cpt;
            svc.credit = credit;
          }
        } else {
          svc.pri = CSCHED_PRI_TS_UNDER;
          // A capped vCPU back in credit may run again.
          if (svc.parked) this.#unpark(svc, resched);
          // Upper bound on credits means the vCPU stops earning. DEVIATION 4: only a halted
          // vCPU; a runnable one that merely waits its turn behind 30 ms slices would lose
          // half its credit here, which costs a weight-4 VM beside weights 1 and 2 about 1 pp.
          if (credit > cpt && svc.state === "halted") {
            this.#acctStop(svc);
            // It leaves the active list with half its credit: a head start, not a hoard.
            credit = Math.trunc(credit / 2);
            svc.credit = credit;
          }
        }
        if (oldPri !== svc.pri) {
          if (oldPri === CSCHED_PRI_TS_BOOST) this.#report("boost", svc.id, 0);
          this.#report("prio", svc.id, svc.pri);
        }
        this.#report("credit", svc.id, credit);
        creditBalance += credit;
      }
    }
    this.#creditBalance = creditBalance;
    for (const u of this.#units.values()) u.halted = u.state === "halted";

    // Every slot resorts its runq after priorities changed (csched_runq_sort).
    for (const spc of this.#pcpus) this.#runqSort(spc);
  }

  /** `CSCHED_FLAG_UNIT_PARKED` + `sched_unit_pause_nosync`: not scheduled until unparked. */
  #park(u: Unit, resched: Set<SlotId>): void {
    u.parked = true;
    this.#report("park", u.id, 1);
    if (u.onRunq) this.#runqRemove(u);
    if (u.state === "running") resched.add(u.slot); // deschedule it now
  }

  /** `sched_unit_unpause`: back on a run queue (not boosted: still flagged parked there). */
  #unpark(u: Unit, resched: Set<SlotId>): void {
    this.#report("park", u.id, 0);
    if (u.state === "runnable" && !u.onRunq) {
      const t = this.#runqTickle(u);
      if (t !== null) resched.add(t);
    }
    u.parked = false;
  }

  // -------------------------------------------------------------------------------------------
  // Run queues (credit.c:282 __runq_insert, 1336 csched_runq_sort, 359 __runq_tickle)
  // -------------------------------------------------------------------------------------------

  /**
   * `__runq_insert`: behind every vCPU of the same or higher priority (FIFO inside a priority);
   * a yielding vCPU goes one further, behind one lower-priority vCPU if there is another after.
   */
  #runqInsert(u: Unit, cpu: SlotId): void {
    const runq = this.#pcpus[cpu].runq;
    let i = 0;
    while (i < runq.length && u.pri <= runq[i].pri) i++;
    if (u.yielding && i < runq.length && i + 1 < runq.length) i++;
    runq.splice(i, 0, u);
    u.onRunq = true;
    u.slot = cpu;
  }

  /** Back in front of every vCPU of its priority (a choice made ahead, revoked). */
  #runqInsertFirst(u: Unit, cpu: SlotId): void {
    const runq = this.#pcpus[cpu].runq;
    let i = 0;
    while (i < runq.length && u.pri < runq[i].pri) i++;
    runq.splice(i, 0, u);
    u.onRunq = true;
    u.slot = cpu;
  }

  /** `__runq_remove`: also clears the yield flag. */
  #runqRemove(u: Unit): void {
    remove(this.#pcpus[u.slot].runq, u);
    u.onRunq = false;
    u.yielding = false;
  }

  /** `csched_runq_sort`: BOOST/UNDER vCPUs move ahead of OVER ones, order otherwise kept. */
  #runqSort(spc: Pcpu): void {
    const under = spc.runq.filter((u) => u.pri >= CSCHED_PRI_TS_UNDER);
    const over = spc.runq.filter((u) => u.pri < CSCHED_PRI_TS_UNDER);
    spc.runq = [...under, ...over];
  }

  /**
   * `__runq_tickle` for a vCPU becoming runnable: queue it and say which slot should schedule.
   * An idle slot first (it is "tickled": its queue is no longer empty); otherwise its own slot
   * if the vCPU there has a lower priority; otherwise (DEVIATION 3) the slot running the lowest
   * priority below the new vCPU's. Returns the slot to reschedule, or null.
   */
  #runqTickle(u: Unit): SlotId | null {
    const idle = this.#idleSlot(u.slot);
    if (idle !== null) {
      this.#lastTickle = idle;
      this.#runqInsert(u, idle);
      return idle;
    }
    const own = this.#pcpus[u.slot].curr;
    if (own && u.pri > own.pri) {
      this.#runqInsert(u, u.slot);
      return u.slot;
    }
    let victim: SlotId | null = null;
    const n = this.#pcpus.length;
    for (let k = 1; k < n; k++) {
      const cpu = (u.slot + k) % n;
      const cur = this.#pcpus[cpu].curr;
      if (!cur || cur.pri >= u.pri) continue;
      if (victim === null || cur.pri < this.#pcpus[victim].curr!.pri) victim = cpu;
    }
    this.#runqInsert(u, victim ?? u.slot);
    return victim;
  }

  /**
   * A truly idle slot (nothing running, nothing queued): `prefer` if it is one, else the next
   * one after the last tickled slot (`opt_tickle_one_idle`, `cpumask_cycle`).
   */
  #idleSlot(prefer: SlotId): SlotId | null {
    const isIdle = (p: Pcpu) => !p.curr && p.runq.length === 0;
    if (this.#pcpus[prefer] && isIdle(this.#pcpus[prefer])) return prefer;
    const n = this.#pcpus.length;
    for (let k = 1; k <= n; k++) {
      const cpu = (this.#lastTickle + k) % n;
      if (isIdle(this.#pcpus[cpu])) return cpu;
    }
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // Load balancing (credit.c:1617 csched_runq_steal, 1708 csched_load_balance)
  // -------------------------------------------------------------------------------------------

  /**
   * `csched_load_balance`: visit the other slots starting after `balance_bias` and steal the
   * first queued vCPU of strictly higher priority than `pri`. Returns it (removed from its
   * queue) or null.
   */
  #loadBalance(cpu: SlotId, pri: number, fromIdle: boolean): Unit | null {
    const n = this.#pcpus.length;
    for (let k = 1; k <= n; k++) {
      const peer = (this.#balanceBias + k) % n;
      if (peer === cpu) continue;
      const peerPcpu = this.#pcpus[peer];
      // An idle slot's queue is left to that slot, which is about to serve it (credit.c
      // csched_load_balance; DEVIATION 2: unless we are idle too).
      if (!peerPcpu.curr && !fromIdle) continue;
      const speer = this.#runqSteal(peerPcpu, pri, fromIdle);
      if (speer) {
        this.#balanceBias = peer;
        this.#runqRemove(speer);
        return speer;
      }
    }
    return null;
  }

  /** `csched_runq_steal`: the first vCPU of `peer`'s queue with priority above `pri`. */
  #runqSteal(peer: Pcpu, pri: number, fromIdle: boolean): Unit | null {
    for (const speer of peer.runq) {
      // The queue is in priority order: nothing further down beats `pri` either.
      if (speer.pri <= pri) break;
      // A vCPU that yielded stays where it is (unless this slot would idle).
      if (speer.yielding && !fromIdle) continue;
      return speer;
    }
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // Helpers
  // -------------------------------------------------------------------------------------------

  /** `__csched_set_tslice` (credit.c:1248). */
  #setTslice(ms: number, atInit: boolean): void {
    const tsliceMs = Math.min(TSLICE_MAX_MS, Math.max(TSLICE_MIN_MS, ms));
    const nslots = this.#pcpus.length;
    this.#tslice = tsliceMs * NS_PER_MS;
    this.#creditsPerTslice = CSCHED_CREDITS_PER_MSEC * tsliceMs;
    this.#credit = this.#creditsPerTslice * nslots;
    // The tick period is fixed after init (the core reads tickNs once): a runtime change of
    // tslice changes how many ticks make an accounting period instead.
    if (atInit) {
      this.#ticksPerAcct = tsliceMs < CSCHED_TICKS_PER_TSLICE ? 1 : CSCHED_TICKS_PER_TSLICE;
    } else {
      this.#ticksPerAcct = Math.max(1, Math.round(this.#tslice / this.tickNs));
    }
  }

  #domFor(vm: string, params: SchedParams): Dom {
    let dom = this.#doms.get(vm);
    if (!dom) {
      dom = {
        name: vm,
        weight: Math.max(1, intParam(params.weight, CSCHED_DEFAULT_WEIGHT)),
        cap: Math.max(0, intParam(params.cap, 0)),
        activeUnits: [],
        onActiveList: false,
      };
      this.#doms.set(vm, dom);
    }
    return dom;
  }

  /** The core says `slot` is free but we think `u` runs there: treat it as descheduled. */
  #desync(u: Unit, slot: SlotId, now: number): void {
    this.#pcpus[slot].curr = null;
    this.#burnRan(u, Math.max(u.chargedNs, now - u.grantAt));
    u.state = "runnable";
    if (!u.parked && !u.onRunq) this.#runqInsert(u, slot);
  }

  #maxSlice(): number {
    return this.#ctx?.maxSliceNs ?? this.#tslice;
  }

  #report(kind: string, vcpu: VcpuId, value: number): void {
    this.#ctx?.report({ kind, vcpu, value });
  }
}

/** `(a + b - 1) / b` on non-negative integers, as credit.c rounds its shares up. */
function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

function remove<T>(list: T[], x: T): void {
  const i = list.indexOf(x);
  if (i >= 0) list.splice(i, 1);
}

function intParam(v: number | string | boolean | undefined, dflt: number): number {
  const n = typeof v === "string" ? Number(v) : typeof v === "number" ? v : NaN;
  return Number.isFinite(n) ? Math.trunc(n) : dflt;
}

/** A boolean parameter: `true`/`false`, `1`/`0` (numbers or strings); anything else: `dflt`. */
function boolParam(v: number | string | boolean | undefined, dflt: boolean): boolean {
  if (typeof v === "boolean") return v;
  if (v === "true" || v === 1 || v === "1") return true;
  if (v === "false" || v === 0 || v === "0") return false;
  return dflt;
}

function msParam(v: number | string | boolean | undefined, dflt: number): number {
  const n = intParam(v, dflt);
  return n > 0 ? n : dflt;
}

/** The plugin: one credit1 scheduler. */
const credit: CreditScheduler = new CreditScheduler();
export default credit;
