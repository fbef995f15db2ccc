/**
 * A recorded run's demand as a simulated workload (`kind: "replay"`): each vCPU replays its
 * bursts of guest time, each released by the wake that began it in the recorded run.
 *
 * - `start` and `unknown` wakes: at the recorded time.
 * - `device` wakes come from outside the guest (open loop, as the echo load is). `devices: "gap"`
 *   (the default): at the recorded time, or earlier by as much as the replay ended the previous
 *   burst before the recording did: the recorded gap from that halt to the wake. Arrivals during
 *   a burst are not in the trace (only a halted vCPU's wake is), so the recorded wake is the first
 *   arrival after the *recorded* halt; for Poisson arrivals the wait from any instant to the next
 *   arrival has the same distribution, so the recorded gap is a fair draw of the wait after the
 *   replay's earlier halt. A later halt cannot delay an arrival that happened. `"absolute"`: at
 *   the recorded time; `"relative"`: always the recorded gap after the previous burst ends (the
 *   arrivals' count then drifts with the policy).
 * - `timer` wakes: at the recorded time (`timers: "absolute"`, the default: the guest's deadline
 *   is on its clock) or the recorded sleep after the previous burst ends (`"relative"`).
 * - `ipi` wakes with a known sender: released when the sender has executed as much guest time as
 *   it had when it sent the IPI in the recorded run, so a chain of IPIs keeps its causal order
 *   under any policy. Without a sender, at the recorded time.
 *
 * Released bursts queue: a vCPU works them off in release order and halts when none is left. A
 * burst released while the vCPU still works on an earlier one does not wake it (it is not
 * halted); its work is added behind. Guest time is conserved: every released burst's guest time
 * is what the recorded run gave it; only when it is served changes.
 *
 * @module
 */
import { Behaviour, type BehaviourResults, type SimHost } from "./behaviour.ts";
import type { Prng } from "./prng.ts";
import type { ReplayBurst, ReplayWorkload } from "./types.ts";

/** An IPI this vCPU sends once its guest time reaches `at`. */
interface Ipi {
  at: number;
  target: number;
  burst: number;
}

/** Replays recorded bursts; see the module documentation. */
export class ReplayBehaviour extends Behaviour {
  readonly #bursts: ReplayBurst[][];
  readonly #timers: boolean;
  readonly #devices: "gap" | "absolute" | "relative";
  /** Per vCPU: which bursts were released (a gap and its recorded time may both come). */
  readonly #done: Uint8Array[];
  /** Per vCPU: indices of released, unfinished bursts, in release order. */
  readonly #queue: number[][];
  /** Per vCPU: guest ns left of the head burst. */
  readonly #left: number[];
  /** Per vCPU: guest ns executed so far. */
  readonly #guest: number[];
  /** Per vCPU: IPIs it sends, by guest time, and the next one's index. */
  readonly #ipis: Ipi[][];
  readonly #nextIpi: number[];

  /** @inheritdoc */
  constructor(host: SimHost, base: number, n: number, rng: Prng, w: ReplayWorkload) {
    super(host, base, n, rng);
    if (!Array.isArray(w.vcpus) || w.vcpus.length !== n) {
      throw new RangeError(`replay: expected bursts for ${n} vCPUs, got ${w.vcpus?.length}`);
    }
    this.#bursts = w.vcpus;
    this.#timers = w.timers === "relative";
    this.#devices = w.devices ?? "gap";
    if (!["gap", "absolute", "relative"].includes(this.#devices)) {
      throw new RangeError(`replay: devices must be gap, absolute or relative, got ${w.devices}`);
    }
    this.#done = w.vcpus.map((b) => new Uint8Array(b.length));
    this.#queue = Array.from({ length: n }, () => []);
    this.#left = new Array(n).fill(0);
    this.#guest = new Array(n).fill(0);
    this.#ipis = Array.from({ length: n }, () => []);
    this.#nextIpi = new Array(n).fill(0);
    w.vcpus.forEach((bursts, i) =>
      bursts.forEach((b, k) => {
        if (!(b.guestNs >= 0)) {
          throw new RangeError(`replay: vCPU ${i} burst ${k}: guestNs must be >= 0`);
        }
        const s = b.wake?.sender;
        if (b.wake?.source === "ipi" && s && s.index !== i && s.index >= 0 && s.index < n) {
          this.#ipis[s.index].push({ at: s.guestNs, target: i, burst: k });
        }
      })
    );
    for (const list of this.#ipis) list.sort((a, b) => a.at - b.at);
  }

  /** A vCPU whose first burst has no wake was runnable when the trace began. */
  initiallyRunnable(i: number): boolean {
    return this.#bursts[i].length > 0 && this.#bursts[i][0].wake === null;
  }

  /** Queues the first bursts and the recorded wakes that do not depend on the replay. */
  override start(t: number): void {
    for (let i = 0; i < this.n; i++) {
      this.#bursts[i].forEach((b, k) => {
        if (b.wake === null) {
          if (k === 0) this.#push(i, k);
          return;
        }
        if (b.wake.source === "ipi" && this.#hasSender(i, k)) return;
        if (this.#isRelative(b) && k > 0) return;
        this.host.at(t + b.wake.atNs, this, k * this.n + i);
      });
    }
  }

  /** Whether burst `b` is released only the recorded sleep after the previous one ends. */
  #isRelative(b: ReplayBurst): boolean {
    const w = b.wake;
    if (!w || w.sleepNs === undefined) return false;
    if (w.source === "timer") return this.#timers;
    return w.source === "device" && this.#devices === "relative";
  }

  /** Whether burst `b` may come the recorded gap after the previous one ends, if that is earlier. */
  #isGap(b: ReplayBurst): boolean {
    return b.wake?.source === "device" && b.wake.sleepNs !== undefined && this.#devices === "gap";
  }

