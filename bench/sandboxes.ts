/**
 * The two sandboxes side by side (`deno task bench:sandboxes`): a plugin in a Worker of this
 * process and in a child `deno` process (`src/sched/sandbox_process.ts`), each measured against
 * the other in the same run.
 *
 * - decision latency: `pickNext` round trips to rr, interleaved rounds, caller and sandbox on
 *   one CPU as the scheduler core runs them; start-up; the child's resident memory;
 * - slot hand-off on KVM: two spinning VMs on one slot, 1 ms slices, under each sandbox in
 *   turn (`--rounds N` each, default 2), the time per grant outside guest mode and its
 *   give-back-to-grant part;
 * - wake-up latency on KVM: an echo VM beside a spinning one on one slot under credit, 1,000
 *   requests/s for `--seconds`, under each sandbox in turn: the echo's p50 and p99 (each request
 *   wakes the echo vCPU: `onWake`, then `pickNext`, after the sandbox slept).
 *
 * Writes `bench/results/sandboxes.json`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Vmm } from "../mod.ts";
import { KERNEL } from "./exits.ts";
import { benchDecisions, benchHandoff } from "./sched.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { rounds: { type: "string" }, seconds: { type: "string" } },
});
const rounds = Number(values.rounds ?? 2);
const seconds = Number(values.seconds ?? 2);
if (!Number.isInteger(rounds) || rounds < 1 || !(seconds > 0)) {
  console.error("bench:sandboxes: --rounds must be an integer >= 1 and --seconds > 0");
  Deno.exit(2);
}

const us = (ns: number, d = 2) => (ns / 1e3).toFixed(d);

console.log("== decision latency, pickNext to rr, 20,000 calls each, interleaved");
const dec = await benchDecisions();
console.log(
  `  Worker  p50 ${us(dec.sandboxP50Ns)} us, p99 ${us(dec.sandboxP99Ns, 1)} us; start-up ${
    dec.workerLoadMs.toFixed(0)
  } ms`,
);
console.log(
  `  process p50 ${us(dec.processP50Ns)} us, p99 ${us(dec.processP99Ns, 1)} us; start-up ${
    dec.processLoadMs.toFixed(0)
  } ms; child RSS ${dec.processRssMb.toFixed(1)} MB`,
);
console.log(
  `  process / Worker p50: ${dec.processRatio.toFixed(2)}; in-process p50 ${us(dec.localP50Ns)} us`,
);

console.log(
  `== slot hand-off, 2 spinning VMs on 1 slot, 1 ms slices, ${rounds} x ${seconds} s each`,
);
const hand: Record<string, { handoffNs: number; decisionNs: number }[]> = {
  worker: [],
  process: [],
};
for (let r = 0; r < rounds; r++) {
  for (const kind of ["worker", "process"] as const) {
    const h = await benchHandoff(seconds, undefined, kind);
    hand[kind].push({ handoffNs: h.handoffNs, decisionNs: h.decisionNs });
    console.log(
      `  ${kind.padEnd(7)} ${
        us(h.handoffNs, 1)
      } us per grant (${h.grants} grants), give-back to grant ${us(h.decisionNs, 1)} us`,
    );
  }
}
const med = (k: string, f: "handoffNs" | "decisionNs") => median(hand[k].map((x) => x[f]));
console.log(
  `  medians: Worker ${us(med("worker", "handoffNs"), 1)} us (give-back to grant ${
    us(med("worker", "decisionNs"), 1)
  }), process ${us(med("process", "handoffNs"), 1)} us (${
    us(med("process", "decisionNs"), 1)
  }); process / Worker ${(med("process", "handoffNs") / med("worker", "handoffNs")).toFixed(2)}`,
);

console.log(
  `== echo beside a hog, 1 slot, credit, 1,000 requests/s, ${rounds} x ${seconds} s each`,
);
const echo: Record<string, { p50Ns: number; p99Ns: number }[]> = { worker: [], process: [] };
const CREDIT = new URL("../plugins/credit.ts", import.meta.url).href;
for (let r = 0; r < rounds; r++) {
  for (const sandbox of ["worker", "process"] as const) {
    const vmm = await Vmm.create({ scheduler: { plugin: CREDIT, slots: 1, sandbox } });
    try {
      const e = await vmm.createVm({
        name: "echo",
        kernel: KERNEL,
        cmdline: "workload=echo service_us=50",
      });
      const hog = await vmm.createVm({
        name: "hog",
        kernel: KERNEL,
        cmdline: "workload=spin seconds=0",
      });
      await e.start();
      await hog.start();
      for (let i = 0; i < 300 && !e.consoleText().includes("echo: ready"); i++) {
        await new Promise((res) => setTimeout(res, 10));
      }
      const res = await e.echoLoad({ mode: "open", ratePerSec: 1000, seconds });
      echo[sandbox].push({ p50Ns: res.p50Ns, p99Ns: res.p99Ns });
      console.log(
        `  ${sandbox.padEnd(7)} echo p50 ${us(res.p50Ns, 0)} us, p99 ${
          us(res.p99Ns, 0)
        } us (${res.completed}/${res.sent})`,
      );
    } finally {
      await vmm.close();
    }
  }
}
const em = (k: string, f: "p50Ns" | "p99Ns") => median(echo[k].map((x) => x[f]));
console.log(
  `  medians: Worker p50 ${us(em("worker", "p50Ns"), 0)} us, p99 ${
    us(em("worker", "p99Ns"), 0)
  } us; process p50 ${us(em("process", "p50Ns"), 0)} us, p99 ${us(em("process", "p99Ns"), 0)} us`,
);

await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
await Deno.writeTextFile(
  new URL("./results/sandboxes.json", import.meta.url),
  JSON.stringify({ at: new Date().toISOString(), decisions: dec, handoff: hand, echo }, null, 2) +
    "\n",
);
