/**
 * The layout of the shim's per-EMT block (`struct shim_emt` in `ffi/shim.c`) and of its
 * VMM-wide block (`struct shim_global`), for reading counters from TypeScript with Atomics.
 * `tests/shim_test.ts` checks these numbers against `shim_layout()` in the built library.
 *
 * @module
 */

/** Bytes reserved per EMT block (the struct is smaller; the rest is padding). */
export const EMT_BLOCK_SIZE = 512;
/** Bytes of the VMM-wide block (in-guest count and its high-water mark). */
export const GLOBAL_BLOCK_SIZE = 64;

/** Int32 index of each word in an EMT block. */
export const EMT_WORD = { state: 0, wakeToken: 1, pokeRequest: 2, tid: 3 } as const;

/** Values of the state word (`enum shim_state`). */
export const EMT_STATE = { host: 0, guest: 1, halted: 2 } as const;

/** Byte offset of the counters (u64 each). */
export const COUNTERS_OFFSET = 64;
/** Counter indexes (`enum shim_counter`). */
export const COUNTER = {
  runs: 0,
  halts: 1,
  wakes: 2,
  pokes: 3,
  nsGuest: 4,
  nsHalted: 5,
  nsWaitGrant: 6,
  deadlines: 7,
  intr: 8,
  grantWaits: 9,
  enteredAt: 10,
  guestSeq: 11,
} as const;
/** Number of fixed counters. */
export const COUNTER_COUNT = 12;
/** Byte offset of the per-exit-reason counters. */
export const EXITS_OFFSET = COUNTERS_OFFSET + 8 * COUNTER_COUNT;
/** Exit reasons counted (KVM exit reasons below this). */
export const EXIT_REASONS = 40;

/** Int32 index in the global block. */
export const GLOBAL_WORD = { inGuest: 0, highWater: 1 } as const;

/** `shim_run` results beyond KVM's exit reasons. */
export const RUN_RESULT = { poked: 100, deadline: 101 } as const;
/** `shim_halt` results. */
export const HALT_RESULT = { woken: 0, timeout: 1 } as const;
/** `shim_halt` kinds. */
export const HALT_KIND = { guest: 0, grant: 1 } as const;

/** A snapshot of one EMT's counters. */
export interface EmtCounters {
  /** KVM_RUN entries. */
  runs: number;
  /** Guest halts. */
  halts: number;
  /** Wakes received. */
  wakes: number;
  /** Pokes that signalled the EMT in guest mode. */
  pokes: number;
  /**
   * ns in guest mode; with `now` passed to {@linkcode readCounters}, including the KVM_RUN in
   * progress (a vCPU whose slices are extended may stay in one for seconds).
   */
  nsGuest: number;
  /** ns halted. */
  nsHalted: number;
  /** ns waiting for a grant. */
  nsWaitGrant: number;
  /** Runs ended by their deadline. */
  deadlines: number;
  /** KVM_RUN returned EINTR. */
  intr: number;
  /** Grant waits. */
  grantWaits: number;
  /** Exits by KVM exit reason. */
  exits: number[];
}

/**
 * Reads one EMT block's counters (any thread; each value is read atomically). `now`
 * (CLOCK_MONOTONIC ns, the shim's `now`) adds the running part of a KVM_RUN in progress to
 * `nsGuest`.
 */
export function readCounters(
  sab: SharedArrayBuffer,
  blockOffset: number,
  now?: number,
): EmtCounters {
  const c = new BigUint64Array(sab, blockOffset + COUNTERS_OFFSET, COUNTER_COUNT);
  const x = new BigUint64Array(sab, blockOffset + EXITS_OFFSET, EXIT_REASONS);
  const n = (i: number) => Number(Atomics.load(c, i));
  // Guest time including the KVM_RUN in progress, read under the shim's seqlock.
  let nsGuest = n(COUNTER.nsGuest);
  if (now !== undefined) {
    for (let tries = 0; tries < 100; tries++) {
      const s1 = n(COUNTER.guestSeq);
      if (s1 & 1) continue;
      const at = n(COUNTER.enteredAt);
      const g = n(COUNTER.nsGuest);
      if (n(COUNTER.guestSeq) !== s1) continue;
      nsGuest = at > 0 && now > at ? g + (now - at) : g;
      break;
    }
  }
  return {
    runs: n(COUNTER.runs),
    halts: n(COUNTER.halts),
    wakes: n(COUNTER.wakes),
    pokes: n(COUNTER.pokes),
    nsGuest,
    nsHalted: n(COUNTER.nsHalted),
    nsWaitGrant: n(COUNTER.nsWaitGrant),
    deadlines: n(COUNTER.deadlines),
    intr: n(COUNTER.intr),
    grantWaits: n(COUNTER.grantWaits),
    exits: Array.from({ length: EXIT_REASONS }, (_, i) => Number(Atomics.load(x, i))),
  };
}
