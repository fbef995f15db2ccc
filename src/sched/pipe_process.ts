/**
 * A child process joined to this thread by two pipes, driven synchronously through libc (FFI):
 * `posix_spawn(3)` with the pipes as the child's stdin and stdout, `poll(2)` with a timeout and
 * non-blocking `read(2)`/`write(2)` on this side, `kill(2)` with SIGKILL and `waitpid(2)`.
 *
 * Why not `Deno.Command`: its pipes are streams read by the thread's event loop, and the
 * scheduler core calls its policy synchronously from inside its own loop, blocked until the
 * answer comes or the budget ends; it needs a read with a timeout on the pipe itself. Spawning
 * through libc also lets the child start fair-class with an empty signal mask whatever the
 * spawning thread is (the core runs SCHED_FIFO, which a child would otherwise inherit), with
 * no file descriptor but its three standard ones (`posix_spawn_file_actions_addclosefrom_np`,
 * glibc 2.34), and reaps it at once after a SIGKILL, so that its pid is gone, not a zombie.
 *
 * Needs the `ffi` permission (the scheduler core has it; a simulation with the process sandbox
 * needs it too). Linux x86-64, glibc.
 *
 * @module
 */

const SYMBOLS = {
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  sigemptyset: { parameters: ["buffer"], result: "i32" },
  sigfillset: { parameters: ["buffer"], result: "i32" },
  posix_spawn: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  posix_spawn_file_actions_init: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_adddup2: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  posix_spawn_file_actions_addclosefrom_np: { parameters: ["buffer", "i32"], result: "i32" },
  posix_spawn_file_actions_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_init: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: "i32" },
  posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_setsigdefault: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_setschedpolicy: { parameters: ["buffer", "i32"], result: "i32" },
  posix_spawnattr_setschedparam: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_destroy: { parameters: ["buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] | undefined;
const libc = () => (lib ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols);

// <fcntl.h>, <poll.h>, <signal.h>, <spawn.h>, <errno.h> on Linux x86-64 (glibc).
const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const F_SETFL = 4;
const POLLIN = 0x1;
const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const SIGKILL = 9;
const WNOHANG = 1;
const EINTR = 4;
const EAGAIN = 11;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSCHEDULER = 0x20;
const SCHED_OTHER = 0;
/** Bytes reserved for glibc's opaque types (80, 336 and 128 bytes on x86-64), with room. */
const FILE_ACTIONS_BYTES = 256;
const SPAWNATTR_BYTES = 512;
const SIGSET_BYTES = 128;

function errno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

function cString(s: string): Uint8Array {
  return new TextEncoder().encode(`${s}\0`);
}

/** A NULL-terminated array of pointers to `strings` (kept alive by the returned holder). */
function cStringArray(strings: string[]): { array: BigUint64Array; keep: Uint8Array[] } {
  const keep = strings.map(cString);
  const array = new BigUint64Array(keep.length + 1);
  keep.forEach((b, i) => array[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b))));
  return { array, keep };
}

function check(what: string, r: number): void {
  if (r !== 0) throw new Error(`${what} failed (error ${r < 0 ? errno() : r})`);
}

/** Options of {@linkcode PipeProcess.spawn}. */
export interface SpawnOptions {
  /** The program (an absolute path; no PATH search). */
  path: string;
  /** Its arguments, `argv[1..]`. */
  args: string[];
  /** Its whole environment. */
  env: Record<string, string>;
}

/** What {@linkcode PipeProcess.read} found. */
export type ReadResult = number | "timeout" | "eof";

/**
 * A child whose stdin and stdout are pipes to this process (its stderr is this process's
 * stderr). Every call is synchronous; none blocks longer than its timeout.
 */
export class PipeProcess {
  /** The child's pid (its main thread's tid). */
  readonly pid: number;
  #toChild: number;
  #fromChild: number;
  #reaped = false;
  #status = -1;
  readonly #pfd = new Uint8Array(8);
  readonly #pfdView = new DataView(this.#pfd.buffer);

