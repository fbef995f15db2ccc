/**
 * The built-in guest kernel (`guests/`), built with the host C compiler on first use, the way
 * the shim is (`ffi/shim.ts`).
 *
 * The sources are read beside this module: from the clone when `mod.ts` runs from one (read
 * afresh at each call), fetched over HTTP(S) when it was imported by URL (as text imports, so
 * Deno caches them with the rest of the module graph). Their list and the compiler flags come from `guests/sources.mk`, which
 * the Makefile includes too. The kernel is compiled straight with `cc` (no `make` needed) into
 * `$XDG_CACHE_HOME/deno-vmm/kernel-<key>.elf` (or `~/.cache/deno-vmm`), `<key>` being the
 * SHA-256 of the compiler's name, the flags and every source file's name and text: an edit
 * rebuilds, an unchanged tree starts at once. A build happens in a private directory of the
 * cache and its result is renamed into place, so processes that build at the same time each
 * produce the same file and none ever reads a partial one.
 *
 * @module
 */
import { cacheDir, compilerName, sha256Hex } from "../../ffi/cache.ts";

/** The guest sources beside this module (the `guests/` directory of the tree `mod.ts` is in). */
export const GUEST_SOURCES: URL = new URL("../../guests/", import.meta.url);

/** The manifest of the sources and flags, relative to the guest sources. */
export const SOURCES_MANIFEST = "sources.mk";

/** What `guests/sources.mk` says. */
export interface GuestManifest {
  /** Compiler flags (for compiling and linking). */
  cflags: string[];
  /** Linker flags. */
  ldflags: string[];
  /** The linker script, relative to the guest sources. */
  ldscript: string;
  /** Kernel sources (`.c`, `.S`), in link order. */
  ksrc: string[];
  /** User-mode sources, in link order after the kernel's. */
  usrc: string[];
  /** Headers (part of the cache key, not compiled). */
  hdr: string[];
}

/** Options of {@linkcode guestKernel}. */
export interface GuestKernelOptions {
  /** The `guests/` directory to build from (default {@linkcode GUEST_SOURCES}). */
  sources?: URL;
  /** Cache directory (default `$XDG_CACHE_HOME/deno-vmm`, else `~/.cache/deno-vmm`). */
  cacheDir?: string;
  /** Told once when a build starts (there was no cached kernel for these sources). */
  onBuild?: (message: string) => void;
}

/** Raised when the guest kernel cannot be read or built; the message says what to do. */
export class GuestKernelError extends Error {
  /**
   * Creates the error.
   * @param message what went wrong and what to do about it
   */
  constructor(message: string) {
    super(message);
    this.name = "GuestKernelError";
  }
}

/**
 * Parses `sources.mk`: `NAME := words` lines, `\` continuing a line, `#` comments. Throws
 * {@linkcode GuestKernelError} if a variable is missing.
 */
export function parseManifest(text: string): GuestManifest {
  const vars = new Map<string, string[]>();
  const lines = text.replace(/\\\r?\n/g, " ").split(/\r?\n/);
  for (const raw of lines) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    const m = line.match(/^([A-Za-z_][A-Za-z0-9_]*)\s*:=\s*(.*)$/);
    if (!m) throw new GuestKernelError(`${SOURCES_MANIFEST}: cannot read the line '${line}'`);
    vars.set(m[1], m[2].split(/\s+/).filter(Boolean));
  }
  const get = (name: string): string[] => {
    const v = vars.get(name);
    if (!v) throw new GuestKernelError(`${SOURCES_MANIFEST}: no ${name}`);
    return v;
  };
  const ldscript = get("LDSCRIPT");
  if (ldscript.length !== 1) {
    throw new GuestKernelError(`${SOURCES_MANIFEST}: LDSCRIPT must name one file`);
  }
  return {
    cflags: get("CFLAGS"),
    ldflags: get("LDFLAGS"),
    ldscript: ldscript[0],
    ksrc: get("KSRC"),
    usrc: get("USRC"),
    hdr: get("HDR"),
  };
}

/**
 * Reads one file of the guest sources: a local file as it is now; a remote one as a text import,
 * so that Deno fetches it once and caches it with the rest of the module graph.
 */
async function readSource(base: URL, path: string): Promise<string> {
  if (path.startsWith("/") || path.split("/").includes("..")) {
    throw new GuestKernelError(`${SOURCES_MANIFEST}: '${path}' is outside the guest sources`);
  }
  const url = new URL(path, base);
  try {
    if (url.protocol === "file:") return await Deno.readTextFile(url);
    // A computed specifier: deno publish warns (unanalyzable-dynamic-import), by design (deno.json).
    const mod = await import(url.href, { with: { type: "text" } });
    return mod.default as string;
  } catch (e) {
    throw new GuestKernelError(
      `cannot read the guest kernel source ${url.href}: ${(e as Error).message}`,
    );
  }
}

