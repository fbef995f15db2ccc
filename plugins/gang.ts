/**
 * Gang: co-scheduling of each VM's vCPUs, against lock-holder preemption.
 *
 * A guest kernel assumes its vCPUs run at the same time: a vCPU spinning on a lock, or waiting
 * for an IPI answer, wastes its slot while the vCPU it waits for is descheduled ("lock-holder
 * preemption", Uhlig et al., "Towards Scalable Multiprocessor Virtual Machines", VM 2004).
 * Gang scheduling (Ousterhout, "Scheduling Techniques for Concurrent Systems", ICDCS 1982;
 * Feitelson & Rudolph, "Gang Scheduling Performance Benefits for Fine-Grain Synchronization",
 * 1992) runs all threads of a job together, or none; VMware ESX's (relaxed) co-scheduling and
 * Xen's core scheduling (`sched-gran=core`, xen/common/sched/core.c) do it for vCPUs.
 *
 * The policy, as pseudo-code:
 *
 * ```
 * every turn (slice_ms, default 30 ms, × weight/256 × vCPUs / min(vCPUs, slots)):
 *   gang ← next VM in round-robin order that has a runnable vCPU
 *   preempt as many slots as the gang has runnable vCPUs (slots running other VMs first),
 *   and fill them with the gang's vCPUs, least recently run first
 * a slot becomes free (halt, slice end):
 *   run a runnable vCPU of the gang that is not running, else (work-conserving backfill)
 *   the least recently run runnable vCPU of another VM, until the turn ends
 * a vCPU of the gang wakes:
 *   take an idle slot, else preempt a slot running a backfilled vCPU
 * ```
 *
 * A VM with more vCPUs than slots is time-sliced inside its gang: its turn is made of
 * sub-turns of slice × weight/256, each running the `slots` vCPUs that ran least recently. A VM
 * is entitled to weight × vCPUs (as under credit), so its turn lasts vCPUs / min(vCPUs, slots)
 * sub-turns. Every slice ends with the (sub-)turn, so all slots switch together. If a round of
 * turns would exceed 400 ms, every turn shrinks in proportion (the watchdog's starvation bound
 * is 1 s).
 *
 * Parameters. Policy-wide (`ctx.params`): `slice_ms` (default 30, Xen credit's time slice).
 * Per VM (`VcpuInfo.params`, `setParams(vm, ...)`): `weight` (turn length × weight/256,
 * default 256).
 *
 * Policy events (`ctx.report`): `gang` (vcpu: none, value: turn number, detail: the VM's name)
 * at each turn.
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
/** Default turn (ms): Xen credit's `CSCHED_DEFAULT_TSLICE_MS` (credit.c:52). */
const DEFAULT_SLICE_MS = 30;
/** Default weight: Xen's `CSCHED_DEFAULT_WEIGHT` (credit.c:49). */
const DEFAULT_WEIGHT = 256;
/** A turn with less than this left is over (avoids slivers of slices). */
const MIN_SLICE = 100 * NS_PER_US;
/**
 * Longest round of turns: if every runnable VM's turn adds up to more, turns shrink, so that
 * no vCPU waits more than this for its gang's turn (the core's watchdog ejects a policy that
 * leaves a runnable vCPU waiting 1 s).
 */
const MAX_ROUND = 400 * NS_PER_MS;

/** A VM: one gang. */
interface Gang {
  name: string;
  weight: number;
  units: Unit[];
}

/** A vCPU. */
interface Unit {
  id: VcpuId;
  gang: Gang;
  index: number;
  state: "runnable" | "running" | "halted";
  slot: SlotId;
  /** When it was last granted a slot (for least-recently-run order). */
  lastRun: number;
  /** Tie-breaker for `lastRun`: a global sequence number of grants. */
  lastSeq: number;
}

/** Co-scheduling of VMs' vCPUs. */
export class GangScheduler implements SchedulerPlugin {
  /** Name shown in traces. */
  readonly name = "gang";
  /** Safety net for turn switches and idle slots (slices normally end with the turn). */
  tickNs = 10 * NS_PER_MS;

