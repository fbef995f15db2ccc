/**
 * What simulated vCPUs do in guest mode: one {@linkcode Behaviour} per VM, one subclass per
 * workload kind (`spin`, `periodic`, `echo`, `lock`, `ipi`), mirroring the guest kernel's
 * workloads in `guests/`.
 *
 * The model: while a vCPU is in guest mode it executes its current *phase* at rate 1 (guest ns).
 * The engine tells the behaviour how much guest time passed (`progress`), asks how long the
 * current phase has left (`left`, Infinity for "forever"), and calls `step` when it ends;
 * `step` returns `false` when the vCPU has nothing to do and executes HLT. Things that happen
 * outside the vCPU (a request arrives, a period starts, another vCPU sends an IPI or releases a
 * lock) change a behaviour's state through the {@linkcode SimHost}: `touch` brings a running
 * vCPU's progress up to date first, `notify` then wakes it if it halted, or re-plans its next
 * phase end if it is in guest mode.
 *
 * All times are integer ns, so a run is exact and deterministic.
 *
 * @module
 */
import { Histogram } from "../sched/histogram.ts";
import type { Prng } from "./prng.ts";
import type { WAKE_SOURCE_NAME } from "../trace/events.ts";
import type {
  AttackerWorkload,
  EchoStats,
  EchoWorkload,
  IpiStats,
  IpiWorkload,
  LockStats,
  LockWorkload,
  PeriodicStats,
  PeriodicWorkload,
  Workload,
} from "./types.ts";

/** The engine, as behaviours see it. vCPUs are named by their global id. */
export interface SimHost {
  /** Schedules `behaviour.onEvent(tag, t)` at virtual time `t`. */
  at(t: number, behaviour: Behaviour, tag: number): void;
  /** Brings a running vCPU's `progress` up to `t` (no-op when it is not in guest mode). */
  touch(id: number, t: number): void;
  /**
   * The vCPU's work changed: wake it if halted, re-plan it if in guest mode. `source` says what
   * woke it (the trace's wake source; default `unknown`).
   */
  notify(id: number, t: number, source?: WakeSource): void;
  /** Whether the vCPU is executing guest code now. */
  inGuest(id: number): boolean;
}

/** What woke a vCPU, as the trace names it. */
export type WakeSource = typeof WAKE_SOURCE_NAME[number];

/** Workload-specific results a behaviour reports. */
export interface BehaviourResults {
  /** `periodic`. */
  periodic?: PeriodicStats;
  /** `echo`. */
  echo?: EchoStats;
  /** `lock`. */
  lock?: LockStats;
  /** `ipi`. */
  ipi?: IpiStats;
}

/** One VM's vCPUs' guest behaviour. Local index `i` is `0 .. n-1`; global id is `base + i`. */
export abstract class Behaviour {
  /**
   * @param host the engine
   * @param base global id of the VM's vCPU 0
   * @param n number of vCPUs
   * @param rng this VM's random stream
   */
  constructor(
    readonly host: SimHost,
    readonly base: number,
    readonly n: number,
    readonly rng: Prng,
  ) {}
  /** Whether vCPU `i` starts runnable (else halted). */
  abstract initiallyRunnable(i: number): boolean;
  /** Schedules the first external events (at virtual time `t`, the start). */
  start(_t: number): void {}
  /** vCPU `i` entered guest mode at `t`. */
  enter(_i: number, _t: number): void {}
  /** vCPU `i` executed `ns` of guest time. */
  abstract progress(i: number, ns: number): void;
  /** Guest ns until vCPU `i`'s current phase ends (Infinity: never; 0: now). */
  abstract left(i: number): number;
  /** vCPU `i`'s phase ended at `t`: move on; `false` to halt. */
  abstract step(i: number, t: number): boolean;
  /** An event scheduled with `host.at`. */
  onEvent(_tag: number, _t: number): void {}
  /** Workload results at the end of the run (`endNs`). */
  results(_endNs: number): BehaviourResults {
    return {};
  }
}

const ns = (ms: number) => Math.round(ms * 1e6);
const nsUs = (us: number) => Math.round(us * 1e3);

/** A CPU hog: always runnable, never halts. */
export class SpinBehaviour extends Behaviour {
  /** Always runnable. */
  initiallyRunnable(): boolean {
    return true;
  }
  /** Nothing to count. */
  progress(): void {}
  /** Never ends. */
  left(): number {
    return Infinity;
  }
  /** Never called. */
  step(): boolean {
    return true;
  }
}

