/**
 * Guest-side fuzzing: VMs running the `fuzz` workload (guests/user/fuzz.c: every vCPU hammers
 * the LAPIC, the ICR with INIT/SIPI storms, the UART, the echo doorbell, the debug-exit port and
 * ports and MMIO nobody claims, with random values, sizes and alignments), one seed after
 * another, beside a spinning VM whose progress is sampled. Each fuzzed VM must end on its own:
 * status 0 from the guest, or a fault naming its vCPU and rip; the VMM must stay alive (a fresh
 * VM boots after the last seed) and the spinner must run on.
 *
 * `deno task bench:fuzz-guest [--accesses N] [--count N] [--vcpus N] [--seed N]`: seeds from
 * `--seed` on until `--accesses` device accesses (default 10,000,000) were made. First the
 * spinner's rate beside a `spin` VM of the same size is measured (its spread), then beside each
 * fuzzed VM. The suite's short version is tests/guest_fuzz_test.ts.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Vmm } from "../mod.ts";
import type { Vm, VmExit } from "../mod.ts";

/** What one fuzzed VM did. */
export interface FuzzSeedResult {
  /** The seed. */
  seed: number;
  /** How it ended. */
  exit: VmExit;
  /** Device accesses its vCPUs made (the guest's count). */
  accesses: number;
  /** Restarts by INIT/SIPI, summed over its vCPUs. */
  restarts: number;
  /** Accesses per class: LAPIC, ICR, INIT/SIPI, UART, echo, ports, unclaimed MMIO. */
  classes: number[];
  /** Lines the VMM logged for it (ignored accesses, faults). */
  logLines: number;
  /** The guest's closing console line (`fuzz: N accesses on M vcpus`), or "" without one. */
  summary: string;
  /** Wall time, s. */
  seconds: number;
  /** Echo requests the host sent and saw answered while it ran. */
  echo: { sent: number; completed: number } | null;
}

/** Options of {@linkcode fuzzGuests}. */
export interface FuzzGuestOptions {
  /** The seeds to run, one VM each, in order. */
  seeds: number[];
  /** Accesses per vCPU (the guest's `count`). */
  count: number;
  /** vCPUs per fuzzed VM (3 or more for INIT/SIPI storms between vCPUs). */
  vcpus: number;
  /** Stop a fuzzed VM that made no progress for this long, ms (default 20,000). */
  stallMs?: number;
  /** Sample the spinner every this many ms (default 1,000). */
  sampleMs?: number;
  /** Called after each seed. */
  onSeed?: (r: FuzzSeedResult) => void;
  /** Stop after this many accesses in all (default: run every seed). */
  maxAccesses?: number;
}

/** What {@linkcode fuzzGuests} measured. */
export interface FuzzGuestResult {
  /** Per seed. */
  seeds: FuzzSeedResult[];
  /** Accesses in all. */
  accesses: number;
  /** Wall time, s. */
  seconds: number;
  /** The spinner's iterations per second, one per sample, while the seeds ran. */
  neighbourRates: number[];
  /** The spinner's state at the end ("running" when it was undisturbed). */
  neighbourState: string;
  /** Whether a fresh VM booted and exited 0 after the last seed. */
  vmmAlive: boolean;
}

/** Sum of the guest's per-vCPU counters at index `pick`. */
function sum(vm: Vm, pick: (v: { iterations: bigint; rounds: bigint; extra: bigint[] }) => bigint) {
  const s = vm.stats();
  let n = 0;
  for (let i = 0; i < vm.config.vcpus; i++) {
    const v = s?.vcpus[i];
    if (v) n += Number(pick(v));
  }
  return n;
}

/** Samples a VM's vCPU 0 iterations every `everyMs`; `stop()` returns the rates per second. */
export function sampleRate(vm: Vm, everyMs: number): { stop: () => number[] } {
  const rates: number[] = [];
  let last = sum(vm, (v) => v.iterations);
  let t = performance.now();
  const timer = setInterval(() => {
    const now = performance.now(), n = sum(vm, (v) => v.iterations);
    rates.push((n - last) / ((now - t) / 1000));
    last = n;
    t = now;
  }, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      return rates;
    },
  };
}

async function runSeed(vmm: Vmm, seed: number, o: FuzzGuestOptions): Promise<FuzzSeedResult> {
  const t0 = performance.now();
  const vm = await vmm.createVm({
    name: `fuzz-${seed}`,
    vcpus: o.vcpus,
    cmdline: `workload=fuzz seed=${seed} count=${o.count}`,
  });
  await vm.start();
  // Echo requests while it runs: the guest answers some, rings stale and absurd counts.
  const echo = vm.echoLoad({ mode: "open", ratePerSec: 500, seconds: 1, seed }).catch(() => null);
  let progress = -1, since = performance.now(), stalled = false;
  const watch = setInterval(() => {
    const n = sum(vm, (v) => v.iterations);
    if (n !== progress) [progress, since] = [n, performance.now()];
    else if (performance.now() - since > (o.stallMs ?? 20_000)) {
      stalled = true;
      vm.stop();
    }
  }, 200);
  const exit = await vm.wait();
  clearInterval(watch);
  const e = await echo;
  const result: FuzzSeedResult = {
    seed,
    exit: stalled ? { ...exit, kind: "stopped" } : exit,
    accesses: sum(vm, (v) => v.iterations),
    restarts: sum(vm, (v) => v.rounds),
    classes: Array.from({ length: 7 }, (_, c) => sum(vm, (v) => v.extra[c] ?? 0n)),
    logLines: vm.log.length,
    summary: vm.console.find((l) => l.line.startsWith("fuzz: "))?.line ?? "",
    seconds: (performance.now() - t0) / 1000,
    echo: e ? { sent: e.sent, completed: e.completed } : null,
  };
  await vm.close();
  return result;
}

