/**
 * The echo mailbox device (guests/ABI.md): how the host's request generator and the guest's
 * `echo` workload talk, and what the EMT does with the guest's doorbell.
 *
 * - Guest memory at {@linkcode ECHO_PAGE}: u64 `posted` (the host counts a request in), u64
 *   `done` (the guest counts one out).
 * - A request is announced with a fixed interrupt (the IPI vector) to vCPU 0.
 * - The guest answers with a 32-bit store of its `done` count to {@linkcode ECHO_DOORBELL};
 *   the EMT timestamps every request answered up to that count.
 *
 * Host side, a SharedArrayBuffer between the client Worker and the EMT: Int32 word 0 = requests
 * completed, word 1 = requests sent; then a ring of arrival times and a ring of completion times
 * (Float64, CLOCK_MONOTONIC ns, {@linkcode ECHO_RING} entries each). The guest can write anything
 * to its page and its doorbell: the host counts from these words, never from guest memory, and
 * a done count beyond the requests sent answers only those.
 *
 * @module
 */

/** GPA of the echo page. */
export const ECHO_PAGE = 0x60000;
/** GPA of the doorbell the guest stores its done count to. */
export const ECHO_DOORBELL = 0xd1001000;
/** The interrupt vector that announces requests (the guest kernel's IPI vector). */
export const ECHO_VECTOR = 0x21;
/** Entries of each time ring. */
export const ECHO_RING = 1 << 16;

const HEADER_BYTES = 64;

/** Allocates the host-side channel. */
export function allocateEchoChannel(): SharedArrayBuffer {
  return new SharedArrayBuffer(HEADER_BYTES + 2 * 8 * ECHO_RING);
}

/** Views of the channel. */
export interface EchoChannel {
  /** Word 0: requests completed; word 1: requests sent. */
  words: Int32Array;
  /** Arrival time of request i at i % ECHO_RING. */
  arrivals: Float64Array;
  /** Completion time of request i at i % ECHO_RING. */
  completions: Float64Array;
}

/** Maps the channel. */
export function echoChannel(sab: SharedArrayBuffer): EchoChannel {
  return {
    words: new Int32Array(sab, 0, HEADER_BYTES / 4),
    arrivals: new Float64Array(sab, HEADER_BYTES, ECHO_RING),
    completions: new Float64Array(sab, HEADER_BYTES + 8 * ECHO_RING, ECHO_RING),
  };
}

/** The EMT side: the guest's doorbell. */
export class EchoDoorbell {
  #ch: EchoChannel;
  #done = 0;

  /** @param sab the VM's echo channel */
  constructor(sab: SharedArrayBuffer) {
    this.#ch = echoChannel(sab);
  }

  /**
   * The guest stored `done` (its count of answered requests) at time `now`. A count at or below
   * the last one (a repeat, a stale or wrapped count) is ignored; one beyond the requests sent
   * answers those only: the EMT's work per store is bounded by the requests in flight.
   */
  ring(done: number, now: number): void {
    done = Math.min(done >>> 0, Atomics.load(this.#ch.words, 1));
    if (done <= this.#done) return;
    for (let i = this.#done; i < done; i++) this.#ch.completions[i % ECHO_RING] = now;
    this.#done = done;
    Atomics.store(this.#ch.words, 0, done);
    Atomics.notify(this.#ch.words, 0);
  }
}

/** Load generator settings. */
export interface EchoLoadOptions {
  /**
   * `open`: Poisson arrivals at `ratePerSec` whatever the server does; `closed`: `clients`
   * clients, each sends a request, waits for the answer, thinks `thinkUs`, sends the next.
   */
  mode: "open" | "closed";
  /** Open loop: mean arrivals per second (default 1000). */
  ratePerSec?: number;
  /** Closed loop: clients (default 1). */
  clients?: number;
  /** Closed loop: think time (µs, default 0). */
  thinkUs?: number;
  /** How long to generate load (s). */
  seconds: number;
  /** Seed of the arrival process (default 1). */
  seed?: number;
}

/** What a load run measured. */
export interface EchoResult {
  /** Requests sent. */
  sent: number;
  /** Requests answered within the run. */
  completed: number;
  /** Answered per second. */
  throughput: number;
  /** Latency arrival → answer, ns. */
  p50Ns: number;
  /** See `p50Ns`. */
  p99Ns: number;
  /** See `p50Ns`. */
  meanNs: number;
  /** See `p50Ns`. */
  maxNs: number;
}

/**
 * The start message of the load generator's thread (`echo_client_worker.ts`). It lives here,
 * not in the worker's module, so that importing the type does not put the worker, and its
 * `deno.worker` lib reference, in the package's module graph.
 */
export interface EchoClientInit {
  /** The built shim. */
  shimPath: string;
  /** Host address of guest memory (as a decimal string: bigints do not clone into JSON). */
  memAddress: string;
  /** The VM's mailboxes. */
  mailboxes: SharedArrayBuffer;
  /** vCPUs of the VM. */
  vcpus: number;
  /** The VM's EMT blocks (to wake vCPU 0). */
  emtBlocks: SharedArrayBuffer;
  /** The echo channel shared with vCPU 0's EMT. */
  channel: SharedArrayBuffer;
  /** Load settings. */
  load: EchoLoadOptions;
}

/** Checks load settings; throws a RangeError naming the bad one. */
export function validateEchoLoad(o: EchoLoadOptions): void {
  const bad = (what: string) => {
    throw new RangeError(`echo load: ${what}`);
  };
  if (o.mode !== "open" && o.mode !== "closed") bad(`mode must be "open" or "closed"`);
  if (!(o.seconds > 0)) bad(`seconds must be > 0, got ${o.seconds}`);
  if (o.ratePerSec !== undefined && !(o.ratePerSec > 0)) {
    bad(`ratePerSec must be > 0, got ${o.ratePerSec}`);
  }
  if (o.clients !== undefined && !(Number.isInteger(o.clients) && o.clients >= 1)) {
    bad(`clients must be an integer >= 1, got ${o.clients}`);
  }
  if (o.thinkUs !== undefined && !(o.thinkUs >= 0)) bad(`thinkUs must be >= 0, got ${o.thinkUs}`);
}
