/**
 * One simulation from options to result, with the plugins loaded by the caller: the shared
 * body of {@linkcode simulate} in this thread and of the sandbox Worker that runs a whole
 * simulation (`sim_worker.ts`).
 *
 * @module
 */
import type { SchedParams, SchedulerPlugin } from "../sched/contract.ts";
import type { PolicyPort } from "../sched/policy_port.ts";
import { TraceRecorder } from "../trace/events.ts";
import { Engine, type EngineStep } from "./engine.ts";
import type { SimOptions, SimResult } from "./types.ts";

/** Loads a plugin (path, URL or object) with its parameters into a port. */
export type PortLoader = (
  plugin: string | URL | SchedulerPlugin,
  params: SchedParams,
) => Promise<PolicyPort>;

/** How {@linkcode runSimulation} gets its plugins and drives its engine. */
export interface RunContext {
  /** Loads the policy and each plugin a script step swaps to. */
  load: PortLoader;
  /** Runs the engine to its end (default: `engine.run()`, synchronously). */
  drive?: (engine: Engine) => SimResult | Promise<SimResult>;
}

/** `SimOptions` with the defaults already applied. */
export type ResolvedSimOptions = SimOptions & {
  seed: number;
  maxSliceNs: number;
  ratelimitNs: number;
};

/** Loads the plugins, builds the engine, runs it and releases every port, even on failure. */
export async function runSimulation(o: ResolvedSimOptions, c: RunContext): Promise<SimResult> {
  const recorder = o.traceRecords ? new TraceRecorder(o.traceRecords) : undefined;
  const ports: PolicyPort[] = [];
  try {
    const port = await c.load(o.plugin, o.params ?? {});
    ports.push(port);
    const script: EngineStep[] = [];
    for (const s of o.script ?? []) {
      const at = Math.round(s.atMs * 1e6);
      if (s.action === "eject") script.push({ at, action: "eject", detail: s.detail ?? "script" });
      else if (s.action === "setParams") {
        script.push({ at, action: "setParams", target: s.target, params: s.params });
      } else if (s.action === "swap") {
        const p = await c.load(s.plugin, s.params ?? {});
        ports.push(p);
        script.push({ at, action: "swap", port: p });
      } else {
        throw new RangeError(`simulate: unknown script action ${(s as { action: string }).action}`);
      }
    }
    const engine = new Engine({
      port,
      slots: o.slots,
      endNs: Math.round(o.seconds * 1e9),
      seed: o.seed,
      vms: o.vms,
      ratelimitNs: o.ratelimitNs,
      maxSliceNs: o.maxSliceNs,
      starvationNs: o.starvationNs,
      handoffNs: o.handoffNs,
      aheadHandoffNs: o.aheadHandoffNs,
      decideAhead: o.decideAhead,
      pokeNs: o.pokeNs,
      windowNs: o.windowNs,
      script,
      onPolicyEvent: o.onPolicyEvent,
      reportDelayNs: o.reportDelayNs,
      wakeDelayNs: o.wakeDelayNs,
      stealShare: o.stealShare,
      trace: recorder,
    });
    const result = await (c.drive ? c.drive(engine) : engine.run());
    if (recorder) {
      result.trace = recorder.collect({
        slots: o.slots,
        policy: result.plugin,
        ratelimitNs: o.ratelimitNs,
        policyParams: o.params ?? {},
      });
    }
    return result;
  } finally {
    for (const p of ports) p.close();
  }
}
