/**
 * A small deterministic driver for scheduler plugins, used by `tests/plugins_test.ts` for the
 * plugins' bookkeeping tests: fake slots and vCPUs (spin, periodic, closed-loop echo), a virtual
 * clock, and the hooks called exactly as the core calls them (contract.ts). Every decision is
 * validated the way the core validates it; an invalid one throws {@linkcode DriverError}.
 *
 * The behaviour tests use the real simulator (`src/sim`); this driver only needs to be exact
 * about the contract.
 *
 * @module
 */
import type { PolicyEvent, SchedParams, SchedulerPlugin } from "../../mod.ts";

/** What a fake vCPU does. */
export type DriverWorkload =
  | { kind: "spin" }
  | { kind: "periodic"; periodMs: number; computeMs: number; offsetMs?: number }
  | { kind: "echo"; serviceUs: number; thinkUs: number }
  /**
   * The tick-sampling attacker: runs until `runMs` past each `periodMs` boundary of wall time
   * (just before the scheduler's tick), halts, and wakes `wakeUs` after the boundary.
   */
  | { kind: "attacker"; periodMs: number; runMs: number; wakeUs: number }
  /**
   * Spinlock contention (as the simulator's `lock`): loop { work `workUs`; acquire the VM's
   * test-and-set lock, spinning while it is held; critical section `csUs`; release }.
   */
  | { kind: "lock"; csUs: number; workUs: number };

/** A fake VM. */
export interface DriverVm {
  name: string;
  vcpus: number;
  params?: SchedParams;
  workload: DriverWorkload;
}

/** Options of {@linkcode drive}. */
export interface DriveOptions {
  plugin: SchedulerPlugin;
  slots: number;
  /** Virtual time to run (ms). */
  ms: number;
  vms: DriverVm[];
  params?: SchedParams;
  /** Default 1 ms. */
  ratelimitNs?: number;
  /** Default 100 ms. */
  maxSliceNs?: number;
  /** Runtime parameter changes. */
  script?: { atMs: number; target: string; params: SchedParams }[];
}

/** Per-VM results. */
export interface DriverVmResult {
  name: string;
  runNs: number;
  share: number;
  /** Wake → grant latencies (ns). */
  wakeLatencies: number[];
  /** Periodic: jobs and misses. */
  jobs: number;
  misses: number;
  /** Lock: critical sections completed, and guest time spent spinning. */
  acquisitions: number;
  spinNs: number;
}

/** What {@linkcode drive} returns. */
export interface DriverResult {
  vms: DriverVmResult[];
  /** Longest time a runnable vCPU waited while some slot was idle (ns). */
  maxIdleWhileWaitingNs: number;
  /** Longest wait of a runnable vCPU (ns). */
  maxWaitNs: number;
  events: PolicyEvent[];
  decisions: number;
}

/** An invalid decision (what would eject the plugin). */
export class DriverError extends Error {
  override name = "DriverError";
}

interface V {
  id: number;
  vm: number;
  index: number;
  state: "runnable" | "running" | "halted";
  slot: number;
  /** Guest time left before it halts. */
  work: number;
  wakeAt: number;
  waitingSince: number;
  wokenAt: number;
  runNs: number;
  /** periodic: the current job's deadline and compute left. */
  jobDeadline: number;
  /** lock: phase, guest time left in it, and when it was last brought up to date. */
  phase: "work" | "spin" | "cs";
  left: number;
  phaseAt: number;
}

interface S {
  vcpu: V | null;
  grantAt: number;
  sliceEnd: number;
  preemptAt: number;
}

