/**
 * A latency histogram with bounded memory and about 1.6 % relative precision: values below 128
 * are counted exactly, larger ones in 64 linear sub-buckets per power of two (the layout of
 * HdrHistogram with 2 significant decimal digits). Used for wake latencies in the core and for
 * workload latencies in the simulator; deterministic, so percentiles compare exactly across runs.
 *
 * @module
 */

const EXACT = 128; // values below this have their own bucket
const SUB_BITS = 6; // 64 sub-buckets per power of two above EXACT
const SUB = 1 << SUB_BITS;
const EXACT_BITS = 7;

/** Percentile summary of a histogram (ns when it holds ns). `NaN` fields when empty. */
export interface LatencySummary {
  /** Number of samples. */
  count: number;
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** Largest sample (exact). */
  max: number;
  /** Mean (exact). */
  mean: number;
}

function bucketOf(v: number): number {
  if (v < EXACT) return v < 0 ? 0 : Math.floor(v);
  if (v < 2 ** 31) {
    // The same bucket from the integer part's bits: for v >= 128 the power of two and the
    // sub-bucket of floor(v) are those of v.
    const i = v | 0;
    const e = 31 - Math.clz32(i);
    return EXACT + (e - EXACT_BITS) * SUB + ((i >>> (e - SUB_BITS)) - SUB);
  }
  let e = Math.floor(Math.log2(v));
  // Math.log2 may be off by one right at powers of two: correct it.
  if (2 ** e > v) e--;
  else if (2 ** (e + 1) <= v) e++;
  const m = Math.floor(v / 2 ** (e - SUB_BITS)); // in [64, 128)
  return EXACT + (e - EXACT_BITS) * SUB + (m - SUB);
}

function bucketLow(i: number): number {
  if (i < EXACT) return i;
  const k = i - EXACT;
  const e = Math.floor(k / SUB) + EXACT_BITS;
  const m = (k % SUB) + SUB;
  return m * 2 ** (e - SUB_BITS);
}

function bucketWidth(i: number): number {
  if (i < EXACT) return 1;
  const e = Math.floor((i - EXACT) / SUB) + EXACT_BITS;
  return 2 ** (e - SUB_BITS);
}

/** A histogram of non-negative values. */
export class Histogram {
  #counts = new Float64Array(256);
  #count = 0;
  #sum = 0;
  #max = -Infinity;
  #min = Infinity;

  /** Adds a sample (negative values count as 0). */
  record(v: number): void {
    const b = bucketOf(v);
    if (b >= this.#counts.length) {
      const bigger = new Float64Array(Math.max(b + 1, this.#counts.length * 2));
      bigger.set(this.#counts);
      this.#counts = bigger;
    }
    this.#counts[b]++;
    this.#count++;
    this.#sum += v;
    if (v > this.#max) this.#max = v;
    if (v < this.#min) this.#min = v;
  }

  /** Adds every sample of `other`. */
  merge(other: Histogram): void {
    const oc = other.#counts;
    if (oc.length > this.#counts.length) {
      const bigger = new Float64Array(oc.length);
      bigger.set(this.#counts);
      this.#counts = bigger;
    }
    for (let i = 0; i < oc.length; i++) this.#counts[i] += oc[i];
    this.#count += other.#count;
    this.#sum += other.#sum;
    if (other.#max > this.#max) this.#max = other.#max;
    if (other.#min < this.#min) this.#min = other.#min;
  }

  /** Number of samples. */
  get count(): number {
    return this.#count;
  }

  /**
   * The value at quantile `q` (0..1): the middle of the bucket holding the sample of rank
   * `ceil(q × count)`, clamped to the exact min and max. `NaN` when empty.
   */
  quantile(q: number): number {
    if (this.#count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    const c = this.#counts;
    for (let i = 0; i < c.length; i++) {
      seen += c[i];
      if (seen >= rank) {
        const mid = i < EXACT ? i : bucketLow(i) + bucketWidth(i) / 2;
        return Math.min(this.#max, Math.max(this.#min, mid));
      }
    }
    return this.#max;
  }

  /**
   * The distribution as points `[value, fraction of samples <= value]`, one per non-empty
   * bucket in increasing order, each at its bucket's upper end clamped to the exact min and max
   * (so the last point is `[max, 1]`). Empty when there are no samples.
   */
  cdf(): [number, number][] {
    const points: [number, number][] = [];
    if (this.#count === 0) return points;
    let seen = 0;
    const c = this.#counts;
    for (let i = 0; i < c.length; i++) {
      if (c[i] === 0) continue;
      seen += c[i];
      const top = bucketLow(i) + bucketWidth(i);
      points.push([Math.min(this.#max, Math.max(this.#min, top)), seen / this.#count]);
    }
    return points;
  }

  /** p50, p99, max, mean and count. */
  summary(): LatencySummary {
    const n = this.#count;
    return {
      count: n,
      p50: this.quantile(0.5),
      p99: this.quantile(0.99),
      max: n ? this.#max : NaN,
      mean: n ? this.#sum / n : NaN,
    };
  }
}
