/**
 * `run --top`: a live view of every VM and vCPU, like `xentop`. Every interval it samples the
 * shim's counters (CPU % is the guest-mode time a vCPU gained over the interval's wall time,
 * so a VM's row can exceed 100 % with several vCPUs, as in xentop), the scheduler's statistics
 * (state, slot, % of the interval spent runnable but waiting for a slot) and the policy events
 * the plugin reported into the trace (credit's `credit` and `prio`, `boost`, `park`, RTDS's
 * next deadline...).
 *
 * The shim adds guest time when KVM_RUN returns. Under a scheduler every run ends by its slice,
 * so the guest clock is current to within a slice; without one a vCPU that does not exit (a
 * spinner) stays in one KVM_RUN for seconds, and CPU % is then taken from its EMT thread's
 * CPU time (`/proc/self/task/TID/stat`, what `top -H` shows) when that is readable.
 *
 * On a terminal the frame is redrawn in place (cursor home, each line cleared to its end);
 * otherwise each frame is printed after the previous one, like `xentop -b`.
 *
 * @module
 */
import type { SchedStats, VcpuSchedStats } from "../sched/runtime_protocol.ts";
import { decodeTrace, TRACE } from "../trace/events.ts";
import type { Vm } from "../vm/vm.ts";
import type { Vmm } from "../vmm.ts";

/** Options of {@linkcode startTop}. */
export interface TopOptions {
  /** Redraw period, ms (default 1000). */
  intervalMs?: number;
  /** Where frames go (default: standard output). */
  out?: (text: string) => void;
  /** Redraw in place with ANSI escapes (default: whether standard output is a terminal). */
  tty?: boolean;
  /**
   * Read the plugin's policy events from the scheduler's trace for the CREDIT / PRIO / EVENTS
   * columns (default true). Each frame then copies the trace ring out of the scheduler core,
   * a few ms at most with a full ring.
   */
  policyEvents?: boolean;
}

/** A running top view. */
export interface Top {
  /** Stops redrawing; resolves once a frame in progress is done (callers may ignore it). */
  stop(): Promise<void>;
}

/** One sample of the VMM. */
interface Sample {
  /** performance.now(), ms. */
  t: number;
  /** Per `vm/index`: counters of interest. */
  vcpus: Map<
    string,
    { guestNs: number; threadNs?: number; exits: number; halts: number; waitNs?: number }
  >;
}

/** Latest policy-event values, per vCPU key `vm/index` (and `*` for policy-wide events). */
type PolicyState = Map<string, Map<string, number>>;

const PRIO_NAMES: Record<string, Record<number, string>> = {
  credit: { 0: "BOOST", [-1]: "UNDER", [-2]: "OVER" },
};

const key = (vm: string, index: number) => `${vm}/${index}`;

/** Reads the new policy events of the trace into `state`; returns the next record number. */
async function readPolicyEvents(vmm: Vmm, state: PolicyState, from: number): Promise<number> {
  const trace = await vmm.scheduler!.trace(false);
  const records = decodeTrace(trace);
  const end = trace.dropped + records.length;
  if (end < from) from = 0; // someone cleared the trace
  const names = new Map(trace.vcpus.map((v) => [v.id, key(v.vm, v.index)]));
  for (let i = Math.max(0, from - trace.dropped); i < records.length; i++) {
    const r = records[i];
    if (r.type !== TRACE.policy) continue;
    const k = r.vcpu >= 0 ? names.get(r.vcpu) : "*";
    if (!k) continue;
    let m = state.get(k);
    if (!m) state.set(k, m = new Map());
    m.set(trace.strings[r.aux] ?? "?", r.value);
  }
  return end;
}