/** Runs `plugin` over the scenario; deterministic. */
export function drive(o: DriveOptions): DriverResult {
  const ratelimit = o.ratelimitNs ?? 1_000_000;
  const maxSlice = o.maxSliceNs ?? 100_000_000;
  const end = o.ms * 1e6;
  const events: PolicyEvent[] = [];
  const p = o.plugin;
  p.init?.({
    slots: o.slots,
    params: o.params ?? {},
    maxSliceNs: maxSlice,
    ratelimitNs: ratelimit,
    report: (e) => events.push(e),
  });
  const tickNs = p.tickNs ?? 0;
  const vs: V[] = [];
  const res: DriverVmResult[] = o.vms.map((vm) => ({
    name: vm.name,
    runNs: 0,
    share: 0,
    wakeLatencies: [],
    jobs: 0,
    misses: 0,
    acquisitions: 0,
    spinNs: 0,
  }));
  const lockHolder: (V | null)[] = o.vms.map(() => null);
  const slots: S[] = Array.from({ length: o.slots }, () => ({
    vcpu: null,
    grantAt: 0,
    sliceEnd: Infinity,
    preemptAt: Infinity,
  }));
  let now = 0;
  let decisions = 0;
  let maxIdleWait = 0;
  let maxWait = 0;
  const script = [...(o.script ?? [])].sort((a, b) => a.atMs - b.atMs);

  o.vms.forEach((vm, vi) => {
    for (let i = 0; i < vm.vcpus; i++) {
      const w = vm.workload;
      const v: V = {
        id: vs.length,
        vm: vi,
        index: i,
        state: "runnable",
        slot: -1,
        work: Infinity,
        wakeAt: Infinity,
        waitingSince: 0,
        wokenAt: -1,
        runNs: 0,
        jobDeadline: Infinity,
        phase: "work",
        left: 0,
        phaseAt: 0,
      };
      if (w.kind === "periodic") {
        const off = (w.offsetMs ?? 0) * 1e6;
        v.state = off > 0 ? "halted" : "runnable";
        v.work = off > 0 ? 0 : w.computeMs * 1e6;
        v.wakeAt = off > 0 ? off : Infinity;
        v.jobDeadline = off + w.periodMs * 1e6;
      } else if (w.kind === "lock") {
        v.left = w.workUs * 1e3 * (1 + i / vm.vcpus);
      } else if (w.kind === "echo") {
        v.state = "halted";
        v.work = 0;
        v.wakeAt = w.thinkUs * 1e3 + i * 1000;
      }
      vs.push(v);
      p.addVcpu?.({
        id: v.id,
        vm: vm.name,
        index: i,
        vmVcpus: vm.vcpus,
        params: vm.params ?? {},
        state: v.state === "runnable" ? "runnable" : "halted",
      });
    }
  });

  const workloadOf = (v: V) => o.vms[v.vm].workload;

  /** Lock: try to take the VM's lock (the vCPU is running). */
  function tryAcquire(v: V) {
    const w = workloadOf(v);
    if (w.kind !== "lock" || v.phase !== "spin" || lockHolder[v.vm]) return;
    lockHolder[v.vm] = v;
    v.phase = "cs";
    v.left = w.csUs * 1e3;
  }
  /** Lock: brings running lock vCPUs up to `t`, moving through phases. */
  function lockProgress(t: number): boolean {
    let any = false;
    for (let round = 0; round < 4; round++) {
      let changed = false;
      for (const s of slots) {
        const v = s.vcpu;
        if (!v) continue;
        const w = workloadOf(v);
        if (w.kind !== "lock") continue;
        const dt = t - v.phaseAt;
        if (v.phase === "spin") {
          res[v.vm].spinNs += dt;
          v.phaseAt = t;
          continue;
        }
        if (v.left > dt) {
          v.left -= dt;
          v.phaseAt = t;
          continue;
        }
        // The phase ends at phaseAt + left.
        const end = v.phaseAt + v.left;
        v.phaseAt = end;
        changed = true;
        if (v.phase === "work") {
          v.phase = "spin";
          tryAcquire(v);
        } else {
          res[v.vm].acquisitions++;
          lockHolder[v.vm] = null;
          v.phase = "work";
          v.left = w.workUs * 1e3;
          // A running spinner takes it at once (the one that spun longest).
          const spinner = slots.map((x) => x.vcpu).find((x) =>
            x && x.vm === v.vm && x.phase === "spin"
          );
          if (spinner) {
            res[spinner.vm].spinNs += end - spinner.phaseAt;
            spinner.phaseAt = end;
            tryAcquire(spinner);
          }
        }
      }
      if (!changed) break;
      any = true;
    }
    return any;
  }
  /** Lock: the next phase end of a running lock vCPU. */
  function lockNextEvent(v: V): number {
    if (workloadOf(v).kind !== "lock" || v.phase === "spin") return Infinity;
    return v.phaseAt + v.left;
  }
  /** When a running attacker halts next: `runMs` past the current period boundary. */
  const attackerHaltAt = (w: { periodMs: number; runMs: number }, at: number) => {
    const p = w.periodMs * 1e6;
    const base = Math.floor(at / p) * p + w.runMs * 1e6;
    return base >= at ? base : base + p;
  };

  function charge(v: V, s: S) {
    const ran = now - s.grantAt;
    v.runNs += ran;
    if (v.work !== Infinity) v.work -= ran;
    return ran;
  }

  function grant(slot: number) {
    const s = slots[slot];
    if (s.vcpu) throw new DriverError(`pickNext on busy slot ${slot}`);
    const d = p.pickNext(slot, now);
    if (d === null) return;
    decisions++;
    const v = vs[d.vcpu];
    if (!v) throw new DriverError(`pickNext(${slot}): unknown vCPU ${d.vcpu}`);
    if (v.state !== "runnable") {
      throw new DriverError(`pickNext(${slot}) at ${now}: vCPU ${d.vcpu} is ${v.state}`);
    }
    if (!(d.sliceNs > 0 && d.sliceNs <= maxSlice)) {
      throw new DriverError(`pickNext(${slot}): bad slice ${d.sliceNs}`);
    }
    v.state = "running";
    v.slot = slot;
    v.phaseAt = now;
    tryAcquire(v);
    maxWait = Math.max(maxWait, now - v.waitingSince);
    if (v.wokenAt >= 0) {
      res[v.vm].wakeLatencies.push(now - v.wokenAt);
      v.wokenAt = -1;
    }
    s.vcpu = v;
    s.grantAt = now;
    s.sliceEnd = now + d.sliceNs;
    s.preemptAt = Infinity;
  }

  function fillIdle() {
    for (let i = 0; i < slots.length; i++) if (!slots[i].vcpu) grant(i);
  }

  function deschedule(slot: number, reason: "slice" | "preempt") {
    const s = slots[slot];
    const v = s.vcpu!;
    const ran = charge(v, s);
    s.vcpu = null;
    s.sliceEnd = Infinity;
    s.preemptAt = Infinity;
    v.state = "runnable";
    v.waitingSince = now;
    p.onDeschedule?.(v.id, slot, ran, reason, now);
    grant(slot);
  }

  function requestPreempt(slot: unknown, from: string) {
    if (slot === undefined || slot === null) return;
    if (typeof slot !== "number" || !Number.isInteger(slot) || slot < 0 || slot >= slots.length) {
      throw new DriverError(`${from}: bad slot ${String(slot)}`);
    }
    const s = slots[slot];
    if (!s.vcpu) {
      grant(slot);
      return;
    }
    const at = Math.max(now, s.grantAt + ratelimit);
    s.preemptAt = Math.min(s.preemptAt, at);
    if (at === now) deschedule(slot, "preempt");
  }

  function halt(v: V) {
    const s = slots[v.slot];
    const ran = charge(v, s);
    s.vcpu = null;
    s.sliceEnd = Infinity;
    s.preemptAt = Infinity;
    v.state = "halted";
    const w = workloadOf(v);
    if (w.kind === "periodic") {
      v.wakeAt = v.jobDeadline; // next release
    } else if (w.kind === "echo") {
      v.wakeAt = now + w.thinkUs * 1e3;
    } else if (w.kind === "attacker") {
      const per = w.periodMs * 1e6;
      v.wakeAt = Math.floor(now / per) * per + per + w.wakeUs * 1e3;
    }
    p.onHalt(v.id, now, ran);
    grant(v.slot);
  }

  function wake(v: V) {
    const w = workloadOf(v);
    v.wakeAt = Infinity;
    if (w.kind === "periodic") {
      v.work = w.computeMs * 1e6;
      v.jobDeadline = now + w.periodMs * 1e6;
      res[v.vm].jobs++;
    } else if (w.kind === "echo") v.work = w.serviceUs * 1e3;
    v.state = "runnable";
    v.waitingSince = now;
    v.wokenAt = now;
    const r = p.onWake(v.id, now);
    requestPreempt(r, `onWake(${v.id})`);
    fillIdle();
  }

  /** Periodic: a release while the previous job is unfinished is a miss; work accumulates. */
  function release(v: V) {
    const w = workloadOf(v);
    if (w.kind !== "periodic") return;
    res[v.vm].jobs++;
    res[v.vm].misses++;
    v.work += w.computeMs * 1e6;
    v.jobDeadline += w.periodMs * 1e6;
  }

  fillIdle();
  let nextTick = tickNs > 0 ? tickNs : Infinity;
  while (now < end) {
    // Next event.
    let t = Math.min(end, nextTick, script[0] ? script[0].atMs * 1e6 : Infinity);
    for (const s of slots) {
      if (!s.vcpu) continue;
      t = Math.min(t, s.sliceEnd, s.preemptAt);
      if (s.vcpu.work !== Infinity) t = Math.min(t, s.grantAt + Math.max(0, s.vcpu.work));
      const w = workloadOf(s.vcpu);
      if (w.kind === "attacker") t = Math.min(t, attackerHaltAt(w, now));
      t = Math.min(t, Math.max(now, lockNextEvent(s.vcpu)));
    }
    for (const v of vs) {
      if (v.state === "halted") t = Math.min(t, v.wakeAt);
      else if (v.jobDeadline !== Infinity) t = Math.min(t, v.jobDeadline);
    }
    // Account waits while a slot is idle.
    const idle = slots.some((s) => !s.vcpu);
    if (idle) {
      for (const v of vs) {
        if (v.state === "runnable") maxIdleWait = Math.max(maxIdleWait, t - v.waitingSince);
      }
    }
    const lockMoved = lockProgress(t);
    now = t;
    if (now >= end) break;
    // Process, in a fixed order: completions, releases, wakes, slice ends, preemptions, tick.
    let progressed = lockMoved;
    for (const s of slots) {
      const v = s.vcpu;
      if (!v) continue;
      const w = workloadOf(v);
      const attackerDone = w.kind === "attacker" && attackerHaltAt(w, s.grantAt) <= now;
      if (attackerDone || (v.work !== Infinity && v.work - (now - s.grantAt) <= 0)) {
        halt(v);
        progressed = true;
      }
    }
    for (const v of vs) {
      if (v.state !== "halted" && v.jobDeadline <= now) {
        release(v);
        progressed = true;
      }
    }
    for (const v of vs) {
      if (v.state === "halted" && v.wakeAt <= now) {
        wake(v);
        progressed = true;
      }
    }
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i];
      if (s.vcpu && s.sliceEnd <= now) {
        deschedule(i, "slice");
        progressed = true;
      } else if (s.vcpu && s.preemptAt <= now) {
        deschedule(i, "preempt");
        progressed = true;
      }
    }
    while (script[0] && script[0].atMs * 1e6 <= now) {
      const st = script.shift()!;
      p.setParams?.(st.target, st.params);
      progressed = true;
    }
    if (nextTick <= now) {
      nextTick += tickNs;
      const r = p.onTick?.(now);
      for (const slot of r ?? []) requestPreempt(slot, "onTick");
      progressed = true;
    }
    if (!progressed && t < end) throw new DriverError(`no progress at ${now}`);
  }
  // Close the books.
  for (const s of slots) if (s.vcpu) charge(s.vcpu, s);
  for (const v of vs) res[v.vm].runNs += v.runNs;
  for (const r of res) r.share = r.runNs / (slots.length * end);
  return { vms: res, maxIdleWhileWaitingNs: maxIdleWait, maxWaitNs: maxWait, events, decisions };
}

