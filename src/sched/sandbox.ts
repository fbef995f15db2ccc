/**
 * {@linkcode SandboxPolicy}: a plugin running in a Deno Worker with every permission denied
 * (except reading its own file, which importing it needs), called synchronously over a
 * SharedArrayBuffer channel (`channel.ts`).
 *
 * A batch of calls (the queued void hooks plus one call that needs an answer) costs one wake-up
 * each way (about 3 µs here). The caller optionally spins (`spinNs`), then blocks in
 * `Atomics.wait`; a batch that does not answer within the budget (`budgetNs`, default 20 ms, the
 * watchdog's limit) while the plugin computes is a `timeout` fault and the Worker is terminated.
 *
 * Deno 2.9.6 caveat, measured here: `Worker.terminate()` does not stop a Worker that is stuck
 * in a JavaScript loop (the thread keeps a CPU busy and the process no longer exits on its own;
 * `Deno.exit` still works). So on a timeout we terminate, and, best effort, move the Worker's
 * thread to `SCHED_IDLE` (sched_setattr through libc, else `chrt --idle -p 0 <tid>`; the thread
 * found in `/proc/self/task` by its name `worker-N`), so that a runaway plugin only gets CPU time
 * nobody else wants: it ran real-time until then. The VMM's default sandbox is a child process
 * instead (`sandbox_process.ts`), which SIGKILL ends.
 *
 * @module
 */
import { releaseThread, setThreadIdle, threadRunNs } from "./host_threads.ts";
import { pathToFileURL } from "node:url";
import {
  type ChannelViews,
  createChannel,
  H_NOPS,
  H_REP,
  H_REQ,
  H_REQ_BYTES,
  H_SPIN_NS,
  OP_QUIT,
} from "./channel.ts";
import type { SchedParams } from "./contract.ts";
import { pluginDisplayName, PluginLoadError } from "./load.ts";
import { nextSeq, prevSeq } from "./reply_reader.ts";
import { BatchPolicy, timeoutFault, waitWithinBudget } from "./sandbox_port.ts";
import { DEFAULT_BUDGET_NS } from "./watchdog.ts";

const WORKER_URL = new URL("./sandbox_worker.ts", import.meta.url);

/** Options of {@linkcode SandboxPolicy.create}. */
export interface SandboxOptions {
  /** The plugin module: a path (relative to the current directory) or a URL. */
  plugin: string | URL;
  /** Plugin parameters (`ctx.params`). */
  params?: SchedParams;
  /**
   * If given (with `maxSliceNs` and `ratelimitNs`), `init` runs during `create`, so a plugin
   * whose `init` fails is a load error; the core's later `init` with the same values is a no-op.
   */
  slots?: number;
  /** See `slots`. Default 100 ms. */
  maxSliceNs?: number;
  /** See `slots`. Default 1 ms. */
  ratelimitNs?: number;
  /** Wall-clock budget per batch of calls (ns); default 20 ms. */
  budgetNs?: number;
  /**
   * How long each side spins before sleeping (ns); default 0. On a machine with truly parallel
   * CPUs a few µs of spinning can save a wake-up; on the 2-vCPU machines here, whose two CPUs
   * give the throughput of one, a spinning thread delays the very thread it waits for
   * (measured: 0 → p50 2.9 µs per round trip; 2 µs → 4.6-7.6 µs; 20 µs → stalls of 20 ms).
   */
  spinNs?: number;
  /** Extra files the plugin may read (default none). */
  allowRead?: string[];
  /**
   * Hosts (`host` or `host:port`) the plugin may be imported from: needed, and only honoured,
   * for a remote plugin URL other than a built-in one ({@linkcode isBuiltinPlugin}). Default
   * none.
   */
  allowImport?: string[];
  /** Time allowed for the Worker to start and import the plugin (ms); default 10 000. */
  loadTimeoutMs?: number;
  /**
   * Tests only: hand the plugin the channel's buffer, as
   * `globalThis[Symbol.for("deno-vmm.sandbox.debug-channel")]` (`DEBUG_CHANNEL_KEY` in
   * `channel.ts`), so that a test plugin can write into it as a plugin that escaped the frozen
   * realm could. Default false.
   */
  debugChannel?: boolean;
}

