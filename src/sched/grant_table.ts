/**
 * The shared memory between the EMTs of one VM and the scheduler core: per vCPU a grant
 * record (written by the core, read by the EMT) and a single-producer single-consumer ring of
 * scheduling events (written by the EMT, read by the core). A VMM-wide doorbell tells the core
 * that some ring has news: word 0 counts events, word 1 counts control messages the main thread
 * posted (so the core, which sleeps in a synchronous `Atomics.wait` on word 0, knows to let its
 * event loop deliver them).
 *
 * A grant is `{generation, slot, sliceDeadline}`; generations only grow, so an EMT tells a new
 * grant from the one it just gave back, and a revoke names the generation it revokes. The core
 * may move a live grant's deadline later (a slice extension): the EMT reads it afresh before
 * each entry. An EMT runs guest code only while it holds a generation that is not revoked
 * (DESIGN.md invariant 2).
 *
 * Record layout (Int32 words / Float64 slots of one `RECORD_BYTES` record):
 *
 * | i32 | field                                        |
 * | --- | -------------------------------------------- |
 * | 0   | grant generation (0: none yet)               |
 * | 1   | grant slot                                   |
 * | 2   | revoked generation                           |
 * | 3   | ring head (EMT: next entry it writes)        |
 * | 4   | ring tail (core: next entry it reads)        |
 * | 5   | grant generation the steal base belongs to  |
 * | f64 3 | slice deadline, CLOCK_MONOTONIC ns         |
 * | 32.. | ring entries: f64 type, ranNs, at, generation, stolenNs |
 * | f64 60, 61 | steal base: CLOCK_MONOTONIC ns and the EMT's thread CPU ns, set when it takes a grant and at each extension |
 * | i32 100 | generation queued ahead for it (`queueNext`; 0: none) |
 * | i32 101 | the slot it is queued on |
 * | i32 102 | 1: the queued grant is reserved time |
 * | i32 103 | 1: the EMT has withdrawn (it reported a halt or its end while waiting), else 0 |
 * | i32 124 | 1: the grant is reserved time (the EMT holds its CPU real-time), else 0 |
 *
 * A grant queued ahead is taken once the EMT leaving its slot hands it over
 * (`dispatch_table.ts`): its generation and slot are here, its deadline in the slot's record.
 *
 * @module
 */

import { DispatchTableEmt, type HandOff } from "./dispatch_table.ts";

/** Bytes per vCPU record. */
export const RECORD_BYTES = 512;
const RING_OFFSET = 32;
const ENTRY_F64 = 5;
/** Ring entries per vCPU: an EMT has at most a few events in flight (it waits for grants). */
export const RING_ENTRIES = 8;

const W = {
  grantGen: 0,
  slot: 1,
  revokedGen: 2,
  head: 3,
  tail: 4,
  baseGen: 5,
  queuedGen: 100,
  queuedSlot: 101,
  queuedReserved: 102,
  withdrawn: 103,
  reserved: 124,
} as const;
const F_DEADLINE = 3;
/** Steal base: wall clock and the EMT's thread CPU clock from which steal is counted. */
const F_BASE_AT = 60, F_BASE_CPU = 61;

/**
 * Steal since the base at `f` (the record's first f64): wall time less thread CPU time, given
 * the clocks now (>= 0). The EMT never sleeps while it holds a grant, so the difference is time
 * other threads held its CPU.
 */
function stealSince(f64: Float64Array, f: number, at: number, cpuNs: number): number {
  return Math.max(0, at - f64[f + F_BASE_AT] - (cpuNs - f64[f + F_BASE_CPU]));
}

/** Scheduling events an EMT reports. */
export const SCHED_EVENT = {
  /** The vCPU can run (it started, or an interrupt ended its halt). */
  runnable: 1,
  /** It halted with nothing pending; its grant is given back. */
  halt: 2,
  /** Its slice deadline passed; grant given back, still runnable. */
  sliceEnd: 3,
  /** It saw its grant revoked; grant given back, still runnable. */
  preempted: 4,
  /** The guest yielded; grant given back, still runnable. */
  yield: 5,
  /** The EMT stopped for good (VM stopped or faulted). */
  gone: 6,
} as const;

