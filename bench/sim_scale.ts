/**
 * The simulator at scale: 1,024 VMs x 4 vCPUs (4,096) on 64 slots under each built-in policy,
 * for `--seconds` of virtual time (default 60): wall time, events/s and how much faster than
 * real time, for two workload mixes (every vCPU spinning; and a mix of echo servers, periodic
 * tasks and spinners). Then the cost of one decision (`pickNext`, in-process, timed around
 * each call, after a warm-up run) at 16, 256 and 4,096 vCPUs, p50 and p99. Writes `bench/results/sim_scale.json`.
 *
 * Run: `deno run -A --unstable-worker-options bench/sim_scale.ts [--seconds N]
 * [--decision-seconds N] [--policy NAME]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { SchedulerPlugin } from "../mod.ts";
import { simulate } from "../src/sim/mod.ts";
import type { SimVmSpec } from "../src/sim/types.ts";

const POLICIES = ["rr", "credit", "credit2", "rtds", "gang"] as const;

/** `vms` VMs of 4 vCPUs: all spinning, or a mix (a quarter echo, a quarter periodic, spinners). */
export function scaleVms(vms: number, mix: "spin" | "mix"): SimVmSpec[] {
  return Array.from({ length: vms }, (_, i) => ({
    name: `v${i}`,
    vcpus: 4,
    workload: mix === "spin" || i % 4 >= 2
      ? { kind: "spin" as const }
      : i % 4 === 0
      ? { kind: "echo" as const, mode: "open" as const, ratePerSec: 50, serviceUs: 200 }
      : { kind: "periodic" as const, periodMs: 100, computeMs: 0.5 },
  }));
}

/** A fresh instance of built-in plugin `name` (its own module state). */
async function freshPlugin(name: string, n: number): Promise<SchedulerPlugin> {
  const url = new URL(`../plugins/${name}.ts`, import.meta.url);
  url.searchParams.set("scale", String(n));
  return (await import(url.href)).default as SchedulerPlugin;
}

/**
 * `plugin` with its `pickNext` timed: every call's duration (ms) goes to `out`. The other
 * hooks are the plugin's own.
 */
function timed(plugin: SchedulerPlugin, out: number[]): SchedulerPlugin {
  const pick = plugin.pickNext;
  return new Proxy(plugin, {
    get(target, key) {
      if (key !== "pickNext") {
        const v = Reflect.get(target, key, target);
        return typeof v === "function" ? v.bind(target) : v;
      }
      return (slot: number, now: number) => {
        const t0 = performance.now();
        const d = pick.call(target, slot, now);
        out.push(performance.now() - t0);
        return d;
      };
    },
  });
}

const quantile = (xs: number[], q: number) =>
  xs[Math.min(xs.length - 1, Math.floor(q * xs.length))];

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string" },
      "decision-seconds": { type: "string" },
      policy: { type: "string", multiple: true },
    },
  });
  const seconds = Number(values.seconds ?? 60);
  const decisionSeconds = Number(values["decision-seconds"] ?? 2);
  const policies = values.policy ?? [...POLICIES];
  const scale: Record<string, unknown>[] = [];
  console.log(`== 1,024 VMs x 4 vCPUs on 64 slots, ${seconds} s of virtual time, sandboxed`);
  for (const mix of ["spin", "mix"] as const) {
    for (const p of policies) {
      const t0 = performance.now();
      const r = await simulate({
        plugin: new URL(`../plugins/${p}.ts`, import.meta.url).href,
        slots: 64,
        seconds,
        vms: scaleVms(1024, mix),
        handoffNs: 36_000,
      });
      const wall = performance.now() - t0;
      const row = {
        mix,
        policy: p,
        events: r.events,
        wallMs: wall,
        eventsPerSec: r.eventsPerSec,
        realTimeFactor: (seconds * 1000) / wall,
        ejections: r.ejections.length,
      };
      scale.push(row);
      console.log(
        `  ${mix.padEnd(4)} ${p.padEnd(8)} ${(wall / 1000).toFixed(1).padStart(6)} s wall, ${
          (r.events / 1e6).toFixed(2)
        } M events, ${(r.eventsPerSec / 1e6).toFixed(2)} M events/s, ${
          row.realTimeFactor.toFixed(1)
        }x real time, ${r.ejections.length} ejections`,
      );
    }
  }
  const decisions: Record<string, unknown>[] = [];
  console.log(
    `== pickNext in-process, mix workload, ${decisionSeconds} s virtual: p50 / p99 (µs)`,
  );
  for (const vcpus of [16, 256, 4096]) {
    const line: string[] = [];
    for (const p of policies) {
      const lat: number[] = [];
      const plugin = timed(await freshPlugin(p, vcpus), lat);
      const run = () =>
        simulate({
          plugin,
          slots: Math.max(1, vcpus / 64),
          seconds: decisionSeconds,
          vms: scaleVms(vcpus / 4, "mix"),
          handoffNs: 36_000,
        });
      // A first run warms the plugin's code up (the same module: `init` resets its state);
      // the second is measured.
      await run();
      lat.length = 0;
      await run();
      lat.sort((a, b) => a - b);
      const p50 = quantile(lat, 0.5) * 1000, p99 = quantile(lat, 0.99) * 1000;
      decisions.push({ vcpus, policy: p, calls: lat.length, p50Us: p50, p99Us: p99 });
      line.push(`${p} ${p50.toFixed(2)}/${p99.toFixed(2)}`);
    }
    console.log(`  ${String(vcpus).padStart(4)} vCPUs: ${line.join(", ")}`);
  }
  await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
  await Deno.writeTextFile(
    new URL("./results/sim_scale.json", import.meta.url),
    JSON.stringify({ date: new Date().toISOString(), seconds, scale, decisions }, null, 2) + "\n",
  );
}
