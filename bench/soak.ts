/**
 * A soak: VMs churning under the scheduler for `--minutes` (default 30) while the invariants are
 * checked and the process's fds, threads and RSS are sampled every 10 s.
 *
 * - Up to `--vms` (default 64) VMs of 1-4 vCPUs come and go: started (spinning, sleeping in a
 *   loop, or saying hello and ending), stopped, paused and resumed, their weight changed.
 * - The policy is hot-swapped between every built-in each minute (ten times in a shorter run);
 *   every fifth swap goes to a
 *   plugin that throws after a few hundred decisions, which the watchdog must eject (rr takes
 *   over) before the next swap.
 * - The control API is polled (`/vms`, `/sched`, `/metrics`) every 2 s.
 * - Checked throughout: never more vCPUs in guest mode than slots; every running VM made
 *   progress over each 10 s sample (each vCPU of a spinning VM; vCPU 0 of a sleeping one, woken
 *   by its timer every 5 ms: no lost wake-up); the
 *   slots' busy time never exceeds slots x elapsed; no VM faulted.
 * - The report: every error seen, and how fast fds, threads and RSS grow over the run beyond
 *   what the EMT Workers alive explain (per hour, least squares after the first minute, with its
 *   standard error, and over the second half alone), which must be flat within noise.
 *
 * Run: `deno run -A --unstable-worker-options bench/soak.ts [--minutes N] [--vms N] [--seed N]`
 * (`deno task bench:soak`). Writes `bench/results/soak.json`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type Vm, Vmm } from "../mod.ts";
import { startApiServer } from "../src/api/server.ts";
import { ApiClient } from "../src/api/client.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    minutes: { type: "string" },
    vms: { type: "string" },
    seed: { type: "string" },
    slots: { type: "string" },
  },
});
const minutes = Number(values.minutes ?? 30);
const maxVms = Number(values.vms ?? 64);
const slots = Number(values.slots ?? 2);
let seed = Number(values.seed ?? 1) >>> 0 || 1;
if (!(minutes > 0) || !(maxVms >= 1) || !(slots >= 1)) {
  console.error("usage: bench/soak.ts [--minutes N > 0] [--vms N >= 1] [--slots N] [--seed N]");
  Deno.exit(2);
}

/** xorshift32: the churn is the same for a seed. */
function rand(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];

const ROOT = new URL("../", import.meta.url);
const BUILTINS = ["rr", "credit", "credit2", "rtds", "gang"].map((p) =>
  new URL(`plugins/${p}.ts`, ROOT).href
);
const FAULTY = new URL("tests/fixtures/plugins/faulty.ts", ROOT).href;
const WORKLOADS = [
  "workload=spin seconds=0",
  "workload=sleep count=100000000 ms=5",
  "workload=hello",
];

const errors: string[] = [];
const error = (m: string) => {
  errors.push(`${((performance.now() - t0) / 1000).toFixed(1)} s: ${m}`);
  console.error(`soak: ${m}`);
};
const ejections: string[] = [];

const t0 = performance.now();
const vmm = await Vmm.create({
  scheduler: {
    plugin: BUILTINS[1],
    slots,
    onEject: (info) => ejections.push(`${info.plugin} ${info.reason}: ${info.detail}`),
  },
});
const sched = vmm.scheduler!;
const dir = await Deno.makeTempDir({ prefix: "deno-vmm-soak-" });
const api = await startApiServer(vmm, `${dir}/api.sock`);
const client = new ApiClient(`${dir}/api.sock`);

const live = new Map<
  string,
  { vm: Vm; workload: string; paused: boolean; touchedAt: number; vcpus: number }
>();
let made = 0;
const counts = { started: 0, stopped: 0, ended: 0, paused: 0, resumed: 0, params: 0, swaps: 0 };

async function churn(): Promise<void> {
  const r = rand();
  if (live.size < maxVms && (r < 0.35 || live.size < 4)) {
    const name = `s${made++}`;
    const workload = pick(WORKLOADS);
    const vcpus = 1 + Math.floor(rand() * 4);
    const vm = await vmm.createVm({
      name,
      vcpus,
      memoryMiB: 8,
      cmdline: workload,
    });
    await vm.start();
    live.set(name, { vm, workload, paused: false, touchedAt: performance.now(), vcpus });
    counts.started++;
    return;
  }
  const entries = [...live.entries()];
  if (entries.length === 0) return;
  const [name, v] = pick(entries);
  if (r < 0.55) {
    live.delete(name);
    await vmm.closeVm(name);
    counts.stopped++;
  } else if (r < 0.75) {
    v.touchedAt = performance.now();
    if (v.vm.state === "running") {
      v.vm.pause();
      v.paused = true;
      counts.paused++;
    } else if (v.vm.state === "paused") {
      v.vm.resume();
      v.paused = false;
      counts.resumed++;
    }
  } else if (v.vm.state === "running" || v.vm.state === "paused") {
    await sched.setParams(name, { weight: pick([128, 256, 512, 1024]) });
    counts.params++;
  }
}