/** CPU ns (user + system) of a thread of this process; undefined when unreadable. */
function threadCpuNs(tid: number): number | undefined {
  if (tid <= 0) return undefined;
  try {
    const stat = Deno.readTextFileSync(`/proc/self/task/${tid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime, fields 14 and 15 of proc(5), in clock ticks (USER_HZ = 100)
    const ticks = Number(f[11]) + Number(f[12]);
    return Number.isFinite(ticks) ? ticks * 1e7 : undefined;
  } catch {
    return undefined;
  }
}

function take(vms: Vm[], stats: SchedStats | null, threadClock: boolean): Sample {
  const vcpus: Sample["vcpus"] = new Map();
  const sched = new Map<string, VcpuSchedStats>();
  for (const v of stats?.vcpus ?? []) sched.set(key(v.vm, v.index), v);
  for (const vm of vms) {
    const tids = threadClock ? vm.emtThreadIds() : [];
    for (const c of vm.counters()) {
      const k = key(vm.name, c.vcpu);
      vcpus.set(k, {
        guestNs: c.nsGuest,
        threadNs: threadClock ? threadCpuNs(tids[c.vcpu]) : undefined,
        exits: c.exits.reduce((a, b) => a + b, 0),
        halts: c.halts,
        waitNs: sched.get(k)?.waitNs,
      });
    }
  }
  return { t: performance.now(), vcpus };
}

function compact(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** The EVENTS cell: the kinds besides credit and prio. */
function eventsText(m: Map<string, number> | undefined, nowNs: number | undefined): string {
  if (!m) return "-";
  const parts: string[] = [];
  for (const [kind, value] of m) {
    if (kind === "credit" || kind === "prio") continue;
    if (kind === "replenish") {
      if (nowNs !== undefined) parts.push(`dl+${((value - nowNs) / 1e6).toFixed(1)}ms`);
    } else if (value === 1) parts.push(kind);
    else if (value !== 0) parts.push(`${kind}=${compact(value)}`);
  }
  return parts.join(",") || "-";
}

/** Lays out rows as columns: text left-aligned, numbers right-aligned. */
function columns(rows: string[][], right: boolean[]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) =>
    r.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ")
      .trimEnd()
  );
}

interface FrameInput {
  vms: Vm[];
  prev: Sample;
  cur: Sample;
  stats: SchedStats | null;
  policy: PolicyState | null;
  highWater: number;
  startedAt: number;
}

/** One frame of the view, as lines. */
function frame(f: FrameInput): string[] {
  const dtMs = f.cur.t - f.prev.t;
  const dtNs = dtMs * 1e6;
  const pct = (ns: number) => (dtNs > 0 ? (ns / dtNs) * 100 : 0).toFixed(1);
  const rate = (n: number) => (dtMs > 0 ? n / (dtMs / 1000) : 0).toFixed(0);
  const sched = new Map<string, VcpuSchedStats>();
  for (const v of f.stats?.vcpus ?? []) sched.set(key(v.vm, v.index), v);
  const policyName = f.stats?.policy ?? "";
  const prioNames = PRIO_NAMES[policyName] ?? {};
  const header = [
    "NAME",
    "VCPU",
    "STATE",
    "CPU%",
    "EXITS/s",
    "HALTS/s",
    "SLOT",
    "WAIT%",
    "CREDIT",
    "PRIO",
    "EVENTS",
  ];
  const right = [false, true, false, true, true, true, true, true, true, false, false];
  const rows = [header];
  for (const vm of f.vms) {
    const vcpuRows: string[][] = [];
    let guest = 0, exits = 0, halts = 0, wait = 0, hasWait = false;
    for (let i = 0; i < vm.config.vcpus; i++) {
      const k = key(vm.name, i);
      const a = f.prev.vcpus.get(k), b = f.cur.vcpus.get(k);
      const dGuest = !a || !b
        ? 0
        : a.threadNs !== undefined && b.threadNs !== undefined
        ? Math.max(0, b.threadNs - a.threadNs)
        : b.guestNs - a.guestNs;
      const dExits = b && a ? b.exits - a.exits : 0;
      const dHalts = b && a ? b.halts - a.halts : 0;
      const s = sched.get(k);
      let waitCell = "-";
      if (a?.waitNs !== undefined && b?.waitNs !== undefined) {
        const d = b.waitNs - a.waitNs;
        wait += d;
        hasWait = true;
        waitCell = pct(d);
      }
      guest += dGuest;
      exits += dExits;
      halts += dHalts;
      const p = f.policy?.get(k);
      const credit = p?.get("credit");
      const prio = p?.get("prio");
      vcpuRows.push([
        vm.name,
        String(i),
        s?.state ?? (vm.state === "running" ? "-" : vm.state),
        pct(dGuest),
        rate(dExits),
        rate(dHalts),
        s && s.state === "running" && s.slot >= 0 ? String(s.slot) : "-",
        waitCell,
        credit === undefined ? "-" : compact(credit),
        prio === undefined ? "-" : prioNames[prio] ?? String(prio),
        eventsText(p, f.stats?.at),
      ]);
    }
    rows.push([
      vm.name,
      "*",
      vm.state,
      pct(guest),
      rate(exits),
      rate(halts),
      "-",
      hasWait ? pct(wait) : "-",
      "-",
      "-",
      "-",
    ]);
    rows.push(...vcpuRows);
  }
  const elapsed = ((f.cur.t - f.startedAt) / 1000).toFixed(1);
  let head = `deno-vmm top  t=${elapsed}s  vms=${f.vms.length}`;
  if (f.stats) {
    const busy = f.stats.slotBusyNs.length;
    head += `  policy=${f.stats.policy}  slots=${busy}  decisions=${f.stats.decisions}` +
      `  ejections=${f.stats.ejections.length}  high-water=${f.highWater}`;
    const global = f.policy?.get("*");
    if (global?.size) {
      head += `  events: ${[...global].map(([k, v]) => `${k}=${compact(v)}`).join(" ")}`;
    }
  } else {
    head += "  no scheduler (Linux schedules the vCPU threads; CPU% from EMT thread time)";
  }
  return [head, ...columns(rows, right)];
}

function stdoutWriter(): (text: string) => void {
  const enc = new TextEncoder();
  return (text) => {
    let bytes = enc.encode(text);
    while (bytes.length > 0) bytes = bytes.subarray(Deno.stdout.writeSync(bytes));
  };
}

/**
 * Starts the live view of `vmm`'s VMs: the first frame after one interval (rates need two
 * samples), then one per interval until {@linkcode Top.stop}.
 *
 * @example Watch VMs while they run, as `deno-vmm run --top` does
 * ```ts
 * import { startTop, Vmm } from "@deno-vmm/deno-vmm";
 *
 * const vmm = await Vmm.create();
 * const vm = await vmm.createVm({ name: "a", cmdline: "workload=spin seconds=3" });
 * await vm.start();
 * const top = startTop(vmm, { intervalMs: 500 });
 * await vm.wait();
 * await top.stop();
 * await vmm.close();
 * ```
 */
export function startTop(vmm: Vmm, options: TopOptions = {}): Top {
  const intervalMs = options.intervalMs ?? 1000;
  if (!(intervalMs > 0)) throw new RangeError(`intervalMs must be > 0, got ${intervalMs}`);
  const out = options.out ?? stdoutWriter();
  const tty = options.tty ?? Deno.stdout.isTerminal();
  const wantEvents = options.policyEvents ?? true;
  const policy: PolicyState = new Map();
  let traceNext = 0;
  let prev: Sample | undefined;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<void> = Promise.resolve();
  const startedAt = performance.now();

  const tick = async () => {
    let stats: SchedStats | null = null;
    let events = false;
    if (vmm.scheduler) {
      try {
        stats = await vmm.scheduler.stats();
        if (wantEvents) {
          traceNext = await readPolicyEvents(vmm, policy, traceNext);
          events = true;
        }
      } catch {
        // the scheduler is closing: show the counters alone
      }
    }
    if (stopped) return;
    const vms = [...vmm.vms.values()];
    const cur = take(vms, stats, !vmm.scheduler);
    if (prev) {
      const lines = frame({
        vms,
        prev,
        cur,
        stats,
        policy: events ? policy : null,
        highWater: vmm.guestModeHighWater,
        startedAt,
      });
      out(
        tty ? `\x1b[H${lines.join("\x1b[K\n")}\x1b[K\n\x1b[J` : `${lines.join("\n")}\n\n`,
      );
    }
    prev = cur;
  };

  const loop = () => {
    running = tick().catch((e) => {
      out(`top: ${(e as Error).message}\n`);
    }).finally(() => {
      if (!stopped) timer = setTimeout(loop, intervalMs);
    });
  };
  // Baseline at once; the first frame one interval later.
  running = tick().catch(() => {}).finally(() => {
    if (!stopped) timer = setTimeout(loop, intervalMs);
  });
  if (tty) out("\x1b[2J");

  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      return running;
    },
  };
}