/**
 * A periodic job per vCPU (release every period, `compute` of guest time, deadline at the next
 * release). Jobs queue behind a late one. Misses: jobs completed after their deadline, plus jobs
 * still unfinished at the end whose deadline has passed.
 */
export class PeriodicBehaviour extends Behaviour {
  readonly #period: number;
  readonly #compute: number;
  readonly #offset: number;
  // Per vCPU: a FIFO of jobs as parallel arrays of deadlines and remaining ns.
  readonly #deadlines: number[][];
  readonly #left: number[][];
  #completed = 0;
  #misses = 0;
  readonly #lateness = new Histogram();

  /** @inheritdoc */
  constructor(host: SimHost, base: number, n: number, rng: Prng, w: PeriodicWorkload) {
    super(host, base, n, rng);
    this.#period = ns(w.periodMs);
    this.#compute = ns(w.computeMs);
    this.#offset = ns(w.offsetMs ?? 0);
    if (!(this.#period > 0) || !(this.#compute > 0)) {
      throw new RangeError("periodic: periodMs and computeMs must be > 0");
    }
    this.#deadlines = Array.from({ length: n }, () => []);
    this.#left = Array.from({ length: n }, () => []);
  }

  /** Halted until its first release. */
  initiallyRunnable(): boolean {
    return false;
  }

  /** First releases. */
  override start(t: number): void {
    for (let i = 0; i < this.n; i++) this.host.at(t + this.#offset, this, i);
  }

  /** A release for vCPU `tag`. */
  override onEvent(i: number, t: number): void {
    const id = this.base + i;
    this.host.touch(id, t);
    this.#deadlines[i].push(t + this.#period);
    this.#left[i].push(this.#compute);
    this.host.at(t + this.#period, this, i);
    if (this.#left[i].length === 1) this.host.notify(id, t, "timer");
  }

  /** Works on the oldest job. */
  progress(i: number, d: number): void {
    const l = this.#left[i];
    if (l.length > 0) l[0] -= d;
  }

  /** The oldest job's remaining time (0: none, halt). */
  left(i: number): number {
    const l = this.#left[i];
    return l.length > 0 ? Math.max(0, l[0]) : 0;
  }

  /** Completes finished jobs; halts when none is left. */
  step(i: number, t: number): boolean {
    const l = this.#left[i], dl = this.#deadlines[i];
    while (l.length > 0 && l[0] <= 0) {
      const deadline = dl.shift()!;
      l.shift();
      this.#completed++;
      if (t > deadline) {
        this.#misses++;
        this.#lateness.record(t - deadline);
      }
    }
    return l.length > 0;
  }

  /** Jobs, misses, lateness. */
  override results(endNs: number): BehaviourResults {
    // A head job with nothing left finished at endNs (its step fell on the end): late only if
    // endNs is past its deadline. Unfinished jobs whose deadline has passed are misses.
    let pending = 0, late = 0, done = 0;
    this.#deadlines.forEach((dl, i) =>
      dl.forEach((d, k) => {
        if (k === 0 && this.#left[i][0] <= 0) {
          done++;
          if (endNs > d) late++;
        } else if (d <= endNs) pending++;
      })
    );
    const jobs = this.#completed + done + pending;
    const misses = this.#misses + late + pending;
    return {
      periodic: {
        jobs,
        completed: this.#completed + done,
        misses,
        missRatio: jobs > 0 ? misses / jobs : 0,
        lateness: this.#lateness.summary(),
      },
    };
  }
}

/**
 * A request/response server. Open loop: Poisson arrivals for the VM, spread round-robin over its
 * vCPUs. Closed loop: `clients` clients (client c talks to vCPU c mod n), each waits for its
 * response and thinks before the next request. A vCPU serves its FIFO and halts when it is empty.
 */
export class EchoBehaviour extends Behaviour {
  readonly #open: boolean;
  readonly #meanGap: number;
  readonly #service: number;
  readonly #clients: number;
  readonly #think: number;
  // Per vCPU: arrival times and client ids of queued requests, head index, current remaining.
  readonly #arrivals: number[][];
  readonly #owners: number[][];
  readonly #cur: number[];
  #next = 0;
  #requests = 0;
  #completed = 0;
  readonly #latency = new Histogram();

  /** @inheritdoc */
  constructor(host: SimHost, base: number, n: number, rng: Prng, w: EchoWorkload) {
    super(host, base, n, rng);
    this.#open = w.mode !== "closed";
    const rate = w.ratePerSec ?? 1000;
    if (this.#open && !(rate > 0)) throw new RangeError("echo: ratePerSec must be > 0");
    this.#meanGap = 1e9 / rate;
    this.#service = nsUs(w.serviceUs);
    if (!(this.#service > 0)) throw new RangeError("echo: serviceUs must be > 0");
    this.#clients = Math.max(1, Math.floor(w.clients ?? 1));
    this.#think = Math.max(0, nsUs(w.thinkUs ?? 0));
    this.#arrivals = Array.from({ length: n }, () => []);
    this.#owners = Array.from({ length: n }, () => []);
    this.#cur = new Array(n).fill(0);
  }

  /** Halted until a request arrives. */
  initiallyRunnable(): boolean {
    return false;
  }

  /** First arrivals. */
  override start(t: number): void {
    if (this.#open) this.host.at(t + Math.round(this.rng.exponential(this.#meanGap)), this, -1);
    else for (let c = 0; c < this.#clients; c++) this.host.at(t, this, c);
  }

  /** An arrival: tag -1 open loop, else the closed-loop client. */
  override onEvent(tag: number, t: number): void {
    let i: number;
    if (tag < 0) {
      i = this.#next;
      this.#next = (this.#next + 1) % this.n;
      this.host.at(t + Math.max(1, Math.round(this.rng.exponential(this.#meanGap))), this, -1);
    } else {
      i = tag % this.n;
    }
    const id = this.base + i;
    this.host.touch(id, t);
    this.#requests++;
    const q = this.#arrivals[i];
    q.push(t);
    this.#owners[i].push(tag);
    if (q.length === 1) {
      this.#cur[i] = this.#service;
      this.host.notify(id, t, "device");
    }
  }

  /** Serves the head request. */
  progress(i: number, d: number): void {
    if (this.#arrivals[i].length > 0) this.#cur[i] -= d;
  }

  /** Remaining service of the head request (0: none, halt). */
  left(i: number): number {
    return this.#arrivals[i].length > 0 ? Math.max(0, this.#cur[i]) : 0;
  }

  /** Completes the head request; halts when the queue is empty. */
  step(i: number, t: number): boolean {
    const q = this.#arrivals[i], o = this.#owners[i];
    while (q.length > 0 && this.#cur[i] <= 0) {
      const arrival = q.shift()!;
      const client = o.shift()!;
      this.#completed++;
      this.#latency.record(t - arrival);
      if (client >= 0) this.host.at(t + this.#think, this, client);
      if (q.length > 0) this.#cur[i] += this.#service;
    }
    return q.length > 0;
  }

  /** Requests, throughput, latency. */
  override results(endNs: number): BehaviourResults {
    return {
      echo: {
        requests: this.#requests,
        completed: this.#completed,
        throughputPerSec: endNs > 0 ? this.#completed / (endNs / 1e9) : 0,
        latency: this.#latency.summary(),
      },
    };
  }
}

const WORK = 0, SPIN = 1, CS = 2;

/**
 * Spinlock contention. Each vCPU loops: work (uniform in [0.5, 1.5) × `workUs`), acquire,
 * critical section, release. A waiter spins (burns guest time). A holder descheduled inside
 * its critical section makes every waiter spin through its slice: lock-holder preemption.
 *
 * - `tas` (test-and-set): on release the lock goes to the longest-waiting spinner that is in
 *   guest mode; a descheduled spinner takes a free lock when it runs again.
 * - `ticket`: waiters are served in arrival order. On release the lock passes to the next
 *   waiter whether it runs or not; if it is descheduled, everyone spins until it runs again
 *   (lock-waiter preemption).
 */
export class LockBehaviour extends Behaviour {
  readonly #cs: number;
  readonly #work: number;
  readonly #ticket: boolean;
  readonly #phase: number[];
  readonly #left: number[];
  #holder = -1;
  /** Ticket lock: the descheduled waiter the lock was passed to (it takes it when it runs). */
  #passedTo = -1;
  /** Waiters, in arrival order. */
  readonly #spinners: number[] = [];
  #acquisitions = 0;
  #spinNs = 0;

  /** @inheritdoc */
  constructor(host: SimHost, base: number, n: number, rng: Prng, w: LockWorkload) {
    super(host, base, n, rng);
    this.#cs = nsUs(w.csUs);
    this.#work = Math.max(0, nsUs(w.workUs));
    if (!(this.#cs > 0)) throw new RangeError("lock: csUs must be > 0");
    const lock = w.lock ?? "tas";
    if (lock !== "tas" && lock !== "ticket") {
      throw new RangeError(`lock: lock must be "tas" or "ticket", got ${JSON.stringify(lock)}`);
    }
    this.#ticket = lock === "ticket";
    this.#phase = new Array(n).fill(WORK);
    this.#left = Array.from({ length: n }, () => this.#workTime());
  }

  /** A work phase: uniform in [0.5, 1.5) × `workUs`, so vCPUs do not run in lockstep. */
  #workTime(): number {
    return this.#work > 0 ? Math.max(1, Math.round(this.#work * (0.5 + this.rng.next()))) : 0;
  }

  /** Always runnable. */
  initiallyRunnable(): boolean {
    return true;
  }

  /** A spinner that runs again takes a free lock (ticket: only the one it was passed to). */
  override enter(i: number): void {
    if (this.#phase[i] !== SPIN) return;
    if (this.#ticket ? this.#passedTo === i : this.#holder === -1) this.#take(i);
  }

  #take(i: number): void {
    const k = this.#spinners.indexOf(i);
    if (k >= 0) this.#spinners.splice(k, 1);
    if (this.#passedTo === i) this.#passedTo = -1;
    this.#holder = i;
    this.#phase[i] = CS;
    this.#left[i] = this.#cs;
  }

  /** Work or critical section progresses; spinning is counted. */
  progress(i: number, d: number): void {
    if (this.#phase[i] === SPIN) this.#spinNs += d;
    else this.#left[i] -= d;
  }

  /** Remaining work or critical section; Infinity while spinning. */
  left(i: number): number {
    return this.#phase[i] === SPIN ? Infinity : Math.max(0, this.#left[i]);
  }

  /** End of work: try the lock. End of critical section: release and hand over. */
  step(i: number, t: number): boolean {
    if (this.#phase[i] === WORK) {
      const free = this.#holder === -1 &&
        (!this.#ticket || (this.#passedTo === -1 && this.#spinners.length === 0));
      if (free) this.#take(i);
      else {
        this.#phase[i] = SPIN;
        this.#spinners.push(i);
      }
      return true;
    }
    // CS done.
    this.#acquisitions++;
    this.#holder = -1;
    this.#phase[i] = WORK;
    this.#left[i] = this.#workTime();
    // tas: the longest-waiting spinner that runs; ticket: the next in line, running or not.
    const next = this.#ticket
      ? this.#spinners[0]
      : this.#spinners.find((j) => this.host.inGuest(this.base + j));
    if (next === undefined) return true;
    const id = this.base + next;
    if (this.host.inGuest(id)) {
      this.host.touch(id, t);
      this.#take(next);
      this.host.notify(id, t);
    } else {
      this.#passedTo = next; // ticket: held for a waiter that is not running
      this.#spinners.shift();
    }
    return true;
  }

  /** Acquisitions and spin time. */
  override results(endNs: number): BehaviourResults {
    return {
      lock: {
        acquisitions: this.#acquisitions,
        acquisitionsPerSec: endNs > 0 ? this.#acquisitions / (endNs / 1e9) : 0,
        spinNs: this.#spinNs,
      },
    };
  }
}

/**
 * IPI ping-pong between vCPUs 2k and 2k+1: the one holding the ball works `workUs`, sends an IPI
 * to its peer and halts; the peer wakes, works, sends back. Latency: IPI sent → peer in guest
 * mode. An odd last vCPU spins.
 */
export class IpiBehaviour extends Behaviour {
  readonly #work: number;
  readonly #ball: boolean[];
  readonly #left: number[];
  readonly #sentAt: number[];
  #ipis = 0;
  readonly #latency = new Histogram();

  /** @inheritdoc */
  constructor(host: SimHost, base: number, n: number, rng: Prng, w: IpiWorkload) {
    super(host, base, n, rng);
    this.#work = Math.max(1, nsUs(w.workUs ?? 5));
    this.#ball = Array.from({ length: n }, (_, i) => i % 2 === 0);
    this.#left = new Array(n).fill(this.#work);
    this.#sentAt = new Array(n).fill(-1);
  }

  #spinner(i: number): boolean {
    return i === this.n - 1 && this.n % 2 === 1;
  }

  /** Even vCPUs start with the ball. */
  initiallyRunnable(i: number): boolean {
    return this.#ball[i];
  }

  /** Records the IPI latency. */
  override enter(i: number, t: number): void {
    if (this.#sentAt[i] >= 0) {
      this.#latency.record(t - this.#sentAt[i]);
      this.#sentAt[i] = -1;
    }
  }

  /** Works while holding the ball. */
  progress(i: number, d: number): void {
    if (this.#ball[i]) this.#left[i] -= d;
  }

  /** Remaining work; 0 without the ball (halt); Infinity for the odd spinner. */
  left(i: number): number {
    if (this.#spinner(i)) return Infinity;
    return this.#ball[i] ? Math.max(0, this.#left[i]) : 0;
  }

  /** Work done: pass the ball (send the IPI) and halt. */
  step(i: number, t: number): boolean {
    if (!this.#ball[i]) return false;
    const p = i ^ 1;
    const peer = this.base + p;
    this.#ball[i] = false;
    this.host.touch(peer, t);
    this.#ball[p] = true;
    this.#left[p] = this.#work;
    this.#ipis++;
    if (this.host.inGuest(peer)) this.#latency.record(0);
    else this.#sentAt[p] = t;
    this.host.notify(peer, t, "ipi");
    return false;
  }

  /** IPIs and latency. */
  override results(endNs: number): BehaviourResults {
    return {
      ipi: {
        ipis: this.#ipis,
        ipisPerSec: endNs > 0 ? this.#ipis / (endNs / 1e9) : 0,
        latency: this.#latency.summary(),
      },
    };
  }
}

/**
 * The tick-dodging attacker of guests/user/attacker.c: from when it runs, it spins for `runUs`
 * of wall time (descheduled or not), then sleeps `sleepUs` on its timer, from when it next
 * runs; the next round starts when it runs again.
 */
export class AttackerBehaviour extends Behaviour {
  readonly #run: number;
  readonly #nap: number;
  readonly #stopAt: number[];
  readonly #sleep: boolean[];

  /** @inheritdoc */
  constructor(host: SimHost, base: number, n: number, rng: Prng, w: AttackerWorkload) {
    super(host, base, n, rng);
    this.#run = Math.max(1, nsUs(w.runUs ?? 9500));
    this.#nap = Math.max(1, nsUs(w.sleepUs ?? 500));
    this.#stopAt = new Array(n).fill(-1);
    this.#sleep = new Array(n).fill(false);
  }
  /** Runnable at start. */
  initiallyRunnable(): boolean {
    return true;
  }
  /** A round starts when the vCPU runs after its sleep (`now = rdtsc()`). */
  override enter(i: number, t: number): void {
    if (this.#stopAt[i] < 0 && !this.#sleep[i]) {
      this.#stopAt[i] = t + this.#run;
      this.host.at(t + this.#run, this, i);
    }
  }
  /** Tag i: the round's run time is over; tag n + i: the sleep timer fired. */
  override onEvent(tag: number, t: number): void {
    if (tag < this.n) {
      if (this.#stopAt[tag] !== t) return;
      this.host.touch(this.base + tag, t);
      this.#stopAt[tag] = -1;
      this.#sleep[tag] = true;
    }
    this.host.notify(this.base + (tag % this.n), t, "timer");
  }
  /** Nothing to count. */
  progress(): void {}
  /** Spins until its round is over, then sleeps at once. */
  left(i: number): number {
    return this.#sleep[i] ? 0 : Infinity;
  }
  /** Goes to sleep for `sleepUs`. */
  step(i: number, t: number): boolean {
    if (!this.#sleep[i]) return true;
    this.#sleep[i] = false;
    this.host.at(t + this.#nap, this, this.n + i);
    return false;
  }
}

/**
 * Creates the behaviour for a workload spec; throws RangeError for a bad one. (A `replay`
 * workload's behaviour lives in `replay_behaviour.ts`, which the engine creates itself.)
 */
export function createBehaviour(
  host: SimHost,
  base: number,
  n: number,
  rng: Prng,
  w: Workload,
): Behaviour {
  switch (w?.kind) {
    case "spin":
      return new SpinBehaviour(host, base, n, rng);
    case "periodic":
      return new PeriodicBehaviour(host, base, n, rng, w);
    case "echo":
      return new EchoBehaviour(host, base, n, rng, w);
    case "lock":
      return new LockBehaviour(host, base, n, rng, w);
    case "ipi":
      return new IpiBehaviour(host, base, n, rng, w);
    case "attacker":
      return new AttackerBehaviour(host, base, n, rng, w);
    default:
      throw new RangeError(
        `unknown workload kind ${JSON.stringify((w as { kind?: unknown })?.kind)} ` +
          `(spin, periodic, echo, lock, ipi, attacker, replay)`,
      );
  }
}