/** VMs that ended by themselves (hello) are closed; a fault is an error. */
async function reap(): Promise<void> {
  for (const [name, v] of live) {
    const exit = v.vm.exit;
    if (exit === undefined) continue;
    if (exit.kind === "fault") error(`vm ${name} faulted: ${JSON.stringify(exit.fault)}`);
    else if (exit.kind === "exit" && exit.status !== 0) error(`vm ${name} exit ${exit.status}`);
    live.delete(name);
    await vmm.closeVm(name);
    counts.ended++;
  }
}

interface Sample {
  s: number;
  fds: number;
  threads: number;
  rssMb: number;
  vms: number;
  /** Live vCPUs. */
  vcpus: number;
  /** EMT Workers alive: live vCPUs' and the idle pool's (each a thread, a V8 isolate). */
  emts: number;
  /** The main isolate's JavaScript heap in use, MB. */
  heapMb: number;
}
const samples: Sample[] = [];
const count = (path: string) => [...Deno.readDirSync(path)].length;
const rssMb = () =>
  Number(Deno.readTextFileSync("/proc/self/status").match(/VmRSS:\s+(\d+)/)![1]) / 1024;

/** guest ns per running VM at the last sample, to check progress. */
let lastGuest = new Map<string, number>();
let lastSampleAt = performance.now();
async function sample(): Promise<void> {
  const windowStart = lastSampleAt;
  lastSampleAt = performance.now();
  const s = (performance.now() - t0) / 1000;
  const vcpus = [...live.values()].reduce((a, v) => a + v.vcpus, 0);
  samples.push({
    s,
    fds: count("/proc/self/fd"),
    threads: count("/proc/self/task"),
    rssMb: rssMb(),
    vms: live.size,
    vcpus,
    emts: vcpus + vmm.emtWorkers.idle,
    heapMb: Deno.memoryUsage().heapUsed / 2 ** 20,
  });
  if (vmm.guestModeHighWater > slots) {
    error(`guest-mode high water ${vmm.guestModeHighWater} > ${slots} slots`);
  }
  const stats = await sched.stats();
  const elapsed = stats.at - statsAt0;
  for (const [i, busy] of stats.slotBusyNs.entries()) {
    if (busy > elapsed * 1.01 + 1e8) error(`slot ${i} busy ${busy / 1e9} s in ${elapsed / 1e9} s`);
  }
  // Progress: a VM running (not paused) through the whole sample made guest progress on every
  // vCPU; ended VMs are reaped meanwhile.
  const now = new Map<string, number>();
  for (const [name, v] of live) {
    if (v.vm.state !== "running") continue;
    // spin: every vCPU runs; sleep: vCPU 0 sleeps and wakes on its timer, the others stay halted.
    const c = v.vm.counters();
    const guest = v.workload.startsWith("workload=spin")
      ? c.reduce((a, x) => Math.min(a, x.nsGuest), Infinity)
      : c[0].nsGuest;
    now.set(name, guest);
    const before = lastGuest.get(name);
    const steady = !v.paused && v.touchedAt < windowStart && v.workload !== "workload=hello";
    if (before !== undefined && steady && guest <= before) {
      error(`vm ${name} (${v.workload}) made no progress on a vCPU in 10 s`);
    }
  }
  lastGuest = now;
}
const statsAt0 = (await sched.stats()).at;

let polls = 0;
const poller = setInterval(() => {
  Promise.all([
    client.listVms(),
    client.request("GET", "/sched"),
    client.request("GET", "/metrics"),
  ])
    .then(() => polls++, (e) => error(`API poll: ${(e as Error).message}`));
}, 2000);

const end = t0 + minutes * 60_000;
let nextSample = performance.now() + 10_000;
// Each minute, or ten times in a shorter run, so that a short run still meets every policy.
const swapEvery = Math.min(60_000, (minutes * 60_000) / 10);
let nextSwap = performance.now() + swapEvery;
let swapIndex = 0;
while (performance.now() < end) {
  try {
    await churn();
    await reap();
    if (performance.now() >= nextSwap) {
      nextSwap += swapEvery;
      swapIndex++;
      const faulty = swapIndex % 5 === 0;
      const plugin = faulty ? FAULTY : BUILTINS[swapIndex % BUILTINS.length];
      await sched.swap(plugin, faulty ? { fault: "throw:pickNext", after: 300 } : {});
      counts.swaps++;
    }
    if (performance.now() >= nextSample) {
      nextSample += 10_000;
      await sample();
      const last = samples.at(-1)!;
      console.log(
        `${
          last.s.toFixed(0)
        } s: ${last.vms} VMs, ${last.vcpus} vCPUs, ${last.emts} EMTs, ${last.fds} fds, ${last.threads} threads, ` +
          `${last.rssMb.toFixed(0)} MB RSS, ${errors.length} errors, ${ejections.length} ejections`,
      );
    }
  } catch (e) {
    error(`churn: ${(e as Error).stack ?? e}`);
  }
  await new Promise((r) => setTimeout(r, 100 + rand() * 300));
}
clearInterval(poller);
const expectedEjections = Math.floor(swapIndex / 5);

