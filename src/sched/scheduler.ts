/**
 * The main thread's handle on the vCPU scheduler: starts the scheduler core in its own Worker
 * (trusted: it wakes and pokes EMTs through the shim), which in turn runs the policy plugin in
 * a sandboxed Worker. VMs join and leave it; eject, hot-swap, parameters and statistics are
 * control messages. The hot path (EMT events, grants) never touches this thread.
 *
 * @module
 */
import type { SchedParams } from "./contract.ts";
import type { EjectInfo } from "./watchdog.ts";
import type { TraceData } from "../trace/events.ts";
import { allocateDoorbell, ringControl } from "./grant_table.ts";
import { allocateDispatchTable } from "./dispatch_table.ts";
import { resolvePluginUrl } from "./sandbox.ts";
import {
  type CoreReply,
  type CoreRequest,
  EXTEND_LEAD_NS,
  type PolicySpec,
  PROCESS_EXTEND_LEAD_NS,
  SANDBOX_KINDS,
  type SchedStats,
} from "./runtime_protocol.ts";

const CORE_WORKER = new URL("./core_worker.ts", import.meta.url);

/** Scheduler options (`Vmm.create({ scheduler })`, the CLI's `--sched` flags). */
export interface SchedulerOptions {
  /** Path or URL of the policy plugin (e.g. `plugins/credit.ts`). */
  plugin: string;
  /** Plugin parameters (`--sched-param k=v`). */
  params?: SchedParams;
  /** Slots (pCPUs handed out). Default: the CPUs available to the process. */
  slots?: number;
  /**
   * Pin the EMT holding slot k to a host CPU (sched_setaffinity), making slots real pCPUs as in
   * Xen: `pin[k]`, or with `true` the default map. Default: pinned when there are no more slots
   * than CPUs; `false` leaves placement to Linux.
   */
  pin?: boolean | number[];
  /** Context-switch rate limit in µs (Xen's `sched_ratelimit_us`, default 1000). */
  ratelimitUs?: number;
  /** Largest slice a plugin may give, ms (default 100). */
  maxSliceMs?: number;
  /**
   * Ask a plugin's `extendSlice` before a slice ends while no vCPU waits, so that a vCPU that
   * keeps its slot never leaves guest mode (default true; false: every slice ends with an exit).
   */
  extendSlices?: boolean;
  /**
   * Let a plugin with `queueNext` choose a slot's next vCPU while the current one runs, so that
   * the leaving EMT hands the slot over itself (default true; false: every hand-off waits for
   * `pickNext`, as for a plugin without the hook).
   */
  decideAhead?: boolean;
  /** Watchdog: budget for one batch of plugin calls, ms (default 20). */
  budgetMs?: number;
  /**
   * Watchdog: longest a runnable vCPU may wait for a slot, ms, exactly as given. Default: a
   * bound that scales with the load (runnable vCPUs per slot x the longest slice), from 1 s on
   * a lightly loaded machine to 60 s (`src/sched/watchdog.ts`).
   */
  starvationMs?: number;
  /** Hosts a remote plugin may import from (scoped grant); default none. */
  allowImport?: string[];
  /**
   * Where the plugin runs (`--sched-sandbox`): `"process"` (default), a child `deno` process
   * with no permission but reading the plugin's file, which SIGKILL ends even in an endless
   * loop (`src/sched/sandbox_process.ts`); or `"worker"`, a Worker of this process with the same
   * permissions, a few µs faster a decision, which cannot be stopped once it loops
   * (docs/scheduler.md compares them).
   */
  sandbox?: "worker" | "process";
  /** Trace ring size in records (32 bytes each; default 262,144; 0 turns tracing off). */
  traceRecords?: number;
  /** Called when the watchdog (or `eject`) removes a plugin. */
  onEject?: (info: EjectInfo, fallback: string) => void;
}

/** The core's context-switch rate limit when none is given, µs (Xen's `sched_ratelimit_us`). */
export const DEFAULT_RATELIMIT_US = 1000;