  private constructor(pid: number, toChild: number, fromChild: number) {
    this.pid = pid;
    this.#toChild = toChild;
    this.#fromChild = fromChild;
  }

  /** Starts the child. Throws when libc refuses (the error number is in the message). */
  static spawn(o: SpawnOptions): PipeProcess {
    const c = libc();
    const fds = new Int32Array(4);
    check("pipe2", c.pipe2(fds.subarray(0, 2), O_CLOEXEC));
    check("pipe2", c.pipe2(fds.subarray(2, 4), O_CLOEXEC));
    // [0] child's stdin (read end), [1] ours to write; [2] ours to read, [3] child's stdout.
    const fa = new Uint8Array(FILE_ACTIONS_BYTES);
    const attr = new Uint8Array(SPAWNATTR_BYTES);
    const closeAll = () => {
      for (const fd of fds) c.close(fd);
    };
    try {
      check("posix_spawn_file_actions_init", c.posix_spawn_file_actions_init(fa));
      check("posix_spawnattr_init", c.posix_spawnattr_init(attr));
      try {
        check("adddup2", c.posix_spawn_file_actions_adddup2(fa, fds[0], 0));
        check("adddup2", c.posix_spawn_file_actions_adddup2(fa, fds[3], 1));
        check("addclosefrom", c.posix_spawn_file_actions_addclosefrom_np(fa, 3));
        const none = new Uint8Array(SIGSET_BYTES), all = new Uint8Array(SIGSET_BYTES);
        c.sigemptyset(none);
        c.sigfillset(all);
        check("setsigmask", c.posix_spawnattr_setsigmask(attr, none));
        check("setsigdefault", c.posix_spawnattr_setsigdefault(attr, all));
        check("setschedpolicy", c.posix_spawnattr_setschedpolicy(attr, SCHED_OTHER));
        check("setschedparam", c.posix_spawnattr_setschedparam(attr, new Uint8Array(8)));
        check(
          "setflags",
          c.posix_spawnattr_setflags(
            attr,
            POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSCHEDULER,
          ),
        );
        const argv = cStringArray([o.path, ...o.args]);
        const envp = cStringArray(Object.entries(o.env).map(([k, v]) => `${k}=${v}`));
        const pid = new Int32Array(1);
        const r = c.posix_spawn(
          new Uint8Array(pid.buffer),
          cString(o.path),
          fa,
          attr,
          new Uint8Array(argv.array.buffer),
          new Uint8Array(envp.array.buffer),
        );
        if (r !== 0) throw new Error(`posix_spawn ${o.path} failed (error ${r})`);
        c.close(fds[0]);
        c.close(fds[3]);
        // Ours never block: a child that stops reading cannot hold this thread in write(2).
        c.fcntl(fds[1], F_SETFL, O_NONBLOCK);
        c.fcntl(fds[2], F_SETFL, O_NONBLOCK);
        return new PipeProcess(pid[0], fds[1], fds[2]);
      } finally {
        c.posix_spawn_file_actions_destroy(fa);
        c.posix_spawnattr_destroy(attr);
      }
    } catch (e) {
      closeAll();
      throw e;
    }
  }

  #poll(fd: number, events: number, timeoutMs: number): number {
    const v = this.#pfdView;
    v.setInt32(0, fd, true);
    v.setInt16(4, events, true);
    v.setInt16(6, 0, true);
    const n = libc().poll(this.#pfd, 1n, Math.max(0, Math.ceil(timeoutMs)));
    return n > 0 ? v.getInt16(6, true) : 0;
  }

