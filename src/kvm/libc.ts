/**
 * The handful of libc calls the KVM bindings need, through Deno FFI: `open`, `close`,
 * `ioctl`, `mmap`, `munmap` and `errno`. Opened once per thread (each Worker has its own
 * handle on the same process-wide library).
 *
 * @module
 */

const LIBC_SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  // ioctl is variadic; on x86-64 SysV its third argument is one integer register, so a
  // pointer and a plain value are passed the same way: two typed aliases of one symbol.
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctl_val: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  mmap: {
    parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"],
    result: "pointer",
  },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

let libc: Libc | undefined;

/** The libc symbols, opened on first use in this thread. */
export function getLibc(): Libc {
  libc ??= Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
  return libc;
}

/** The calling thread's current `errno`. */
export function errno(): number {
  const p = getLibc().__errno_location();
  return new Deno.UnsafePointerView(p!).getInt32();
}

/** `strerror(code)`. */
export function strerror(code: number): string {
  const p = getLibc().strerror(code);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${code}`;
}

/** A failed system call: carries the call's name and errno. */
export class SyscallError extends Error {
  /** The errno value. */
  readonly errno: number;
  /** The failing call, e.g. `ioctl(KVM_CREATE_VM)`. */
  readonly call: string;
  /**
   * @param call the failing call
   * @param code its errno
   */
  constructor(call: string, code: number) {
    super(`${call} failed: ${strerror(code)} (errno ${code})`);
    this.name = "SyscallError";
    this.errno = code;
    this.call = call;
  }
}

/** `open(2)` flags used here. */
export const O_RDWR = 2;
/** `O_CLOEXEC`. */
export const O_CLOEXEC = 0o2000000;
/** `mmap(2)` protection and flags used here. */
export const PROT_READ = 1;
/** `PROT_WRITE`. */
export const PROT_WRITE = 2;
/** `MAP_SHARED`. */
export const MAP_SHARED = 1;
/** `MAP_PRIVATE`. */
export const MAP_PRIVATE = 2;
/** `MAP_ANONYMOUS`. */
export const MAP_ANONYMOUS = 0x20;
/** `MAP_NORESERVE`. */
export const MAP_NORESERVE = 0x4000;

/** Opens `path` read-write (close-on-exec); throws {@linkcode SyscallError}. */
export function openRdwr(path: string): number {
  const fd = getLibc().open(new TextEncoder().encode(path + "\0"), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw new SyscallError(`open(${path})`, errno());
  return fd;
}

/** Closes a file descriptor (errors ignored: nothing useful can follow them). */
export function closeFd(fd: number): void {
  if (fd >= 0) getLibc().close(fd);
}

/** Maps `length` bytes (anonymous when `fd` is -1); throws {@linkcode SyscallError}. */
export function mmap(
  length: number,
  options: { fd?: number; shared?: boolean; offset?: number } = {},
): Deno.PointerObject {
  const fd = options.fd ?? -1;
  const flags = (options.shared ? MAP_SHARED : MAP_PRIVATE) |
    (fd < 0 ? MAP_ANONYMOUS | MAP_NORESERVE : 0);
  const p = getLibc().mmap(null, BigInt(length), PROT_READ | PROT_WRITE, flags, fd, 0n);
  const addr = Deno.UnsafePointer.value(p);
  if (p === null || addr === 0xffffffffffffffffn) throw new SyscallError("mmap", errno());
  return p;
}

/** Unmaps what {@linkcode mmap} mapped. */
export function munmap(p: Deno.PointerObject, length: number): void {
  getLibc().munmap(p, BigInt(length));
}