/** A scheduling option that is wrong, named. */
export class SchedulerError extends Error {
  /**
   * Creates the error.
   * @param message what is wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "SchedulerError";
  }
}

/** What a VM gives the scheduler when it starts. */
export interface SchedVm {
  /** VM name. */
  name: string;
  /** vCPUs. */
  vcpus: number;
  /** Per-VM parameters (weight, cap, period_ms, budget_ms, ...). */
  params: SchedParams;
  /** Its grant table. */
  table: SharedArrayBuffer;
  /** Its EMT blocks (the core wakes and pokes through them). */
  emtBlocks: SharedArrayBuffer;
}

/** The available CPUs of this process (what the default slot count is). */
export function availableCpus(): number {
  return Math.max(1, navigator.hardwareConcurrency || 1);
}

/**
 * Slot k on host CPU (n - 1 - k) mod n: slot 0 shares the CPU of the scheduler's own threads
 * (`affinity.ts`), so with fewer slots than CPUs a hand-off between two vCPUs never leaves that
 * CPU (measured: 31 µs a hand-off against 91 µs unpinned and 118 µs on the other CPU).
 */
export function defaultPinMap(slots: number, cpus = availableCpus()): number[] {
  return Array.from({ length: slots }, (_, k) => (cpus - 1 - (k % cpus) + cpus) % cpus);
}

/** Checks options; throws SchedulerError naming the bad one. */
export function validateSchedulerOptions(o: SchedulerOptions): void {
  const positive = (name: string, v: number | undefined, int = false) => {
    if (v === undefined) return;
    if (!Number.isFinite(v) || v <= 0 || (int && !Number.isInteger(v))) {
      throw new SchedulerError(
        `${name} must be a positive ${int ? "integer" : "number"}, got ${v}`,
      );
    }
  };
  if (typeof o.plugin !== "string" || o.plugin === "") {
    throw new SchedulerError("plugin must be a path or URL of a scheduler module");
  }
  if (o.sandbox !== undefined && !SANDBOX_KINDS.includes(o.sandbox)) {
    throw new SchedulerError(
      `sandbox must be ${SANDBOX_KINDS.join(" or ")}, got ${JSON.stringify(o.sandbox)}`,
    );
  }
  positive("slots", o.slots, true);
  positive("maxSliceMs", o.maxSliceMs);
  positive("budgetMs", o.budgetMs);
  positive("starvationMs", o.starvationMs);
  if (o.ratelimitUs !== undefined && (!Number.isFinite(o.ratelimitUs) || o.ratelimitUs < 0)) {
    throw new SchedulerError(`ratelimitUs must be >= 0, got ${o.ratelimitUs}`);
  }
  const slots = o.slots ?? availableCpus();
  if (Array.isArray(o.pin)) {
    if (o.pin.length !== slots) {
      throw new SchedulerError(`pin lists ${o.pin.length} CPUs for ${slots} slots`);
    }
    for (const c of o.pin) {
      if (!Number.isInteger(c) || c < 0) throw new SchedulerError(`pin: bad CPU ${c}`);
    }
  }
}

/**
 * Resolves a plugin given on the command line or in a config file to a URL string (the
 * sandbox's own resolution; `builtin:` names pass through).
 */
export function resolvePlugin(plugin: string): string {
  return plugin.startsWith("builtin:") ? plugin : resolvePluginUrl(plugin).href;
}

/**
 * The running scheduler: the trusted core and the plugin's sandbox. Reach it through
 * `Vmm.scheduler` when the VMM was created with a `scheduler` option.
 *
 * @example Swap the policy while VMs run, change a weight, read the accounting
 * ```ts
 * import { Vmm } from "@deno-vmm/deno-vmm";
 *
 * const vmm = await Vmm.create({ scheduler: { plugin: "plugins/credit.ts", slots: 2 } });
 * const vm = await vmm.createVm({ name: "a", vcpus: 2, cmdline: "workload=spin seconds=5" });
 * await vm.start();
 * const sched = vmm.scheduler!;
 * await sched.setParams("a", { weight: 512 });
 * await sched.swap("plugins/rr.ts"); // hot swap: no VM stops
 * console.log(await sched.stats()); // per vCPU: run, wait, stolen ns, grants, wake latency
 * await vmm.close();
 * ```
 */
export class Scheduler {
  #worker: Worker;
  #doorbell: SharedArrayBuffer;
  #dispatch: SharedArrayBuffer;
  #pending = new Map<number, (r: Extract<CoreReply, { type: "done" }>) => void>();
  #nextId = 1;
  #options: SchedulerOptions;
  #policy: string;
  #closed = false;
  /** Ejections seen so far. */
  readonly ejections: EjectInfo[] = [];
  /** Slots handed out. */
  readonly slots: number;

  private constructor(worker: Worker, doorbell: SharedArrayBuffer, options: SchedulerOptions) {
    this.#worker = worker;
    this.#doorbell = doorbell;
    this.#dispatch = allocateDispatchTable(options.slots ?? availableCpus());
    this.#options = options;
    this.#policy = options.plugin;
    this.slots = options.slots ?? availableCpus();
  }