  #ctx: SchedContext | null = null;
  #slots: (Unit | null)[] = [];
  /**
   * A vCPU handed a slot by its holder before this plugin took over (told `running` on a held
   * slot, after the holder): it holds the slot once the holder's leave is reported.
   */
  #handed: (Unit | null)[] = [];
  #units = new Map<VcpuId, Unit>();
  /**
   * Runnable vCPUs by least recently run (`[lastSeq, id, unit]`), so that a backfill need not
   * look at every vCPU. An entry whose vCPU has since run or halted is stale and skipped.
   */
  #waiting = new WaitHeap();
  /** VMs in round-robin order. */
  #gangs: Gang[] = [];
  /** The gang whose turn it is (or null when nothing is runnable). */
  #current: Gang | null = null;
  #turnEnd = 0;
  /** End of the current sub-turn: a VM with more vCPUs than slots runs them in subsets. */
  #subEnd = 0;
  /** Sub-turn length of the current turn. */
  #subLen = 0;
  #turn = 0;
  #seq = 0;
  #sliceNs = DEFAULT_SLICE_MS * NS_PER_MS;
  #now = 0;

  /** Slots, the turn length. */
  init(ctx: SchedContext): void {
    this.#ctx = ctx;
    this.#slots = Array.from({ length: ctx.slots }, () => null);
    this.#handed = Array.from({ length: ctx.slots }, () => null);
    this.#units.clear();
    this.#waiting = new WaitHeap();
    this.#gangs = [];
    this.#current = null;
    this.#turnEnd = 0;
    this.#subEnd = 0;
    this.#turn = 0;
    this.#seq = 0;
    this.#now = 0;
    const ms = num(ctx.params.slice_ms, DEFAULT_SLICE_MS);
    this.#sliceNs = (ms > 0 ? ms : DEFAULT_SLICE_MS) * NS_PER_MS;
    this.tickNs = Math.max(MIN_SLICE, Math.floor(this.#sliceNs / 3));
  }

  /** A vCPU joins its VM's gang. */
  addVcpu(info: VcpuInfo): void {
    let gang = this.#gangs.find((g) => g.name === info.vm);
    if (!gang) {
      gang = { name: info.vm, weight: DEFAULT_WEIGHT, units: [] };
      this.#gangs.push(gang);
    }
    const w = num(info.params.weight, 0);
    if (w > 0) gang.weight = w;
    const u: Unit = {
      id: info.id,
      gang,
      index: info.index,
      state: "halted",
      slot: -1,
      lastRun: -1,
      lastSeq: 0,
    };
    gang.units.push(u);
    gang.units.sort((a, b) => a.index - b.index);
    this.#units.set(u.id, u);
    if (info.state === "running" && info.slot !== undefined && !this.#slots[info.slot]) {
      u.state = "running";
      u.slot = info.slot;
      this.#slots[info.slot] = u;
    } else if (info.state === "running" && info.slot !== undefined) {
      u.state = "running"; // handed the slot: never picked, it holds the slot after the holder
      u.slot = info.slot;
      this.#handed[info.slot] = u;
    } else if (info.state !== "halted") {
      this.#runnable(u);
    }
  }

  /** A vCPU leaves. */
  removeVcpu(id: VcpuId): void {
    const u = this.#units.get(id);
    if (!u) return;
    this.#slots.forEach((s, slot) => {
      if (s === u) this.#free(slot);
    });
    this.#handed = this.#handed.map((s) => (s === u ? null : s));
    remove(u.gang.units, u);
    if (u.gang.units.length === 0) {
      remove(this.#gangs, u.gang);
      if (this.#current === u.gang) this.#current = null;
    }
    this.#units.delete(id);
  }

  /** `weight` of a VM; `slice_ms` policy-wide. */
  setParams(target: string, params: SchedParams): void {
    if (target === "*") {
      const ms = num(params.slice_ms, 0);
      if (ms > 0) this.#sliceNs = ms * NS_PER_MS;
      return;
    }
    const gang = this.#gangs.find((g) => g.name === target);
    const w = num(params.weight, 0);
    if (gang && w > 0) gang.weight = w;
  }

  // -------------------------------------------------------------------------------------------
  // Hooks
  // -------------------------------------------------------------------------------------------

  /** A free slot: a vCPU of the gang, else a backfill, both until the turn ends. */
  pickNext(slot: SlotId, now: number): PickDecision | null {
    this.#now = now;
    const stale = this.#slots[slot];
    if (stale) {
      this.#runnable(stale);
      this.#slots[slot] = null;
    }
    this.#maybeAdvance(now);
    const u = this.#nextMember() ?? this.#nextBackfill();
    if (!u) return null;
    u.state = "running";
    u.slot = slot;
    u.lastRun = now;
    u.lastSeq = ++this.#seq;
    this.#slots[slot] = u;
    const maxSlice = this.#ctx?.maxSliceNs ?? this.#sliceNs;
    return { vcpu: u.id, sliceNs: Math.max(1, Math.min(this.#subEnd - now, maxSlice)) };
  }

  /** The vCPU halted: its slot (if any) is free. */
  onHalt(vcpu: VcpuId, now: number, _ranNs: number): void {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u) return;
    if (u.state === "running" && this.#slots[u.slot] === u) this.#free(u.slot);
    if (this.#handed[u.slot] === u) this.#handed[u.slot] = null;
    u.state = "halted";
  }

  /** `slot`'s holder left it: free, or held by the vCPU it was handed to. */
  #free(slot: SlotId): void {
    this.#slots[slot] = this.#handed[slot];
    this.#handed[slot] = null;
  }

  /**
   * A vCPU of the gang takes an idle slot or preempts a backfilled one; any other vCPU waits
   * for an idle slot (the core fills those) or its gang's turn.
   */
  onWake(vcpu: VcpuId, now: number): SlotId | void {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u || u.state !== "halted") return;
    this.#runnable(u);
    if (this.#slots.some((s) => s === null)) return; // the core fills idle slots
    if (this.#current === null) {
      this.#maybeAdvance(now); // nothing was runnable: this vCPU's gang gets the turn
    }
    if (u.gang !== this.#current) return;
    const victim = this.#backfilledSlots()[0];
    if (victim !== undefined) return victim;
  }

  /** Still runnable: it waits for its gang's next turn (or a backfill). */
  onDeschedule(
    vcpu: VcpuId,
    slot: SlotId,
    _ranNs: number,
    _reason: DescheduleReason,
    now: number,
  ): void {
    this.#now = now;
    const u = this.#units.get(vcpu);
    if (!u) return;
    if (this.#slots[slot] === u) this.#free(slot);
    this.#runnable(u);
  }

  /**
   * Ends a turn that is due; preempts backfilled (or previous-gang) slots that the gang's
   * waiting vCPUs need; asks for `pickNext` on idle slots while vCPUs wait.
   */
  onTick(now: number): SlotId[] {
    this.#now = now;
    const resched = new Set<SlotId>();
    this.#maybeAdvance(now);
    // Co-start: as many slots as the gang has vCPUs waiting switch to it, backfills first.
    let waiting = this.#waitingIn(this.#current);
    for (const cpu of this.#backfilledSlots()) {
      if (waiting-- <= 0) break;
      resched.add(cpu);
    }
    if (this.#anyWaiting()) {
      this.#slots.forEach((s, cpu) => {
        if (!s) resched.add(cpu);
      });
    }
    return [...resched];
  }

  // -------------------------------------------------------------------------------------------
  // Turns
  // -------------------------------------------------------------------------------------------

  /**
   * If the turn is over (or there is none), the next VM with a runnable vCPU gets one; if only
   * the sub-turn is over, the VM's next subset of vCPUs (least recently run) gets the slots.
   */
  #maybeAdvance(now: number): void {
    if (this.#current !== null && now < this.#subEnd - MIN_SLICE) return;
    if (this.#current !== null && now < this.#turnEnd - MIN_SLICE) {
      this.#subEnd = Math.min(this.#turnEnd, now + this.#subLen);
      return;
    }
    const runnable = (g: Gang) => g.units.some((u) => u.state !== "halted");
    const n = this.#gangs.length;
    const start = this.#current ? this.#gangs.indexOf(this.#current) : -1;
    let next: Gang | null = null;
    for (let k = 1; k <= n; k++) {
      const g = this.#gangs[(start + k + n) % n];
      if (runnable(g)) {
        next = g;
        break;
      }
    }
    this.#current = next;
    // Shrink every turn if a round of them would be too long.
    const round = this.#gangs.filter(runnable).reduce((s, g) => s + this.#turnLength(g), 0);
    const scale = round > MAX_ROUND ? MAX_ROUND / round : 1;
    const turn = Math.max(MIN_SLICE, Math.round(this.#turnLength(next) * scale));
    this.#turnEnd = now + turn;
    this.#subLen = Math.max(MIN_SLICE, Math.round(this.#subTurnLength(next) * scale));
    this.#subEnd = Math.min(this.#turnEnd, now + this.#subLen);
    if (next) {
      this.#turn++;
      this.#ctx?.report({ kind: "gang", value: this.#turn, detail: next.name });
    }
  }

  /** A sub-turn: slice × weight/256 (one subset of `slots` vCPUs runs for that long). */
  #subTurnLength(g: Gang | null): number {
    return g ? (this.#sliceNs * g.weight) / DEFAULT_WEIGHT : this.#sliceNs;
  }

  /**
   * A VM is entitled to weight × vCPUs, as under credit (credit.c counts a domain's weight once
   * per active vCPU: `prv->weight += sdom->weight` in `__csched_unit_acct_start`). Its turn
   * occupies min(vCPUs, slots) slots, so it lasts slice × weight/256 × vCPUs / min(vCPUs, slots):
   * vCPUs / slots sub-turns when it has more vCPUs than slots.
   */
  #turnLength(g: Gang | null): number {
    if (!g) return this.#sliceNs;
    const n = Math.max(1, g.units.length);
    const used = Math.min(n, this.#slots.length);
    return (this.#subTurnLength(g) * n) / used;
  }

  /** The gang's runnable vCPU that ran least recently and is not running, if any. */
  #nextMember(): Unit | null {
    return this.#current ? leastRecent(this.#current.units, null) : null;
  }

  /** The least recently run runnable vCPU of another VM (work-conserving backfill). */
  #nextBackfill(): Unit | null {
    // The heap's head, skipping the current gang's vCPUs (at most its size), which go back.
    const skipped: Unit[] = [];
    let found: Unit | null = null;
    for (let u = this.#headWaiting(); u !== null; u = this.#headWaiting()) {
      if (u.gang !== this.#current) {
        found = u;
        break;
      }
      this.#waiting.pop();
      skipped.push(u);
    }
    for (const u of skipped) this.#waiting.push(u);
    return found;
  }

  /** The least recently run runnable vCPU, after dropping stale entries; null if none. */
  #headWaiting(): Unit | null {
    const h = this.#waiting;
    while (h.size > 0) {
      const [seq, u] = h.peek();
      if (u.state === "runnable" && u.lastSeq === seq && this.#units.get(u.id) === u) return u;
      h.pop();
    }
    return null;
  }

  /** `u` becomes runnable (not running): it joins the waiting vCPUs. */
  #runnable(u: Unit): void {
    u.state = "runnable";
    this.#waiting.push(u);
  }

  /** How many vCPUs of `gang` are runnable and not running. */
  #waitingIn(gang: Gang | null): number {
    let n = 0;
    if (gang) { for (const u of gang.units) if (u.state === "runnable") n++; }
    return n;
  }

  /** Whether any vCPU is runnable and not running. */
  #anyWaiting(): boolean {
    return this.#headWaiting() !== null;
  }

  /** Slots running a vCPU of another VM than the gang's. */
  #backfilledSlots(): SlotId[] {
    const out: SlotId[] = [];
    this.#slots.forEach((s, cpu) => {
      if (s && s.gang !== this.#current) out.push(cpu);
    });
    return out;
  }
}

function num(v: number | string | boolean | undefined, dflt: number): number {
  const n = typeof v === "string" ? Number(v) : typeof v === "number" ? v : NaN;
  return Number.isFinite(n) ? n : dflt;
}

/**
 * The runnable (not running) vCPU of `units` that ran least recently (ties: lowest id), leaving
 * out the vCPUs of gang `except`; null if there is none. One pass, no sorting.
 */
function leastRecent(units: Iterable<Unit>, except: Gang | null): Unit | null {
  let best: Unit | null = null;
  for (const u of units) {
    if (u.state !== "runnable" || u.gang === except) continue;
    if (
      best === null || u.lastSeq < best.lastSeq || (u.lastSeq === best.lastSeq && u.id < best.id)
    ) {
      best = u;
    }
  }
  return best;
}

/** Whether `a` ran less recently than `b` (ties: lower id). */
function earlier(a: [number, Unit], b: [number, Unit]): boolean {
  return a[0] < b[0] || (a[0] === b[0] && a[1].id < b[1].id);
}

/** A binary min-heap of `[lastSeq, unit]`, least recently run first. */
class WaitHeap {
  #a: [number, Unit][] = [];

  get size(): number {
    return this.#a.length;
  }

  /** The head (call only when not empty). */
  peek(): [number, Unit] {
    return this.#a[0];
  }

  push(u: Unit): void {
    const a = this.#a;
    a.push([u.lastSeq, u]);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!earlier(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }

  pop(): void {
    const a = this.#a;
    const last = a.pop()!;
    if (a.length === 0) return;
    a[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < a.length && earlier(a[l], a[m])) m = l;
      if (r < a.length && earlier(a[r], a[m])) m = r;
      if (m === i) return;
      [a[i], a[m]] = [a[m], a[i]];
      i = m;
    }
  }
}

function remove<T>(list: T[], x: T): void {
  const i = list.indexOf(x);
  if (i >= 0) list.splice(i, 1);
}

/** The plugin: one gang scheduler. */
const gang: GangScheduler = new GangScheduler();
export default gang;
