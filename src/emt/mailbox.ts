/**
 * A VM's shared interrupt mailboxes: how one vCPU (or the host) posts an interrupt, INIT or
 * SIPI to another vCPU's EMT, and the VM-wide stop flag. Lives in a SharedArrayBuffer seen by
 * the main thread and every EMT of the VM.
 *
 * Ordering: a poster sets the request bits, then the summary word, then wakes and pokes the
 * target through the shim. The target clears the summary before taking the bits, so a
 * request that races with a drain is seen either now or on the next loop.
 *
 * @module
 */

const HEADER_WORDS = 16;
const STRIDE = 32;
const W = { summary: 0, irr: 1, init: 9, sipi: 10, ldr: 11, fromHost: 12 } as const;
const H = { stop: 0, pause: 1 } as const;

/** Bytes of mailbox memory a VM with `vcpus` vCPUs needs. */
export function mailboxBytes(vcpus: number): number {
  return (HEADER_WORDS + STRIDE * vcpus) * 4;
}

/** What a drain found. */
export interface Drained {
  /** Fixed vectors requested. */
  vectors: number[];
  /** INIT requests. */
  init: boolean;
  /** SIPI start page, or -1. */
  sipi: number;
  /** Whether a host device (not another vCPU) posted any of the vectors. */
  fromHost: boolean;
}

/** Typed access to a VM's mailbox memory. */
export class Mailboxes {
  /** The words. */
  readonly words: Int32Array;
  /** vCPUs. */
  readonly vcpus: number;

  /**
   * @param sab the shared memory ({@linkcode mailboxBytes} long)
   * @param vcpus vCPUs in the VM
   */
  constructor(sab: SharedArrayBuffer, vcpus: number) {
    this.words = new Int32Array(sab);
    this.vcpus = vcpus;
  }

  #base(vcpu: number): number {
    return HEADER_WORDS + STRIDE * vcpu;
  }

  /** Asks every EMT of the VM to stop. */
  requestStop(): void {
    Atomics.store(this.words, H.stop, 1);
  }

  /** Pauses (`true`) or resumes the VM's EMTs; the caller then wakes and pokes them. */
  setPaused(paused: boolean): void {
    Atomics.store(this.words, H.pause, paused ? 1 : 0);
  }

  /** Whether the VM is paused. */
  get paused(): boolean {
    return Atomics.load(this.words, H.pause) !== 0;
  }

  /** Whether a stop was requested. */
  get stopRequested(): boolean {
    return Atomics.load(this.words, H.stop) !== 0;
  }

  /** Whether `vcpu` has anything posted. */
  hasPending(vcpu: number): boolean {
    return Atomics.load(this.words, this.#base(vcpu) + W.summary) !== 0;
  }

  /** Posts a fixed interrupt `vector` to `vcpu`. */
  postFixed(vcpu: number, vector: number, fromHost = false): void {
    const b = this.#base(vcpu);
    if (fromHost) Atomics.store(this.words, b + W.fromHost, 1);
    Atomics.or(this.words, b + W.irr + (vector >>> 5), 1 << (vector & 31));
    Atomics.store(this.words, b + W.summary, 1);
  }

  /** Posts INIT to `vcpu`. */
  postInit(vcpu: number): void {
    const b = this.#base(vcpu);
    Atomics.store(this.words, b + W.init, 1);
    Atomics.store(this.words, b + W.summary, 1);
  }

  /** Posts a SIPI with start page `vector` to `vcpu`. */
  postSipi(vcpu: number, vector: number): void {
    const b = this.#base(vcpu);
    Atomics.store(this.words, b + W.sipi, vector + 1);
    Atomics.store(this.words, b + W.summary, 1);
  }

  /** Publishes `vcpu`'s logical destination register, for logical-mode IPIs. */
  publishLdr(vcpu: number, ldr: number): void {
    Atomics.store(this.words, this.#base(vcpu) + W.ldr, ldr | 0);
  }

  /** The published logical destination register of `vcpu`. */
  ldr(vcpu: number): number {
    return Atomics.load(this.words, this.#base(vcpu) + W.ldr) >>> 0;
  }

  /** Takes everything posted to `vcpu` (called by its own EMT). */
  drain(vcpu: number): Drained {
    const b = this.#base(vcpu);
    Atomics.store(this.words, b + W.summary, 0);
    const vectors: number[] = [];
    for (let i = 0; i < 8; i++) {
      let bits = Atomics.exchange(this.words, b + W.irr + i, 0) >>> 0;
      while (bits !== 0) {
        const bit = 31 - Math.clz32(bits);
        vectors.push(i * 32 + bit);
        bits &= ~(1 << bit) >>> 0;
      }
    }
    const init = Atomics.exchange(this.words, b + W.init, 0) !== 0;
    const sipi = Atomics.exchange(this.words, b + W.sipi, 0) - 1;
    const fromHost = Atomics.exchange(this.words, b + W.fromHost, 0) !== 0;
    return { vectors, init, sipi, fromHost };
  }
}
