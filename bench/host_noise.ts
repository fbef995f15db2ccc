/**
 * The host's own noise: how often each CPU of this machine is gone for a while with no VMM
 * running (`bench/baseline/host_gaps`: a pinned real-time thread per CPU reading the clock in a
 * loop). It is the floor under the rt scenario: a CPU lost for 3 ms in a 10 ms period is lost to
 * any VMM, and `deno task bench:scenarios` runs on the same machine.
 *
 * @module
 */

const GAPS = new URL("baseline/build/host_gaps", import.meta.url).pathname;

/** One CPU's gaps: time between two clock reads of the probe longer than 0.5 ms. */
export interface CpuGaps {
  /** CPU number. */
  cpu: number;
  /** Whether the probe ran real-time (SCHED_FIFO); without CAP_SYS_NICE it cannot. */
  realtime: boolean;
  /** Time the probe spun (ms): the part of the run in which a gap could be seen. */
  spunMs: number;
  /** Gaps over 0.5 ms, 1 ms and 3 ms. */
  over500us: number;
  /** See `over500us`. */
  over1ms: number;
  /** See `over500us`. */
  over3ms: number;
  /** Longest gap (µs). */
  maxUs: number;
  /** All gaps over 0.5 ms added up (µs). */
  lostUs: number;
}

/** Parses the probe's lines (`cpu N rt R spun_ms S gaps_500us A ...`). */
export function parseHostGaps(text: string): CpuGaps[] {
  const out: CpuGaps[] = [];
  for (const line of text.split("\n")) {
    const m = line.match(
      /^cpu (\d+) rt (\d) spun_ms (\d+) gaps_500us (\d+) gaps_1ms (\d+) gaps_3ms (\d+) max_us (\d+) lost_us (\d+)$/,
    );
    if (!m) continue;
    const [cpu, rt, spun, a, b, c, max, lost] = m.slice(1).map(Number);
    out.push({
      cpu,
      realtime: rt === 1,
      spunMs: spun,
      over500us: a,
      over1ms: b,
      over3ms: c,
      maxUs: max,
      lostUs: lost,
    });
  }
  return out.sort((x, y) => x.cpu - y.cpu);
}

/** Runs the probe for `seconds` on every CPU at once; one record per CPU. */
export async function benchHostGaps(seconds = 10): Promise<CpuGaps[]> {
  const out = await new Deno.Command(GAPS, { args: [String(seconds)] }).output();
  const gaps = parseHostGaps(new TextDecoder().decode(out.stdout));
  if (!out.success || gaps.length === 0) {
    throw new Error(`host_gaps: no result (exit ${out.code}; run deno task build)`);
  }
  return gaps;
}

/** One run of the probe, as the benches store it beside their results. */
export interface HostNoise {
  /** When it ran (ISO time). */
  at: string;
  /** How long (s). */
  seconds: number;
  /** Per CPU. */
  cpus: CpuGaps[];
}

/** Runs the probe for `seconds` and stamps it with the time it started. */
export async function probeHostNoise(seconds = 10): Promise<HostNoise> {
  const at = new Date().toISOString();
  return { at, seconds, cpus: await benchHostGaps(seconds) };
}

/** A probe run in two numbers: gaps over 1 ms on all CPUs, and the longest gap (ms). */
export function noiseGaps(n: HostNoise): { over1ms: number; longestMs: number } {
  return {
    over1ms: n.cpus.reduce((s, c) => s + c.over1ms, 0),
    longestMs: Math.max(...n.cpus.map((c) => c.maxUs)) / 1000,
  };
}
