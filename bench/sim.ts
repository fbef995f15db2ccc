/**
 * Simulator throughput: events per wall-clock second with the round-robin policy loaded from its
 * file, three ways: in-process (`sandbox: false`, the baseline), the whole simulation in the
 * sandbox Worker (the default) and the engine here with every batch of calls crossing to the
 * sandbox (`"per-call"`); plus the sandbox's round-trip latency for one `pickNext` call.
 * Run: `deno run -A --unstable-worker-options bench/sim.ts [--seconds N] [--runs N]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { SandboxPolicy } from "../src/sched/sandbox.ts";
import { type SimOptions, simulate } from "../src/sim/mod.ts";

const RR = new URL("../plugins/rr.ts", import.meta.url).href;

/** A busy scenario: 4 slots, 50 µs slices, spinners, an echo server and IPI ping-pong. */
export function busyScenario(seconds: number, sandbox: SimOptions["sandbox"]): SimOptions {
  return {
    plugin: RR,
    params: { slice_ms: 0.05 },
    slots: 4,
    seconds,
    sandbox,
    ratelimitNs: 0,
    vms: [
      { name: "spin", vcpus: 8, workload: { kind: "spin" } },
      {
        name: "echo",
        vcpus: 2,
        workload: { kind: "echo", mode: "open", ratePerSec: 20_000, serviceUs: 20 },
      },
      { name: "ipi", vcpus: 2, workload: { kind: "ipi", workUs: 10 } },
      { name: "lock", vcpus: 4, workload: { kind: "lock", csUs: 5, workUs: 20 } },
    ],
  };
}

/** Round-trip latency of `pickNext` through the sandbox (µs): p50, p99 over `n` calls. */
export async function sandboxRoundTrip(
  n: number,
  spinNs?: number,
): Promise<{ p50: number; p99: number }> {
  const p = await SandboxPolicy.create({ plugin: RR, slots: 1, spinNs });
  for (let i = 0; i < 4; i++) {
    p.addVcpu({ id: i, vm: "a", index: i, vmVcpus: 4, params: {}, state: "runnable" });
  }
  const lat: number[] = [];
  let now = 0;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const d = p.pickNext(0, now)!;
    lat.push(performance.now() - t);
    now += 1000;
    p.onDeschedule(d.vcpu, 0, 1000, "slice", now);
  }
  p.close();
  lat.sort((a, b) => a - b);
  return { p50: lat[Math.floor(n / 2)] * 1000, p99: lat[Math.floor(n * 0.99)] * 1000 };
}

/** The ways a simulation can hold its plugin, and the share of `--seconds` each runs. */
export const SIM_MODES = [
  { label: "in-process (baseline)", sandbox: false, scale: 1 },
  { label: "whole simulation sandboxed", sandbox: true, scale: 1 },
  { label: "per-call sandbox", sandbox: "per-call", scale: 0.1 },
] as const;

/**
 * Median events/s of `runs` runs of {@linkcode busyScenario} for each of
 * {@linkcode SIM_MODES}, interleaved (mode after mode, run after run) so that a noisy stretch
 * of the machine falls on all of them; and the wall time of the whole call, Worker start-up
 * included, for the median run.
 */
export async function simModes(
  seconds: number,
  runs: number,
): Promise<{ label: string; eventsPerSec: number; wallMs: number; events: number }[]> {
  const rates: number[][] = SIM_MODES.map(() => []);
  const walls: number[][] = SIM_MODES.map(() => []);
  const events: number[] = SIM_MODES.map(() => 0);
  for (let r = 0; r < runs; r++) {
    for (const [i, m] of SIM_MODES.entries()) {
      const t0 = performance.now();
      const res = await simulate(busyScenario(seconds * m.scale, m.sandbox));
      walls[i].push(performance.now() - t0);
      rates[i].push(res.eventsPerSec);
      events[i] = res.events;
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return SIM_MODES.map((m, i) => ({
    label: m.label,
    eventsPerSec: median(rates[i]),
    wallMs: median(walls[i]),
    events: events[i],
  }));
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { seconds: { type: "string" }, runs: { type: "string" } },
  });
  const seconds = Number(values.seconds ?? 10);
  const modes = await simModes(seconds, Number(values.runs ?? 3));
  const base = modes[0].eventsPerSec;
  for (const m of modes) {
    console.log(
      `sim rr ${m.label.padEnd(27)}: ${(m.eventsPerSec / 1e6).toFixed(2)} M events/s, ${
        (m.eventsPerSec / base).toFixed(2)
      }x in-process (${m.events} events, ${m.wallMs.toFixed(0)} ms with start-up)`,
    );
  }
  const hot = await sandboxRoundTrip(100_000);
  console.log(
    `sandbox pickNext round trip, back to back: p50 ${hot.p50.toFixed(1)} µs, p99 ${
      hot.p99.toFixed(1)
    } µs`,
  );
  const cold = await sandboxRoundTrip(20_000, 0);
  console.log(
    `sandbox pickNext round trip, no spinning:  p50 ${cold.p50.toFixed(1)} µs, p99 ${
      cold.p99.toFixed(1)
    } µs`,
  );
}
