/// <reference lib="deno.worker" />
/**
 * Worker entry of a simulation run whole inside the sandbox (`sandboxed.ts`): the engine, the
 * core's logic and the plugin share this permission-less thread, so a plugin call is a plain
 * function call, and only the result crosses back. The Worker has the plugin sandbox's
 * permissions (read its own file, import from its own host if remote), so a plugin can do here
 * exactly what it can in the per-call sandbox: compute.
 *
 * The realm is frozen first (SES `lockdown()`, `src/sched/realm.ts`), as in the per-call sandbox.
 * As in `src/sched/sandbox_worker.ts`, the run yields to the event loop every few milliseconds
 * (`Engine.runYielding`), so that a promise the plugin started and that failed is seen and
 * ejects it at its next call, and a call that never returns is seen by the parent through the
 * watch words ({@linkcode WATCH}).
 *
 * @module
 */
import type { PolicyEvent, SchedParams, SchedulerPlugin } from "../sched/contract.ts";
import { errorText, pluginFromModule, PluginLoadError } from "../sched/load.ts";
import { LocalPolicy, type PortInit } from "../sched/policy_port.ts";
import { macrotask } from "../sched/intrinsics.ts";
import { freezeRealm, lockGlobals } from "../sched/realm.ts";
import { runSimulation } from "./run.ts";
import type { SimStart, SimWorkerReply } from "./sim_protocol.ts";
import { WatchedPolicy } from "./watched_policy.ts";

// The realm is frozen before any plugin exists, as in the per-call sandbox (`realm.ts`): the
// engine shares this realm with the plugin, so a plugin must not be able to change the built-ins
// the engine's bookkeeping relies on (and through them the result it reports). A failure is
// answered to the start message.
let realmError: string | null = null;
try {
  freezeRealm();
  lockGlobals();
} catch (err) {
  realmError = `cannot freeze the sandbox's realm: ${errorText(err)}`;
}

/** How often the run yields to the event loop (ms of wall time), as the per-call sandbox. */
const TURN_MS = 10;

let asyncFault: string | null = null;
self.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  asyncFault ??= `a promise the plugin started was rejected: ${errorText(e.reason)}`;
});
self.addEventListener("error", (e) => {
  e.preventDefault();
  asyncFault ??= `uncaught error in the plugin: ${errorText(e.error ?? e.message)}`;
});
const faults = {
  get pending(): boolean {
    return asyncFault !== null;
  },
  take(): string | null {
    const f = asyncFault;
    asyncFault = null;
    return f;
  },
};

let instances = 0;

/** Imports a plugin afresh (a new module instance per load) and wraps it for the watch. */
async function load(
  spec: string | URL | SchedulerPlugin,
  params: SchedParams,
  watch: Int32Array,
  init: PortInit,
): Promise<WatchedPolicy> {
  const url = new URL(String(spec));
  // A fresh instance for each load, so that two plugins swapped in share no module state.
  if (url.protocol === "file:") url.searchParams.set("sim-instance", String(++instances));
  let mod: unknown;
  try {
    // A computed specifier: a string literal would be preloaded with the parent's permissions.
    mod = await import(url.href);
  } catch (e) {
    throw new PluginLoadError(String(spec), errorText(e));
  }
  const p = pluginFromModule(mod);
  if (typeof p === "string") throw new PluginLoadError(String(spec), p);
  const port = new WatchedPolicy(new LocalPolicy(p, { params, name: String(spec) }), watch, faults);
  try {
    port.init(init);
  } catch (e) {
    throw new PluginLoadError(String(spec), (e as Error).message);
  }
  return port;
}

const post = (m: SimWorkerReply) => self.postMessage(m);

self.onmessage = async (e: MessageEvent<SimStart>) => {
  self.onmessage = null;
  const { options, watch: sab, collectEvents } = e.data;
  if (realmError !== null) {
    post({ type: "load-error", plugin: options.plugin, message: realmError });
    self.close();
    return;
  }
  const watch = new Int32Array(sab);
  const events: [PolicyEvent, number][] = [];
  const plugins = 1 + (options.script ?? []).filter((s) => s.action === "swap").length;
  let loaded = 0;
  try {
    const result = await runSimulation(
      collectEvents ? { ...options, onPolicyEvent: (ev, at) => events.push([ev, at]) } : options,
      {
        load: async (spec, params) => {
          const port = await load(spec, params, watch, {
            slots: options.slots,
            maxSliceNs: options.maxSliceNs,
            ratelimitNs: options.ratelimitNs,
          });
          if (++loaded === plugins) self.postMessage({ type: "loaded" });
          return port;
        },
        drive: (engine) => engine.runYielding(macrotask, TURN_MS),
      },
    );
    post({ type: "result", result, events });
  } catch (err) {
    if (err instanceof PluginLoadError) {
      const detail = err.message.slice(`cannot load scheduler plugin ${err.plugin}: `.length);
      post({ type: "load-error", plugin: err.plugin, message: detail });
    } else post({ type: "error", message: errorText(err) });
  }
  self.close();
};