/**
 * The built-in plugins' directory: `plugins/` beside `mod.ts` (this module is in `src/sched/`),
 * wherever this code came from: a clone (`file:`) or the URL `mod.ts` was run or imported from.
 */
export const BUILTIN_PLUGINS: URL = new URL("../../plugins/", import.meta.url);

/**
 * Whether `url` is a built-in plugin: a module under {@linkcode BUILTIN_PLUGINS} (same scheme,
 * host, port and directory; a URL is normalised when parsed, so `..` cannot climb out). A remote
 * one needs no import grant: it comes from where the code that runs it, with every permission,
 * came from, so loading it trusts nobody new.
 */
export function isBuiltinPlugin(url: URL): boolean {
  return url.href.startsWith(BUILTIN_PLUGINS.href);
}

/** Resolves a plugin path or URL to a URL (paths are relative to the current directory). */
export function resolvePluginUrl(plugin: string | URL): URL {
  if (plugin instanceof URL) return plugin;
  if (/^[a-z][a-z0-9+.-]*:/i.test(plugin) && !/^[a-z]:[\\/]/i.test(plugin)) {
    return new URL(plugin);
  }
  return pathToFileURL(plugin.startsWith("/") ? plugin : `${Deno.cwd()}/${plugin}`);
}

/** The worker's start-up answer. */
type Ready = { ok: true; name: string } | { ok: false; error: string };

/** Lists this process's threads named like Deno Workers (`worker-N`). */
export function workerThreads(): Set<number> {
  const out = new Set<number>();
  try {
    for (const e of Deno.readDirSync("/proc/self/task")) {
      const comm = Deno.readTextFileSync(`/proc/self/task/${e.name}/comm`).trim();
      if (/^worker-\d+$/.test(comm)) out.add(Number(e.name));
    }
  } catch {
    // No /proc or no permission: the thread stays unknown.
  }
  return out;
}

/** What a sandbox Worker may do to import a plugin (see {@linkcode pluginAccess}). */
export interface PluginAccess {
  /** The plugin's URL. */
  url: URL;
  /** Files the Worker may read: the plugin's own file, and `allowRead`. */
  read: string[];
  /** Hosts the Worker may import from, or `false` for none. */
  imports: string[] | false;
}

/**
 * The permissions a sandbox Worker needs to import `plugin` and nothing more: read access to
 * its file (a local plugin must exist), or import access to its host (a remote plugin needs an
 * explicit grant unless it is built in). Throws a {@linkcode PluginLoadError} naming the plugin
 * otherwise.
 */
export function pluginAccess(
  options: Pick<SandboxOptions, "plugin" | "allowRead" | "allowImport">,
): PluginAccess {
  const spec = String(options.plugin);
  let url: URL;
  try {
    url = resolvePluginUrl(options.plugin);
  } catch (e) {
    throw new PluginLoadError(spec, `not a path or URL (${(e as Error).message})`);
  }
  const read: string[] = [...(options.allowRead ?? [])];
  let imports: string[] | false = false;
  if (url.protocol === "file:") {
    const path = decodeURIComponent(url.pathname);
    try {
      Deno.statSync(path);
    } catch (e) {
      throw new PluginLoadError(spec, `module not found (${(e as Error).message})`);
    }
    read.push(path);
  } else if (url.protocol === "http:" || url.protocol === "https:") {
    const allowed = options.allowImport ?? [];
    const builtin = isBuiltinPlugin(url);
    if (!builtin && !allowed.some((h) => h === url.host || h === url.hostname)) {
      throw new PluginLoadError(
        spec,
        `importing a remote plugin needs an explicit grant for ${url.host} ` +
          `(allowImport: ["${url.host}"], CLI --sched-allow-import ${url.host})`,
      );
    }
    // A built-in plugin may import from its own host only (it needs nothing: its one import
    // of mod.ts is `import type`, which is erased).
    imports = builtin ? [url.host] : allowed;
  } else if (url.protocol !== "data:" && url.protocol !== "blob:") {
    throw new PluginLoadError(spec, `unsupported URL scheme ${url.protocol}`);
  }
  return { url, read, imports };
}