/** Runs the fuzzed VMs one after another beside a spinning VM; see the module doc. */
export async function fuzzGuests(o: FuzzGuestOptions): Promise<FuzzGuestResult> {
  const t0 = performance.now();
  const vmm = await Vmm.create();
  try {
    const spinner = await vmm.createVm({ name: "neighbour", cmdline: "workload=spin seconds=0" });
    await spinner.start();
    const sampler = sampleRate(spinner, o.sampleMs ?? 1000);
    const seeds: FuzzSeedResult[] = [];
    let accesses = 0;
    for (const seed of o.seeds) {
      const r = await runSeed(vmm, seed, o);
      seeds.push(r);
      accesses += r.accesses;
      o.onSeed?.(r);
      if (o.maxAccesses !== undefined && accesses >= o.maxAccesses) break;
    }
    const neighbourRates = sampler.stop();
    const neighbourState = spinner.state;
    const hello = await vmm.createVm({ name: "after", cmdline: "workload=hello" });
    await hello.start();
    const timer = setTimeout(() => hello.stop(), 30_000);
    const helloExit = await hello.wait();
    clearTimeout(timer);
    return {
      seeds,
      accesses,
      seconds: (performance.now() - t0) / 1000,
      neighbourRates,
      neighbourState,
      vmmAlive: helloExit.kind === "exit" && helloExit.status === 0,
    };
  } finally {
    await vmm.close();
  }
}

/** The spinner's rate beside a `spin` VM of `vcpus` vCPUs for `seconds`: the reference spread. */
export async function neighbourBaseline(vcpus: number, seconds: number): Promise<number[]> {
  const vmm = await Vmm.create();
  try {
    const spinner = await vmm.createVm({ name: "neighbour", cmdline: "workload=spin seconds=0" });
    const other = await vmm.createVm({ name: "load", vcpus, cmdline: "workload=spin seconds=0" });
    await spinner.start();
    await other.start();
    await new Promise((r) => setTimeout(r, 1000)); // both past boot
    const s = sampleRate(spinner, 1000);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    return s.stop();
  } finally {
    await vmm.close();
  }
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      accesses: { type: "string", default: "10000000" },
      count: { type: "string", default: "200000" },
      vcpus: { type: "string", default: "3" },
      seed: { type: "string", default: "1" },
    },
  });
  const num = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      console.error(`--${name}: expected an integer >= ${min}, got "${v}"`);
      Deno.exit(2);
    }
    return n;
  };
  const target = num("accesses", values.accesses, 1);
  const count = num("count", values.count, 1);
  const vcpus = num("vcpus", values.vcpus, 1);
  const first = num("seed", values.seed, 0);
  console.log(`== neighbour's rate beside a ${vcpus}-vCPU spin VM (reference), 10 x 1 s`);
  const base = await neighbourBaseline(vcpus, 10);
  const fmtRate = (x: number) => `${(x / 1e6).toFixed(1)} M/s`;
  console.log(
    `  median ${fmtRate(quantile(base, 0.5))}, min ${fmtRate(Math.min(...base))}, max ${
      fmtRate(Math.max(...base))
    }`,
  );
  const seeds = Array.from(
    { length: Math.ceil(target / (count * vcpus)) + 1000 },
    (_, i) => first + i,
  );
  console.log(`== fuzz: ${vcpus} vCPUs x ${count} accesses per seed, until ${target} accesses`);
  let done = 0;
  const r = await fuzzGuests({
    seeds,
    count,
    vcpus,
    maxAccesses: target,
    onSeed: (s) => {
      done += s.accesses;
      const end = s.exit.kind === "exit"
        ? `status ${s.exit.status}`
        : s.exit.kind === "fault"
        ? `FAULT ${s.exit.fault?.message}`
        : "STALLED";
      console.log(
        `  seed ${s.seed}: ${s.accesses} accesses in ${s.seconds.toFixed(1)} s, ${s.restarts} ` +
          `INIT/SIPI restarts, ${s.logLines} log lines, ${end} (total ${done})`,
      );
    },
  });
  const bad = r.seeds.filter((s) => s.exit.kind !== "exit" || s.exit.status !== 0);
  const med = quantile(r.neighbourRates, 0.5);
  console.log(
    `== ${r.accesses} accesses over ${r.seeds.length} seeds in ${r.seconds.toFixed(0)} s ` +
      `(${(r.accesses / r.seconds).toFixed(0)}/s); ${bad.length} seeds did not exit 0`,
  );
  console.log(
    `  neighbour beside the fuzzers: median ${fmtRate(med)} (reference ${
      fmtRate(Math.min(...base))
    }..${fmtRate(Math.max(...base))}), state ${r.neighbourState}; VMM alive: ${r.vmmAlive}`,
  );
  if (bad.length || !r.vmmAlive || r.neighbourState !== "running") Deno.exit(1);
}