/** A slope per hour with its standard error. */
interface Slope {
  /** Growth per hour that the EMT Workers alive do not explain. */
  perHour: number;
  /** Its standard error: within noise when |perHour| < 2 x this. */
  stdErr: number;
  /** The same fit over the second half of the run only. */
  secondHalfPerHour: number;
}

/**
 * The growth of `f` per hour that the EMT Workers alive do not explain: the time coefficient of
 * a least-squares fit `f = a + b x EMTs + c x t` over the samples after the first minute (fds,
 * threads and memory go up and down with the vCPUs and the idle pool; a leak grows with time
 * alone), with its standard error, and the same over the second half of the run.
 */
function slopePerHour(f: (s: Sample) => number): Slope {
  const fit = (xs: Sample[]): { c: number; se: number } => {
    const n = xs.length;
    if (n < 5) return { c: NaN, se: NaN };
    const mean = (g: (s: Sample) => number) => xs.reduce((a, s) => a + g(s), 0) / n;
    const mt = mean((s) => s.s), mv = mean((s) => s.emts), my = mean(f);
    let stt = 0, svv = 0, stv = 0, sty = 0, svy = 0;
    for (const s of xs) {
      const t = s.s - mt, v = s.emts - mv, y = f(s) - my;
      stt += t * t;
      svv += v * v;
      stv += t * v;
      sty += t * y;
      svy += v * y;
    }
    const det = stt * svv - stv * stv;
    const flatV = det === 0;
    const c = flatV ? sty / stt : (sty * svv - svy * stv) / det;
    const b = flatV ? 0 : (svy * stt - sty * stv) / det;
    let sse = 0;
    for (const s of xs) {
      const r = (f(s) - my) - b * (s.emts - mv) - c * (s.s - mt);
      sse += r * r;
    }
    const sigma2 = sse / Math.max(1, n - 3);
    const se = Math.sqrt(sigma2 * (flatV ? 1 / stt : svv / det));
    return { c, se };
  };
  const xs = samples.filter((s) => s.s >= 60);
  const all = fit(xs);
  const half = fit(xs.filter((s) => s.s >= (minutes * 60) / 2));
  return { perHour: all.c * 3600, stdErr: all.se * 3600, secondHalfPerHour: half.c * 3600 };
}
const slopes = {
  fds: slopePerHour((s) => s.fds),
  threads: slopePerHour((s) => s.threads),
  rssMb: slopePerHour((s) => s.rssMb),
  heapMb: slopePerHour((s) => s.heapMb),
};
const fmtSlope = (x: Slope, unit = "") =>
  `${x.perHour.toFixed(1)}${unit} +- ${x.stdErr.toFixed(1)} (second half ${
    x.secondHalfPerHour.toFixed(1)
  })`;
if (ejections.length < expectedEjections) {
  error(`${ejections.length} ejections, ${expectedEjections} faulty plugins swapped in`);
}
const emtWorkers = vmm.emtWorkers;
await vmm.close();
await api.close();
await Deno.remove(dir, { recursive: true });
const report = {
  date: new Date().toISOString(),
  minutes,
  maxVms,
  slots,
  counts,
  polls,
  ejections,
  errors,
  slopes,
  samples,
  emtWorkers,
};
await Deno.mkdir(new URL("bench/results/", ROOT), { recursive: true });
await Deno.writeTextFile(
  new URL("bench/results/soak.json", ROOT),
  JSON.stringify(report, null, 2) + "\n",
);
console.log(
  `soak ${minutes} min: ${JSON.stringify(counts)}, ${polls} API polls, ${ejections.length} ` +
    `ejections; slopes per hour: fds ${fmtSlope(slopes.fds)}, threads ${
      fmtSlope(slopes.threads)
    }, RSS ${fmtSlope(slopes.rssMb, " MB")}, main heap ${fmtSlope(slopes.heapMb, " MB")}; ` +
    `EMT Workers ${JSON.stringify(emtWorkers)}; ` +
    `${errors.length} errors`,
);
for (const e of errors) console.log(`  ${e}`);
Deno.exit(errors.length === 0 ? 0 : 1);
