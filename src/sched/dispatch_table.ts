/**
 * The hand-off word of each slot: how a choice the plugin made ahead (`queueNext`) reaches the
 * EMT that leaves the slot, and how the core and that EMT agree on who carried it out. One
 * VMM-wide SharedArrayBuffer, shared by the scheduler core and every EMT, one
 * {@linkcode SLOT_BYTES} record per slot:
 *
 * | offset | type | field                                                                    |
 * | ------ | ---- | ------------------------------------------------------------------------ |
 * | 0      | i64  | the word: holder generation << 32 \| queued generation (see below)         |
 * | 8      | f64  | the queued EMT's shim block address (the leaving EMT wakes it)           |
 * | 16     | f64  | the queued slice (ns)                                                    |
 * | 24     | f64  | the hand-off's deadline: the leaving EMT's leave time + the slice         |
 * | 32     | i32  | the slot's host CPU (-1: not pinned)                                     |
 * | 36     | i32  | the generation the deadline belongs to (written after it)                |
 *
 * The word's low half is 0 (nothing queued), `G` (generation `G` is queued and may be taken)
 * or `G | PENDING` (being published: not yet). Every change is one compare-and-swap of the
 * whole word, so exactly one of these happens to a queued `G`:
 *
 * - the EMT holding the slot under the high half's generation leaves guest mode, reports its
 *   leave, then swaps `[holder, G]` for `[G, 0]` (it hands the slot to `G`), writes the
 *   deadline and wakes the queued EMT on the slot's CPU ({@linkcode DispatchTableEmt.claim});
 * - the core, processing that leave first, swaps the same (it grants `G` itself);
 * - the core revokes: `[holder, G]` becomes `[holder, 0]`;
 * - the queued EMT withdraws (it halts or stops while waiting): `[holder, G]` becomes
 *   `[holder, 0]`; had the hand-off won, it gives the slot straight back
 *   ({@linkcode DispatchTableEmt.withdraw}).
 *
 * A stale EMT (its grant was taken back when its VM was removed) cannot hand over: the high half
 * names the holder's generation. Publishing is two-phase against a withdrawing EMT (Dekker's
 * pattern on sequentially consistent atomics): the core stores `G | PENDING`, then reads the
 * EMT's withdrawn flag; the EMT stores the flag, then reads the word. One of the two sees the
 * other, so no slot is ever handed to an EMT that already reported its withdrawal.
 *
 * @module
 */

/** Bytes per slot record. */
export const SLOT_BYTES = 64;
/** The low half's mark of a choice being published. */
const PENDING = 0x8000_0000n;
const LOW = 0xffff_ffffn;

/** The word of a record: `holder << 32 | low`. */
function word(holder: number, low: bigint): bigint {
  return (BigInt(holder) << 32n) | low;
}

/** Allocates the table for `slots` slots. */
export function allocateDispatchTable(slots: number): SharedArrayBuffer {
  return new SharedArrayBuffer(SLOT_BYTES * Math.max(1, slots));
}

/** What a compare-and-swap found: who carried a queued choice out. */
export type SwapOutcome = "core" | "handed" | "cancelled";

/** A choice as the core publishes it. */
export interface PublishedChoice {
  /** The slot. */
  slot: number;
  /** The generation of the holder's grant. */
  holderGeneration: number;
  /** The queued grant's generation. */
  generation: number;
  /** Its slice (ns). */
  sliceNs: number;
  /** The queued EMT's shim block address. */
  emtAddress: number;
  /** The slot's host CPU, or -1. */
  cpu: number;
}

/** Views of one table, shared by both sides. */
class Views {
  readonly w: BigInt64Array;
  readonly f: Float64Array;
  readonly i: Int32Array;
  constructor(sab: SharedArrayBuffer) {
    this.w = new BigInt64Array(sab);
    this.f = new Float64Array(sab);
    this.i = new Int32Array(sab);
  }
}

/** The core's side. */
export class DispatchTableCore {
  #v: Views;

  /** @param sab the table */
  constructor(sab: SharedArrayBuffer) {
    this.#v = new Views(sab);
  }