  #hasSender(i: number, k: number): boolean {
    const s = this.#bursts[i][k].wake?.sender;
    return s !== undefined && s.index !== i && s.index >= 0 && s.index < this.n;
  }

  /** Queues burst `k` of vCPU `i` (no wake). */
  #push(i: number, k: number): void {
    this.#done[i][k] = 1;
    const q = this.#queue[i];
    q.push(k);
    if (q.length === 1) this.#left[i] = this.#bursts[i][k].guestNs;
  }

  /** Releases burst `k` of vCPU `i` at `t`: queue it and wake the vCPU if it halted. */
  #release(i: number, k: number, t: number): void {
    if (this.#done[i][k]) return;
    this.#done[i][k] = 1;
    const id = this.base + i;
    this.host.touch(id, t);
    this.#push(i, k);
    if (this.#queue[i].length === 1) {
      this.host.notify(id, t, this.#bursts[i][k].wake?.source ?? "unknown");
    }
  }

  /** A recorded wake's time came: tag = burst × n + vCPU. */
  override onEvent(tag: number, t: number): void {
    this.#release(tag % this.n, Math.floor(tag / this.n), t);
  }

  /** Works on the head burst and counts guest time (for IPI senders). */
  progress(i: number, d: number): void {
    this.#guest[i] += d;
    if (this.#queue[i].length > 0) this.#left[i] -= d;
  }

  /** Guest ns to the head burst's end or the next IPI this vCPU sends, whichever is first. */
  left(i: number): number {
    let l = this.#queue[i].length > 0 ? Math.max(0, this.#left[i]) : 0;
    const ipi = this.#ipis[i][this.#nextIpi[i]];
    if (ipi !== undefined) l = Math.min(l, Math.max(0, ipi.at - this.#guest[i]));
    return l;
  }

  /** Sends due IPIs, finishes done bursts; halts when no released burst is left. */
  step(i: number, t: number): boolean {
    const ipis = this.#ipis[i];
    while (this.#nextIpi[i] < ipis.length && ipis[this.#nextIpi[i]].at <= this.#guest[i]) {
      const ipi = ipis[this.#nextIpi[i]++];
      this.#release(ipi.target, ipi.burst, t);
    }
    const q = this.#queue[i];
    while (q.length > 0 && this.#left[i] <= 0) {
      const done = q.shift()!;
      const next = this.#bursts[i][done + 1];
      const tag = (done + 1) * this.n + i;
      if (next && this.#isRelative(next)) this.host.at(t + next.wake!.sleepNs!, this, tag);
      else if (next && this.#isGap(next) && t + next.wake!.sleepNs! < next.wake!.atNs) {
        this.host.at(t + next.wake!.sleepNs!, this, tag);
      }
      if (q.length > 0) this.#left[i] += this.#bursts[i][q[0]].guestNs;
    }
    return q.length > 0;
  }

  /** Nothing workload-specific: the replay's results are its trace. */
  override results(_endNs: number): BehaviourResults {
    return {};
  }
}
