/**
 * {@linkcode EmtPool}: the VMM's idle EMT Workers. A Worker whose VM ended goes back to the pool
 * and runs a vCPU of the next VM started, instead of ending its thread.
 *
 * Why: Deno trims the allocator (`malloc_trim`) when a Worker's thread ends, and with many
 * threads that walks every arena and returns memory in thousands of small `madvise` calls. Each
 * call shoots down TLBs on every CPU the process runs on, and on a CPU in guest mode the IPI is a
 * VM exit: with 64 VMs x 4 vCPUs of `hello` starting and ending, 35 % of the process's CPU samples
 * were in those `madvise` calls and system time fell from 25 s to 3 s without them. A reused
 * Worker also skips its start-up (a V8 isolate and the EMT's modules).
 *
 * @module
 */

const EMT_WORKER = new URL("./emt_worker.ts", import.meta.url);

/** Idle Workers kept by default: enough for a few VMs' worth of churn, about 6 MB each. */
export const DEFAULT_IDLE_EMTS = 64;

/** Options of {@linkcode EmtPool}. */
export interface EmtPoolOptions {
  /** Most idle Workers kept (default {@linkcode DEFAULT_IDLE_EMTS}); more are terminated. */
  maxIdle?: number;
}

/** The VMM's idle EMT Workers. */
export class EmtPool {
  #idle: Worker[] = [];
  #maxIdle: number;
  #created = 0;
  #reused = 0;
  #closed = false;

  /** A pool keeping at most `options.maxIdle` idle Workers. */
  constructor(options: EmtPoolOptions = {}) {
    this.#maxIdle = options.maxIdle ?? DEFAULT_IDLE_EMTS;
  }

  /** An idle Worker, or a new one. Its message handlers are the caller's to set. */
  take(): Worker {
    if (this.#closed) throw new Error("EMT pool closed");
    const w = this.#idle.pop();
    if (w) {
      this.#reused++;
      return w;
    }
    this.#created++;
    return new Worker(EMT_WORKER, { type: "module", name: "emt" });
  }

  /**
   * Takes back a Worker whose EMT reported "stopped" after a clean end (its thread left the
   * EMT's loop and released its priority and CPU pinning); terminates it when the pool is full
   * or closed.
   */
  give(w: Worker): void {
    w.onmessage = null;
    w.onerror = (e) => e.preventDefault();
    if (this.#closed || this.#idle.length >= this.#maxIdle) w.terminate();
    else this.#idle.push(w);
  }

  /** Workers created and reused so far, and idle now. */
  get stats(): { created: number; reused: number; idle: number } {
    return { created: this.#created, reused: this.#reused, idle: this.#idle.length };
  }

  /** Terminates every idle Worker; later `give`s terminate theirs. */
  close(): void {
    this.#closed = true;
    for (const w of this.#idle) w.terminate();
    this.#idle = [];
  }
}