  /**
   * Writes all of `data` to the child's stdin, waiting at most `timeoutMs` in all for room in
   * the pipe. Returns false on a timeout or a closed pipe (the child is gone or not reading).
   */
  writeAll(data: Uint8Array, timeoutMs: number): boolean {
    if (this.#toChild < 0) return false;
    const c = libc();
    const end = performance.now() + timeoutMs;
    let off = 0;
    while (off < data.length) {
      const n = Number(c.write(this.#toChild, data.subarray(off), BigInt(data.length - off)));
      if (n > 0) {
        off += n;
        continue;
      }
      const e = errno();
      if (n < 0 && e !== EAGAIN && e !== EINTR) return false;
      const left = end - performance.now();
      if (left <= 0) return false;
      const r = this.#poll(this.#toChild, POLLOUT, Math.min(left, 5));
      if (r & (POLLERR | POLLHUP)) return false;
    }
    return true;
  }

  /**
   * Reads what the child wrote into `into` (at most its length), waiting at most `timeoutMs`
   * for something: the bytes read, `"timeout"`, or `"eof"` (its stdout closed: it ended).
   */
  read(into: Uint8Array, timeoutMs: number): ReadResult {
    if (this.#fromChild < 0) return "eof";
    const c = libc();
    for (let first = true;; first = false) {
      const n = Number(c.read(this.#fromChild, into, BigInt(into.length)));
      if (n > 0) return n;
      if (n === 0) return "eof";
      const e = errno();
      if (e !== EAGAIN && e !== EINTR) return "eof";
      if (!first && timeoutMs <= 0) return "timeout";
      const t = performance.now();
      const r = this.#poll(this.#fromChild, POLLIN, timeoutMs);
      if (r === 0) return "timeout";
      timeoutMs -= performance.now() - t;
      if (timeoutMs < 0) timeoutMs = 0;
    }
  }

  /**
   * Waits at most `timeoutMs` for the child to write (or close its stdout); whether it did.
   * Reads nothing.
   */
  waitReadable(timeoutMs: number): boolean {
    return this.#fromChild >= 0 && this.#poll(this.#fromChild, POLLIN, timeoutMs) !== 0;
  }

  /** Whether the child has written bytes not read yet (or closed its stdout). */
  pending(): boolean {
    return this.#fromChild >= 0 && this.#poll(this.#fromChild, POLLIN, 0) !== 0;
  }

  /** Whether the child has ended (reaping it if so). */
  exited(): boolean {
    this.#reap(false);
    return this.#reaped;
  }

  /** The child's exit status as `waitpid` gives it (-1 while it runs or if unknown). */
  get status(): number {
    return this.#status;
  }

  #reap(block: boolean): void {
    if (this.#reaped) return;
    const st = new Int32Array(1);
    const r = libc().waitpid(this.pid, new Uint8Array(st.buffer), block ? 0 : WNOHANG);
    if (r === this.pid || (r < 0 && errno() !== EINTR)) {
      this.#reaped = true;
      this.#status = r === this.pid ? st[0] : -1;
    }
  }

  /**
   * Ends the child with SIGKILL, closes the pipes and reaps it, waiting up to `reapMs` for it to
   * die (SIGKILL is acted on when the child is next scheduled; a child stuck in an
   * uninterruptible sleep is reaped by a later call). Idempotent; never throws.
   */
  kill(reapMs = 100): void {
    try {
      const c = libc();
      if (!this.#reaped) c.kill(this.pid, SIGKILL);
      if (this.#toChild >= 0) c.close(this.#toChild);
      if (this.#fromChild >= 0) c.close(this.#fromChild);
      this.#toChild = this.#fromChild = -1;
      const end = performance.now() + reapMs;
      for (;;) {
        this.#reap(false);
        if (this.#reaped || performance.now() >= end) return;
        this.#poll(-1, 0, 1); // a 1 ms sleep (poll ignores a negative fd)
      }
    } catch {
      // no FFI any more (the thread is ending): nothing else to do
    }
  }

  /**
   * ns the child's main thread has run on a CPU (`/proc/PID/task/PID/schedstat`), NaN when
   * unreadable.
   */
  runNs(): number {
    try {
      const s = Deno.readTextFileSync(`/proc/${this.pid}/task/${this.pid}/schedstat`);
      return Number(s.split(" ")[0]);
    } catch {
      return NaN;
    }
  }
}
