/**
 * The simulator's discrete-event engine: a virtual clock (integer ns), an event queue, a model of
 * each vCPU's EMT, and the real {@linkcode SchedCore} deciding who runs.
 *
 * The EMT model, per vCPU: `halted` → (wake) → `waiting` → (grant) → `granted` → (after the
 * hand-off latency) `guest` → leaves guest mode at the first of: its workload halts (report
 * `halt`), the grant's deadline (report `sliceEnd`), a preempt's poke taking effect after the
 * poke latency (report `preempted`). Reports carry the guest time since the grant (`ranNs`).
 * The engine carries out the core's actions and calls its `advance` at `nextTimerAt`.
 *
 * Deciding ahead is modelled as on KVM, through the same core: a choice `queueNext` made is
 * published in a per-slot record; the EMT model leaving that slot (halt, slice end, preemption)
 * hands it over at once (the chosen vCPU enters guest mode `aheadHandoffNs` later) and only
 * then reports; the core, on that report, finds the choice taken. A revocation before the leave
 * takes it back; after it, it finds the hand-off made, as the KVM runtime's atomic word does.
 *
 * An EMT's reports (wake, halt, slice end, preempted) reach the core `reportDelayNs` after they
 * happen (default 0: at once), in order: on KVM each one crosses from the EMT's thread to the
 * core's, which is what a replayed trace (`src/trace/replay.ts`) needs to model. With a
 * {@linkcode TraceRecorder} the engine records the trace the real core would have written
 * (`vcpuAdd`, `wake` with its source, `grant`, `runEnd` with its reason, `preempt`, policy
 * events; EMT-side events at the EMT's time, grants at the core's), so a simulated run reads
 * with the same `trace summary`; at the end every vCPU leaves (`runEnd` `gone`, `vcpuRemove`),
 * which dates the trace's end.
 *
 * @module
 */
import type { PolicyPort } from "../sched/policy_port.ts";
import {
  type AheadDispatch,
  type QueuedChoice,
  type QueueOutcome,
  type SchedAction,
  SchedCore,
} from "../sched/core.ts";
import { AHEAD_DELAY_NS, EXTEND_LEAD_NS } from "../sched/runtime_protocol.ts";
import type { EjectInfo } from "../sched/watchdog.ts";
import { Histogram } from "../sched/histogram.ts";
import type { PolicyEvent, SchedParams } from "../sched/contract.ts";
import {
  GRANT_VIA,
  RUN_END_REASON,
  TRACE,
  type TraceRecorder,
  WAKE_SOURCE_NAME,
} from "../trace/events.ts";
import { type Behaviour, createBehaviour, type SimHost, type WakeSource } from "./behaviour.ts";
import { Prng } from "./prng.ts";
import { ReplayBehaviour } from "./replay_behaviour.ts";
import { EventQueue } from "./queue.ts";
import type {
  CostSeries,
  LatencyStats,
  SimResult,
  SimVcpuResult,
  SimVmResult,
  SimVmSpec,
  SimWindow,
} from "./types.ts";

const HALTED = 0, WAITING = 1, GRANTED = 2, GUEST = 3;
const EV_VCPU = 0, EV_TIMER = 1, EV_EXT = 2, EV_SCRIPT = 3, EV_WINDOW = 4, EV_REPORT = 5;

/**
 * A host cost (ns): a constant; samples of a measured distribution, one drawn per use with the
 * engine's own seeded stream (the workloads' streams do not change with it); or a time series of
 * samples, where a use at time t takes the first sample measured at or after t (the host's
 * condition at that moment of a recorded run, so that costs which were high together stay so),
 * among the using vCPU's own samples when the series names vCPUs.
 */
export type CostNs = number | readonly number[] | CostSeries;

