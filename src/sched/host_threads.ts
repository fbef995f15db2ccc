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
 * @module
 */

const SYMBOLS = {
  setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
  sched_setaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
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