/** A plugin in a sandboxed Worker; see the module documentation. */
export class SandboxPolicy extends BatchPolicy {
  #worker: Worker;
  #budgetMs: number;
  #spinMs: number;
  #tid: number;
  #closed = false;
  #timedOut = false;

  private constructor(
    worker: Worker,
    ch: ChannelViews,
    name: string,
    url: string,
    options: SandboxOptions,
    tid: number,
  ) {
    super(ch, name, url, options.params ?? {});
    this.#worker = worker;
    this.#budgetMs = (options.budgetNs ?? DEFAULT_BUDGET_NS) / 1e6;
    this.#spinMs = (options.spinNs ?? 0) / 1e6;
    this.#tid = tid;
  }

  /**
   * Starts the Worker, imports the plugin in it and checks its shape (and runs `init` if
   * `slots` is given). Rejects with a {@linkcode PluginLoadError} naming the plugin when the
   * module cannot be imported, is not a plugin, or its `init` fails.
   */
  static async create(options: SandboxOptions): Promise<SandboxPolicy> {
    const spec = String(options.plugin);
    const { url, read, imports } = pluginAccess(options);
    const before = workerThreads();
    const worker = new Worker(WORKER_URL, {
      type: "module",
      name: `sched-plugin ${pluginDisplayName(null, url.href)}`,
      deno: {
        permissions: {
          read: read.length > 0 ? read : false,
          write: false,
          net: false,
          env: false,
          sys: false,
          run: false,
          ffi: false,
          import: imports,
        },
      },
    });
    const ch = createChannel();
    const loadMs = options.loadTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ready = await new Promise<Ready>((resolve) => {
      worker.onmessage = (e: MessageEvent<Ready>) => resolve(e.data);
      worker.onerror = (e) => {
        e.preventDefault();
        resolve({ ok: false, error: e.message });
      };
      timer = setTimeout(
        () => resolve({ ok: false, error: `not loaded within ${loadMs} ms` }),
        loadMs,
      );
      worker.postMessage({ sab: ch.sab, spec: url.href, debugChannel: options.debugChannel });
    });
    clearTimeout(timer);
    worker.onmessage = null;
    worker.onerror = (e) => e.preventDefault();
    if (!ready.ok) {
      worker.terminate();
      throw new PluginLoadError(spec, ready.error);
    }
    const fresh = [...workerThreads()].filter((t) => !before.has(t));
    const name = ready.name || pluginDisplayName(null, url.href);
    const port = new SandboxPolicy(
      worker,
      ch,
      name,
      url.href,
      options,
      fresh.length === 1 ? fresh[0] : -1,
    );
    port.sent.spinNs = Math.round(port.#spinMs * 1e6) | 0;
    Atomics.store(ch.hdr, H_SPIN_NS, port.sent.spinNs);
    initOrFail(port, options, spec);
    return port;
  }

  /** The OS thread id of the Worker, or -1 if it could not be told apart. */
  get threadId(): number {
    return this.#tid;
  }

  /**
   * Publishes the request (header words, then the sequence number, then a notify) and waits
   * for the reply: spin `spinNs`, then `Atomics.wait`, within the budget
   * ({@linkcode waitWithinBudget}; the Worker's CPU time is its thread's
   * `/proc/self/task/<tid>/schedstat`). An overrun terminates the Worker.
   */
  protected exchange(hook: string): void {
    const { hdr } = this.ch;
    const sent = this.sent;
    const seq = sent.seq;
    this.reader.checkIdle(prevSeq(seq), hook);
    Atomics.store(hdr, H_NOPS, sent.nops);
    Atomics.store(hdr, H_REQ_BYTES, sent.bytes);
    Atomics.store(hdr, H_REQ, seq);
    Atomics.notify(hdr, H_REQ);
    if (this.reader.answered(sent, hook)) return;
    const t0 = performance.now();
    const spinUntil = t0 + this.#spinMs;
    while (Atomics.load(hdr, H_REP) !== seq && performance.now() < spinUntil) {
      // spin
    }
    const tid = this.#tid;
    const overrun = waitWithinBudget({
      budgetMs: this.#budgetMs,
      answered: () => this.reader.answered(sent, hook),
      sleep: (ms) => Atomics.wait(hdr, H_REP, prevSeq(seq), ms),
      cpuNs: () => tid > 0 ? threadRunNs(tid) : NaN,
    }, t0);
    if (overrun === null) return;
    this.kill(`no answer within ${overrun.waitedMs.toFixed(1)} ms`);
    throw timeoutFault(hook, this.#budgetMs, overrun, "its Worker was terminated");
  }

  /** Terminates the Worker and demotes its thread to SCHED_IDLE (see the module docs). */
  protected kill(why: string): void {
    this.dead = why;
    this.#timedOut = true;
    try {
      this.#worker.terminate();
    } catch {
      // already gone
    }
    if (this.#tid > 0) demoteThread(this.#tid);
  }

  /** Asks the Worker to leave its loop, then terminates it. Idempotent. */
  close(): void {
    if (!this.#closed && !this.#timedOut) {
      this.#closed = true;
      this.dead ??= "closed";
      // It may have been raised to real-time and pinned beside the core (affinity.ts): it
      // leaves its loop and ends fair-class and unpinned. (A runaway was demoted instead.)
      if (this.#tid > 0) releaseQuietly(this.#tid);
      const { hdr, ops } = this.ch;
      ops[0] = OP_QUIT;
      Atomics.store(hdr, H_NOPS, 1);
      this.sent.seq = nextSeq(this.sent.seq);
      Atomics.store(hdr, H_REQ, this.sent.seq);
      Atomics.notify(hdr, H_REQ);
    }
    try {
      this.#worker.terminate();
    } catch {
      // already gone
    }
  }
}

/**
 * Runs `init` during `create` when `options.slots` is given, so that a plugin whose `init`
 * fails is a load error; closes the port then.
 */
export function initOrFail(
  port: BatchPolicy,
  options: Pick<SandboxOptions, "slots" | "maxSliceNs" | "ratelimitNs">,
  spec: string,
): void {
  if (options.slots === undefined) return;
  try {
    port.init({
      slots: options.slots,
      maxSliceNs: options.maxSliceNs ?? 100_000_000,
      ratelimitNs: options.ratelimitNs ?? 1_000_000,
    });
  } catch (e) {
    port.close();
    throw new PluginLoadError(spec, (e as Error).message);
  }
}

/** {@linkcode releaseThread}, where FFI is permitted (the simulator may run without it). */
function releaseQuietly(tid: number): void {
  try {
    releaseThread(tid);
  } catch {
    // no FFI here: the thread was never raised either
  }
}

/**
 * Moves a runaway thread to SCHED_IDLE, at once: it ran real-time (`affinity.ts`), where it
 * would hold its CPU against every fair-class thread. Best effort: through libc (needs `ffi`
 * permission), else `chrt` (needs `run`).
 */
export function demoteThread(tid: number): void {
  try {
    if (setThreadIdle(tid)) return;
  } catch {
    // no FFI here: try chrt
  }
  try {
    if (Deno.permissions.querySync({ name: "run", command: "chrt" }).state !== "granted") return;
    const child = new Deno.Command("chrt", {
      args: ["--idle", "-p", "0", String(tid)],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    child.status.catch(() => {});
  } catch {
    // chrt missing: nothing else we can do from here.
  }
}
