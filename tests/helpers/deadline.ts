/**
 * A deadline for every test that touches KVM, Workers or subprocesses (DESIGN.md invariant 8:
 * tests never hang). Use {@linkcode test} instead of `Deno.test`.
 *
 * When a test passes its deadline, its name and a dump of every thread of the process (read
 * from `/proc/self/task`) are written to stderr and the process exits with
 * {@linkcode DEADLINE_EXIT_CODE}. It does not just fail the test and go on: a Worker spinning
 * in JavaScript cannot be stopped (`Worker.terminate()` leaves it running, a Deno bug) and the
 * scheduler's real-time threads may be spinning too, so only the end of the process is sure to
 * stop everything. `tests/run.ts` runs each file in its own process and reports the file.
 *
 * Two clocks watch a test. The main thread's timer handles the usual hang (a promise that never
 * settles). If the main thread itself is stuck (a synchronous loop, a blocking FFI call), its
 * timer cannot fire: a backstop Worker, which has its own event loop, then writes the same
 * dump {@linkcode BACKSTOP_GRACE_MS} later and kills the process with SIGKILL.
 *
 * @module
 */

/**
 * A test's deadline unless it sets `deadlineMs`. The slowest test of the suite took 52 s on a
 * loaded machine (the 64 x 4 overcommit test), the slowest of the others 7 s.
 */
export const DEFAULT_DEADLINE_MS = 120_000;

/** How much longer than the deadline the backstop Worker waits for the main thread to act. */
export const BACKSTOP_GRACE_MS = 5_000;

/** Exit status of a test process whose test passed its deadline (as `timeout(1)` uses). */
export const DEADLINE_EXIT_CODE = 124;

/** The first line written when a test passes its deadline; `tests/run.ts` looks for it. */
export const DEADLINE_MARK = "DEADLINE PASSED:";

/** A test body, as `Deno.test` takes it. */
export type TestFn = (t: Deno.TestContext) => void | Promise<void>;

/** `Deno.TestDefinition` with a deadline. */
export interface DeadlineTestDefinition extends Deno.TestDefinition {
  /** Milliseconds the test may take; {@linkcode DEFAULT_DEADLINE_MS} when not set. */
  deadlineMs?: number;
}

/** The options of {@linkcode test}'s `(name, fn, options)` form. */
export type DeadlineTestOptions = Omit<DeadlineTestDefinition, "name" | "fn">;

/**
 * Registers a test with a deadline, as `Deno.test` does: `test(name, fn, options?)` or
 * `test({ name, fn, deadlineMs, ...options })`.
 *
 * `sanitizeExit` is off unless the test sets it: the deadline ends the process with
 * `Deno.exit`, which the exit sanitizer would turn into an exception.
 */
export function test(definition: DeadlineTestDefinition): void;
/** Registers `fn` as the test `name` with a deadline (`options.deadlineMs`). */
export function test(name: string, fn: TestFn, options?: DeadlineTestOptions): void;
export function test(
  a: string | DeadlineTestDefinition,
  fn?: TestFn,
  options: DeadlineTestOptions = {},
): void {
  const def: DeadlineTestDefinition = typeof a === "string" ? { ...options, name: a, fn: fn! } : a;
  if (typeof def.fn !== "function") throw new TypeError(`test "${def.name}": no function`);
  const { deadlineMs = DEFAULT_DEADLINE_MS, fn: body, ...rest } = def;
  if (!(deadlineMs > 0 && Number.isFinite(deadlineMs))) {
    throw new RangeError(`test "${def.name}": deadlineMs must be a positive number`);
  }
  Deno.test({
    sanitizeExit: false,
    ...rest,
    fn: (t) => withDeadline(def.name, deadlineMs, () => body(t)),
  });
}

let nextId = 1;

/** The id of the calling thread. */
export function currentTid(): number {
  return Number(Deno.readLinkSync("/proc/thread-self").split("/").pop());
}

let jsTid: number | undefined;