  /** Starts the core and loads the plugin; rejects with the loader's error if it cannot. */
  static async start(options: SchedulerOptions, shimPath: string): Promise<Scheduler> {
    validateSchedulerOptions(options);
    const slots = options.slots ?? availableCpus();
    const pin = Array.isArray(options.pin)
      ? options.pin
      : options.pin === true || (options.pin === undefined && slots <= availableCpus())
      ? defaultPinMap(slots)
      : [];
    const doorbell = allocateDoorbell();
    const worker = new Worker(CORE_WORKER, { type: "module", name: "deno-vmm sched core" });
    const s = new Scheduler(worker, doorbell, options);
    const init: CoreRequest = {
      type: "init",
      shimPath,
      doorbell,
      dispatch: s.#dispatch,
      decideAhead: options.decideAhead !== false,
      slots,
      pinCpus: pin,
      ratelimitNs: (options.ratelimitUs ?? DEFAULT_RATELIMIT_US) * 1e3,
      extendLeadNs: options.extendSlices === false
        ? 0
        : options.sandbox === "worker"
        ? EXTEND_LEAD_NS
        : PROCESS_EXTEND_LEAD_NS,
      maxSliceNs: (options.maxSliceMs ?? 100) * 1e6,
      budgetNs: (options.budgetMs ?? 20) * 1e6,
      starvationNs: options.starvationMs !== undefined ? options.starvationMs * 1e6 : undefined,
      policy: s.#spec(options.plugin, options.params ?? {}),
      traceCapacity: options.traceRecords ?? 1 << 18,
    };
    const ready = new Promise<string>((resolve, reject) => {
      worker.onmessage = (ev: MessageEvent<CoreReply>) => {
        const m = ev.data;
        if (m.type === "ready") resolve(m.policy);
        else if (m.type === "init-failed") reject(new SchedulerError(m.message));
        else s.#onReply(m);
      };
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new SchedulerError(`scheduler core failed: ${e.message}`));
      };
    });
    worker.postMessage(init);
    try {
      s.#policy = await ready;
    } catch (e) {
      worker.terminate();
      throw e;
    }
    worker.onmessage = (ev: MessageEvent<CoreReply>) => s.#onReply(ev.data);
    return s;
  }

  #spec(plugin: string, params: SchedParams): PolicySpec {
    return {
      plugin: resolvePlugin(plugin),
      params,
      allowImport: this.#options.allowImport,
      sandbox: this.#options.sandbox,
    };
  }

  #onReply(m: CoreReply): void {
    if (m.type === "done") {
      this.#pending.get(m.id)?.(m);
      this.#pending.delete(m.id);
    } else if (m.type === "ejected") {
      this.ejections.push(m.info);
      this.#policy = m.fallback;
      this.#options.onEject?.(m.info, m.fallback);
    }
  }

  async #request(
    make: (id: number) => CoreRequest,
  ): Promise<Extract<CoreReply, { type: "done" }>> {
    if (this.#closed) throw new SchedulerError("the scheduler is closed");
    const id = this.#nextId++;
    const done = new Promise<Extract<CoreReply, { type: "done" }>>((resolve) =>
      this.#pending.set(id, resolve)
    );
    this.#worker.postMessage(make(id));
    ringControl(this.#doorbell);
    const r = await done;
    if (r.error) throw new SchedulerError(r.error);
    return r;
  }

  /** The hand-off table the EMTs and the core share (`dispatch_table.ts`). */
  get dispatchTable(): SharedArrayBuffer {
    return this.#dispatch;
  }

  /** The doorbell the EMTs ring. */
  get doorbell(): SharedArrayBuffer {
    return this.#doorbell;
  }

  /** Name of the policy in charge (the plugin, or the fallback after an ejection). */
  get policy(): string {
    return this.#policy;
  }

  /** Registers a VM's vCPUs (before its EMTs start). */
  async addVm(vm: SchedVm): Promise<void> {
    await this.#request((id) => ({
      type: "add-vm",
      id,
      vm: vm.name,
      vcpus: vm.vcpus,
      params: vm.params,
      table: vm.table,
      emtBlocks: vm.emtBlocks,
    }));
  }

  /** Removes a VM's vCPUs (after its EMTs stopped). */
  async removeVm(name: string): Promise<void> {
    if (this.#closed) return;
    await this.#request((id) => ({ type: "remove-vm", id, vm: name }));
  }

  /** Ejects the plugin now; the built-in round-robin takes over. */
  async eject(reason = "operator request"): Promise<void> {
    await this.#request((id) => ({ type: "eject", id, reason }));
  }

  /** Replaces the policy at run time; every vCPU and its state is told to the new plugin. */
  async swap(plugin: string, params: SchedParams = {}): Promise<void> {
    const r = await this.#request((id) => ({
      type: "swap",
      id,
      policy: this.#spec(plugin, params),
    }));
    this.#policy = r.policy ?? plugin;
  }

  /** Changes parameters of a VM (`target` = VM name) or of the policy (`"*"`). */
  async setParams(target: string, params: SchedParams): Promise<void> {
    await this.#request((id) => ({ type: "set-params", id, target, params }));
  }

  /** Current statistics. */
  async stats(): Promise<SchedStats> {
    return (await this.#request((id) => ({ type: "stats", id }))).stats!;
  }

  /** The trace so far (oldest first); `clear` starts a new one. */
  async trace(clear = false): Promise<TraceData> {
    return (await this.#request((id) => ({ type: "trace", id, clear }))).trace!;
  }

  /** Stops the core and the plugin. VMs must be stopped first. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#request((id) => ({ type: "close", id }));
    } finally {
      this.#closed = true;
      this.#worker.terminate();
    }
  }
}
