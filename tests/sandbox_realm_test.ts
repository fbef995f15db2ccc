/**
 * The sandbox's frozen realm and the core's hostile reading of the channel:
 *
 * - a plugin that tries the prototype route to the channel (replacing what the sandbox's own
 *   code calls on the channel's views, by assignment, `Object.defineProperty`, `Reflect`,
 *   `__proto__`, `setPrototypeOf`, species, `Object.prototype` setters, `Function.prototype`,
 *   or the globals) is refused at load, or loads and never gets the channel;
 * - a plugin that writes garbage into the channel (handed to it by the tests' debug hook, since
 *   it can no longer take it) is ejected with the reason "corrupted channel", when the core
 *   sees the corruption rather than at the end of a budget, and the fallback takes over.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { SandboxPolicy } from "../src/sched/sandbox.ts";
import { ProcessSandboxPolicy } from "../src/sched/sandbox_process.ts";
import { PluginLoadError } from "../src/sched/load.ts";
import { type NewVcpu, type SchedAction, SchedCore } from "../src/sched/core.ts";
import { simulate } from "../src/sim/mod.ts";
import type { SimOptions, SimResult } from "../src/sim/types.ts";
import { test } from "./helpers/deadline.ts";

const FIXTURES = new URL("./fixtures/plugins/", import.meta.url);

/**
 * Routes the fixture tries. Those on frozen intrinsics must be refused at load (the attempt
 * throws a TypeError while the module is evaluated); the others may load, and then must not
 * reach the channel.
 */
const ROUTES: [route: string, refused: boolean][] = [
  ["assign", true],
  ["define", true],
  ["reflect", true],
  ["proto", true],
  ["setPrototypeOf", true],
  ["species", true],
  ["objectProto", true],
  ["function", true],
  ["sharedArrayBuffer", true],
  ["globals", false],
];

/**
 * Every sandbox: the per-call one (the VMM's Worker), the child process, and the whole
 * simulation in the plugin's Worker, where the engine shares the plugin's realm and the global
 * names it looks up are locked too (`lockGlobals`), so that replacing them is refused at load
 * as well.
 */
const MODES = [
  ["per call", "per-call"],
  ["process", "process"],
  ["whole simulation", true],
] as const;

for (const [route, refusedPerCall] of ROUTES) {
  for (const [mode, sandbox] of MODES) {
    const refused = refusedPerCall || (route === "globals" && sandbox === true);
    test(`sandbox realm (${mode}): the prototype route "${route}" ${refused ? "is refused at load" : "never reaches the channel"}`, async () => {
      const plugin = new URL(`prototype_route.ts?route=${route}`, FIXTURES).href;
      const opts = {
        plugin,
        sandbox,
        slots: 1,
        seconds: 30,
        vms: ["a", "b", "c"].map((vm) => ({
          name: vm,
          vcpus: 1,
          workload: { kind: "spin" as const },
        })),
      };
      const r = await simulate(opts).catch((e) => e);
      if (refused) {
        assert(r instanceof PluginLoadError, `loaded: ${JSON.stringify(r?.ejections ?? r)}`);
        match(r.message, /prototype_route\.ts\?route=.*TypeError/);
        return;
      }
      if (r instanceof Error) throw r;
      // It ran, every decision its own, and it never held the channel: no capture reported, no
      // corruption seen, and it was still in charge at the end.
      assertEquals(r.ejections, []);
      assertEquals(r.finalPlugin, `prototype_route_${route}`);
      assertEquals(r.policyEvents.captured, undefined);
      for (const vm of r.vms) assert(Math.abs(vm.share - 1 / 3) < 0.01, `${vm.name} ${vm.share}`);
    });
  }
}

/** A mixed scenario: spinners, an echo server, a lock, a periodic task, IPIs. */
const MIXED: Omit<SimOptions, "plugin"> = {
  slots: 2,
  seconds: 1,
  seed: 7,
  vms: [
    { name: "spin", vcpus: 2, workload: { kind: "spin" } },
    {
      name: "web",
      vcpus: 2,
      workload: { kind: "echo", mode: "open", ratePerSec: 3000, serviceUs: 80 },
    },
    { name: "lock", vcpus: 3, workload: { kind: "lock", csUs: 30, workUs: 100 } },
    { name: "rt", vcpus: 1, workload: { kind: "periodic", periodMs: 20, computeMs: 3 } },
    { name: "ipi", vcpus: 2, workload: { kind: "ipi", workUs: 20 } },
  ],
};