/** Runs `body`; if it has not settled after `ms`, dumps the threads and ends the process. */
async function withDeadline(name: string, ms: number, body: () => void | Promise<void>) {
  const id = nextId++;
  const backstop = await startBackstop();
  jsTid ??= currentTid();
  const labels = { ...backstop?.labels, [jsTid]: "test JS" };
  const started = performance.now();
  backstop?.worker.postMessage({ kind: "arm", id, name, ms, labels } satisfies BackstopMessage);
  const timer = setTimeout(() => expire(name, ms, performance.now() - started, labels), ms);
  try {
    await body();
  } finally {
    clearTimeout(timer);
    backstop?.worker.postMessage({ kind: "disarm", id } satisfies BackstopMessage);
  }
}

/** Writes the deadline report for `name` and ends the process. */
function expire(name: string, ms: number, elapsedMs: number, labels: ThreadLabels): never {
  writeDeadlineReport(name, ms, `after ${Math.round(elapsedMs)} ms`, labels);
  try {
    Deno.exit(DEADLINE_EXIT_CODE);
  } catch {
    // The test set sanitizeExit: true, so Deno.exit threw: nothing may keep this process alive.
    Deno.kill(Deno.pid, "SIGKILL");
  }
  throw new Error("unreachable");
}

/**
 * Writes `DEADLINE PASSED: <name>` and this process's thread dump (threads named by `labels`)
 * to stderr, synchronously: the process ends right after.
 */
export function writeDeadlineReport(
  name: string,
  ms: number,
  detail: string,
  labels: ThreadLabels = {},
): void {
  const text = `\n${DEADLINE_MARK} ${name}\n` +
    `  the test did not finish within its deadline of ${ms} ms (${detail}); ` +
    `ending the process (a spinning Worker or real-time thread cannot be stopped otherwise)\n` +
    threadDump("self", labels);
  writeAllSync(Deno.stderr, new TextEncoder().encode(text));
  // Then, after what must be said is said, where a spinning thread spends its time.
  writeAllSync(Deno.stderr, new TextEncoder().encode(busiestProfile("self")));
}

/**
 * Where the busiest runnable thread of process `pid` spends its time: one second of
 * `perf record -g` on it, as `perf report` prints it (JavaScript frames are named only when the
 * process runs with V8's `--perf-basic-prof`; tests/run.ts does not pass it, as V8 then also
 * writes a log file per isolate into the working directory). Empty when no
 * thread is runnable or perf is missing. A hang that spins (a livelock) shows here.
 */