class Cost {
  readonly #fixed: number;
  readonly #samples: number[];
  /** Series: times and samples, in time order, overall and per vCPU. */
  readonly #series: { at: number[]; ns: number[] } | null;
  readonly #byVcpu = new Map<number, { at: number[]; ns: number[] }>();
  /**
   * @param c the cost
   * @param rng the stream samples are drawn from
   * @param max the largest value; below it, values are rounded to whole ns unless `fraction`
   */
  constructor(c: CostNs | undefined, readonly rng: Prng, max = Infinity, fraction = false) {
    const clean = (x: number) =>
      Number.isFinite(x) ? Math.min(max, Math.max(0, fraction ? x : Math.round(x))) : 0;
    this.#fixed = typeof c === "number" ? clean(c) : 0;
    this.#samples = Array.isArray(c) ? c.map(clean) : [];
    this.#series = null;
    if (c !== undefined && typeof c !== "number" && !Array.isArray(c)) {
      const series = c as CostSeries;
      const order = series.ns.map((_, i) => i).sort((a, b) => series.atNs[a] - series.atNs[b]);
      this.#series = {
        at: order.map((i) => series.atNs[i]),
        ns: order.map((i) => clean(series.ns[i])),
      };
      this.#samples = this.#series.ns;
      if (series.vcpu) {
        for (const i of order) {
          const id = series.vcpu[i];
          let mine = this.#byVcpu.get(id);
          if (!mine) this.#byVcpu.set(id, mine = { at: [], ns: [] });
          mine.at.push(series.atNs[i]);
          mine.ns.push(clean(series.ns[i]));
        }
      }
    }
  }
  /** Whether it is always 0. */
  get zero(): boolean {
    return this.#samples.length === 0 ? this.#fixed === 0 : this.#samples.every((x) => x === 0);
  }
  /** The cost of a use at `t` by vCPU `vcpu`. */
  draw(t: number, vcpu: number): number {
    const s = this.#samples;
    if (s.length === 0) return this.#fixed;
    const series = this.#byVcpu.get(vcpu) ?? this.#series;
    if (!series) return s[Math.floor(this.rng.next() * s.length)];
    const at = series.at;
    let lo = 0, hi = at.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (at[mid] < t) lo = mid + 1;
      else hi = mid;
    }
    return series.ns[lo];
  }
}

/** An EMT report on its way to the core. */
interface Report {
  type: "wake" | "halt" | "slice" | "preempt";
  vcpu: number;
  ranNs: number;
  stolenNs: number;
}

class SimVcpu {
  mode = HALTED;
  grantAt = 0;
  guestStart = 0;
  deadline = Infinity;
  preemptAt = Infinity;
  boundaryAt = Infinity;
  runSince = 0;
  guestNs = 0;
  grantGuestNs = 0;
  windowBase = 0;
  ver = 0;
  nextAt = Infinity;
  /** The slot of its current grant (for the trace), or -1. */
  slot = -1;
  /** `guestNs` at its grant or last extension (the trace's `runEnd` value is the rest). */
  runMark = 0;
  /** Guest progress per ns in guest mode this grant: 1 less the share other threads steal. */
  rate = 1;
  /** ns stolen from it this grant. */
  stolenNs = 0;
  /** Its grant's generation. */
  generation = 0;
  constructor(
    readonly id: number,
    readonly vm: number,
    readonly index: number,
    readonly beh: Behaviour,
  ) {}
}

/** A scripted action, resolved (ports created beforehand). */
export type EngineStep =
  | { at: number; action: "eject"; detail: string }
  | { at: number; action: "swap"; port: PolicyPort }
  | { at: number; action: "setParams"; target: string; params: SchedParams };

