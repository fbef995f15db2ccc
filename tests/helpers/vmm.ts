/** Test helpers for booting our guest kernel. */
import { type SchedulerOptions, type VmConfig, Vmm } from "../../mod.ts";
import type { GuestStats, Vm, VmExit } from "../../mod.ts";
import { guestKernel } from "../../src/vm/guest_kernel.ts";

/**
 * The path of the built-in guest kernel: found in the cache, or built there when this module is
 * first imported (as `Vmm` does for a VM without a `kernel`), so that every test file, and every
 * table of cases built at its top level, has it.
 */
export const KERNEL: string = await guestKernel();

/** The built-in guest kernel's path (built when this module loaded; kept for the tests' calls). */
export function requireKernel(): Promise<string> {
  return Promise.resolve(KERNEL);
}

/** Runs `body` with a VMM under `scheduler`, and closes the VMM whatever happens. */
export async function withVmm(
  scheduler: SchedulerOptions,
  body: (vmm: Vmm) => Promise<void>,
): Promise<void> {
  await requireKernel();
  const vmm = await Vmm.create({ scheduler });
  try {
    await body(vmm);
  } finally {
    await vmm.close();
  }
}

/** Boots one VM to its end, with a safety timeout; returns the VM (closed VMM) and its exit. */
export async function bootToExit(
  config: VmConfig,
  timeoutMs = 20_000,
): Promise<{ exit: VmExit; console: string[]; log: string[]; vm: Vm; stats: GuestStats | null }> {
  await requireKernel();
  const vmm = await Vmm.create();
  try {
    const vm = await vmm.createVm({ kernel: KERNEL, ...config });
    await vm.start();
    const timer = setTimeout(() => vm.stop(), timeoutMs);
    const exit = await vm.wait();
    clearTimeout(timer);
    const stats = vm.stats(); // guest memory is gone after close
    return { exit, console: vm.console.map((l) => l.line), log: [...vm.log], vm, stats };
  } finally {
    await vmm.close();
  }
}

/** utime + stime of a thread of this process, in ns (clock ticks of 10 ms). */
export function threadCpuNs(tid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/self/task/${tid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[11] is utime, fields[12] stime (field 14 and 15 of proc(5), 0-based after comm)
    return (Number(fields[11]) + Number(fields[12])) * 1e7;
  } catch {
    return NaN;
  }
}

/** Entries of a /proc/self directory (fd, task). */
export function procEntries(dir: "fd" | "task"): string[] {
  return [...Deno.readDirSync(`/proc/self/${dir}`)].map((e) => e.name).sort();
}

/** Sleeps `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `probe` every `everyMs` until it returns a value (not null, undefined or false) and
 * resolves with it; rejects naming `what` after `timeoutMs`. For liveness (the guest booted, a
 * vCPU moved on), not speed: the bound is far above what any host takes.
 */
export async function until<T>(
  what: string,
  probe: () => T | null | undefined | false,
  timeoutMs = 30_000,
  everyMs = 10,
): Promise<T> {
  const t0 = performance.now();
  for (;;) {
    const v = probe();
    if (v !== null && v !== undefined && v !== false) return v;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/** Each vCPU's workload iterations (0 before the guest set its stats area up). */
export function iterations(vm: Vm): bigint[] {
  const s = vm.stats();
  return Array.from({ length: vm.config.vcpus }, (_, i) => s?.vcpus[i]?.iterations ?? 0n);
}

/**
 * Waits until every vCPU of `vm` counted more workload iterations than in `since` (default: none
 * yet, i.e. the guest booted and its workload runs on every vCPU); returns the new counts.
 */
export function untilAdvanced(vm: Vm, since?: bigint[], timeoutMs = 30_000): Promise<bigint[]> {
  return until(`${vm.name}: every vCPU's workload moving on`, () => {
    const now = iterations(vm);
    return now.every((n, i) => n > (since?.[i] ?? 0n)) && now;
  }, timeoutMs);
}
