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
 * nobody else wants: it ran real-time until then.
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
  OP_ADD,
  OP_DESCHED,
  OP_EXTEND,
  OP_HALT,
  OP_INIT,
  OP_PARAMS,
  OP_PICK,
  OP_QUIT,
  OP_REMOVE,
  OP_STRIDE,
  OP_SYNC,
  OP_TICK,
  OP_WAKE,
  OPS_CAP,
  writeJson,
} from "./channel.ts";
import type {
  DescheduleReason,
  PickDecision,
  PolicyEvent,
  SchedParams,
  SlotId,
  VcpuId,
  VcpuInfo,
} from "./contract.ts";
import { pluginDisplayName, PluginLoadError } from "./load.ts";
import type { PolicyPort, PortInit } from "./policy_port.ts";
import { nextSeq, prevSeq, ReplyReader, type SentRequest } from "./reply_reader.ts";
import { DEFAULT_BUDGET_NS, PolicyFault } from "./watchdog.ts";

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

const REASON_CODE: Record<DescheduleReason, number> = { slice: 0, preempt: 1, yield: 2 };

/**
 * A starved (not computing) plugin may take this many budgets, and at least
 * {@linkcode STARVED_LIMIT_MS}, before it times out.
 */
const HARD_LIMIT = 10;
/**
 * The least wall time a plugin that is not computing gets (ms). Its thread can be held off the
 * CPU through no fault of its own: while 256 EMT Workers started (64 VMs x 4 vCPUs on 2 slots)
 * it waited in the kernel behind their mmap/munmap calls, and once in five runs a sound credit
 * answered a tick after more than 200 ms, ten 20 ms budgets. A plugin that blocks itself (say,
 * in `Atomics.wait`) is still ejected, after this long.
 */
const STARVED_LIMIT_MS = 2000;

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
export class SandboxPolicy implements PolicyPort {
  /** The plugin's name (its `name`, else its file name). */
  readonly name: string;
  /** The plugin's URL. */
  readonly url: string;
  #worker: Worker;
  #ch: ChannelViews;
  #params: SchedParams;
  #budgetMs: number;
  #spinMs: number;
  #tid: number;
  #reader: ReplyReader;
  /** What the core wrote for the last request (`seq` is its int32 sequence number). */
  #sent: SentRequest = { seq: 0, nops: 0, bytes: 0, spinNs: 0 };
  #nops = 0;
  #bytes = 0;
  #tickNs = 0;
  #canExtend = false;
  #initKey = "";
  #dead: string | null = null;
  #closed = false;
  #timedOut = false;
  #lastHook = "";
  #roundTrips = 0;

