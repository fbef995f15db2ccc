/**
 * Host thread controls through libc: CPU affinity, nice level and on-CPU time of this process's
 * threads. The scheduler places its own threads with them (`affinity.ts`), the sandbox reads a
 * plugin thread's CPU time, and the scenarios' `host` baseline uses them: no slot enforcement,
 * every EMT free and scheduled by Linux, which is what a QEMU user has. To compare like with
 * like, the EMTs are confined to as many host CPUs as the scenario has slots (sched_setaffinity)
 * and a VM's weight becomes a nice level: CFS gives nice 0 a weight of 1024 and each nice step
 * about 1.25x less (kernel/sched/core.c, sched_prio_to_weight), so Xen weight w (default 256)
 * maps to nice = -log(w / 256) / log(1.25), clamped to -20..19. Caps have no equivalent
 * without cgroups.
 *
 * Time slices (`setThreadSlice`): Linux 6.6+ schedules fair tasks with EEVDF, which lets a running
 * task finish its slice (about 3 ms here) before a task that wakes on its CPU gets in
 * (kernel/sched/fair.c, RUN_TO_PARITY), unless the wakee asked for a shorter slice
 * (PREEMPT_SHORT, Linux 6.12+; sched_setattr(2), `sched_runtime` of a SCHED_OTHER task). Every
 * EMT waiting for a grant asks for the shortest slice, so its wake-up is not queued behind the
 * vCPU that holds the CPU. (The scheduler's own threads keep the default: with the short slice
 * too, io-vs-hog's p99 got worse.)
 *
 * @module
 */

const SYMBOLS = {
  setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
  sched_setaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
  syscall: { parameters: ["i64", "i64", "buffer", "i64", "i64"], result: "i64" },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] | undefined;
const libc = () => (lib ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols);

const PRIO_PROCESS = 0;

/** The nice level standing in for Xen weight `weight`. */
export function niceForWeight(weight: number): number {
  const nice = Math.round(-Math.log(weight / 256) / Math.log(1.25));
  return Math.max(-20, Math.min(19, nice));
}

/** Sets a thread's nice level (lowering it below 0 needs CAP_SYS_NICE); false on failure. */
export function setThreadNice(tid: number, nice: number): boolean {
  return libc().setpriority(PRIO_PROCESS, tid >>> 0, nice | 0) === 0;
}

/** Confines a thread to host CPUs `cpus`; false on failure. */
export function setThreadCpus(tid: number, cpus: number[]): boolean {
  const mask = new Uint8Array(128); // cpu_set_t: 1024 bits
  for (const c of cpus) mask[c >> 3] |= 1 << (c & 7);
  return libc().sched_setaffinity(tid | 0, BigInt(mask.length), mask) === 0;
}

/** x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
const SYS_SCHED_SETATTR = 314n;
const SYS_SCHED_GETATTR = 315n;
/** `struct sched_attr` (include/uapi/linux/sched/types.h), version 1: 56 bytes. */
const SCHED_ATTR_SIZE = 56;
/** Offsets in it. */
const ATTR = { size: 0, policy: 4, flags: 8, runtime: 24 } as const;
/** Fair-class policies, the ones a slice applies to: SCHED_OTHER, SCHED_BATCH, SCHED_IDLE. */
const FAIR_POLICIES = [0, 3, 5];

/** The shortest slice Linux accepts (it clamps `sched_runtime` to 0.1-100 ms). */
export const SHORT_SLICE_NS = 100_000;

/**
 * Sets a thread's EEVDF time slice (`ns`; 0 restores the kernel's default), keeping its policy
 * and nice level; `tid` 0 is the calling thread. False when the kernel refuses (older than
 * 6.12: the slice is ignored there, which is harmless) or the thread is not a fair-class one.
 */
export function setThreadSlice(tid: number, ns: number): boolean {
  const attr = new Uint8Array(SCHED_ATTR_SIZE);
  const dv = new DataView(attr.buffer);
  const c = libc();
  if (c.syscall(SYS_SCHED_GETATTR, BigInt(tid | 0), attr, BigInt(SCHED_ATTR_SIZE), 0n) !== 0n) {
    return false;
  }
  if (!FAIR_POLICIES.includes(dv.getUint32(ATTR.policy, true))) return false;
  dv.setUint32(ATTR.size, SCHED_ATTR_SIZE, true);
  dv.setBigUint64(ATTR.flags, 0n, true);
  dv.setBigUint64(ATTR.runtime, BigInt(Math.max(0, Math.round(ns))), true);
  return c.syscall(SYS_SCHED_SETATTR, BigInt(tid | 0), attr, 0n, 0n) === 0n;
}

/**
 * ns a thread of this process has run on a CPU (`/proc/self/task/TID/schedstat`, first
 * field). The host baseline's share comes from here: a free EMT in a guest that never exits
 * stays inside one KVM_RUN, so the shim's ns-in-guest clock only moves at exits.
 */
export function threadRunNs(tid: number): number {
  try {
    return Number(Deno.readTextFileSync(`/proc/self/task/${tid}/schedstat`).split(" ")[0]);
  } catch {
    return NaN;
  }
}
