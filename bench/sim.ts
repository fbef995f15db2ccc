/**
 * Simulator throughput: events per wall-clock second with the round-robin policy in-process
 * (`sandbox: false`) and in the sandbox Worker, plus the sandbox's round-trip latency for one
 * `pickNext` call. Run: `deno run -A --unstable-worker-options bench/sim.ts [--seconds N]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { SandboxPolicy } from "../src/sched/sandbox.ts";
import { type SimOptions, simulate } from "../src/sim/mod.ts";

const RR = new URL("../plugins/rr.ts", import.meta.url).href;

/** A busy scenario: 4 slots, 50 µs slices, spinners, an echo server and IPI ping-pong. */
export function busyScenario(seconds: number, sandbox: boolean): SimOptions {
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

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { seconds: { type: "string" } } });
  const seconds = Number(values.seconds ?? 10);
  for (const sandbox of [false, true]) {
    const r = await simulate(busyScenario(sandbox ? seconds / 10 : seconds, sandbox));
    console.log(
      `sim rr ${sandbox ? "sandboxed" : "local    "}: ${r.events} events in ${
        r.wallMs.toFixed(0)
      } ms = ${(r.eventsPerSec / 1e6).toFixed(2)} M events/s`,
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
