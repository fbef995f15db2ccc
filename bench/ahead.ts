/**
 * Deciding ahead (`queueNext`), measured against its baselines in the same run
 * (`deno task bench:ahead`; writes `bench/results/ahead.json`):
 *
 * - hand-off outside guest mode (2 spinning VMs on 1 slot, rr 1 ms slices) with the next vCPU
 *   decided ahead and without, against the floor: a lone EMT's deadline exit and re-entry with
 *   no scheduler, on the same CPU and image; rounds interleaved;
 * - guest progress lost per hand-off, from two slice lengths (1 and 4 ms) in the same run:
 *   with rates `r1`, `r4` (iterations/s) and hand-offs/s `h1`, `h4`, a hand-off that costs `L` of
 *   progress gives `r = r0 (1 - h L)`, so `L = (r4 - r1) / (h1 r4 - h4 r1)`;
 * - guest progress beside `host` (Linux schedules the same threads on the same CPUs), back to
 *   back: weights under credit2 and credit (total spin progress), io-vs-hog under credit (the
 *   hog's progress, the echo p99), each policy with and without deciding ahead.
 *
 * Options: `--rounds N` (default 3), `--seconds S` per measurement (default 2), `--scenario-seconds
 * S` (default 3), `--skip-handoff` (the first two parts), `--skip-scenarios`.
 */
import { parseArgs } from "node:util";
import { type Vm, Vmm } from "../mod.ts";
import { benchHandoff, benchHandoffFloor } from "./sched.ts";
import { KERNEL } from "./exits.ts";
import { median } from "./stats.ts";
import { loadScenario } from "../src/scenario/scenario.ts";
import { runScenarioKvm } from "../src/scenario/run_kvm.ts";
import type { ScenarioResult } from "../src/scenario/result.ts";

const ROOT = new URL("../", import.meta.url);
const RR = new URL("plugins/rr.ts", ROOT).href;
const SPIN = "workload=spin seconds=0";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (x: number, d = 1) => Number.isFinite(x) ? x.toFixed(d) : "-";

const args = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "2" },
    "scenario-seconds": { type: "string", default: "3" },
    "skip-scenarios": { type: "boolean", default: false },
    "skip-handoff": { type: "boolean", default: false },
  },
});
const rounds = Number(args.values.rounds);
const seconds = Number(args.values.seconds);
const scenarioSeconds = Number(args.values["scenario-seconds"]);
for (
  const [k, v] of [["rounds", rounds], ["seconds", seconds], [
    "scenario-seconds",
    scenarioSeconds,
  ]] as const
) {
  if (!(v > 0)) {
    console.error(`bench:ahead: --${k} must be a positive number`);
    Deno.exit(2);
  }
}

const results: Record<string, unknown> = { date: new Date().toISOString() };

/** Spin iterations/s and hand-offs/s of 2 VMs on 1 slot under rr with `sliceMs` slices. */
async function spinPair(
  sliceMs: number,
  decideAhead: boolean,
): Promise<{ rate: number; h: number }> {
  const vmm = await Vmm.create({
    scheduler: {
      plugin: RR,
      params: { slice_ms: sliceMs },
      slots: 1,
      ratelimitUs: 0,
      decideAhead,
    },
  });
  try {
    const vms: Vm[] = [];
    for (const name of ["p1", "p2"]) {
      vms.push(await vmm.createVm({ name, kernel: KERNEL, cmdline: SPIN }));
    }
    for (const vm of vms) await vm.start();
    await sleep(300);
    const it = () => vms.reduce((s, vm) => s + Number(vm.stats()!.vcpus[0].iterations), 0);
    const grants = async () =>
      (await vmm.scheduler!.stats()).vcpus.reduce((s, v) => s + v.grants, 0);
    const i0 = it(), g0 = await grants(), t0 = performance.now();
    await sleep(seconds * 1000);
    const i1 = it(), g1 = await grants(), t1 = performance.now();
    const dt = (t1 - t0) / 1000;
    return { rate: (i1 - i0) / dt, h: (g1 - g0) / dt };
  } finally {
    await vmm.close();
  }
}