/** What the engine needs (resolved from `SimOptions`). */
export interface EngineOptions {
  /** The policy in charge at start. */
  port: PolicyPort;
  /** Creates the fallback policy. */
  fallback?: () => PolicyPort;
  /** Slots. */
  slots: number;
  /** Virtual time to simulate (ns). */
  endNs: number;
  /** Seed. */
  seed: number;
  /** The VMs. */
  vms: SimVmSpec[];
  /** Core options. */
  ratelimitNs?: number;
  /** Core options. */
  maxSliceNs?: number;
  /** Watchdog starvation bound. */
  starvationNs?: number;
  /** Grant → guest latency (ns). */
  handoffNs?: CostNs;
  /** Leave → guest latency of a hand-off decided ahead (ns); default `handoffNs`. */
  aheadHandoffNs?: CostNs;
  /** Let a plugin with `queueNext` decide ahead (default true). */
  decideAhead?: boolean;
  /** Preempt → out of guest latency (ns). */
  pokeNs?: CostNs;
  /** Per-window shares. */
  windowNs?: number;
  /** Operator actions. */
  script?: EngineStep[];
  /** Policy events. */
  onPolicyEvent?: (event: PolicyEvent, at: number) => void;
  /** EMT report → core latency (ns); default 0. */
  reportDelayNs?: CostNs;
  /** EMT wake → core latency (ns); default `reportDelayNs`. */
  wakeDelayNs?: CostNs;
  /** Share of a grant's guest-mode time other host threads take (0..0.95; default 0). */
  stealShare?: CostNs;
  /** Record the run's trace here. */
  trace?: TraceRecorder;
}

/** Events between two readings of the wall clock in a run that yields (a few µs of work). */
const WALL_CHECK_EVENTS = 256;

/** Runs one simulation; see the module documentation. */
export class Engine implements SimHost, AheadDispatch {
  readonly #q = new EventQueue();
  /** Per slot: the choice made ahead and whether the leaving EMT has handed it over. */
  readonly #queued: ({ c: QueuedChoice; handed: boolean } | undefined)[] = [];
  readonly #aheadHandoff: Cost;
  readonly #core: SchedCore;
  readonly #v: SimVcpu[] = [];
  readonly #behaviours: Behaviour[] = [];
  readonly #index = new Map<Behaviour, number>();
  readonly #vms: SimVmSpec[];
  readonly #slots: number;
  readonly #end: number;
  readonly #handoff: Cost;
  readonly #poke: Cost;
  readonly #windowNs: number;
  readonly #script: EngineStep[];
  readonly #ejections: EjectInfo[] = [];
  readonly #policyEvents: Record<string, number> = {};
  readonly #windows: SimWindow[] = [];
  readonly #seed: number;
  readonly #startPolicy: string;
  readonly #reportDelay: Cost;
  readonly #wakeDelay: Cost;
  readonly #steal: Cost;
  /** Per vCPU: when its last report reaches the core (reports of one EMT stay in order). */
  readonly #reportAt: number[] = [];
  readonly #reports: (Report | undefined)[] = [];
  readonly #trace?: TraceRecorder;
  #timerAt = Infinity;
  #timerVer = 0;
  #now = 0;
  #events = 0;
  #inGuest = 0;
  #maxInGuest = 0;