/** What woke a halted vCPU (sent with `runnable` in the ranNs field). */
export const WAKE_SOURCE = { unknown: 0, timer: 1, ipi: 2, device: 3, start: 4 } as const;

/** A scheduling event's type. */
export type SchedEventType = typeof SCHED_EVENT[keyof typeof SCHED_EVENT];

/** One event read from a ring. */
export interface SchedEvent {
  /** The grant the event gives back (0: none); stale ones are told apart by it. */
  generation: number;
  /** What happened. */
  type: SchedEventType;
  /** Guest ns the vCPU ran under the grant it gave back (0 for runnable / gone). */
  ranNs: number;
  /**
   * Of the time the EMT held that grant, the ns other host threads held its CPU while it was
   * runnable (steal: its wall time less its thread CPU time; 0 for runnable / gone).
   */
  stolenNs: number;
  /** When, CLOCK_MONOTONIC ns. */
  at: number;
}

/** A grant as the EMT sees it. */
export interface Grant {
  /** Its generation. */
  generation: number;
  /** The slot. */
  slot: number;
  /** CLOCK_MONOTONIC ns at which the slice ends. */
  sliceDeadline: number;
  /** Reserved time: the EMT holds its CPU at real-time priority (`PickDecision.reserved`). */
  reserved?: boolean;
}

/** Allocates the shared memory for `vcpus` records. */
export function allocateGrantTable(vcpus: number): SharedArrayBuffer {
  return new SharedArrayBuffer(RECORD_BYTES * vcpus);
}

/** Allocates the VMM-wide doorbell. */
export function allocateDoorbell(): SharedArrayBuffer {
  return new SharedArrayBuffer(8);
}

/** Doorbell words. */
export const DOORBELL = { events: 0, control: 1 } as const;

/** Tells the core a control message was posted (after `postMessage`). */
export function ringControl(doorbell: SharedArrayBuffer): void {
  const w = new Int32Array(doorbell);
  Atomics.add(w, DOORBELL.control, 1);
  Atomics.add(w, DOORBELL.events, 1);
  Atomics.notify(w, DOORBELL.events);
}

/** One vCPU's record, as the EMT uses it. */
export class GrantRecordEmt {
  #i32: Int32Array;
  #f64: Float64Array;
  #doorbell: Int32Array;
  #dispatch: DispatchTableEmt | null;
  #consumed = 0;

  /**
   * @param table the VM's grant table
   * @param vcpu the vCPU index
   * @param doorbell the VMM's doorbell
   * @param dispatch the VMM's hand-off table (`dispatch_table.ts`), when choices are made ahead
   */
  constructor(
    table: SharedArrayBuffer,
    vcpu: number,
    doorbell: SharedArrayBuffer,
    dispatch?: SharedArrayBuffer,
  ) {
    this.#i32 = new Int32Array(table, vcpu * RECORD_BYTES, RECORD_BYTES / 4);
    this.#f64 = new Float64Array(table, vcpu * RECORD_BYTES, RECORD_BYTES / 8);
    this.#doorbell = new Int32Array(doorbell);
    this.#dispatch = dispatch ? new DispatchTableEmt(dispatch) : null;
  }