export function busiestProfile(pid: number | "self" = "self"): string {
  const busy = readThreads(pid).filter((t) => t.state === "R")
    .sort((a, b) => b.cpuSeconds - a.cpuSeconds)[0];
  if (!busy || busy.cpuSeconds < 1) return "";
  const out = `${Deno.env.get("TMPDIR") ?? "/tmp"}/deno-vmm-deadline-${Deno.pid}.perf`;
  try {
    const rec = new Deno.Command("perf", {
      args: ["record", "-q", "-g", "-t", String(busy.tid), "-o", out, "--", "sleep", "1"],
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    if (!rec.success) {
      return `perf record on thread ${busy.tid} (${busy.comm}) failed: ` +
        `${new TextDecoder().decode(rec.stderr).trim().slice(0, 500)}\n`;
    }
    const rep = new Deno.Command("perf", {
      args: ["report", "-i", out, "--stdio", "--no-children", "--percent-limit", "2"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const lines = new TextDecoder().decode(rep.stdout).split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("#")).slice(0, 80);
    return `where thread ${busy.tid} (${busy.comm}, ${busy.cpuSeconds.toFixed(1)} s of CPU) ` +
      `spends its time (perf, 1 s):\n${lines.map((l) => `  ${l}`).join("\n")}\n`;
  } catch {
    return ""; // no perf on this machine
  } finally {
    try {
      Deno.removeSync(out);
    } catch { /* not written */ }
  }
}

function writeAllSync(w: { writeSync(p: Uint8Array): number }, bytes: Uint8Array) {
  for (let off = 0; off < bytes.length;) off += w.writeSync(bytes.subarray(off));
}

/** A message to the backstop Worker (`deadline_worker.ts`). */
export type BackstopMessage =
  | { kind: "arm"; id: number; name: string; ms: number; labels: ThreadLabels }
  | { kind: "disarm"; id: number };

/** The backstop Worker and the label of its thread. */
interface Backstop {
  worker: Worker;
  labels: ThreadLabels;
}

let backstop: Promise<Backstop | null> | undefined;

/**
 * Starts the backstop Worker once, before the first test's body runs (so that its thread is
 * already there when a test counts the process's threads); null if it cannot start.
 */
function startBackstop(): Promise<Backstop | null> {
  return backstop ??= new Promise((resolve) => {
    let w: Worker;
    try {
      w = new Worker(new URL("./deadline_worker.ts", import.meta.url), {
        type: "module",
        name: "test deadline backstop",
      });
    } catch (e) {
      console.error(`deadline: no backstop thread (${e}); a synchronous hang is not caught`);
      return resolve(null);
    }
    w.onmessage = (ev: MessageEvent<number>) => {
      w.onmessage = null;
      resolve({ worker: w, labels: { [ev.data]: "deadline backstop" } });
    };
    w.onerror = (e) => {
      e.preventDefault();
      console.error(
        `deadline: no backstop thread (${e.message}); a synchronous hang is not caught`,
      );
      resolve(null);
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Thread dump
// ---------------------------------------------------------------------------------------------

/** Names for threads in a dump, by thread id (the process's main thread is always "main"). */
export type ThreadLabels = Record<number, string>;

/** One thread of a process, from `/proc/<pid>/task/<tid>/`. */
export interface ThreadInfo {
  /** Thread id. */
  tid: number;
  /** Whether this is the process's main thread (tid = pid). */
  main: boolean;
  /** Thread name (`comm`). */
  comm: string;
  /** State letter: R running, S sleeping, D uninterruptible, T stopped, Z zombie... */
  state: string;
  /** Scheduling policy name (stat field 41), e.g. SCHED_OTHER, SCHED_FIFO. */
  policy: string;
  /** Real-time priority (stat field 40); 0 for the fair class. */
  rtPriority: number;
  /** Nice value (stat field 19). */
  nice: number;
  /** CPU the thread last ran on (stat field 39). */
  lastCpu: number;
  /** User + system CPU time, in seconds (stat fields 14 and 15). */
  cpuSeconds: number;
  /** Kernel function the thread sleeps in (`wchan`), "" when running or unknown. */
  wchan: string;
  /** The system call it is in (`syscall`), e.g. "futex", or "running" / "" when unknown. */
  syscall: string;
}

const POLICIES = [
  "SCHED_OTHER",
  "SCHED_FIFO",
  "SCHED_RR",
  "SCHED_BATCH",
  "SCHED_ISO",
  "SCHED_IDLE",
  "SCHED_DEADLINE",
  "SCHED_EXT",
];

/** x86-64 numbers of the system calls a thread of this project usually waits in. */
const SYSCALLS: Record<number, string> = {
  0: "read",
  1: "write",
  7: "poll",
  16: "ioctl",
  23: "select",
  24: "sched_yield",
  35: "nanosleep",
  61: "wait4",
  45: "recvfrom",
  47: "recvmsg",
  202: "futex",
  230: "clock_nanosleep",
  232: "epoll_wait",
  270: "pselect6",
  271: "ppoll",
  281: "epoll_pwait",
  441: "epoll_pwait2",
};

/** USER_HZ: the unit of stat's utime and stime on Linux. */
const CLOCK_TICKS_PER_SECOND = 100;

function readProc(path: string): string {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return "";
  }
}

/** The threads of process `pid` (default: this process), by thread id; [] if unreadable. */
export function readThreads(pid: number | "self" = "self"): ThreadInfo[] {
  const dir = `/proc/${pid}/task`;
  let tids: number[];
  try {
    tids = [...Deno.readDirSync(dir)].map((e) => Number(e.name)).sort((x, y) => x - y);
  } catch {
    return [];
  }
  const realPid = pid === "self" ? Deno.pid : pid;
  const out: ThreadInfo[] = [];
  for (const tid of tids) {
    const stat = readProc(`${dir}/${tid}/stat`);
    if (!stat) continue; // the thread ended meanwhile
    // comm may hold spaces and parentheses: it ends at the last ')'.
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    // f[0] is field 3 (state) of proc(5): field n is f[n - 3].
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const policyNo = Number(f[41 - 3]);
    const sys = readProc(`${dir}/${tid}/syscall`).split(" ")[0];
    out.push({
      tid,
      main: tid === realPid,
      comm,
      state: f[0],
      policy: POLICIES[policyNo] ?? `policy ${policyNo}`,
      rtPriority: Number(f[40 - 3]),
      nice: Number(f[19 - 3]),
      lastCpu: Number(f[39 - 3]),
      cpuSeconds: (Number(f[14 - 3]) + Number(f[15 - 3])) / CLOCK_TICKS_PER_SECOND,
      wchan: readProc(`${dir}/${tid}/wchan`).replace(/^0$/, ""),
      syscall: /^\d+$/.test(sys) ? SYSCALLS[Number(sys)] ?? `syscall ${sys}` : sys,
    });
  }
  return out;
}

/** A table of `threads`, one line each; `labels` (and "main") follow the thread names. */
export function formatThreads(threads: ThreadInfo[], labels: ThreadLabels = {}): string {
  const rows = [
    ["tid", "name", "state", "policy", "rt", "nice", "cpu", "cpu time", "syscall", "wchan"],
    ...threads.map((t) => [
      String(t.tid),
      [t.comm, t.main ? "(main)" : "", labels[t.tid] ? `(${labels[t.tid]})` : ""]
        .filter(Boolean).join(" "),
      t.state,
      t.policy,
      String(t.rtPriority),
      String(t.nice),
      String(t.lastCpu),
      `${t.cpuSeconds.toFixed(2)} s`,
      t.syscall,
      t.wchan,
    ]),
  ];
  const width = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => "  " + r.map((v, c) => v.padEnd(width[c])).join("  ").trimEnd())
    .join("\n") + "\n";
}

/** A dump of every thread of process `pid` (default: this process), as text. */
export function threadDump(pid: number | "self" = "self", labels: ThreadLabels = {}): string {
  const realPid = pid === "self" ? Deno.pid : pid;
  const threads = readThreads(pid);
  if (threads.length === 0) return `  (cannot read /proc/${realPid}/task)\n`;
  return `threads of process ${realPid} (${threads.length}):\n${formatThreads(threads, labels)}` +
    kernelStacks(pid, threads, labels);
}

/**
 * The kernel stacks (`/proc/<pid>/task/<tid>/stack`, readable by root) of the threads a hang
 * is read from: the labelled ones (the test's JavaScript thread, the backstop) and the three
 * runnable threads with the most CPU time. Empty where the kernel does not show them.
 */
function kernelStacks(pid: number | "self", threads: ThreadInfo[], labels: ThreadLabels): string {
  const busy = threads.filter((t) => t.state === "R").sort((a, b) => b.cpuSeconds - a.cpuSeconds)
    .slice(0, 3);
  const picked = [...threads.filter((t) => labels[t.tid] !== undefined), ...busy];
  const parts: string[] = [];
  for (const t of new Set(picked)) {
    const stack = readProc(`/proc/${pid}/task/${t.tid}/stack`).trim();
    if (!stack) continue;
    const name = labels[t.tid] ?? t.comm;
    parts.push(
      `  kernel stack of ${t.tid} (${name}, ${t.state}, ${t.cpuSeconds.toFixed(1)} s):\n` +
        stack.split("\n").slice(0, 12).map((l) => `    ${l}`).join("\n"),
    );
  }
  return parts.length ? `kernel stacks:\n${parts.join("\n")}\n` : "";
}
