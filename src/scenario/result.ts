/**
 * What a scenario run reports, the same on KVM and in the simulator: per VM its CPU share,
 * latency, throughput and deadline misses; Jain's fairness index; and the table printing.
 *
 * @module
 */

/** One VM's outcome. */
export interface VmOutcome {
  /** VM name. */
  name: string;
  /** Workload kind. */
  workload: string;
  /** Its weight (default 256). */
  weight: number;
  /** Mean share of the slots' time over the measured windows (0..1). */
  share: number;
  /** Smallest and largest window share. */
  shareMin: number;
  /** See `shareMin`. */
  shareMax: number;
  /** Its share of the slots in each measured window (1 s), in order. */
  windows?: number[];
  /**
   * Mean share of the CPU time all the VMs got (0..1): what weights divide. `share` also counts
   * the slot time nobody got (hand-offs, the scheduler, idle slots); this does not.
   */
  vmShare: number;
  /** Smallest and largest window `vmShare`. */
  vmShareMin: number;
  /** See `vmShareMin`. */
  vmShareMax: number;
  /** Request (echo) or wake (others, under a scheduler) latency p50, µs; NaN if none. */
  p50Us: number;
  /** See `p50Us`. */
  p99Us: number;
  /** Work done per second: requests (echo), lock acquisitions, spin iterations, jobs. */
  throughput: number;
  /** What `throughput` counts. */
  unit: string;
  /** Deadline misses (periodic) over jobs; 0 otherwise. */
  misses: number;
  /** Jobs released (periodic). */
  jobs: number;
}

/** A whole run. */
export interface ScenarioResult {
  /** Scenario name. */
  scenario: string;
  /** `kvm` or `sim`. */
  mode: "kvm" | "sim";
  /** Policy: plugin file name or `host`. */
  policy: string;
  /** Slots. */
  slots: number;
  /** Measured seconds. */
  seconds: number;
  /** The core's context-switch rate limit (µs); undefined for `host`, which has no core. */
  ratelimitUs?: number;
  /** Per VM. */
  vms: VmOutcome[];
  /** Jain's fairness index of the VMs' shares divided by their weights (1 = fair). */
  jain: number;
  /** Plugin ejections during the run. */
  ejections: string[];
  /** When it ran. */
  date: string;
}

/**
 * Jain's fairness index (Jain, Chiu, Hawe 1984): (Σx)² / (n Σx²) over x_i = share_i /
 * weight_i; 1 when every VM gets exactly its weighted share.
 */
export function jainIndex(vms: { share: number; weight: number }[]): number {
  const x = vms.map((v) => v.share / v.weight);
  const s = x.reduce((a, b) => a + b, 0), s2 = x.reduce((a, b) => a + b * b, 0);
  return s2 === 0 ? 1 : (s * s) / (x.length * s2);
}

/**
 * Each VM's share of what all the VMs got, overall and per window: `shares[i]` are VM i's
 * window shares of the slots (the same windows for every VM), `totals[i]` its whole-run share.
 */
export function sharesOfVms(
  shares: number[][],
  totals: number[],
): { vmShare: number; vmShareMin: number; vmShareMax: number }[] {
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const all = sum(totals);
  const windows = Math.min(...shares.map((s) => s.length));
  return totals.map((t, i) => {
    const ws: number[] = [];
    for (let w = 0; w < windows; w++) {
      const s = sum(shares.map((v) => v[w]));
      if (s > 0) ws.push(shares[i][w] / s);
    }
    const mean = all > 0 ? t / all : 0;
    return {
      vmShare: mean,
      vmShareMin: ws.length ? Math.min(...ws) : mean,
      vmShareMax: ws.length ? Math.max(...ws) : mean,
    };
  });
}

function cell(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : "-";
}

/** The per-VM table of a run, as text. */
export function formatResult(r: ScenarioResult): string {
  const head = [
    "vm",
    "workload",
    "weight",
    "share %",
    "min-max %",
    "of VMs %",
    "p50 us",
    "p99 us",
    "rate",
    "misses",
  ];
  const rows = r.vms.map((v) => [
    v.name,
    v.workload,
    String(v.weight),
    cell(v.share * 100, 1),
    `${cell(v.shareMin * 100, 0)}-${cell(v.shareMax * 100, 0)}`,
    cell(v.vmShare * 100, 1),
    cell(v.p50Us, 0),
    cell(v.p99Us, 0),
    `${cell(v.throughput, 0)} ${v.unit}`,
    v.jobs ? `${v.misses}/${v.jobs}` : "-",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cols: string[]) => cols.map((c, i) => c.padEnd(widths[i])).join("  ");
  return [
    `${r.scenario} (${r.mode}, ${r.policy}, ${r.slots} slot${r.slots > 1 ? "s" : ""}${
      r.ratelimitUs === undefined ? "" : `, ratelimit ${r.ratelimitUs} us`
    }, ${r.seconds} s)`,
    line(head),
    ...rows.map(line),
    `slots used ${cell(r.vms.reduce((s, v) => s + v.share, 0) * 100, 1)} %; Jain's index ${
      r.jain.toFixed(3)
    }${r.ejections.length ? `; ejected: ${r.ejections.join("; ")}` : ""}`,
  ].join("\n");
}