  /**
   * Publishes `c` in two phases; `withdrawn()` reads the queued EMT's flag between them.
   * Returns false (nothing published) when it has withdrawn.
   */
  publish(c: PublishedChoice, withdrawn: () => boolean): boolean {
    const v = this.#v, b = c.slot * SLOT_BYTES;
    v.f[b / 8 + 1] = c.emtAddress;
    v.f[b / 8 + 2] = c.sliceNs;
    Atomics.store(v.i, b / 4 + 8, c.cpu);
    const pending = word(c.holderGeneration, BigInt(c.generation) | PENDING);
    Atomics.store(v.w, b / 8, pending);
    if (withdrawn()) {
      Atomics.compareExchange(v.w, b / 8, pending, word(c.holderGeneration, 0n));
      return false;
    }
    const ready = word(c.holderGeneration, BigInt(c.generation));
    return Atomics.compareExchange(v.w, b / 8, pending, ready) === pending;
  }

  #swap(slot: number, holder: number, gen: number, to: bigint): SwapOutcome {
    const v = this.#v, i = slot * SLOT_BYTES / 8;
    const from = word(holder, BigInt(gen));
    const was = Atomics.compareExchange(v.w, i, from, to);
    if (was === from) return "core";
    return Number(was >> 32n) === gen ? "handed" : "cancelled";
  }

  /** Takes generation `gen` back from `slot` (held under `holder`). */
  revoke(slot: number, holder: number, gen: number): SwapOutcome {
    return this.#swap(slot, holder, gen, word(holder, 0n));
  }

  /** The holder left: the core takes `gen` (it grants it itself) unless someone was first. */
  claim(slot: number, holder: number, gen: number): SwapOutcome {
    return this.#swap(slot, holder, gen, word(gen, 0n));
  }
}

/** Where the leaving EMT hands its slot: the queued EMT's block and the slot's CPU. */
export interface HandOff {
  /** The queued grant's generation. */
  generation: number;
  /** The queued EMT's shim block address. */
  emtAddress: number;
  /** The slot's host CPU, or -1. */
  cpu: number;
}

/** An EMT's side. */
export class DispatchTableEmt {
  #v: Views;

  /** @param sab the table */
  constructor(sab: SharedArrayBuffer) {
    this.#v = new Views(sab);
  }

  /**
   * The EMT leaving `slot`, which it held under `holderGen`, at `leftAt` (the time of the leave
   * it has already reported): takes the queued choice, if any, and writes its deadline. The
   * caller then wakes the queued EMT. Null when nothing is queued (or it is being published).
   */
  claim(slot: number, holderGen: number, leftAt: number): HandOff | null {
    const v = this.#v, b = slot * SLOT_BYTES;
    const w = Atomics.load(v.w, b / 8);
    const low = w & LOW;
    if (Number(w >> 32n) !== holderGen || low === 0n || (low & PENDING) !== 0n) return null;
    const gen = Number(low);
    // Read the choice before taking it: once the word changes, the core may publish the next
    // choice for this slot over these fields (it writes them only while nothing is queued, so
    // a successful swap vouches for what was read).
    const emtAddress = v.f[b / 8 + 1], sliceNs = v.f[b / 8 + 2];
    const cpu = Atomics.load(v.i, b / 4 + 8);
    if (Atomics.compareExchange(v.w, b / 8, w, word(gen, 0n)) !== w) return null;
    v.f[b / 8 + 3] = leftAt + sliceNs;
    Atomics.store(v.i, b / 4 + 9, gen); // publishes the deadline
    return { generation: gen, emtAddress, cpu };
  }

  /**
   * The deadline of generation `gen` handed over on `slot`, or -1 when it has not been handed
   * over (yet: the leaving EMT writes it just after its swap, then wakes the queued EMT).
   */
  handed(slot: number, gen: number): number {
    const v = this.#v, b = slot * SLOT_BYTES;
    if (Number(Atomics.load(v.w, b / 8) >> 32n) !== gen) return -1;
    if (Atomics.load(v.i, b / 4 + 9) !== gen) return -1;
    return v.f[b / 8 + 3];
  }

  /**
   * The queued EMT withdraws generation `gen` on `slot` (it halts or stops while waiting):
   * returns true when the hand-off already happened (the caller gives the slot back), false
   * when it cancelled it or nothing was queued.
   */
  withdraw(slot: number, gen: number): boolean {
    const v = this.#v, i = slot * SLOT_BYTES / 8;
    for (;;) {
      const w = Atomics.load(v.w, i);
      if (Number(w >> 32n) === gen) return true;
      const low = w & LOW;
      if ((low & ~PENDING) !== BigInt(gen)) return false;
      if (Atomics.compareExchange(v.w, i, w, w & ~LOW) === w) return false;
      // The word changed under us (a hand-off or the core): look again; it settles at once.
    }
  }
}