  /** Builds the model and the core (the policy is initialised and told every vCPU). */
  constructor(o: EngineOptions) {
    this.#vms = o.vms;
    this.#slots = o.slots;
    this.#end = Math.round(o.endNs);
    const costRng = new Prng((o.seed ^ 0x9e3779b9) >>> 0);
    this.#handoff = new Cost(o.handoffNs, costRng);
    this.#aheadHandoff = o.aheadHandoffNs === undefined
      ? this.#handoff
      : new Cost(o.aheadHandoffNs, costRng);
    this.#poke = new Cost(o.pokeNs, costRng);
    this.#windowNs = o.windowNs && o.windowNs > 0 ? Math.round(o.windowNs) : 0;
    this.#script = [...(o.script ?? [])].sort((a, b) => a.at - b.at);
    this.#seed = o.seed;
    this.#reportDelay = new Cost(o.reportDelayNs, costRng);
    this.#steal = new Cost(o.stealShare, costRng, 0.95, true);
    this.#wakeDelay = o.wakeDelayNs === undefined
      ? this.#reportDelay
      : new Cost(o.wakeDelayNs, costRng);
    this.#trace = o.trace;
    const userEvent = o.onPolicyEvent;
    this.#core = new SchedCore({
      slots: o.slots,
      policy: o.port,
      ratelimitNs: o.ratelimitNs,
      maxSliceNs: o.maxSliceNs,
      extendLeadNs: EXTEND_LEAD_NS,
      aheadDelayNs: AHEAD_DELAY_NS,
      decideAhead: o.decideAhead,
      dispatch: this,
      watchdog: { starvationNs: o.starvationNs },
      fallback: o.fallback,
      onEject: (info) => this.#ejections.push(info),
      onPolicyEvent: (e, at) => {
        this.#policyEvents[e.kind] = (this.#policyEvents[e.kind] ?? 0) + 1;
        const tr = this.#trace;
        tr?.record(TRACE.policy, at, e.vcpu ?? -1, -1, e.value ?? 0, 0, tr.intern(e.kind));
        userEvent?.(e, at);
      },
    });
    this.#startPolicy = this.#core.policyName;
    const rng = new Prng(o.seed);
    let id = 0;
    o.vms.forEach((vm, k) => {
      const w = vm.workload;
      const b = w?.kind === "replay"
        ? new ReplayBehaviour(this, id, vm.vcpus, rng.fork(), w)
        : createBehaviour(this, id, vm.vcpus, rng.fork(), w);
      this.#index.set(b, this.#behaviours.length);
      this.#behaviours.push(b);
      for (let i = 0; i < vm.vcpus; i++) this.#v.push(new SimVcpu(id++, k, i, b));
    });
  }

  // ------------------------------------------------------------------ SimHost

  /** @inheritdoc */
  at(t: number, behaviour: Behaviour, tag: number): void {
    if (t >= this.#end) return;
    this.#q.push(t, EV_EXT, this.#index.get(behaviour)!, tag);
  }

  /** @inheritdoc */
  touch(id: number, t: number): void {
    const v = this.#v[id];
    if (v.mode === GUEST) this.#sync(v, t);
  }

  /** @inheritdoc */
  notify(id: number, t: number, source: WakeSource = "unknown"): void {
    const v = this.#v[id];
    if (v.mode === HALTED) {
      v.mode = WAITING;
      this.#trace?.record(TRACE.wake, t, id, -1, 0, WAKE_SOURCE_NAME.indexOf(source));
      this.#report({ type: "wake", vcpu: id, ranNs: 0, stolenNs: 0 }, t);
    } else if (v.mode === GUEST) {
      this.#sync(v, t);
      v.boundaryAt = this.#boundary(v, t);
      this.#plan(v);
    }
  }

  /** @inheritdoc */
  inGuest(id: number): boolean {
    return this.#v[id].mode === GUEST;
  }

  // ------------------------------------------------------------------ AheadDispatch

  /** A choice made ahead: the EMT model leaving its slot hands it over. */
  queue(c: QueuedChoice): boolean {
    this.#queued[c.slot] = { c, handed: false };
    return true;
  }

  /** @inheritdoc */
  revoke(c: QueuedChoice): QueueOutcome {
    const q = this.#queued[c.slot];
    if (q?.c.generation !== c.generation) return "cancelled";
    if (q.handed) return "handed";
    this.#queued[c.slot] = undefined;
    return "core";
  }

  /** @inheritdoc */
  claim(c: QueuedChoice): QueueOutcome {
    const q = this.#queued[c.slot];
    if (q?.c.generation !== c.generation) return "cancelled";
    this.#queued[c.slot] = undefined;
    return q.handed ? "handed" : "core";
  }

  // ------------------------------------------------------------------ run

  /** Runs to the end; returns the results. */
  run(): SimResult {
    const wall0 = performance.now();
    this.#begin();
    this.#steps(Infinity);
    return this.#finish(wall0);
  }

  /**
   * Runs to the end like {@linkcode Engine.run}, but awaits `turn()` after about every
   * `everyMs` of wall time, so that the thread's event loop runs (a sandbox sees the promise
   * rejections a plugin caused, and a `terminate()` takes effect). The result is the same.
   */
  async runYielding(turn: () => Promise<void>, everyMs: number): Promise<SimResult> {
    const wall0 = performance.now();
    this.#begin();
    while (!this.#steps(performance.now() + everyMs)) await turn();
    return this.#finish(wall0);
  }

  /** Announces every vCPU, starts the workloads and queues the script and the first timer. */
  #begin(): void {
    const t0 = 0;
    for (const v of this.#v) {
      const runnable = v.beh.initiallyRunnable(v.index);
      if (runnable) v.mode = WAITING;
      const spec = this.#vms[v.vm];
      const tr = this.#trace;
      if (tr) {
        tr.nameVcpu({ id: v.id, vm: spec.name, index: v.index, params: { ...spec.params } });
        tr.record(TRACE.vcpuAdd, t0, v.id, -1, v.index, 0, tr.intern(spec.name));
        if (runnable) tr.record(TRACE.wake, t0, v.id, -1, 0, WAKE_SOURCE_NAME.indexOf("start"));
      }
      this.#apply(
        this.#core.addVcpu({
          id: v.id,
          vm: spec.name,
          index: v.index,
          vmVcpus: spec.vcpus,
          params: spec.params ?? {},
          state: runnable ? "runnable" : "halted",
        }, t0),
        t0,
      );
    }
    for (const b of this.#behaviours) b.start(t0);
    this.#script.forEach((s, i) => {
      if (s.at < this.#end) this.#q.push(Math.max(0, Math.round(s.at)), EV_SCRIPT, i, 0);
    });
    if (this.#windowNs > 0) this.#q.push(this.#windowNs, EV_WINDOW, 0, 0);
    this.#timer(t0);
  }

  /**
   * Processes events until the end (true) or until the wall clock passes `untilMs` (false:
   * call again). The clock is read every {@linkcode WALL_CHECK_EVENTS} events.
   */
  #steps(untilMs: number): boolean {
    const q = this.#q;
    const end = this.#end;
    let budget = WALL_CHECK_EVENTS;
    while (q.pop()) {
      const t = q.time;
      if (t >= end) break;
      this.#now = t;
      switch (q.kind) {
        case EV_VCPU: {
          const v = this.#v[q.target];
          if (q.ver !== v.ver) continue;
          v.nextAt = Infinity;
          this.#vcpuEvent(v, t);
          break;
        }
        case EV_TIMER:
          if (q.ver !== this.#timerVer) continue;
          this.#timerAt = Infinity;
          this.#apply(this.#core.advance(t), t);
          break;
        case EV_EXT:
          this.#behaviours[q.target].onEvent(q.ver, t);
          break;
        case EV_SCRIPT:
          this.#scriptStep(this.#script[q.target], t);
          break;
        case EV_WINDOW:
          this.#window(t);
          break;
        case EV_REPORT:
          this.#deliver(q.target, t);
          break;
      }
      this.#events++;
      this.#timer(t);
      if (--budget === 0) {
        if (performance.now() >= untilMs) return false;
        budget = WALL_CHECK_EVENTS;
      }
    }
    return true;
  }

  /** Brings the clocks to the end and collects the results. */
  #finish(wall0: number): SimResult {
    const end = this.#end;
    this.#now = end;
    for (const v of this.#v) if (v.mode === GUEST) this.#sync(v, end);
    this.#traceEnd(end);
    if (this.#windowNs > 0 && this.#windows.length * this.#windowNs < end) this.#window(end);
    const wallMs = performance.now() - wall0;
    const result = this.#results(wallMs);
    this.#core.close();
    return result;
  }

  // ------------------------------------------------------------------ internals

  #timer(t: number): void {
    const next = this.#core.nextTimerAt();
    if (next !== this.#timerAt) {
      this.#timerAt = next;
      this.#timerVer++;
      if (next < this.#end) this.#q.push(Math.max(t, next), EV_TIMER, 0, this.#timerVer);
    }
  }

  #sync(v: SimVcpu, t: number): void {
    const d = t - v.runSince;
    if (d > 0) {
      // Stolen time (other host threads held the EMT's CPU) is no guest progress.
      const g = v.rate === 1 ? d : Math.floor(d * v.rate);
      v.beh.progress(v.index, g);
      v.guestNs += g;
      v.grantGuestNs += g;
      v.stolenNs += d - g;
      v.runSince = t;
    }
  }

  /** When the vCPU's current phase ends, in guest mode from `t` (steal slows it down). */
  #boundary(v: SimVcpu, t: number): number {
    const left = v.beh.left(v.index);
    return t + (v.rate === 1 || left === Infinity ? left : Math.ceil(left / v.rate));
  }

  /** Queues the vCPU's next EMT event (if any) and invalidates the previous one. */
  #plan(v: SimVcpu): void {
    let next = Infinity;
    if (v.mode === GUEST) {
      next = v.boundaryAt < v.deadline ? v.boundaryAt : v.deadline;
      if (v.preemptAt < next) next = v.preemptAt;
    } else if (v.mode === GRANTED) {
      next = v.guestStart < v.deadline ? v.guestStart : v.deadline;
      if (v.preemptAt < next) next = v.preemptAt;
    }
    if (next === v.nextAt) return;
    v.ver++;
    v.nextAt = next;
    if (next < this.#end) this.#q.push(next, EV_VCPU, v.id, v.ver);
  }

  #enter(v: SimVcpu, t: number): void {
    v.mode = GUEST;
    v.runSince = t;
    if (++this.#inGuest > this.#maxInGuest) this.#maxInGuest = this.#inGuest;
    v.beh.enter(v.index, t);
    v.boundaryAt = this.#boundary(v, t);
  }

  #vcpuEvent(v: SimVcpu, t: number): void {
    if (v.mode === GRANTED) {
      if (v.guestStart <= t && v.guestStart <= v.deadline && v.guestStart <= v.preemptAt) {
        this.#enter(v, t);
      } else if (v.deadline <= t) {
        this.#leave(v, t, "slice");
        return;
      } else if (v.preemptAt <= t) {
        this.#leave(v, t, "preempt");
        return;
      } else {
        this.#plan(v);
        return;
      }
    }
    if (v.mode !== GUEST) return;
    this.#sync(v, t);
    let guard = 0;
    while (v.boundaryAt <= t) {
      if (!v.beh.step(v.index, t)) {
        this.#leave(v, t, "halt");
        return;
      }
      if (v.mode !== GUEST) return;
      v.boundaryAt = this.#boundary(v, t);
      if (++guard > 1_000_000) throw new Error(`vCPU ${v.id}: workload makes no progress`);
    }
    if (v.deadline <= t) this.#leave(v, t, "slice");
    else if (v.preemptAt <= t) this.#leave(v, t, "preempt");
    else this.#plan(v);
  }

  #leave(v: SimVcpu, t: number, why: "halt" | "slice" | "preempt"): void {
    if (v.mode === GUEST) {
      this.#sync(v, t);
      this.#inGuest--;
    }
    const slot = v.slot;
    const ran = v.grantGuestNs;
    v.mode = why === "halt" ? HALTED : WAITING;
    v.preemptAt = Infinity;
    v.deadline = Infinity;
    v.boundaryAt = Infinity;
    this.#plan(v);
    const stolen = v.stolenNs;
    this.#trace?.record(
      TRACE.runEnd,
      t,
      v.id,
      v.slot,
      v.guestNs - v.runMark,
      RUN_END_REASON.indexOf(why),
      Math.round(stolen / 1e3),
    );
    v.slot = -1;
    // A choice made ahead for this slot: the leaving EMT hands it over before it reports.
    const q = slot >= 0 ? this.#queued[slot] : undefined;
    let to = -1;
    if (q && !q.handed && q.c.holderGeneration === v.generation) {
      q.handed = true;
      to = q.c.vcpu;
      this.#start(this.#v[to], t, q.c.slot, q.c.generation, t + q.c.sliceNs, this.#aheadHandoff);
      const aux = q.c.reserved ? 1 : 0;
      this.#trace?.record(TRACE.grant, t, to, q.c.slot, q.c.sliceNs, GRANT_VIA.handed, aux);
    }
    this.#report({ type: why, vcpu: v.id, ranNs: ran, stolenNs: stolen }, t);
    // The core hears of the new holder's reports only after the leave that handed it the slot.
    const left = this.#reportAt[v.id];
    if (to >= 0 && left !== undefined) {
      this.#reportAt[to] = Math.max(this.#reportAt[to] ?? 0, left);
    }
  }

  /** The EMT model of `v` takes a grant on `slot` at `t` until `deadline`. */
  #start(v: SimVcpu, t: number, slot: number, generation: number, deadline: number, cost: Cost) {
    v.mode = GRANTED;
    v.grantAt = t;
    const handoff = cost.draw(t, v.id);
    v.guestStart = t + handoff;
    v.deadline = deadline;
    v.preemptAt = Infinity;
    v.grantGuestNs = 0;
    v.stolenNs = 0;
    v.rate = 1 - this.#steal.draw(t, v.id);
    v.slot = slot;
    v.generation = generation;
    v.runMark = v.guestNs;
    if (handoff === 0) this.#enter(v, t);
    this.#plan(v);
  }

  /** Hands an EMT report to the core, at once or after the report delay. */
  #report(r: Report, t: number): void {
    const delay = r.type === "wake" ? this.#wakeDelay : this.#reportDelay;
    if (delay.zero && this.#reportAt[r.vcpu] === undefined) {
      this.#deliverReport(r, t);
      return;
    }
    const at = Math.max(t + delay.draw(t, r.vcpu), this.#reportAt[r.vcpu] ?? 0);
    this.#reportAt[r.vcpu] = at;
    if (at >= this.#end) return;
    let k = this.#reports.indexOf(undefined);
    if (k < 0) k = this.#reports.push(undefined) - 1;
    this.#reports[k] = r;
    this.#q.push(at, EV_REPORT, k, 0);
  }

  #deliver(k: number, t: number): void {
    const r = this.#reports[k]!;
    this.#reports[k] = undefined;
    this.#deliverReport(r, t);
  }

  #deliverReport(r: Report, t: number): void {
    const core = this.#core;
    const actions = r.type === "wake"
      ? core.wake(r.vcpu, t)
      : r.type === "halt"
      ? core.halt(r.vcpu, t, r.ranNs, r.stolenNs)
      : r.type === "slice"
      ? core.sliceEnd(r.vcpu, t, r.ranNs, r.stolenNs)
      : core.preempted(r.vcpu, t, r.ranNs, r.stolenNs);
    this.#apply(actions, t);
  }

  /** The trace's end: every vCPU leaves at `end`. */
  #traceEnd(end: number): void {
    const tr = this.#trace;
    if (!tr) return;
    for (const v of this.#v) {
      if (v.slot >= 0) {
        tr.record(
          TRACE.runEnd,
          end,
          v.id,
          v.slot,
          v.guestNs - v.runMark,
          RUN_END_REASON.indexOf("gone"),
          Math.round(v.stolenNs / 1e3),
        );
      }
      tr.record(TRACE.vcpuRemove, end, v.id);
    }
  }

  #apply(actions: SchedAction[], t: number): void {
    for (let k = 0; k < actions.length; k++) {
      const a = actions[k];
      const v = this.#v[a.vcpu];
      if (a.type === "grant") {
        if (a.via === "handed") continue; // the leaving EMT model started it already
        this.#start(v, t, a.slot, a.generation, a.deadline, this.#handoff);
        this.#trace?.record(TRACE.grant, t, a.vcpu, a.slot, a.sliceNs, GRANT_VIA[a.via]);
      } else if (a.type === "extend") {
        // The slice goes on in guest mode (the core clamps the next report to the new part).
        v.deadline = a.deadline;
        const tr = this.#trace;
        if (tr) {
          if (v.mode === GUEST) this.#sync(v, t);
          const extend = RUN_END_REASON.indexOf("extend");
          tr.record(TRACE.runEnd, t, a.vcpu, a.slot, v.guestNs - v.runMark, extend);
          tr.record(TRACE.grant, t, a.vcpu, a.slot, a.sliceNs);
          v.runMark = v.guestNs;
        }
        this.#plan(v);
      } else {
        this.#trace?.record(TRACE.preempt, t, a.vcpu, a.slot);
        const at = t + this.#poke.draw(t, a.vcpu);
        if (at < v.preemptAt) {
          v.preemptAt = at;
          this.#plan(v);
        }
      }
    }
  }

  #scriptStep(s: EngineStep, t: number): void {
    if (s.action === "eject") this.#apply(this.#core.eject(s.detail, t), t);
    else if (s.action === "swap") this.#apply(this.#core.swapPolicy(s.port, t), t);
    else this.#apply(this.#core.setParams(s.target, s.params, t), t);
  }

  #window(t: number): void {
    for (const v of this.#v) if (v.mode === GUEST) this.#sync(v, t);
    const start = this.#windows.length * this.#windowNs;
    const len = t - start;
    const shares: Record<string, number> = {};
    for (const vm of this.#vms) shares[vm.name] = 0;
    for (const v of this.#v) {
      const name = this.#vms[v.vm].name;
      shares[name] += (v.guestNs - v.windowBase) / (this.#slots * len);
      v.windowBase = v.guestNs;
    }
    this.#windows.push({ startNs: start, endNs: t, shares });
    const next = t + this.#windowNs;
    if (next < this.#end) this.#q.push(next, EV_WINDOW, 0, 0);
  }

  #vmWakeLatency(vcpus: SimVcpuResult[]): LatencyStats {
    const h = new Histogram();
    for (const x of vcpus) {
      const mine = this.#core.wakeHistogram(x.id);
      if (mine) h.merge(mine);
    }
    return { ...h.summary(), cdf: h.cdf() };
  }

  #results(wallMs: number): SimResult {
    const end = this.#end;
    const stats = this.#core.stats(end);
    const total = this.#slots * end;
    const vcpus: SimVcpuResult[] = [];
    const statsOf = new Map(stats.vcpus.map((x) => [x.id, x]));
    for (const v of this.#v) {
      const cs = statsOf.get(v.id)!;
      const r: SimVcpuResult = {
        id: v.id,
        vm: this.#vms[v.vm].name,
        index: v.index,
        runNs: v.guestNs,
        share: total > 0 ? v.guestNs / total : 0,
        waitNs: cs.waitNs,
        maxWaitNs: cs.maxWaitNs,
        haltedNs: cs.haltedNs,
        grants: cs.grants,
        preemptions: cs.preemptions,
        wakeLatency: cs.wakeLatency,
      };
      vcpus.push(r);
    }
    const byVm = new Map<string, SimVcpuResult[]>(this.#vms.map((spec) => [spec.name, []]));
    for (const x of vcpus) byVm.get(x.vm)!.push(x);
    const vms: SimVmResult[] = this.#vms.map((spec, k) => {
      const mine = byVm.get(spec.name)!;
      const sum = (f: (x: SimVcpuResult) => number) => mine.reduce((a, x) => a + f(x), 0);
      const runNs = sum((x) => x.runNs);
      return {
        name: spec.name,
        vcpus: spec.vcpus,
        runNs,
        share: total > 0 ? runNs / total : 0,
        waitNs: sum((x) => x.waitNs),
        maxWaitNs: mine.reduce((a, x) => Math.max(a, x.maxWaitNs), 0),
        haltedNs: sum((x) => x.haltedNs),
        grants: sum((x) => x.grants),
        preemptions: sum((x) => x.preemptions),
        wakeLatency: this.#vmWakeLatency(mine),
        ...this.#behaviours[k].results(end),
      };
    });
    const result: SimResult = {
      plugin: this.#startPolicy,
      finalPlugin: this.#core.policyName,
      slots: this.#slots,
      seed: this.#seed,
      elapsedNs: end,
      events: this.#events,
      wallMs,
      eventsPerSec: wallMs > 0 ? this.#events / (wallMs / 1000) : 0,
      sandbox: "none", // the caller says where the plugin ran
      ejections: [...this.#ejections],
      policyEvents: { ...this.#policyEvents },
      vms,
      vcpus,
      maxRunning: this.#maxInGuest,
      starvationBoundNs: stats.starvationBoundNs,
    };
    if (this.#windowNs > 0) result.windows = this.#windows;
    return result;
  }
}
