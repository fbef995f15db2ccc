/**
 * Latency distributions as the compare report keeps them: a sample count and CDF points, made
 * from raw samples (a KVM run's trace) or a histogram's points (the simulator), and merged across
 * VMs and runs by their sample counts.
 *
 * @module
 */

/** A distribution: `points` are `[µs, fraction of samples <= µs]`, increasing, ending at 1. */
export interface Cdf {
  /** Samples it summarises. */
  count: number;
  /** The points. */
  points: [number, number][];
}

/** Most points a CDF keeps; more are thinned to about this many, keeping the last. */
export const MAX_CDF_POINTS = 200;

function thin(points: [number, number][]): [number, number][] {
  if (points.length <= MAX_CDF_POINTS) return points;
  const out: [number, number][] = [];
  const step = points.length / MAX_CDF_POINTS;
  for (let k = 0; k < MAX_CDF_POINTS - 1; k++) out.push(points[Math.floor(k * step)]);
  out.push(points[points.length - 1]);
  return out;
}

/** The CDF of raw samples (ns), in µs. */
export function cdfOfSamples(samplesNs: readonly number[]): Cdf {
  const s = [...samplesNs].sort((a, b) => a - b);
  const points: [number, number][] = [];
  for (let i = 0; i < s.length; i++) {
    if (i + 1 < s.length && s[i + 1] === s[i]) continue;
    points.push([s[i] / 1e3, (i + 1) / s.length]);
  }
  return { count: s.length, points: thin(points) };
}

/** A CDF from histogram points in ns (`Histogram.cdf`) and their sample count, in µs. */
export function cdfOfHistogram(count: number, pointsNs: readonly [number, number][]): Cdf {
  return { count, points: thin(pointsNs.map(([v, q]) => [v / 1e3, q])) };
}

/** The distribution of all the samples of `cdfs` together (each weighted by its count). */
export function mergeCdfs(cdfs: readonly Cdf[]): Cdf {
  const masses: [number, number][] = [];
  let count = 0;
  for (const c of cdfs) {
    if (c.count === 0) continue;
    count += c.count;
    let prev = 0;
    for (const [v, q] of c.points) {
      masses.push([v, (q - prev) * c.count]);
      prev = q;
    }
  }
  if (count === 0) return { count: 0, points: [] };
  masses.sort((a, b) => a[0] - b[0]);
  const points: [number, number][] = [];
  let seen = 0;
  for (const [v, m] of masses) {
    seen += m;
    if (points.length && points[points.length - 1][0] === v) {
      points[points.length - 1][1] = seen / count;
    } else points.push([v, seen / count]);
  }
  points[points.length - 1][1] = 1;
  return { count, points: thin(points) };
}

/** The value at quantile `q` (0..1) of a CDF: the first point reaching it; NaN when empty. */
export function cdfQuantile(c: Cdf, q: number): number {
  for (const [v, f] of c.points) if (f >= q - 1e-12) return v;
  return NaN;
}