/** The `q`-quantile of `xs` (nearest rank); NaN when empty. */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** A small seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Options of {@linkcode fuzz}. */
export interface FuzzOptions {
  plugin: SchedulerPlugin;
  slots: number;
  seed: number;
  steps: number;
  /** VMs: name, vCPU count and params. */
  vms: { name: string; vcpus: number; params?: SchedParams }[];
  /** Runtime parameter changes to try (picked at random). */
  setParams?: { target: string; params: SchedParams }[];
}

/**
 * Calls the hooks in random but contract-valid orders (halts of running and queued vCPUs,
 * wakes, slice ends, preemptions, yields, ticks, parameter changes, vCPUs leaving and joining)
 * and validates every answer as the core does. Returns the number of decisions checked.
 */
export function fuzz(o: FuzzOptions): number {
  const rnd = prng(o.seed);
  const maxSlice = 100_000_000;
  const p = o.plugin;
  p.init?.({
    slots: o.slots,
    params: {},
    maxSliceNs: maxSlice,
    ratelimitNs: 1_000_000,
    report: () => {},
  });
  type St = "runnable" | "running" | "halted";
  const state = new Map<number, St>();
  const grantAt = new Map<number, number>();
  const info = new Map<
    number,
    { vm: string; index: number; vmVcpus: number; params: SchedParams }
  >();
  const slotOf: (number | null)[] = Array.from({ length: o.slots }, () => null);
  let nextId = 0;
  let now = 0;
  let checked = 0;
  for (const vm of o.vms) {
    for (let i = 0; i < vm.vcpus; i++) {
      const id = nextId++;
      const st: St = rnd() < 0.7 ? "runnable" : "halted";
      state.set(id, st);
      info.set(id, { vm: vm.name, index: i, vmVcpus: vm.vcpus, params: vm.params ?? {} });
      p.addVcpu?.({
        id,
        vm: vm.name,
        index: i,
        vmVcpus: vm.vcpus,
        params: vm.params ?? {},
        state: st,
      });
    }
  }
  const pick = (slot: number) => {
    if (slotOf[slot] !== null) return;
    const d = p.pickNext(slot, now);
    if (d === null) return;
    checked++;
    const st = state.get(d.vcpu);
    if (st !== "runnable") {
      throw new DriverError(`step at ${now}: pickNext(${slot}) returned vCPU ${d.vcpu} (${st})`);
    }
    if (!(d.sliceNs > 0 && d.sliceNs <= maxSlice)) {
      throw new DriverError(`pickNext(${slot}): slice ${d.sliceNs}`);
    }
    state.set(d.vcpu, "running");
    grantAt.set(d.vcpu, now);
    slotOf[slot] = d.vcpu;
  };
  const deschedule = (slot: number, reason: "slice" | "preempt" | "yield") => {
    const v = slotOf[slot];
    if (v === null) return pick(slot);
    slotOf[slot] = null;
    state.set(v, "runnable");
    p.onDeschedule?.(v, slot, now - grantAt.get(v)!, reason, now);
    pick(slot);
  };
  const checkSlot = (s: unknown, from: string) => {
    if (s === undefined || s === null) return null;
    if (typeof s !== "number" || !Number.isInteger(s) || s < 0 || s >= o.slots) {
      throw new DriverError(`${from}: bad slot ${String(s)}`);
    }
    return s;
  };
  for (let i = 0; i < o.slots; i++) pick(i);
  const tickNs = p.tickNs ?? 10_000_000;
  let nextTick = tickNs;
  for (let step = 0; step < o.steps; step++) {
    now += Math.floor(rnd() * 3_000_000);
    const ids = [...state.keys()];
    const r = rnd();
    while (now >= nextTick) {
      nextTick += tickNs;
      for (const s of p.onTick?.(now) ?? []) {
        const slot = checkSlot(s, "onTick");
        if (slot !== null) deschedule(slot, "preempt");
      }
    }
    if (r < 0.25) {
      const halted = ids.filter((id) => state.get(id) === "halted");
      if (halted.length) {
        const v = halted[Math.floor(rnd() * halted.length)];
        state.set(v, "runnable");
        const s = checkSlot(p.onWake(v, now), "onWake");
        if (s !== null) deschedule(s, "preempt");
        for (let i = 0; i < o.slots; i++) pick(i);
      }
    } else if (r < 0.5) {
      const busy = ids.filter((id) => state.get(id) !== "halted");
      if (busy.length) {
        const v = busy[Math.floor(rnd() * busy.length)];
        const slot = slotOf.indexOf(v);
        const ran = slot >= 0 ? now - grantAt.get(v)! : 0;
        if (slot >= 0) slotOf[slot] = null;
        state.set(v, "halted");
        p.onHalt(v, now, ran);
        if (slot >= 0) pick(slot);
      }
    } else if (r < 0.75) {
      const slot = Math.floor(rnd() * o.slots);
      deschedule(slot, rnd() < 0.8 ? "slice" : "yield");
    } else if (r < 0.8 && o.setParams?.length) {
      const sp = o.setParams[Math.floor(rnd() * o.setParams.length)];
      p.setParams?.(sp.target, sp.params);
    } else if (r < 0.83) {
      // A halted vCPU leaves, and joins again under a new id.
      const halted = ids.filter((id) => state.get(id) === "halted");
      if (halted.length) {
        const v = halted[Math.floor(rnd() * halted.length)];
        p.removeVcpu?.(v);
        state.delete(v);
        const inf = info.get(v)!;
        const id = nextId++;
        state.set(id, "runnable");
        info.set(id, inf);
        p.addVcpu?.({ id, ...inf, state: "runnable" });
        for (let i = 0; i < o.slots; i++) pick(i);
      }
    } else {
      for (let i = 0; i < o.slots; i++) pick(i);
    }
  }
  return checked;
}
