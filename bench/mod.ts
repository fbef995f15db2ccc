/**
 * `deno task bench`: every benchmark, each against a baseline measured in the same run.
 * Prints a table and writes `bench/results/latest.json`.
 */
import { benchExits } from "./exits.ts";
import { benchStartup, memoryPerWorker } from "./startup.ts";
import { benchDecisions, benchEnforcement, benchEnforcementBeside, benchHandoff } from "./sched.ts";
import { simModes } from "./sim.ts";
import { benchTracing, benchTracingIoVsHog } from "./trace.ts";
import { fmt } from "./stats.ts";
import { benchHostGaps } from "./host_noise.ts";

const results: Record<string, unknown> = { date: new Date().toISOString() };

const exitResults = [];
for (const workload of ["portio", "mmio"] as const) {
  console.log(`== exits/s: ${workload} (ring-3 writes), guest-counted, median of 5 x 1 s`);
  const exits = await benchExits(workload, 5, 1);
  exitResults.push(exits);
  for (const [k, v] of Object.entries(exits.rates)) {
    console.log(`  ${k.padEnd(9)} ${fmt(v, 0)} writes/s`);
  }
  console.log(`  deno-vmm / C loop = ${fmt(exits.vsC, 3)}  (goal >= 0.97)`);
  console.log(`  deno-vmm / QEMU   = ${fmt(exits.vsQemu, 3)}  (goal >= 1)`);
}
results.exits = exitResults;

console.log("== VM start to first console line (hello, 1 vCPU), median of 10");
const startup = await benchStartup(10);
results.startup = startup;
console.log(
  `  deno-vmm ${fmt(startup.denoVmmMs, 1)} ms (goal <= 100), C loop ${
    fmt(startup.cLoopMs, 1)
  } ms, ratio ${fmt(startup.ratio, 2)}`,
);

console.log("== memory (PSS) per vCPU worker, 8 vCPUs");
const mem = await memoryPerWorker(8);
results.memory = mem;
console.log(
  `  ${fmt(mem.perVcpuMb, 2)} MB per vCPU, bare Deno Worker ${fmt(mem.bareWorkerMb, 2)} MB, ratio ${
    fmt(mem.perVcpuMb / mem.bareWorkerMb, 2)
  }`,
);

console.log("== scheduler: decision latency, pickNext through the sandbox (rr), 20,000 calls");
const dec = await benchDecisions();
results.decisions = dec;
console.log(
  `  sandbox p50 ${fmt(dec.sandboxP50Ns / 1e3, 2)} us (goal <= 10), p99 ${
    fmt(dec.sandboxP99Ns / 1e3, 1)
  } us; in-process p50 ${fmt(dec.localP50Ns / 1e3, 2)} us`,
);
console.log(
  `  process sandbox (interleaved) p50 ${fmt(dec.processP50Ns / 1e3, 2)} us, p99 ${
    fmt(dec.processP99Ns / 1e3, 1)
  } us, ${fmt(dec.processRatio, 2)}x the Worker's`,
);

console.log("== scheduler: slot hand-off, 2 spinning VMs on 1 slot, 1 ms slices");
const hand = await benchHandoff();
results.handoff = hand;
console.log(
  `  ${
    fmt(hand.handoffNs / 1e3, 1)
  } us per grant (${hand.grants} grants), of which give-back to grant ${
    fmt(hand.decisionNs / 1e3, 1)
  } us; C futex one-way on that CPU ${fmt(hand.futexNs / 1e3, 2)} us (across CPUs ${
    fmt(hand.futexCrossNs / 1e3, 1)
  } us), ratio ${fmt(hand.ratio, 1)} (goal <= 2)`,
);