// ------------------------------------------------------------------ hand-off against the floor
if (!args.values["skip-handoff"]) {
  console.log(
    `== hand-off outside guest mode, 2 spinning VMs on 1 slot, rr 1 ms slices, ${rounds} rounds`,
  );
  const floor: number[] = [], off: number[] = [], on: number[] = [], onShare: number[] = [];
  const offDecision: number[] = [], onDecision: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const f = await benchHandoffFloor(seconds);
    const a = await benchHandoff(seconds, undefined, "worker", {
      decideAhead: false,
      futex: false,
    });
    const b = await benchHandoff(seconds, undefined, "worker", {
      decideAhead: true,
      futex: false,
    });
    floor.push(f.floorNs);
    off.push(a.handoffNs);
    on.push(b.handoffNs);
    offDecision.push(a.decisionNs);
    onDecision.push(b.decisionNs);
    onShare.push(b.handed / b.grants);
    console.log(
      `  round ${r + 1}: floor ${fmt(f.floorNs / 1e3)} us (${f.exits} exits); pickNext ${
        fmt(a.handoffNs / 1e3)
      } us (${a.grants} grants); ahead ${
        fmt(b.handoffNs / 1e3)
      } us (${b.grants} grants, ${b.handed} handed over)`,
    );
  }
  const handoff = {
    floorNs: median(floor),
    pickNs: median(off),
    aheadNs: median(on),
    pickOverFloor: median(off.map((x, i) => x / floor[i])),
    aheadOverFloor: median(on.map((x, i) => x / floor[i])),
    aheadOverPick: median(on.map((x, i) => x / off[i])),
    handedShare: median(onShare),
    pickGiveBackToGrantNs: median(offDecision),
    aheadGiveBackToGrantNs: median(onDecision),
    rounds: { floor, off, on },
  };
  results.handoff = handoff;
  console.log(
    `  median: floor ${fmt(handoff.floorNs / 1e3)} us; pickNext ${fmt(handoff.pickNs / 1e3)} us (${
      fmt(handoff.pickOverFloor, 2)
    }x floor); ahead ${fmt(handoff.aheadNs / 1e3)} us (${fmt(handoff.aheadOverFloor, 2)}x floor, ${
      fmt(handoff.aheadOverPick, 2)
    }x pickNext; goal <= 1.5x floor); give-back to grant ${
      fmt(handoff.pickGiveBackToGrantNs / 1e3)
    } -> ${fmt(handoff.aheadGiveBackToGrantNs / 1e3)} us`,
  );

  // ------------------------------------------------------------------ progress lost per hand-off

  console.log(`== guest progress lost per hand-off, rr 1 ms against 4 ms slices, ${rounds} rounds`);
  const lost: Record<string, number[]> = { pick: [], ahead: [] };
  for (let r = 0; r < rounds; r++) {
    for (const ahead of [false, true]) {
      const a = await spinPair(1, ahead), b = await spinPair(4, ahead);
      const L = (b.rate - a.rate) / (a.h * b.rate - b.h * a.rate) * 1e9;
      lost[ahead ? "ahead" : "pick"].push(L);
      console.log(
        `  round ${r + 1} ${ahead ? "ahead" : "pickNext"}: 1 ms ${fmt(a.rate / 1e6)} Mit/s at ${
          fmt(a.h, 0)
        } hand-offs/s, 4 ms ${fmt(b.rate / 1e6)} Mit/s at ${fmt(b.h, 0)}/s: ${
          fmt(L / 1e3)
        } us lost each`,
      );
    }
  }
  const lostPerHandoff = {
    pickNs: median(lost.pick),
    aheadNs: median(lost.ahead),
    rounds: lost,
    aheadOverHandoff: median(lost.ahead) / handoff.aheadNs,
  };
  results.lostPerHandoff = lostPerHandoff;
  console.log(
    `  median: pickNext ${fmt(lostPerHandoff.pickNs / 1e3)} us, ahead ${
      fmt(lostPerHandoff.aheadNs / 1e3)
    } us of guest progress per hand-off (${
      fmt(lostPerHandoff.aheadOverHandoff, 2)
    }x its time outside guest mode; goal <= 2x)`,
  );
}

// ------------------------------------------------------------------ beside host
if (!args.values["skip-scenarios"]) {
  const total = (r: ScenarioResult) => r.vms.reduce((s, v) => s + v.throughput, 0);
  const scenarios: Record<string, unknown> = {};
  for (
    const [file, policy, pick] of [
      ["weights", "credit2", (r: ScenarioResult) => total(r)],
      ["weights", "credit", (r: ScenarioResult) => total(r)],
      [
        "io-vs-hog",
        "credit",
        (r: ScenarioResult) => r.vms.find((v) => v.name === "hog")!.throughput,
      ],
    ] as const
  ) {
    const sc = await loadScenario(new URL(`bench/scenarios/${file}.json`, ROOT).pathname);
    const plugin = new URL(`plugins/${policy}.ts`, ROOT).href;
    const run = (p: string, decideAhead?: boolean) =>
      runScenarioKvm(sc, {
        policy: p,
        seconds: scenarioSeconds,
        scheduler: decideAhead === undefined ? undefined : { decideAhead },
      });
    const host = await run("host");
    const a = await run(plugin, false);
    const b = await run(plugin, true);
    const echo = (r: ScenarioResult) => r.vms.find((v) => v.name === "echo")?.p99Us ?? NaN;
    const used = (r: ScenarioResult) => r.vms.reduce((s, v) => s + v.share, 0);
    const row = {
      host: pick(host),
      pick: pick(a),
      ahead: pick(b),
      pickOverHost: pick(a) / pick(host),
      aheadOverHost: pick(b) / pick(host),
      slotsUsed: { host: used(host), pick: used(a), ahead: used(b) },
      echoP99Us: { host: echo(host), pick: echo(a), ahead: echo(b) },
      ejections: [...a.ejections, ...b.ejections],
    };
    scenarios[`${file}/${policy}`] = row;
    console.log(
      `== ${file} under ${policy}, ${scenarioSeconds} s each, ${
        file === "io-vs-hog" ? "the hog's" : "total spin"
      } progress: host ${fmt(row.host)} Mit/s; pickNext ${fmt(row.pick)} (${
        fmt(row.pickOverHost, 3)
      }x host); ahead ${fmt(row.ahead)} (${fmt(row.aheadOverHost, 3)}x host); slots used ${
        fmt(row.slotsUsed.host * 100)
      } / ${fmt(row.slotsUsed.pick * 100)} / ${fmt(row.slotsUsed.ahead * 100)} %` +
        (file === "io-vs-hog"
          ? `; echo p99 ${fmt(row.echoP99Us.host, 0)} / ${fmt(row.echoP99Us.pick, 0)} / ${
            fmt(row.echoP99Us.ahead, 0)
          } us`
          : ""),
    );
  }
  results.scenarios = scenarios;
}

await Deno.mkdir(new URL("bench/results/", ROOT), { recursive: true });
await Deno.writeTextFile(
  new URL("bench/results/ahead.json", ROOT),
  JSON.stringify(results, null, 2) + "\n",
);