  /**
   * A grant newer than the last one taken, or null: one the core published, or one queued
   * ahead that the EMT leaving its slot handed over. Taking it marks it consumed. It may be
   * revoked already (the core preempted it before the EMT woke): the EMT then gives it back
   * at once, so the core, which counts the vCPU running, hears of it.
   */
  takeGrant(): Grant | null {
    const gen = Atomics.load(this.#i32, W.grantGen);
    // Generations grow core-wide, grants and queued ones alike: only a newer one is taken.
    if (gen > this.#consumed) {
      this.#consumed = gen;
      return {
        generation: gen,
        slot: Atomics.load(this.#i32, W.slot),
        sliceDeadline: this.#f64[F_DEADLINE],
        reserved: Atomics.load(this.#i32, W.reserved) === 1,
      };
    }
    const q = Atomics.load(this.#i32, W.queuedGen);
    if (q <= this.#consumed || this.#dispatch === null) return null;
    const slot = Atomics.load(this.#i32, W.queuedSlot);
    const deadline = this.#dispatch.handed(slot, q);
    if (deadline < 0) return null;
    this.#consumed = q;
    // The core's later extensions of this grant write the record's deadline: start from it.
    this.#f64[F_DEADLINE] = deadline;
    return {
      generation: q,
      slot,
      sliceDeadline: deadline,
      reserved: Atomics.load(this.#i32, W.queuedReserved) === 1,
    };
  }

  /**
   * Leaving `slot`, held under `gen`, at `leftAt` (already reported, not yet rung): takes the
   * choice queued ahead there, if any. The caller wakes the returned EMT, then rings.
   */
  handOff(slot: number, gen: number, leftAt: number): HandOff | null {
    return this.#dispatch?.claim(slot, gen, leftAt) ?? null;
  }

  /**
   * The EMT halts or stops while waiting for a grant: marks it withdrawn, then cancels a grant
   * queued ahead for it. Returns the generation of one already handed over (the caller gives
   * it straight back, reporting that generation), or 0.
   */
  withdraw(): number {
    Atomics.store(this.#i32, W.withdrawn, 1); // first: the core reads it after publishing
    const q = Atomics.load(this.#i32, W.queuedGen);
    if (q <= this.#consumed || this.#dispatch === null) return 0;
    if (!this.#dispatch.withdraw(Atomics.load(this.#i32, W.queuedSlot), q)) return 0;
    this.#consumed = q;
    return q;
  }

  /** The EMT wants a slot again: no longer withdrawn (before it reports `runnable`). */
  rejoin(): void {
    Atomics.store(this.#i32, W.withdrawn, 0);
  }

  /** Rings the doorbell for events posted with `post(..., false)`. */
  ring(): void {
    Atomics.add(this.#doorbell, 0, 1);
    Atomics.notify(this.#doorbell, 0);
  }

  /**
   * The live slice deadline of the grant held: the core may have extended it since
   * `takeGrant` (`GrantTableCore.extend`).
   */
  deadline(): number {
    return this.#f64[F_DEADLINE];
  }

  /**
   * Counts steal from here: the EMT took grant `gen` at `at` (CLOCK_MONOTONIC ns) with `cpuNs`
   * of thread CPU time. The core moves the base at each extension (`GrantTableCore.restartSteal`).
   */
  startSteal(gen: number, at: number, cpuNs: number): void {
    this.#f64[F_BASE_AT] = at;
    this.#f64[F_BASE_CPU] = cpuNs;
    Atomics.store(this.#i32, W.baseGen, gen); // last: publishes the base
  }

  /** Steal since the base: wall time less thread CPU time, given the clocks now (>= 0). */
  stolenSince(at: number, cpuNs: number): number {
    return stealSince(this.#f64, 0, at, cpuNs);
  }

  /** Whether the core revoked generation `gen`. */
  revoked(gen: number): boolean {
    return Atomics.load(this.#i32, W.revokedGen) === gen;
  }

  /**
   * Reports an event (for a grant given back: its generation) and rings the doorbell. Returns
   * false if the ring is full (a bug: an EMT has at most a few events in flight).
   */
  post(
    type: SchedEventType,
    ranNs: number,
    at: number,
    generation = 0,
    stolenNs = 0,
    ring = true,
  ): boolean {
    const head = Atomics.load(this.#i32, W.head);
    if (head - Atomics.load(this.#i32, W.tail) >= RING_ENTRIES) return false;
    const e = (RING_OFFSET / 8) + (head % RING_ENTRIES) * ENTRY_F64;
    this.#f64[e] = type;
    this.#f64[e + 1] = ranNs;
    this.#f64[e + 2] = at;
    this.#f64[e + 3] = generation;
    this.#f64[e + 4] = stolenNs;
    Atomics.store(this.#i32, W.head, head + 1); // publishes the entry (seq-cst store)
    if (ring) this.ring();
    return true;
  }
}

/** The core's view of one VM's grant table. */
export class GrantTableCore {
  #i32: Int32Array;
  #f64: Float64Array;
  /** vCPUs in the table. */
  readonly vcpus: number;

  /** @param table the VM's grant table */
  constructor(table: SharedArrayBuffer) {
    this.#i32 = new Int32Array(table);
    this.#f64 = new Float64Array(table);
    this.vcpus = table.byteLength / RECORD_BYTES;
  }

  /** Publishes a grant for `vcpu` (the caller then wakes its EMT). */
  grant(vcpu: number, g: Grant): void {
    const b = vcpu * RECORD_BYTES;
    this.#f64[b / 8 + F_DEADLINE] = g.sliceDeadline;
    Atomics.store(this.#i32, b / 4 + W.slot, g.slot);
    Atomics.store(this.#i32, b / 4 + W.reserved, g.reserved ? 1 : 0);
    Atomics.store(this.#i32, b / 4 + W.grantGen, g.generation); // last: publishes the rest
  }

  /**
   * At an extension of grant `gen`: the steal since the base (0 if the EMT has not taken the
   * grant yet), and the base moved to now, so the EMT's next report counts from here.
   */
  restartSteal(vcpu: number, gen: number, at: number, cpuNs: number): number {
    const b = vcpu * RECORD_BYTES;
    if (Atomics.load(this.#i32, b / 4 + W.baseGen) !== gen || !(cpuNs >= 0)) return 0;
    const f = b / 8;
    const stolen = stealSince(this.#f64, f, at, cpuNs);
    this.#f64[f + F_BASE_AT] = at;
    this.#f64[f + F_BASE_CPU] = cpuNs;
    return stolen;
  }

  /** Records the grant queued ahead for `vcpu` (before the choice is published). */
  setQueued(vcpu: number, generation: number, slot: number, reserved: boolean): void {
    const b = vcpu * RECORD_BYTES / 4;
    Atomics.store(this.#i32, b + W.queuedSlot, slot);
    Atomics.store(this.#i32, b + W.queuedReserved, reserved ? 1 : 0);
    Atomics.store(this.#i32, b + W.queuedGen, generation);
  }

  /** Whether `vcpu`'s EMT has withdrawn (it halted or stopped while waiting). */
  withdrawn(vcpu: number): boolean {
    return Atomics.load(this.#i32, vcpu * RECORD_BYTES / 4 + W.withdrawn) === 1;
  }

  /** Moves the slice deadline of `vcpu`'s live grant (an extension; the generation stays). */
  extend(vcpu: number, deadline: number): void {
    this.#f64[vcpu * RECORD_BYTES / 8 + F_DEADLINE] = deadline;
  }

  /** Revokes generation `gen` of `vcpu` (the caller then pokes its EMT). */
  revoke(vcpu: number, gen: number): void {
    Atomics.store(this.#i32, vcpu * RECORD_BYTES / 4 + W.revokedGen, gen);
  }

  /** Takes the next event of `vcpu`, or null. */
  next(vcpu: number): SchedEvent | null {
    const b = vcpu * RECORD_BYTES / 4;
    const tail = Atomics.load(this.#i32, b + W.tail);
    if (tail === Atomics.load(this.#i32, b + W.head)) return null;
    const e = vcpu * RECORD_BYTES / 8 + RING_OFFSET / 8 + (tail % RING_ENTRIES) * ENTRY_F64;
    const ev = {
      type: this.#f64[e] as SchedEventType,
      ranNs: this.#f64[e + 1],
      at: this.#f64[e + 2],
      generation: this.#f64[e + 3],
      stolenNs: this.#f64[e + 4],
    };
    Atomics.store(this.#i32, b + W.tail, tail + 1);
    return ev;
  }
}
