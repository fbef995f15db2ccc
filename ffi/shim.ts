/**
 * Builds the C halt/wake shim (`shim.c`) with the host C compiler on first use and opens it.
 *
 * The source travels with the module graph (a text import), so this works the same when
 * `mod.ts` is imported by URL: the C file is fetched beside this one and compiled locally,
 * because `Deno.dlopen` needs a local path. The library is cached under
 * `$XDG_CACHE_HOME/deno-vmm` (or `~/.cache/deno-vmm`), keyed by the SHA-256 of the source
 * and compiler flags, so an edit rebuilds and concurrent first uses do not collide.
 *
 * @module
 */
import shimSource from "./shim.c" with { type: "text" };
import { cacheDir, compilerName, sha256Hex } from "./cache.ts";

/** Compiler flags; part of the cache key. */
const CFLAGS = ["-O2", "-shared", "-fPIC", "-Wall", "-Werror", "-std=gnu11"];

/** The shim's exported functions, as `Deno.dlopen` sees them. */
export const SHIM_SYMBOLS = {
  shim_init: { parameters: [], result: "i32" },
  shim_now: { parameters: [], result: "i64" },
  shim_now_f64: { parameters: [], result: "f64" },
  shim_thread_cpu_ns: { parameters: [], result: "f64" },
  shim_emt_cpu_ns: { parameters: ["pointer"], result: "f64" },
  shim_layout: { parameters: ["i32"], result: "i32" },
  shim_attach: {
    parameters: ["pointer", "pointer", "i32", "pointer"],
    result: "i32",
  },
  shim_detach: { parameters: ["pointer"], result: "i32" },
  shim_run: { parameters: ["pointer", "f64"], result: "i32" },
  shim_halt: {
    parameters: ["pointer", "f64", "i32", "f64"],
    result: "i32",
  },
  shim_wake: { parameters: ["pointer"], result: "i32" },
  shim_wake_on: { parameters: ["pointer", "i32"], result: "i32" },
  shim_poke: { parameters: ["pointer"], result: "i32" },
  shim_extend: { parameters: ["pointer", "f64", "f64"], result: "i32" },
  shim_hold_arm_lock: { parameters: ["pointer", "f64"], result: "f64" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened shim library. */
export type ShimLibrary = Deno.DynamicLibrary<typeof SHIM_SYMBOLS>;

/** Raised when the shim cannot be built or loaded; the message says what to install. */
export class ShimBuildError extends Error {
  /**
   * Creates the error.
   * @param message what went wrong and what to do about it
   */
  constructor(message: string) {
    super(message);
    this.name = "ShimBuildError";
  }
}

/**
 * Returns the path of the compiled shim, compiling it if the cache has no build of this
 * exact source.
 */
export async function buildShim(): Promise<string> {
  const cc = compilerName();
  const key = (await sha256Hex([shimSource, cc, ...CFLAGS].join("\0"))).slice(0, 16);
  const dir = cacheDir();
  const lib = `${dir}/libshim-${key}.so`;
  try {
    if ((await Deno.stat(lib)).isFile) return lib;
  } catch { /* not built yet */ }
  await Deno.mkdir(dir, { recursive: true });
  const src = `${dir}/shim-${key}.c`;
  const tmp = `${lib}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(src, shimSource);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cc, {
      args: [...CFLAGS, "-o", tmp, src],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ShimBuildError(
        `no C compiler: '${cc}' was not found. deno-vmm compiles its small C shim ` +
          `(ffi/shim.c) on first use; install one (Debian/Ubuntu: apt-get install gcc) ` +
          `or point CC at it.`,
      );
    }
    throw e;
  }
  if (!out.success) {
    throw new ShimBuildError(
      `building the shim failed (${cc} ${CFLAGS.join(" ")}):\n` +
        new TextDecoder().decode(out.stderr),
    );
  }
  await Deno.rename(tmp, lib); // atomic: a concurrent build just replaces an equal file
  return lib;
}

let opened: ShimLibrary | undefined;

/**
 * Opens the shim in this thread (each Worker opens its own handle; the library is loaded
 * once per process by the dynamic linker). `path` comes from {@linkcode buildShim}.
 */
export function openShim(path: string): ShimLibrary {
  if (opened) return opened;
  opened = Deno.dlopen(path, SHIM_SYMBOLS);
  const sig = opened.symbols.shim_init();
  if (sig < 0) throw new ShimBuildError(`shim_init failed: errno ${-sig}`);
  return opened;
}
