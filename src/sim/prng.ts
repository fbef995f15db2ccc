/**
 * A small seeded PRNG for the simulator: mulberry32 (Tommy Ettinger, public domain), 32-bit
 * state, period 2^32, good enough for workload arrivals and fast. Deterministic across runs and
 * platforms: only 32-bit integer arithmetic (`Math.imul`, shifts).
 *
 * @module
 */

/** A seeded pseudo-random number generator. */
export class Prng {
  #s: number;

  /** @param seed any number; its low 32 bits seed the generator */
  constructor(seed: number) {
    this.#s = (seed >>> 0) ^ 0x9e3779b9;
  }

  /** The next 32-bit unsigned integer. */
  nextU32(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Exponentially distributed with the given mean (for Poisson arrivals). */
  exponential(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }

  /** A new generator whose seed is drawn from this one (independent streams per VM). */
  fork(): Prng {
    return new Prng(this.nextU32());
  }
}