/** The result without its wall-clock fields. */
function stable(r: SimResult): Omit<SimResult, "wallMs" | "eventsPerSec" | "sandbox"> {
  const { wallMs: _w, eventsPerSec: _e, sandbox: _s, ...rest } = r;
  return rest;
}

test("sandbox realm: every built-in plugin decides in the frozen realm exactly as in-process", async () => {
  for (const name of ["rr", "credit", "credit2", "rtds", "gang"]) {
    const plugin = new URL(`../plugins/${name}.ts`, import.meta.url).href;
    const local = await simulate({ ...MIXED, plugin, sandbox: false });
    const frozen = await simulate({ ...MIXED, plugin, sandbox: "per-call" });
    assertEquals(frozen.ejections, [], name);
    assertEquals(stable(frozen), stable(local), name);
    const child = await simulate({ ...MIXED, plugin, sandbox: "process" });
    assertEquals(child.ejections, [], name);
    assertEquals(stable(child), stable(local), name);
    const whole = await simulate({ ...MIXED, plugin, sandbox: true });
    assertEquals(stable(whole), stable(local), name);
  }
});

const MS = 1_000_000;

function vcpu(id: number): NewVcpu {
  return { id, vm: "a", index: id, vmVcpus: 3, params: {}, state: "runnable" };
}

/** Both sandboxes the VMM can run a plugin in, by how a test creates one. */
const PORTS = [
  ["worker", SandboxPolicy.create],
  ["process", ProcessSandboxPolicy.create],
] as const;

/**
 * Runs the scribble fixture (mode `mode`, handed the channel if `debugChannel`) in the sandbox
 * `create` makes, under a core on one slot with three spinning vCPUs, a slice ending every
 * virtual millisecond, for `maxSteps` slices or until 100 grants followed an ejection. Returns
 * the core and those grants.
 */
async function scribbleRun(
  create: (typeof PORTS)[number][1],
  mode: string,
  seed: number,
  maxSteps = 50_000,
  debugChannel = true,
) {
  const port = await create({
    plugin: new URL("scribble.ts", FIXTURES),
    params: { mode, seed, after: 20 },
    debugChannel,
    budgetNs: 20 * MS,
  });
  const core = new SchedCore({ slots: 1, policy: port, now: 0 });
  let running = -1;
  const note = (actions: SchedAction[]) => {
    for (const a of actions) if (a.type === "grant") running = a.vcpu;
  };
  let now = 0;
  for (let id = 0; id < 3; id++) note(core.addVcpu(vcpu(id), now));
  let afterEject = 0;
  for (let step = 0; step < maxSteps && afterEject < 100; step++) {
    now += MS;
    const ejected = core.ejections.length > 0;
    const before = running;
    note(core.sliceEnd(running, now, MS));
    if (ejected && running !== before) afterEject++;
  }
  port.close();
  return { core, afterEject };
}

for (const [kind, create] of PORTS) {
  for (const mode of ["fill", "timer", "sequence"]) {
    test(`sandbox realm (${kind}): a plugin writing into the channel (${mode}) is ejected as "corrupted channel"`, async () => {
      for (const seed of [1, 2, 3]) {
        const { core, afterEject } = await scribbleRun(create, mode, seed);
        const e = core.ejections;
        assertEquals(e.length, 1, JSON.stringify(e));
        assertEquals(e[0].plugin, "scribble");
        // Seen as what it is, when it is seen: not a timeout at the end of the budget.
        assertEquals(e[0].reason, "corrupted channel", e[0].detail);
        match(e[0].detail, /^corrupted channel: /);
        // The fallback took over and goes on granting.
        assertEquals(core.policyName, "rr");
        assertEquals(afterEject, 100);
      }
    });
  }

  test(`sandbox realm (${kind}): without the debug hook the scribble fixture is a sound plugin`, async () => {
    const { core, afterEject } = await scribbleRun(create, "fill", 1, 2000, false);
    assertEquals(core.ejections, []);
    assertEquals(core.policyName, "scribble");
    assertEquals(afterEject, 0);
  });
}