/** The sources and what the cache key is made of. */
interface Tree {
  manifest: GuestManifest;
  /** Every file (manifest, sources, headers, linker script) by its path in `guests/`. */
  files: Map<string, string>;
  key: string;
}

async function readTree(base: URL, cc: string): Promise<Tree> {
  const manifest = parseManifest(await readSource(base, SOURCES_MANIFEST));
  const paths = [
    SOURCES_MANIFEST,
    manifest.ldscript,
    ...manifest.hdr,
    ...manifest.ksrc,
    ...manifest.usrc,
  ];
  const texts = await Promise.all(paths.map((p) => readSource(base, p)));
  const files = new Map(paths.map((p, i) => [p, texts[i]]));
  // The manifest holds the flags, so hashing every file (names and texts) covers them.
  const key = await sha256Hex(
    JSON.stringify([cc, [...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]),
  );
  return { manifest, files, key: key.slice(0, 16) };
}

async function compile(cc: string, args: string[], cwd: string, what: string): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cc, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new GuestKernelError(
        `no C compiler: '${cc}' was not found. deno-vmm compiles its guest kernel (guests/) on ` +
          `first use; install one (Debian/Ubuntu: apt-get install gcc) or point CC at it.`,
      );
    }
    throw e;
  }
  if (!out.success) {
    throw new GuestKernelError(
      `building the guest kernel failed at ${what} (${cc} ${args.join(" ")}):\n` +
        new TextDecoder().decode(out.stderr),
    );
  }
}

/** Compiles every source in parallel (two at a time), then links; returns the image's path. */
async function build(tree: Tree, cc: string, dir: string): Promise<string> {
  for (const [path, text] of tree.files) {
    const slash = path.lastIndexOf("/");
    if (slash > 0) await Deno.mkdir(`${dir}/${path.slice(0, slash)}`, { recursive: true });
    await Deno.writeTextFile(`${dir}/${path}`, text);
  }
  const { cflags, ldflags, ldscript, ksrc, usrc } = tree.manifest;
  const sources = [...ksrc, ...usrc];
  const objects = sources.map((s) => `${s}.o`);
  let next = 0, stop = false;
  const worker = async () => {
    while (next < sources.length && !stop) {
      const i = next++;
      try {
        await compile(cc, [...cflags, "-c", "-o", objects[i], sources[i]], dir, sources[i]);
      } catch (e) {
        stop = true;
        throw e;
      }
    }
  };
  // Both workers finish before the first error is thrown: the directory goes away after.
  const failed = (await Promise.allSettled([worker(), worker()]))
    .find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  await compile(
    cc,
    [...cflags, ...ldflags, "-T", ldscript, "-o", "kernel.elf", ...objects],
    dir,
    "the link",
  );
  return `${dir}/kernel.elf`;
}

/** Builds under way in this process, by the kernel's path in the cache. */
const building = new Map<string, Promise<void>>();

/**
 * Returns the path of the built-in guest kernel, building it into the cache if the cache has no
 * build of these exact sources and flags. Throws {@linkcode GuestKernelError} (saying what to
 * install) when the sources cannot be read or the compiler is missing or fails.
 */
export async function guestKernel(options: GuestKernelOptions = {}): Promise<string> {
  const base = options.sources ?? GUEST_SOURCES;
  const dir = options.cacheDir ?? cacheDir();
  const cc = compilerName();
  const tree = await readTree(base, cc);
  const elf = `${dir}/kernel-${tree.key}.elf`;
  try {
    if ((await Deno.stat(elf)).isFile) return elf;
  } catch { /* not built yet */ }
  let p = building.get(elf);
  if (!p) {
    options.onBuild?.(`building the guest kernel from ${base.href} into ${elf} (first use)`);
    p = buildInto(tree, cc, dir, elf).finally(() => building.delete(elf));
    building.set(elf, p);
  }
  await p;
  return elf;
}

async function buildInto(tree: Tree, cc: string, dir: string, elf: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  // Private to this build, and on the cache's file system, so that the rename is atomic.
  const work = await Deno.makeTempDir({ dir, prefix: `kernel-${tree.key}.build-` });
  try {
    const built = await build(tree, cc, work);
    await Deno.rename(built, elf); // a concurrent build just replaces an equal file
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