  private constructor(
    worker: Worker,
    ch: ChannelViews,
    name: string,
    url: string,
    options: SandboxOptions,
    tid: number,
  ) {
    this.#worker = worker;
    this.#ch = ch;
    this.name = name;
    this.url = url;
    this.#params = { ...(options.params ?? {}) };
    this.#budgetMs = (options.budgetNs ?? DEFAULT_BUDGET_NS) / 1e6;
    this.#spinMs = (options.spinNs ?? 0) / 1e6;
    this.#tid = tid;
    this.#reader = new ReplyReader(ch);
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
    port.#sent.spinNs = Math.round(port.#spinMs * 1e6) | 0;
    Atomics.store(ch.hdr, H_SPIN_NS, port.#sent.spinNs);
    if (options.slots !== undefined) {
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
    return port;
  }

  /** The tick period after `init` (ns). */
  get tickNs(): number {
    return this.#tickNs;
  }

  /** Round trips so far (batches sent). */
  get roundTrips(): number {
    return this.#roundTrips;
  }

  /** The OS thread id of the Worker, or -1 if it could not be told apart. */
  get threadId(): number {
    return this.#tid;
  }

  // ------------------------------------------------------------------ queueing

  #op(op: number, a = 0, b = 0, c = 0, d = 0, e = 0, f = 0): void {
    if (this.#dead !== null) {
      throw new PolicyFault("crash", op === OP_INIT ? "init" : "", this.#dead);
    }
    if (this.#nops >= OPS_CAP) this.#roundTrip("(queued hooks)");
    const o = this.#nops++ * OP_STRIDE;
    const ops = this.#ch.ops;
    ops[o] = op;
    ops[o + 1] = a;
    ops[o + 2] = b;
    ops[o + 3] = c;
    ops[o + 4] = d;
    ops[o + 5] = e;
    ops[o + 6] = f;
  }

  #json(op: number, value: unknown, hook: string): void {
    let len = writeJson(this.#ch.reqBytes, this.#bytes, value);
    if (len < 0) {
      this.#roundTrip(hook);
      len = writeJson(this.#ch.reqBytes, 0, value);
      if (len < 0) throw new PolicyFault("invalid", hook, `${hook}: argument too large`);
    }
    const off = this.#bytes;
    this.#bytes += len;
    this.#op(op, off, len);
  }

  /**
   * Sends the queued ops and waits for the reply: spin, then `Atomics.wait` up to the budget.
   * Throws a PolicyFault for a plugin fault, a timeout, or a channel that holds what the
   * sandbox could not have written (`reply_reader.ts`: `"corrupted channel"`, thrown when seen).
   */
  #roundTrip(hook: string): void {
    if (this.#dead !== null) throw new PolicyFault("crash", hook, this.#dead);
    const { hdr } = this.#ch;
    const sent = this.#sent;
    this.#lastHook = hook;
    try {
      this.#reader.checkIdle(sent.seq, hook);
      const seq = nextSeq(sent.seq);
      sent.seq = seq;
      sent.nops = this.#nops;
      sent.bytes = this.#bytes;
      Atomics.store(hdr, H_NOPS, sent.nops);
      Atomics.store(hdr, H_REQ_BYTES, sent.bytes);
      this.#nops = 0;
      this.#bytes = 0;
      this.#roundTrips++;
      Atomics.store(hdr, H_REQ, seq);
      Atomics.notify(hdr, H_REQ);
      if (!this.#reader.answered(sent, hook)) this.#await(hook);
      const fault = this.#reader.readStatus(sent, hook);
      if (fault !== null) {
        this.#dead = `ejected after: ${fault.message}`;
        throw new PolicyFault(fault.reason, fault.hook, fault.message);
      }
      this.#reader.checkUnchanged(sent);
    } catch (e) {
      if (e instanceof PolicyFault && e.reason === "corrupted channel") this.#kill(e.message);
      throw e;
    }
  }

  /**
   * Reads an answer with `read` (a {@linkcode ReplyReader} method), then checks again that the
   * reply did not change while it was read; a corrupted one ends the Worker.
   */
  #answer<T>(read: () => T): T {
    try {
      const r = read();
      this.#reader.checkUnchanged(this.#sent);
      return r;
    } catch (e) {
      if (e instanceof PolicyFault) this.#kill(e.message);
      throw e;
    }
  }

  /**
   * Waits for the reply to the request just sent: spin `spinNs`, then sleep, a quarter budget
   * at a time, checking the channel at every wake-up (a corrupted one throws at once). At the
   * budget (wall clock), if the Worker's thread is known, look at its CPU time
   * (`/proc/self/task/<tid>/schedstat`) over the next half budget: a plugin that is computing
   * (a quarter budget of CPU in that time) times out; one that is only starved of CPU by other
   * threads gets more time, up to `HARD_LIMIT` budgets or `STARVED_LIMIT_MS`, whichever is
   * longer. Without the thread's CPU time, the budget is wall-clock.
   */
  #await(hook: string): void {
    const { hdr } = this.#ch;
    const sent = this.#sent;
    const seq = sent.seq;
    const t0 = performance.now();
    const spinUntil = t0 + this.#spinMs;
    while (Atomics.load(hdr, H_REP) !== seq && performance.now() < spinUntil) {
      // spin
    }
    const budget = this.#budgetMs;
    const check = budget / 4;
    let deadline = t0 + budget;
    let cpuAtDeadline = -1;
    for (;;) {
      const t = performance.now();
      if (this.#reader.answered(sent, hook)) return;
      if (t >= deadline) {
        const cpu = this.#tid > 0 ? threadRunNs(this.#tid) : NaN; // NaN: unreadable
        const busy = cpu >= 0 && cpuAtDeadline >= 0 && (cpu - cpuAtDeadline) / 1e6 >= budget / 4;
        if (!(cpu >= 0) || busy || t - t0 >= Math.max(HARD_LIMIT * budget, STARVED_LIMIT_MS)) {
          const waited = (t - t0).toFixed(1);
          this.#kill(`no answer within ${waited} ms`);
          throw new PolicyFault(
            "timeout",
            hook,
            `${hook} did not answer within its budget of ${budget} ms (waited ${waited} ms` +
              `${busy ? ", the plugin computing all along" : ""}; an endless loop?); ` +
              `its Worker was terminated`,
          );
        }
        if (cpuAtDeadline < 0) cpuAtDeadline = cpu;
        deadline = t + budget / 2;
      }
      Atomics.wait(hdr, H_REP, prevSeq(seq), Math.min(deadline - t, check));
    }
  }

  #kill(why: string): void {
    this.#dead = why;
    this.#timedOut = true;
    try {
      this.#worker.terminate();
    } catch {
      // already gone
    }
    if (this.#tid > 0) demoteThread(this.#tid);
  }

  // ------------------------------------------------------------------ PolicyPort

  /** `init(ctx)`; a repeat with the same values is a no-op. */
  init(ctx: PortInit): void {
    const key = `${ctx.slots}/${ctx.maxSliceNs}/${ctx.ratelimitNs}`;
    if (key === this.#initKey) return;
    this.#json(OP_INIT, { ...ctx, params: this.#params }, "init");
    this.#roundTrip("init");
    const { tickNs, canExtend } = this.#answer(() => this.#reader.init());
    this.#tickNs = tickNs;
    this.#canExtend = canExtend;
    this.#initKey = key;
  }

  /** Queues `addVcpu`. */
  addVcpu(info: VcpuInfo): void {
    this.#json(OP_ADD, info, "addVcpu");
  }

  /** Queues `removeVcpu`. */
  removeVcpu(id: VcpuId): void {
    this.#op(OP_REMOVE, id);
  }

  /** Queues `onHalt`. */
  onHalt(vcpu: VcpuId, now: number, ranNs: number, stolenNs = 0): void {
    this.#op(OP_HALT, vcpu, now, ranNs, stolenNs);
  }

  /** Queues `onDeschedule`. */
  onDeschedule(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    reason: DescheduleReason,
    now: number,
    stolenNs = 0,
  ): void {
    this.#op(OP_DESCHED, vcpu, slot, ranNs, REASON_CODE[reason], now, stolenNs);
  }

  /** Queues `setParams`. */
  setParams(target: string, params: SchedParams): void {
    if (target === "*") Object.assign(this.#params, params);
    this.#json(OP_PARAMS, { target, params }, "setParams");
  }

  /** `pickNext`, with the queued hooks before it: one round trip. */
  pickNext(slot: SlotId, now: number): PickDecision | null {
    this.#op(OP_PICK, slot, now);
    this.#roundTrip("pickNext");
    return this.#answer(() => this.#reader.pick());
  }

  /** `onWake`, with the queued hooks before it: one round trip. */
  onWake(vcpu: VcpuId, now: number): SlotId {
    this.#op(OP_WAKE, vcpu, now);
    this.#roundTrip("onWake");
    return this.#answer(() => this.#reader.wake());
  }

  /** Whether the plugin has `extendSlice` (known after `init`). */
  get canExtend(): boolean {
    return this.#canExtend;
  }

  /** `extendSlice`, with the queued hooks before it: one round trip. */
  extendSlice(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    now: number,
    stolenNs = 0,
  ): number | null {
    this.#op(OP_EXTEND, vcpu, slot, ranNs, now, stolenNs);
    this.#roundTrip("extendSlice");
    return this.#answer(() => this.#reader.extend());
  }

  /** `onTick`, with the queued hooks before it: one round trip. */
  onTick(now: number): SlotId[] {
    this.#op(OP_TICK, now);
    this.#roundTrip("onTick");
    return this.#answer(() => this.#reader.tick());
  }

  /** Sends the queued hooks now (one round trip if any are queued). */
  flush(): void {
    if (this.#nops === 0) return;
    this.#op(OP_SYNC);
    this.#roundTrip("(queued hooks)");
  }

  /** Events reported since the last call. */
  takeEvents(): PolicyEvent[] {
    return this.#reader.takeEvents();
  }

  /** Asks the Worker to leave its loop, then terminates it. Idempotent. */
  close(): void {
    if (!this.#closed && !this.#timedOut) {
      this.#closed = true;
      this.#dead ??= "closed";
      // It may have been raised to real-time and pinned beside the core (affinity.ts): it
      // leaves its loop and ends fair-class and unpinned. (A runaway was demoted instead.)
      if (this.#tid > 0) releaseQuietly(this.#tid);
      const { hdr, ops } = this.#ch;
      ops[0] = OP_QUIT;
      Atomics.store(hdr, H_NOPS, 1);
      this.#sent.seq = nextSeq(this.#sent.seq);
      Atomics.store(hdr, H_REQ, this.#sent.seq);
      Atomics.notify(hdr, H_REQ);
    }
    try {
      this.#worker.terminate();
    } catch {
      // already gone
    }
  }

  /** The last hook sent (for diagnostics). */
  get lastHook(): string {
    return this.#lastHook;
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