const enforcement: Record<string, unknown> = {};
console.log(
  "== scheduler: enforcement cost, 1 spinning VM on 1 slot, rr 10 ms slices, beside a free VM on the other CPU, 9 rounds of each kind, 1 s each",
);
const beside = await benchEnforcementBeside(9, 1);
enforcement.beside = beside;
console.log(
  `  cost ${fmt(beside.cost * 100, 2)} % (goal <= 1 %; paired rounds ${
    fmt(beside.costRange[0] * 100, 2)
  } to ${fmt(beside.costRange[1] * 100, 2)} %); scheduler threads' CPU ${
    fmt(beside.schedulerCpu * 100, 2)
  } % of one CPU`,
);
for (const vms of [1, 2] as const) {
  console.log(
    `== scheduler: enforcement cost, ${vms} spinning VM(s) on ${vms} slot(s), rr 10 ms slices, 9 rounds of free / scheduled / unextended run one after another, 1 s each`,
  );
  const enf = await benchEnforcement(9, 1, { vms });
  enforcement[`vms${vms}`] = enf;
  console.log(
    `  cost ${fmt(enf.cost * 100, 2)} % (goal <= 1 %; rounds ${fmt(enf.costRange[0] * 100, 2)} to ${
      fmt(enf.costRange[1] * 100, 2)
    } %); scheduler threads' CPU ${
      fmt(enf.schedulerCpu * 100, 2)
    } % of one CPU; without slice extension ${fmt(enf.unextendedCost * 100, 2)} %`,
  );
}
results.enforcement = enforcement;

console.log("== simulator: events/s, rr from its file, 4 slots, 16 vCPUs, 50 us slices");
const [simLocal, simWhole, simPerCall] = await simModes(5, 3);
results.simulator = {
  localEventsPerSec: simLocal.eventsPerSec,
  sandboxEventsPerSec: simWhole.eventsPerSec,
  perCallEventsPerSec: simPerCall.eventsPerSec,
};
console.log(
  `  in-process ${fmt(simLocal.eventsPerSec / 1e6, 2)} M events/s (goal >= 1); sandboxed ${
    fmt(simWhole.eventsPerSec / 1e6, 2)
  } M events/s = ${
    fmt(simWhole.eventsPerSec / simLocal.eventsPerSec, 2)
  }x in-process (goal >= 0.9 and >= 1 M); per-call sandbox ${
    fmt(simPerCall.eventsPerSec / 1e6, 3)
  } M events/s`,
);

console.log("== tracing cost: ipi (2 vCPUs) beside spin on 1 slot, credit, trace on vs off");
const tr = await benchTracing();
results.tracing = tr;
console.log(
  `  ipi round trips/s traced ${fmt(tr.tracedIpiRate, 0)}, untraced ${
    fmt(tr.untracedIpiRate, 0)
  }, ratio ${fmt(tr.ratio, 3)}, cost ${fmt(tr.cost * 100, 2)} % (goal <= 2 %); recording ${
    fmt(tr.recordNs, 1)
  } ns/record x ${fmt(tr.recordsPerSecond, 0)}/s = ${fmt(tr.recordCpuShare * 100, 3)} % of a CPU`,
);

console.log("== tracing cost on io-vs-hog (credit, 1 slot): trace on vs off, 3 interleaved pairs");
const trIo = await benchTracingIoVsHog();
results.tracingIoVsHog = trIo;
console.log(
  `  hog progress traced/untraced ${fmt(trIo.hogRatio, 3)}, cost ${
    fmt(trIo.cost * 100, 2)
  } % (goal <= 2 %); echo p50 traced/untraced ${fmt(trIo.echoP50Ratio, 3)}`,
);

console.log(
  "== host noise: a pinned real-time probe per CPU reading the clock, no VMM running, 10 s",
);
const gaps = await benchHostGaps(10);
results.hostGaps = gaps;
for (const g of gaps) {
  console.log(
    `  cpu ${g.cpu}${
      g.realtime ? "" : " (not real-time)"
    }: gone > 1 ms ${g.over1ms} times, > 3 ms ${g.over3ms} in ${
      fmt(g.spunMs / 1000, 1)
    } s; longest ${fmt(g.maxUs / 1000, 2)} ms, ${fmt(g.lostUs / 1000, 1)} ms lost (gaps > 0.5 ms)`,
  );
}

await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
await Deno.writeTextFile(
  new URL("./results/latest.json", import.meta.url),
  JSON.stringify(results, null, 2) + "\n",
);
