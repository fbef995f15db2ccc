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
 * Real-time and time slices (sched_setattr(2)). Linux 6.6+ schedules fair tasks with EEVDF: a
 * task that wakes on a CPU whose running task is still within its slice (1.4 ms here) waits
 * for it (kernel/sched/fair.c, RUN_TO_PARITY) unless the wakee asked for a shorter slice
 * (PREEMPT_SHORT, Linux 6.12+), and a runnable task that EEVDF finds not yet eligible waits
 * for the next tick: 4 ms on these kernels (CONFIG_HZ=250). A vCPU thread in guest mode never
 * gives its CPU up by itself, so a scheduler thread or a waiting EMT that shares its CPU can
 * lose milliseconds to it (measured with ftrace on io-vs-hog: the core, runnable with its
 * plugin's answer, passed over for the spinning vCPU for 1.3 ms). The scheduler's threads and
 * waiting EMTs are therefore SCHED_FIFO when the process may do that (`affinity.ts`,
 * {@linkcode WaitPolicy}), as Xen's scheduler runs before any guest; the vCPU that holds a slot
 * is the only fair-class thread of the slot's CPU that has work.
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
const ATTR = { size: 0, policy: 4, flags: 8, nice: 16, priority: 20, runtime: 24 } as const;
/** Policies (include/uapi/linux/sched.h). */
const SCHED_OTHER = 0, SCHED_FIFO = 1, SCHED_BATCH = 3, SCHED_IDLE = 5;
/** Fair-class policies, the ones a slice applies to. */
const FAIR_POLICIES = [SCHED_OTHER, SCHED_BATCH, SCHED_IDLE];

/** The shortest slice Linux accepts (it clamps `sched_runtime` to 0.1-100 ms). */
export const SHORT_SLICE_NS = 100_000;

/** A thread's scheduling attributes: a `struct sched_attr`, as sched_getattr(2) fills it. */
export type SchedAttr = Uint8Array;

/** The attributes of thread `tid` (0: the calling thread), or null when the kernel refuses. */
export function threadAttr(tid: number): SchedAttr | null {
  const attr = new Uint8Array(SCHED_ATTR_SIZE);
  const r = libc().syscall(SYS_SCHED_GETATTR, BigInt(tid | 0), attr, BigInt(SCHED_ATTR_SIZE), 0n);
  if (r !== 0n) return null;
  const dv = new DataView(attr.buffer);
  dv.setUint32(ATTR.size, SCHED_ATTR_SIZE, true);
  dv.setBigUint64(ATTR.flags, 0n, true);
  return attr;
}

/** Applies `attr` to thread `tid` (0: the calling thread) with one syscall; false on refusal. */
export function applyThreadAttr(tid: number, attr: SchedAttr): boolean {
  return libc().syscall(SYS_SCHED_SETATTR, BigInt(tid | 0), attr, 0n, 0n) === 0n;
}

/** A `struct sched_attr` for `policy` and its real-time `priority` (0 for the others). */
function policyAttr(policy: number, priority = 0): SchedAttr {
  const attr = new Uint8Array(SCHED_ATTR_SIZE);
  const dv = new DataView(attr.buffer);
  dv.setUint32(ATTR.size, SCHED_ATTR_SIZE, true);
  dv.setUint32(ATTR.policy, policy, true);
  dv.setUint32(ATTR.priority, priority, true);
  return attr;
}

/** SCHED_FIFO at `priority` (1-99): runs before every fair-class thread of its CPU. */
export function realtimeAttr(priority: number): SchedAttr {
  return policyAttr(SCHED_FIFO, priority);
}

/**
 * A copy of fair-class `attr` with EEVDF slice `ns` (0: the kernel's default), keeping its
 * policy and nice level; null when `attr` is not a fair-class one.
 */
export function withSlice(attr: SchedAttr, ns: number): SchedAttr | null {
  const copy = attr.slice();
  const dv = new DataView(copy.buffer);
  if (!FAIR_POLICIES.includes(dv.getUint32(ATTR.policy, true))) return null;
  dv.setBigUint64(ATTR.runtime, BigInt(Math.max(0, Math.round(ns))), true);
  return copy;
}

/** The host CPUs this process may use: 0 to `navigator.hardwareConcurrency` - 1. */
export function processCpus(): number[] {
  return Array.from({ length: Math.max(1, navigator.hardwareConcurrency || 1) }, (_, i) => i);
}

/**
 * Hands thread `tid` (0: the calling thread) back to Linux: fair class at nice 0 with the
 * default slice, free to run on every CPU of the process. Every thread deno-vmm raised to
 * real-time or pinned (the core, the sandbox, the EMTs) goes through this before it leaves
 * deno-vmm's code: what a thread runs after that (V8 tearing its isolate down, Deno ending the
 * Worker) is not ours, may wait on fair-class threads, and must not do it at real-time priority
 * on a CPU it is confined to. Best effort; false when either call was refused.
 */
export function releaseThread(tid: number): boolean {
  const fair = applyThreadAttr(tid, policyAttr(SCHED_OTHER));
  return setThreadCpus(tid, processCpus()) && fair;
}

/**
 * Moves thread `tid` to SCHED_IDLE: it runs only on CPU time no other thread of its CPU wants
 * (sched(7)). Leaving a real-time policy this way needs no privilege.
 */
export function setThreadIdle(tid: number): boolean {
  return applyThreadAttr(tid, policyAttr(SCHED_IDLE));
}

/** Moves thread `tid` to SCHED_FIFO `priority`; false when not permitted (CAP_SYS_NICE). */
export function setThreadRealtime(tid: number, priority: number): boolean {
  return applyThreadAttr(tid, realtimeAttr(priority));
}

/**
 * How an EMT's thread runs while it waits for a slot and while it holds one, switched with one
 * syscall each way. Waiting, it is real-time (SCHED_FIFO) when the process may do that, so
 * that neither its wake-up (a device interrupt, an IPI, its timer) nor the few microseconds it
 * still runs after giving its grant back are queued behind the vCPU thread that holds its CPU
 * until the next scheduler tick (4 ms here); otherwise it asks for the shortest EEVDF slice,
 * which gets its wake-ups in but not a preempted tail. Holding a slot, it is as it was started
 * (fair class, its nice level, the default slice), or, holding reserved time, real-time at a
 * lower priority than waiting.
 *
 * Why reserved time stays real-time: switched back to the fair class, a just-granted EMT comes
 * back with the lag it left with, and EEVDF then runs a runnable fair thread (one of V8's
 * helpers) before it until the next tick (ftrace: 2.6 ms of a 0.9 ms rtds slice). Over 35
 * interleaved pairs of 10 s rt runs, 15 of 34 had deadline misses with fair-class holding (54 in
 * all), 5 of 35 with this (23).
 */
export class WaitPolicy {
  #waiting: SchedAttr;
  #holding: SchedAttr;
  #reserved: SchedAttr | null = null;
  /** The attributes last applied (the thread starts waiting). */
  #current: "waiting" | "holding" | "reserved" | "released" = "waiting";
  /** "realtime" or "short-slice": what waiting means for this thread. */
  readonly kind: "realtime" | "short-slice";

  private constructor(waiting: SchedAttr, holding: SchedAttr, kind: WaitPolicy["kind"]) {
    this.#waiting = waiting;
    this.#holding = holding;
    this.kind = kind;
  }

  /**
   * The policy of the calling thread, which starts waiting; null when the kernel allows
   * neither (not fair-class, or a kernel without sched_setattr). `reservedPriority`: the
   * real-time priority it holds reserved time at; without it, reserved time is held as any.
   */
  static forCallingThread(realtimePriority: number, reservedPriority?: number): WaitPolicy | null {
    const started = threadAttr(0);
    if (started === null) return null;
    const holding = withSlice(started, 0) ?? started;
    const fifo = realtimeAttr(realtimePriority);
    if (applyThreadAttr(0, fifo)) {
      const p = new WaitPolicy(fifo, holding, "realtime");
      if (reservedPriority !== undefined) p.#reserved = realtimeAttr(reservedPriority);
      return p;
    }
    const short = withSlice(holding, SHORT_SLICE_NS);
    if (short === null || !applyThreadAttr(0, short)) return null;
    return new WaitPolicy(short, holding, "short-slice");
  }

  /** The thread gave its slot back: from now on it waits. */
  waiting(): void {
    this.#apply("waiting", this.#waiting);
  }

  /**
   * The thread took a slot: it runs as it was started, or real-time below the waiting EMTs if
   * the slice is `reserved` time and the thread may be real-time.
   */
  holding(reserved = false): void {
    if (reserved && this.#reserved) this.#apply("reserved", this.#reserved);
    else this.#apply("holding", this.#holding);
  }

  /**
   * The thread leaves the EMT's loop: back to the attributes it was started with and free to
   * run on every CPU of the process (the core pinned it to its slots' CPUs). What it runs next
   * (the Worker's end) is not deno-vmm's and must not run real-time ({@linkcode releaseThread}).
   */
  release(): void {
    this.#apply("released", this.#holding);
    setThreadCpus(0, processCpus());
  }

  #apply(kind: "waiting" | "holding" | "reserved" | "released", attr: SchedAttr): void {
    if (this.#current !== kind && applyThreadAttr(0, attr)) this.#current = kind;
  }
}

/** A thread's scheduling policy (sched.h numbers: 0 other, 1 FIFO, 5 idle...) and levels. */
export interface ThreadPolicy {
  /** `sched_policy`. */
  policy: number;
  /** Real-time priority (0 for the fair-class policies). */
  priority: number;
  /** Nice level (fair-class policies). */
  nice: number;
}

/** The policy of thread `tid` of this process (0: the calling thread); null when it is gone. */
export function threadPolicy(tid: number): ThreadPolicy | null {
  const attr = threadAttr(tid);
  if (attr === null) return null;
  const dv = new DataView(attr.buffer);
  return {
    policy: dv.getUint32(ATTR.policy, true),
    priority: dv.getUint32(ATTR.priority, true),
    nice: dv.getInt32(ATTR.nice, true),
  };
}

/** Every thread of this process (`/proc/self/task`). */
export function processThreads(): number[] {
  return [...Deno.readDirSync("/proc/self/task")].map((e) => Number(e.name));
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

/**
 * ns a thread of this process has waited on a runqueue, runnable but not running
 * (`/proc/self/task/TID/schedstat`, second field: the run delay); NaN when it is gone.
 */
export function threadWaitNs(tid: number): number {
  try {
    return Number(Deno.readTextFileSync(`/proc/self/task/${tid}/schedstat`).split(" ")[1]);
  } catch {
    return NaN;
  }
}
