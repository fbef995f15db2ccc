/**
 * {@linkcode simulateSandboxed}: a whole simulation run inside one sandbox Worker (engine, core
 * logic and plugin together, `sim_worker.ts`), so that a plugin given by path or URL, as a
 * user's always is, runs at in-process speed and still with no permission but reading itself.
 * Only the result crosses back.
 *
 * The budget is kept from outside: the Worker marks each plugin call in shared words
 * (`watched_policy.ts`), and a call that stays in the plugin past the budget while its thread
 * computes (or past {@linkcode STUCK_LIMIT_MS} in any case) ends the Worker. The simulation is
 * then run again with the per-call sandbox, which times every call itself and ejects the plugin
 * exactly where the runaway call happens, as it would have from the start: a runaway costs
 * speed, never a different result. (A Worker stuck in a JavaScript loop cannot be stopped in
 * Deno; its thread is moved to SCHED_IDLE, as the per-call sandbox does.)
 *
 * @module
 */
import { PluginLoadError } from "../sched/load.ts";
import { threadRunNs } from "../sched/host_threads.ts";
import { demoteThread, pluginAccess, workerThreads } from "../sched/sandbox.ts";
import type { SimResult } from "./types.ts";
import type { SimStart, SimWorkerReply, WireSimOptions } from "./sim_protocol.ts";
import type { ResolvedSimOptions } from "./run.ts";
import { WATCH } from "./watched_policy.ts";

const WORKER_URL = new URL("./sim_worker.ts", import.meta.url);

/** A call stuck this long ends the Worker even if its thread was not seen computing (ms). */
const STUCK_LIMIT_MS = 2000;
/** Time allowed for the Worker to start and import the plugins (ms). */
const LOAD_TIMEOUT_MS = 10_000;

/** Options of {@linkcode simulateSandboxed} beyond the simulation's own. */
export interface SandboxedRunOptions {
  /** Wall-clock budget of one plugin call (ns). */
  budgetNs: number;
  /** Runs the same simulation with the per-call sandbox (after a runaway call). */
  perCall: () => Promise<SimResult>;
}

/**
 * Runs `o` (defaults applied) inside a permission-less Worker and returns its result. Rejects
 * with a {@linkcode PluginLoadError} naming the plugin as it was given when one cannot be
 * loaded.
 */
export async function simulateSandboxed(
  o: ResolvedSimOptions,
  run: SandboxedRunOptions,
): Promise<SimResult> {
  // What the Worker may read and import: each plugin's own file or host, and nothing else.
  const given = new Map<string, string>();
  const read = new Set<string>();
  let imports: Set<string> | null = null;
  const wire = (plugin: string | URL): string => {
    const a = pluginAccess({ plugin, allowRead: o.allowRead, allowImport: o.allowImport });
    given.set(a.url.href, String(plugin));
    for (const r of a.read) read.add(r);
    if (a.imports !== false) imports = new Set([...(imports ?? []), ...a.imports]);
    return a.url.href;
  };
  const { onPolicyEvent, plugin, script, ...rest } = o;
  const options: WireSimOptions = {
    ...rest,
    plugin: wire(plugin as string | URL),
    script: script?.map((s) =>
      s.action === "swap" ? { ...s, plugin: wire(s.plugin as string | URL) } : s
    ),
  };
  const before = workerThreads();
  const worker = new Worker(WORKER_URL, {
    type: "module",
    name: `sched-sim ${options.plugin}`,
    deno: {
      permissions: {
        read: read.size > 0 ? [...read] : false,
        write: false,
        net: false,
        env: false,
        sys: false,
        run: false,
        ffi: false,
        import: imports === null ? false : [...imports],
      },
    },
  });
  const watch = new Int32Array(new SharedArrayBuffer(4 * WATCH.length));
  const budgetMs = run.budgetNs / 1e6;
  let tid = -1;
  let poll: ReturnType<typeof setInterval> | undefined;
  let loadTimer: ReturnType<typeof setTimeout> | undefined;
  type Outcome = SimWorkerReply | { type: "runaway" } | { type: "crash"; message: string };
  const outcome = await new Promise<Outcome>((resolve) => {
    worker.onmessage = (e: MessageEvent<SimWorkerReply | { type: "loaded" }>) => {
      if (e.data.type === "loaded") clearTimeout(loadTimer);
      else resolve(e.data);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      resolve({ type: "crash", message: e.message });
    };
    loadTimer = setTimeout(
      () =>
        resolve({
          type: "load-error",
          plugin: options.plugin,
          message: `not loaded within ${LOAD_TIMEOUT_MS} ms`,
        }),
      LOAD_TIMEOUT_MS,
    );
    // The watch: the same call still in the plugin at successive looks.
    let seen = -1, since = 0, cpu0 = 0;
    poll = setInterval(() => {
      if (tid < 0) {
        const fresh = [...workerThreads()].filter((t) => !before.has(t));
        if (fresh.length === 1) tid = fresh[0];
      }
      const calls = Atomics.load(watch, WATCH.calls);
      const now = performance.now();
      if (Atomics.load(watch, WATCH.inCall) === 0 || calls !== seen) {
        seen = calls;
        since = now;
        cpu0 = tid > 0 ? threadRunNs(tid) : NaN;
        return;
      }
      const stuck = now - since;
      const computed = (threadRunNs(tid) - cpu0) / 1e6; // NaN when the thread is unknown
      if ((stuck >= budgetMs && !(computed < budgetMs / 2)) || stuck >= STUCK_LIMIT_MS) {
        resolve({ type: "runaway" });
      }
    }, Math.max(5, Math.min(50, budgetMs / 4)));
    const start: SimStart = {
      options,
      watch: watch.buffer as SharedArrayBuffer,
      collectEvents: onPolicyEvent !== undefined,
    };
    worker.postMessage(start);
  });
  clearInterval(poll);
  clearTimeout(loadTimer);
  worker.onmessage = null;
  worker.onerror = (e) => e.preventDefault();
  worker.terminate();
  switch (outcome.type) {
    case "result":
      if (onPolicyEvent) { for (const [ev, at] of outcome.events) onPolicyEvent(ev, at); }
      return { ...outcome.result, sandbox: "whole" };
    case "runaway":
      if (tid > 0) demoteThread(tid);
      return await run.perCall();
    case "load-error":
      throw new PluginLoadError(given.get(outcome.plugin) ?? outcome.plugin, outcome.message);
    case "error":
    case "crash":
      throw new Error(`simulate: ${outcome.message}`);
  }
}
